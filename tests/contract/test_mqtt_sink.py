"""MQTT sink against the stack's Mosquitto, read back by a paho subscriber that subscribed first."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.mqtt import MqttSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration


class Subscriber:
    """A plain paho client subscribed (QoS 1) to `<prefix>/#` before anything is published."""

    def __init__(self, url: str, prefix: str) -> None:
        parts = urlsplit(url)
        self.messages: list[Any] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_subscribe = lambda *_a: ready.set()
        client.on_message = lambda _c, _u, msg: self._got(msg)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        client.subscribe(f"{prefix}/#", qos=1)
        assert ready.wait(10), "subscription not acknowledged"
        self.client = client

    def _got(self, msg: Any) -> None:
        with self.lock:
            self.messages.append(msg)

    def settled(self, quiet_s: float = 0.3, limit_s: float = 10.0) -> list[Any]:
        """Messages once none has arrived for `quiet_s` (delivery to a subscriber is asynchronous)."""
        end = time.monotonic() + limit_s
        count = -1
        while time.monotonic() < end:
            with self.lock:
                now = len(self.messages)
            if now == count:
                break
            count = now
            time.sleep(quiet_s)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str, unique_name: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, unique_name)
    yield sub
    sub.close()


def test_topics_and_user_properties(mqtt_url: str, unique_name: str, subscriber: Subscriber) -> None:
    sink = MqttSink(mqtt_url, prefix=unique_name)
    sink.open()
    sink.write([make_event(1, table="a"), make_event(2, table="b", op="d")])
    sink.close()
    first, second = subscriber.settled()
    assert (first.topic, second.topic) == (f"{unique_name}/main/a", f"{unique_name}/main/b")
    assert first.qos == 1
    props = dict(first.properties.UserProperty)
    assert props["op"] == "c" and json.loads(props["key"]) == {"id": 1}
    assert json.loads(props["position"])["values"] == [1]
    assert json.loads(second.payload)["op"] == "d"


def test_mqtt_311_without_properties(mqtt_url: str, unique_name: str, subscriber: Subscriber) -> None:
    sink = MqttSink(mqtt_url, prefix=unique_name, protocol_version=311, topic="{prefix}/all")
    sink.open()
    sink.write([make_event(n) for n in range(500)])
    sink.close()
    got = subscriber.settled()
    assert [json.loads(m.payload)["source"]["seq"] for m in got] == list(range(500))


def test_qos_0_is_refused() -> None:
    with pytest.raises(CdcError) as err:
        MqttSink("mqtt://127.0.0.1:1883", qos=0)
    assert err.value.kind is ErrorKind.CONFIG


def test_unreachable_broker_is_transient() -> None:
    with pytest.raises(CdcError) as err:
        MqttSink("mqtt://127.0.0.1:1").open()
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
