"""The `mqtt` source's config (the seed's IoT example, what is refused and why), its topic -> table
mapping and its position. The broker behaviour is tested live in tests/integration/test_mqtt_source.py."""

from __future__ import annotations

import pytest
import yaml

from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError
from cdc_logs.position import MqttPosition, decode
from cdc_logs.readers.mqtt.config import MqttSourceConfig, filter_problem
from cdc_logs.readers.mqtt.reader import topic_table

SEED_IOT = """
name: iot
source:
  type: mqtt
  broker: "mqtt://iot-broker.company.com:1883"
  topics: ["sensors/+/temperature", "sensors/+/humidity"]
  qos: 1
destination:
  type: file
  path: out.jsonl
"""


def test_the_seeds_iot_source_validates_as_written() -> None:
    cfg = parse_config(yaml.safe_load(SEED_IOT))
    source = cfg.source
    assert isinstance(source, MqttSourceConfig)
    assert source.broker == "mqtt://iot-broker.company.com:1883"
    assert source.topics == ["sensors/+/temperature", "sensors/+/humidity"]
    assert source.qos == 1 and source.protocol_version == 5


def test_one_topic_and_url_spellings() -> None:
    cfg = MqttSourceConfig.model_validate({"type": "mqtt", "url": "mqtts://b:8883", "topic": "plant/#"})
    assert cfg.broker == "mqtts://b:8883" and cfg.topics == ["plant/#"]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"qos": 0}, "QoS 0 has no acknowledgement"),
        ({"qos": 2}, "use qos: 1"),
        ({"topics": ["a/#/b"]}, "# must be a whole level"),
        ({"topics": ["a/b+"]}, "+ must be a whole level"),
        ({"topics": []}, "at least 1"),
        ({"broker": "mqtt://user:pw@b:1883"}, "username / password"),
        ({"broker": "http://b"}, "MQTT broker URL"),
        ({"message_format": "avro"}, "Kafka source"),
        ({"tables": {"a/#/x": "t"}}, "tables:"),
        ({"message_format": "debezium", "tables": {"a/+": "t"}}, "remove `tables`"),
        ({"session_expiry_s": 0}, "greater than or equal to 1"),
    ],
)
def test_refused_configs_say_why(change: dict[str, object], complaint: str) -> None:
    data = {"type": "mqtt", "broker": "mqtt://b:1883", "topics": ["a/+"], **change}
    with pytest.raises(ValueError, match="validation error") as info:
        MqttSourceConfig.model_validate(data)
    assert complaint in str(info.value)


def test_a_password_in_a_refused_broker_url_is_not_echoed() -> None:
    data = yaml.safe_load(SEED_IOT)
    data["source"]["broker"] = "mqtt://user:s3cr3tpw@b:1883"
    with pytest.raises(CdcError) as info:
        parse_config(data)
    assert "s3cr3tpw" not in str(info.value)


@pytest.mark.parametrize(
    ("topic_filter", "ok"),
    [("a/+/b", True), ("#", True), ("a/#", True), ("+", True), ("a/#/b", False), ("a+", False), ("", False)],
)
def test_filter_rules(topic_filter: str, ok: bool) -> None:
    assert (filter_problem(topic_filter) is None) is ok


def test_topic_to_table() -> None:
    tables = (("sensors/+/temperature", "temperature"), ("sensors/#", "other_sensors"))
    assert topic_table("sensors/dev7/temperature", tables) == "temperature"
    assert topic_table("sensors/dev7/humidity", tables) == "other_sensors"
    assert topic_table("plant/line1/speed", tables) == "plant_line1_speed"


def test_position_orders_by_run_then_message_and_round_trips() -> None:
    a = MqttPosition("mqtt://b:1883", run=1000, seq=7)
    b = MqttPosition("mqtt://b:1883", run=1001, seq=1)  # a later run: after, whatever its seq
    assert a < b
    assert decode(a.encode()) == a
    assert a.describe() == "run 1000 message 7"
    with pytest.raises(CdcError):
        decode('{"type": "mqtt", "server": "s", "run": "x", "seq": 1}')
