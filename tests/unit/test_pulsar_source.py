"""The pulsar source WITHOUT a broker. NOT a live-server test: no Pulsar broker can run on these machines
(docs/sources/pulsar.md, "What was tested here", says why; the Pulsar sink is in the same position).

What is tested: the seed's config shape and its rules; the acknowledgement bookkeeping (nothing before
commit(); individual acks on shared/key_shared, cumulative per partition on exclusive/failover;
negative acks for poison with a dead-letter topic) with the client's own MessageId objects; the
reader's loop over a scripted consumer object that has the client's Consumer/Message methods (what
is decoded, what is acknowledged when); and the real client against an unreachable service URL (a
retryable connection error)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pulsar
import pytest

from cdc_logs.config import PipelineConfig
from cdc_logs.configfile import load_config
from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import PulsarMessageId, decode
from cdc_logs.readers.messages import MessageMapping
from cdc_logs.readers.pulsar.config import PulsarSourceConfig
from cdc_logs.readers.pulsar.reader import Acks, PulsarReader

SEED = """
source:
  type: pulsar
  service_url: "pulsar://localhost:6650"
  topic: "persistent://public/default/events"
  subscription_name: "cdc_subscription"
  subscription_type: "shared"  # exclusive, shared, failover
destination:
  type: stdout
