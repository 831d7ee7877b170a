"""The `mqtt` source against the stack's Mosquitto 2.0: `cdc-logs run` delivers published messages to a
file sink and the SQL apply sink, survives a SIGKILL (the persistent session redelivers what was not
acknowledged, and only that), parks a poison message in the dead letters, and the reader-level facts
the docs state (retained messages, stray topics, acks only after commit).

Every test uses its own topic prefix and client id, and clears its session on the broker at the end
(a clean-start connection with session expiry 0).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.messages import MessageFormatConfig
from cdc_logs.readers.mqtt.reader import MqttReader, MqttSettings
from tests.integration.bus_support import (
    POISON,
    Target,
    body,
    check_delivery,
    check_poison,
    file_ids,
    write_pipeline,
)

pytestmark = pytest.mark.integration

N = 1500


class Broker:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.uid = uuid.uuid4().hex[:10]
        self.prefix = f"cdctest/{self.uid}"
        self.client_ids: list[str] = []

    def client_id(self, name: str) -> str:
        cid = f"cdc-logs-test-{self.uid}-{name}"
        self.client_ids.append(cid)
        return cid

    def publish(
        self, messages: list[tuple[str, bytes]], *, pause_s: float = 0.0, retain: bool = False
    ) -> None:
        import paho.mqtt.client as mqtt

        pub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"cdc-logs-test-pub-{uuid.uuid4().hex[:8]}"
        )
        pub.connect(self.host, self.port)
        pub.loop_start()
        try:
            for topic, payload in messages:
                pub.publish(topic, payload, qos=1, retain=retain).wait_for_publish(30)
                if pause_s:
                    time.sleep(pause_s)
        finally:
            pub.loop_stop()
            pub.disconnect()

    def clear_sessions(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        for cid in self.client_ids:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            client.connect(self.host, self.port, clean_start=True, properties=props)
            client.loop(0.5)
            client.disconnect()
            client.loop(0.2)


@pytest.fixture
def broker(mqtt_url: str) -> Iterator[Broker]:
    b = Broker(mqtt_url)
    try:
        yield b
    finally:
        b.clear_sessions()


def test_run_delivers_to_file_and_sql_across_a_sigkill_and_dead_letters_a_poison_message(
    broker: Broker, tmp_path: Path
) -> None:
    target = Target(tmp_path / "target.db")
    source = {
        "type": "mqtt",
        "broker": broker.url,
        "topics": [f"{broker.prefix}/sensors/+/temperature"],
        "qos": 1,
        "client_id": broker.client_id("run"),
        "tables": {f"{broker.prefix}/sensors/+/temperature": Target.TABLE},
        "key_fields": ["id"],
    }
    runs = write_pipeline(tmp_path, f"mqtt-{broker.uid}", source, target)
    messages = [(f"{broker.prefix}/sensors/dev{i % 3}/temperature", body(i)) for i in range(N)]
    poison_at = N // 2
    messages.insert(poison_at, (f"{broker.prefix}/sensors/dev9/temperature", POISON))
    out = tmp_path / "out.jsonl"
    try:
        runs.start()
        # The session must exist before the first publish: the broker queues only for known sessions.
        runs.wait("the mqtt session is open", lambda: "mqtt session opened" in runs.log_text(), 30)
        publisher = threading.Thread(target=broker.publish, args=(messages,), kwargs={"pause_s": 0.002})
        publisher.start()
        at_kill: list[int] = []
        for share in (4, 2):  # kill once while publishing, once while the backlog drains
            runs.wait(f"1/{share} was delivered", lambda s=share: len(file_ids(out)) >= N // s, 60)
            runs.kill()
            at_kill.append(len(file_ids(out)))
            assert at_kill[-1] < N, "the kill came after everything was delivered: nothing was tested"
            runs.start()
        publisher.join(60)
        runs.wait("every message was delivered", lambda: len(set(file_ids(out))) >= N, 60)
        runs.stop()
        # A clean stop acknowledged everything it delivered: one more run gets nothing again.
        lines = len(file_ids(out))
        runs.start()
        runs.wait("the mqtt session is open", lambda: "mqtt session opened" in runs.log_text(), 30)
        time.sleep(1.5)
        runs.stop()
        assert len(file_ids(out)) == lines, "a cleanly stopped run left delivered messages unacknowledged"
    finally:
        runs.close()
    facts = check_delivery(tmp_path, target, N, at_kill=at_kill)
    print(f"killed at {at_kill} lines; {facts}")
    check_poison(tmp_path, len(at_kill), topic=f"{broker.prefix}/sensors/dev9/temperature")
    position = runs.committed_position()
    assert position is not None and position["type"] == "mqtt"


# -- the reader on its own: what the docs say about acks, retained messages and stray topics ---------
def _reader(broker: Broker, name: str, topics: list[str], **kw: Any) -> MqttReader:
    settings = MqttSettings(
        broker=broker.url, topics=tuple(topics), client_id=broker.client_id(name), connect_timeout_s=10, **kw
    )
    reader = MqttReader(settings, MessageFormatConfig().mapping(), pipeline="p", idle_tick_s=0.2)
    reader.commit_wait_s = 0.0  # the test drives the reader itself: no other thread sends the acks
    return reader


def _read(reader: MqttReader, count: int, timeout: float = 10) -> list[Any]:
    """Open, read `count` messages (events, dead letters or skipped ones), leave open."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    for item in reader.stream(None):
        if item is not None and not (isinstance(item, Heartbeat) and item.position.seq == 0):
            out.append(item)
        if len(out) >= count or time.monotonic() > deadline:
            break
    return out


