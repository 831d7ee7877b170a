"""The `mqtt` source: its config (the seed's IoT shape: broker, topics, qos) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase, secret
from cdc_logs.dsn import check_url
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig


def filter_problem(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid MQTT subscription filter (None when it is)."""
    if not topic_filter:
        return "a topic filter cannot be empty"
    if "\x00" in topic_filter:
        return f"topic filter {topic_filter!r} contains a NUL character"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"topic filter {topic_filter!r}: # must be a whole level, and the last one"
        if "+" in level and level != "+":
            return f"topic filter {topic_filter!r}: + must be a whole level (sensors/+/temperature)"
    return None


class MqttSourceConfig(MessageFormatConfig, SourceConfigBase):
    """MQTT topics (wildcards allowed), QoS 1 in a persistent session, each message acknowledged once
    every sink holds it.

    See docs/sources/mqtt.md: what the broker redelivers after a crash, ordering, and the broker limits
    that decide how many unacknowledged messages it sends or queues.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "mqtt",
                    "broker": "mqtt://iot-broker.company.com:1883",
                    "topics": ["sensors/+/temperature", "sensors/+/humidity"],
                    "qos": 1,
                }
            ]
        }
    )

    type: Literal["mqtt"] = Field(description="Selects this source.")
    broker: str = Field(
        description="Broker URL: mqtt://host[:port] (default port 1883), or mqtts:// (ssl://) for TLS "
        "(default port 8883, the broker's certificate is verified). Credentials go in username/password, "
        "not here. `url` is accepted too.",
        examples=["mqtt://iot-broker.company.com:1883", "mqtts://broker.internal:8883"],
    )
    topics: list[str] = Field(
        min_length=1,
        description="Topic filters to subscribe to; + matches one level, # the rest (sensors/+/temperature, "
        "plant/#). The seed's `topic:` (one filter) is accepted too.",
        examples=[["sensors/+/temperature", "sensors/+/humidity"]],
    )
    qos: int = Field(
        1,
        description="Subscription QoS. Only 1 is accepted: QoS 0 has no acknowledgement (a crash loses "
        "what was in flight), and a QoS 2 message's handshake state dies with the process, so the "
        "broker would not deliver it again after a crash either.",
        examples=[1],
    )
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="Topic filter -> table name, for the messages of topics it matches (the first match "
        "in this order). Default for a topic no entry matches (and no `table` set): the topic itself, "
        "with / replaced by _ (sensors/dev7/temperature -> sensors_dev7_temperature).",
        examples=[{"sensors/+/temperature": "temperature", "sensors/+/humidity": "humidity"}],
    )
    client_id: str | None = Field(
        None,
        description="MQTT client id: the name of the persistent session the broker keeps (and redelivers "
        "from) while the pipeline is down, so it must stay the same across restarts and be used by one "
        "process only. Default: cdc-logs.<pipeline>.<source name>.",
        examples=["cdc-logs.iot.sensors"],
    )
    username: str | None = Field(None, description="User name to log in with.", examples=["cdc"])
    password: SecretStr | None = Field(
        None, description="Password to log in with. A secret: never logged.", examples=["${MQTT_PASSWORD}"]
    )
    protocol_version: Literal[5, 311] = Field(
        5,
        description="5: MQTT 5 (session expiry, receive maximum, retained messages only on a new "
        "subscription); 311: MQTT 3.1.1 for old brokers (clean_session false; the broker's own in-flight "
        "limit applies and retained messages come again on every start).",
        examples=[311],
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        le=0xFFFFFFFF,
        description="MQTT 5: seconds the broker keeps the session (and queues messages for it) while "
        "the pipeline is disconnected; messages published after it expired are not kept. 4294967295: "
        "never expires. MQTT 3.1.1 sessions expire by broker setting (Mosquitto: "
        "persistent_client_expiration).",
        examples=[86400],
    )
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        description="MQTT 5: QoS 1 messages the broker may send before the first of them is acknowledged. "
        "Acknowledgements wait for the sinks, so keep it at least sync.batch.max_events. MQTT 3.1.1: "
        "the broker's limit applies (Mosquitto: max_inflight_messages, default 20).",
        examples=[5000],
    )
    keepalive_s: int = Field(
        60,
        ge=5,
        le=65535,
        description="MQTT keep-alive: the broker drops the connection after 1.5 times this without a "
        "packet (the source then reconnects; unacknowledged messages come again).",
        examples=[30],
    )
    ca_file: str | None = Field(
        None,
        description="For mqtts://: CA certificate file (PEM) to verify the broker with. Default: the "
        "system's CAs.",
        examples=["/etc/ssl/certs/mqtt-ca.pem"],
    )
    cert_file: str | None = Field(
        None,
        description="For mqtts://: client certificate file (PEM), for brokers that authenticate clients "
        "by certificate.",
        examples=["/etc/cdc/mqtt-client.pem"],
    )
    key_file: str | None = Field(
        None,
        description="For mqtts://: the client certificate's private key (PEM).",
        examples=["/etc/cdc/mqtt.key"],
    )
    connect_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds to wait for the broker to accept the connection and the subscription.",
        examples=[30.0],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "url" in data and "broker" not in data:
                data["broker"] = data.pop("url")
            if "topic" in data and "topics" not in data:
                data["topics"] = [data.pop("topic")]
        return data

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        check_url(value, "MQTT broker URL", ("mqtt", "mqtts", "ssl", "tcp"))
        if "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("give the broker's credentials with username / password, not in the URL")
        return value

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        for topic_filter in value:
            problem = filter_problem(topic_filter)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"qos {value} cannot be acknowledged only after the sinks hold a message: QoS 0 has no "
                "acknowledgement, and QoS 2's handshake state dies with the process; use qos: 1"
            )
        return value

    @model_validator(mode="after")
    def _checks(self) -> MqttSourceConfig:
        if self.message_format == "avro":
            raise ValueError(
                "message_format avro is the Kafka source's (schema registry); use json or debezium"
            )
        for topic_filter in self.tables:
            problem = filter_problem(topic_filter)
            if problem:
                raise ValueError(f"tables: {problem}")
        if self.tables and self.message_format == "debezium":
            raise ValueError("message_format debezium takes the table from the envelope: remove `tables`")
        return self


def settings(cfg: MqttSourceConfig, pipeline: str, temporary: bool = False) -> Any:
    """The reader's `MqttSettings` for `cfg` (the run's, and the doctor's with `temporary`)."""
    from cdc_logs.readers.mqtt.reader import MqttSettings

    source = cfg.name or cfg.type
    return MqttSettings(
        broker=cfg.broker,
        topics=tuple(cfg.topics),
        tables=tuple(cfg.tables.items()),
        client_id=cfg.client_id or f"cdc-logs.{pipeline}.{source}",
        username=cfg.username,
        password=secret(cfg.password),
        protocol_version=cfg.protocol_version,
        session_expiry_s=cfg.session_expiry_s,
        receive_maximum=cfg.receive_maximum,
        keepalive_s=cfg.keepalive_s,
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        connect_timeout_s=cfg.connect_timeout_s,
        temporary=temporary,
    )


@registry.source(MqttSourceConfig)
def build(cfg: MqttSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.extras import need, source_label

    need("paho", "mqtt", source_label(cfg.type, cfg.name))
    from cdc_logs.readers.mqtt.reader import MqttReader

    return MqttReader(settings(cfg, ctx.pipeline, ctx.temporary), cfg.mapping(), pipeline=ctx.pipeline)