"""
TOPIC = "persistent://public/default/events"


def load(tmp_path: Path, text: str) -> PipelineConfig:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_config(path, env={})


# -- config ----------------------------------------------------------------------------------------
def test_the_seed_shape_validates(tmp_path: Path) -> None:
    cfg = load(tmp_path, SEED)
    assert isinstance(cfg.source, PulsarSourceConfig)
    assert cfg.source.all_topics() == [TOPIC]
    assert cfg.source.subscription_type == "shared"
    assert cfg.source.initial_position == "earliest"


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("Shared", "shared"),
        ("KeyShared", "key_shared"),
        ("key_shared", "key_shared"),
        ("Failover", "failover"),
    ],
)
def test_subscription_type_accepts_the_clients_spellings(given: str, read: str) -> None:
    cfg = PulsarSourceConfig(type="pulsar", topic="t", subscription_name="s", subscription_type=given)  # type: ignore[arg-type]
    assert cfg.subscription_type == read


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"topics": ["a"]}, "give `topic` or `topics`"),
        ({"subscription_type": "exclusive", "dead_letter_topic": "dlq"}, "needs subscription_type shared"),
        ({"message_format": "avro"}, "message_format avro is the kafka source's"),
    ],
)
def test_config_rules(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PulsarSourceConfig(type="pulsar", topic="t", subscription_name="s", **extra)


def test_subscribe_arguments() -> None:
    reader = PulsarReader("pulsar://h:6650", [TOPIC], "sub", subscription_type="key_shared",
                          dead_letter_topic="dlq", max_redeliver_count=3)  # fmt: skip
    args = reader.subscribe_args()
    assert args["subscription_name"] == "sub"
    assert args["consumer_type"] == pulsar.ConsumerType.KeyShared
    assert args["initial_position"] == pulsar.InitialPosition.Earliest
    assert args["dead_letter_policy"].max_redeliver_count == 3
    assert args["dead_letter_policy"].dead_letter_topic == "dlq"
    tail = PulsarReader("pulsar://h:6650", [TOPIC], "sub", temporary=True).subscribe_args()
    assert tail["subscription_name"].startswith("sub-tail-")  # removed on close
    assert tail["initial_position"] == pulsar.InitialPosition.Latest


def test_server_identity_has_no_credentials() -> None:
    reader = PulsarReader("pulsar://user:secret@b1:6650,b2:6650", [TOPIC], "s")
    assert reader.server_identity() == "pulsar:b1:6650,b2:6650"


def test_position_round_trips_and_orders_within_its_topic() -> None:
    a = PulsarMessageId("pulsar:h", topic=TOPIC, ledger=5, entry=7, batch=-1)
    b = PulsarMessageId("pulsar:h", topic=TOPIC, ledger=5, entry=8, batch=-1)
    assert a < b and a.lane() == TOPIC
    assert decode(a.encode()) == a
    assert a.describe() == f"{TOPIC}@5:7:-1"


# -- acknowledgements ------------------------------------------------------------------------------
def _ids(n: int, partition: int = 0) -> list[tuple[PulsarMessageId, Any]]:
    out = []
    for entry in range(n):
        mid = pulsar.MessageId(partition, 10 + partition, entry, -1)
        out.append(
            (PulsarMessageId("s", topic=f"t-partition-{partition}", ledger=10 + partition, entry=entry), mid)
        )
    return out


@pytest.mark.parametrize("kind", ["shared", "key_shared"])
def test_shared_acknowledges_each_message_up_to_the_committed_one(kind: str) -> None:
    acks = Acks(kind, nack_poison=False)
    msgs = _ids(5)
    for pos, mid in msgs:
        acks.delivered(pos, mid, pos.topic)
    individual, cumulative, nacks = acks.due(msgs[2][0])
    assert [m.entry_id() for m in individual] == [0, 1, 2]
    assert cumulative == [] and nacks == []
    assert len(acks) == 2
    individual, _, _ = acks.due(msgs[4][0])
    assert [m.entry_id() for m in individual] == [3, 4]


def test_exclusive_and_failover_acknowledge_cumulatively_per_partition() -> None:
    for kind in ("exclusive", "failover"):
        acks = Acks(kind, nack_poison=False)
        p0, p1 = _ids(3, 0), _ids(3, 1)
        for pos, mid in [p0[0], p1[0], p0[1], p1[1], p0[2]]:
            acks.delivered(pos, mid, pos.topic)
        individual, cumulative, _ = acks.due(p0[1][0])  # p0[0], p1[0], p0[1]
        assert individual == []
        assert sorted((m.partition(), m.entry_id()) for m in cumulative) == [(0, 1), (1, 0)]


def test_a_position_of_an_earlier_connection_acknowledges_nothing() -> None:
    acks = Acks("shared", nack_poison=False)
    (pos, mid), (old, _) = _ids(1, 0)[0], _ids(1, 1)[0]
    acks.delivered(pos, mid, pos.topic)
    assert acks.due(old) == ([], [], [])
    assert len(acks) == 1


def test_poison_is_acknowledged_or_negatively_acknowledged_with_a_dead_letter_topic() -> None:
    for nack, expected in ((False, ([0, 1], [])), (True, ([0], [1]))):
        acks = Acks("shared", nack_poison=nack)
        msgs = _ids(2)
        acks.delivered(*msgs[0], msgs[0][0].topic)
        acks.delivered(*msgs[1], msgs[1][0].topic, poison=True)
        individual, _, nacks = acks.due(msgs[1][0])
        assert ([m.entry_id() for m in individual], [m.entry_id() for m in nacks]) == expected


# -- the reader's loop over a scripted consumer -----------------------------------------------------
class FakeMessage:
    """The pulsar.Message methods the reader calls."""

    def __init__(self, entry: int, body: bytes, *, key: str = "", redelivered: int = 0) -> None:
        self._id = pulsar.MessageId(0, 42, entry, -1)
        self.body, self.key, self.redelivered = body, key, redelivered

    def data(self) -> bytes:
        return self.body

    def message_id(self) -> Any:
        return self._id

    def topic_name(self) -> str:
        return TOPIC

    def partition_key(self) -> str:
        return self.key

    def event_timestamp(self) -> int:
        return 0

    def publish_timestamp(self) -> int:
        return 1_700_000_000_000

    def redelivery_count(self) -> int:
        return self.redelivered


class FakeConsumer:
    """Consumer methods the reader calls; records every acknowledgement."""

    def __init__(self, messages: list[FakeMessage]) -> None:
        self.messages = list(messages)
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def receive(self, timeout_millis: int) -> FakeMessage:
        if not self.messages:
            raise pulsar.Timeout("no message")
        return self.messages.pop(0)

    def _record(self, what: str, mid: Any) -> None:
        with self.lock:
            self.calls.append((what, mid.entry_id()))

    def acknowledge(self, mid: Any) -> None:
        self._record("ack", mid)

    def acknowledge_cumulative(self, mid: Any) -> None:
        self._record("cumulative", mid)

    def negative_acknowledge(self, mid: Any) -> None:
        self._record("nack", mid)

    def close(self) -> None:
        pass


def _reader(consumer: FakeConsumer, **kw: Any) -> PulsarReader:
    class Client:
        def __init__(self, url: str, **_: Any) -> None:
            pass

        def subscribe(self, topics: Any, **_: Any) -> FakeConsumer:
            return consumer

        def close(self) -> None:
            pass

    reader = PulsarReader("pulsar://h:6650", [TOPIC], "sub", mapping=MessageMapping(key_fields=("id",)),
                          client_factory=Client, idle_tick_s=0.01, **kw)  # fmt: skip
    reader.open()
    return reader


def _row(n: int) -> bytes:
    return orjson.dumps({"id": n, "name": f"n{n}"})


def test_messages_become_events_and_are_acknowledged_only_after_commit() -> None:
    consumer = FakeConsumer([FakeMessage(0, _row(1)), FakeMessage(1, b"not json"), FakeMessage(2, _row(2))])
    reader = _reader(consumer, subscription_type="shared")
    stream = reader.stream(None)
    first = next(stream)
    assert isinstance(first, Heartbeat) and first.position.describe() == "the subscription's cursor"
    items = [next(stream) for _ in range(3)]
    assert isinstance(items[0], ChangeEvent) and items[0].after == {"id": 1, "name": "n1"}
    assert items[0].key == {"id": 1} and items[0].source.table == TOPIC
    assert items[0].source.ts_ms == 1_700_000_000_000
    assert isinstance(items[1], Undecodable) and "not JSON" in items[1].reason
    assert items[1].origin is not None and items[1].origin["message_id"] == "42:1:-1"
    assert isinstance(items[2], ChangeEvent)
    assert next(stream) is None  # idle tick
    assert consumer.calls == []  # nothing acknowledged before commit()
    assert items[1].position is not None
    reader.commit(items[1].position)
    assert next(stream) is None
    assert consumer.calls == [("ack", 0), ("ack", 1)]  # the poison one too: it is in the dead-letter file
    assert items[2].position is not None
    reader.commit(items[2].position)
    reader.close()  # the last commit is applied before the consumer closes
    assert consumer.calls[-1] == ("ack", 2)


def test_exclusive_acknowledges_cumulatively() -> None:
    consumer = FakeConsumer([FakeMessage(n, _row(n)) for n in range(3)])
    reader = _reader(consumer, subscription_type="exclusive")
    stream = reader.stream(None)
    items = [next(stream) for _ in range(4)][1:]
    assert items[2].position is not None
    reader.commit(items[2].position)
    next(stream)
    assert consumer.calls == [("cumulative", 2)]


def test_poison_with_a_dead_letter_topic_is_negatively_acknowledged_and_not_dead_lettered_twice() -> None:
    consumer = FakeConsumer(
        [FakeMessage(0, b"{bad"), FakeMessage(0, b"{bad", redelivered=1), FakeMessage(1, _row(1))]
    )
    reader = _reader(consumer, subscription_type="shared", dead_letter_topic="dlq")
    stream = reader.stream(None)
    next(stream)
    poison = next(stream)
    assert isinstance(poison, Undecodable) and poison.position is not None
    reader.commit(poison.position)
    event = next(stream)  # the redelivery is nacked at once and not yielded
    assert isinstance(event, ChangeEvent)
    assert consumer.calls == [("nack", 0), ("nack", 0)]


def test_a_tombstone_keeps_its_place_as_a_heartbeat() -> None:
    consumer = FakeConsumer([FakeMessage(0, b"", key='{"id": 1}')])
    consumer.messages[0].body = None  # type: ignore[assignment]
    reader = PulsarReader("pulsar://h:6650", [TOPIC], "s")
    reader._consumer = consumer
    reader.mapping = MessageMapping(debezium=True)
    item = reader.decode(consumer.messages[0])
    assert isinstance(item, Heartbeat)  # acknowledged at its commit like any message


def test_the_real_client_against_an_unreachable_service_is_a_retryable_connection_error() -> None:
    reader = PulsarReader("pulsar://127.0.0.1:1", [TOPIC], "s", connection_timeout_ms=500)
    with pytest.raises(CdcError) as err:
        reader.open()
    assert err.value.kind is ErrorKind.CONNECTION
    assert "pulsar://127.0.0.1:1" in err.value.message
    reader.close()