def _values(items: list[Any]) -> list[Any]:
    return [i.after["i"] if isinstance(i, ChangeEvent) else type(i).__name__ for i in items]


def test_only_committed_messages_are_acknowledged(broker: Broker) -> None:
    topic = f"{broker.prefix}/acks"
    reader = _reader(broker, "acks", [topic])
    reader.open()
    reader.close()  # the session exists from here on
    broker.publish([(topic, f'{{"i": {i}}}'.encode()) for i in range(10)])
    reader.open()
    first = _read(reader, 10)
    assert _values(first) == list(range(10))
    reader.commit(first[3].position)  # 0..3 durable
    reader._send_acks()  # what the reader's loop does on its next turn
    reader.close()
    reader.open()
    again = _read(reader, 6, timeout=5)
    reader.close()
    assert _values(again) == [4, 5, 6, 7, 8, 9]
    assert ContractChecker().check_all([*first, *again]) == []  # one lane: a later run sorts after
    assert all(e.source.extra["redelivered"] for e in again)
    assert again[0].position > first[-1].position, "a later run's positions must sort after an earlier run's"


def test_retained_messages_come_with_a_new_subscription_only(broker: Broker) -> None:
    topic = f"{broker.prefix}/retained"
    broker.publish([(topic, b'{"i": 1}')], retain=True)
    try:
        reader = _reader(broker, "retained", [topic])
        reader.open()
        got = _read(reader, 1)
        assert _values(got) == [1] and got[0].source.extra["retain"] is True
        reader.commit(got[0].position)
        reader.close()
        reader.open()  # same session, the subscription exists: MQTT 5 retain handling 1
        assert _read(reader, 1, timeout=2) == []
        reader.close()
        old = _reader(broker, "retained311", [topic], protocol_version=311)
        for _ in range(2):  # MQTT 3.1.1 has no retain handling: every subscribe sends it again
            old.open()
            got = _read(old, 1)
            assert _values(got) == [1]
            old.commit(got[0].position)
            old.close()
    finally:
        broker.publish([(topic, b"")], retain=True)  # clears the retained message


def test_empty_payloads_and_stray_topics_are_acknowledged_without_an_event(broker: Broker) -> None:
    wanted, stray = f"{broker.prefix}/wanted", f"{broker.prefix}/stray"
    old = _reader(broker, "stray", [wanted, stray])
    old.open()
    old.close()
    broker.publish([(stray, b'{"i": 1}'), (wanted, b""), (wanted, b'{"i": 2}'), (wanted, b"[1]")])
    reader = MqttReader(
        MqttSettings(broker=broker.url, topics=(wanted,), client_id=old.client_id),
        MessageFormatConfig().mapping(),
        pipeline="p",
        idle_tick_s=0.2,
    )
    reader.open()  # the session still holds the stray subscription of the old config
    got = _read(reader, 4)
    reader.close()
    assert [type(i).__name__ for i in got] == ["Heartbeat", "Heartbeat", "ChangeEvent", "Undecodable"]
    assert got[2].source.table == f"{broker.prefix}/wanted".replace("/", "_")
    assert isinstance(got[3], Undecodable) and "not an object" in got[3].reason


def test_a_second_client_with_the_same_client_id_ends_the_stream_with_a_retryable_error(
    broker: Broker,
) -> None:
    import paho.mqtt.client as mqtt

    reader = _reader(broker, "takeover", [f"{broker.prefix}/t"])
    reader.open()
    items = reader.stream(None)
    next(items)  # the start heartbeat
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=reader.client_id, protocol=mqtt.MQTTv5)
    other.connect(broker.host, broker.port, clean_start=False)
    other.loop(0.5)
    try:
        # Mosquitto 2.0 closes the first connection without an MQTT 5 reason code (0x8E), so the run
        # ends with a lost connection (retried: the pipeline reconnects and takes the session back).
        with pytest.raises(CdcError, match=r"took over the session|lost the connection") as info:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                next(items)
        assert info.value.retryable
    finally:
        other.disconnect()
        reader.close()
