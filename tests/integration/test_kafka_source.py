"""The `type: kafka` source against the stack's Kafka, run as a user runs it (`cdc-logs run -c`).

N keyed JSON messages on a two-partition topic, published while the pipeline runs, with two poison
messages among them (not JSON; a JSON array): the pipeline delivers them to a file sink and to the SQL
apply sink (a SQLite file whose table logs every row write the sink makes, so a re-applied message
would show); it is SIGKILLed mid-way and started again. Then every message is in both sinks, the
restart resumed exactly at the offsets committed before the kill (so the only duplicates in the file
are what it held past that commit), SQL apply applied each message once, both poison messages are in
the dead-letter file with their reason, topic, partition and offset, and the consumer group's offsets
are at the end of the topic.

A second test reads Avro from the same Kafka with a real schema registry (the `schema_registry_url`
fixture: Apicurio Registry's Confluent API): records cdc-logs' own Avro Kafka sink wrote, an Avro row
framed as a Confluent serializer frames it, and poison (an id the registry does not have, a JSON value
where Avro is expected).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry
from tests.chaos.killkit import Runs
from tests.helpers import MemorySink
from tests.unit.test_kafka_source import KEY_SCHEMA, frame

pytestmark = pytest.mark.integration

N = 600
BATCH = 20
POISON = {150: b"this is not json", 333: b"[1, 2, 3]"}  # message number -> value


@contextlib.contextmanager
def _topic(bootstrap: str, name: str, partitions: int, group: str) -> Iterator[str]:
    """A topic of the test's own, removed afterwards with the consumer group that read it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(15)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):  # no group if the test failed before reading
            for future in admin.delete_consumer_groups([group], request_timeout=10).values():
                future.result(15)
        for future in admin.delete_topics([name], operation_timeout=10).values():
            future.result(15)


@contextlib.contextmanager
def _subjects(url: str, names: list[str]) -> Iterator[None]:
    """Deletes the registry subjects the test registers (soft, then permanently: Confluent's API)."""
    try:
        yield
    finally:
        for name in names:
            for query in ("", "?permanent=true"):
                requests.delete(f"{url}/subjects/{name}{query}", timeout=10)


def _value(i: int) -> bytes:
    stamp = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
    return orjson.dumps({"id": i, "v": i * 10, "event_timestamp": stamp.isoformat()})


class Publisher(threading.Thread):
    """Publishes messages 0..N-1 (message i to partition i % 2, key {"id": i}) in small paced bursts,
    so the pipeline is killed while messages are still arriving; records where each one landed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self.topic = topic
        self.where: dict[int, tuple[int, int]] = {}  # message number -> (partition, offset)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(N):

                def done(err: Any, msg: Any, i: int = i) -> None:
                    assert err is None, err
                    self.where[i] = (msg.partition(), msg.offset())

                value = POISON.get(i, _value(i))
                key = orjson.dumps({"id": i})
                self.producer.produce(self.topic, key=key, value=value, partition=i % 2, on_delivery=done)
                if i % 10 == 9:
                    assert self.producer.flush(15) == 0
                    time.sleep(0.05)
            assert self.producer.flush(15) == 0
        except BaseException as exc:
            self.error = exc


class Target:
    """The SQL apply sink's SQLite file: table `events` (made here, not by the sink) with triggers that
    log each row write the sink makes into `audit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.executescript("""
                CREATE TABLE events (id INTEGER PRIMARY KEY, v BIGINT, event_timestamp TEXT);
                CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT, id INTEGER);
                CREATE TRIGGER events_i AFTER INSERT ON events BEGIN
                  INSERT INTO audit (op, id) VALUES ('c', NEW.id); END;
                CREATE TRIGGER events_u AFTER UPDATE ON events BEGIN
                  INSERT INTO audit (op, id) VALUES ('u', NEW.id); END;
            """)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as conn:
            return list(conn.execute(sql))


def _lines(path: Path) -> list[dict[str, Any]]:
    """The file sink's complete lines (a line torn by the kill is cut off when the next run opens it)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


@pytest.mark.parametrize("sql", [True, False], ids=["file+sql", "file"])
def test_run_delivers_every_message_through_a_sigkill_and_dead_letters_poison(
    kafka_bootstrap: str, tmp_path: Path, sql: bool
) -> None:
    """With both sinks (fan-out: each at its own pace, the source commits the slower one's progress)
    the file sink may be several batches ahead of the commit when the run dies, and all of that comes
    again; with the file sink alone, at most the one batch in flight does."""
    uid = uuid.uuid4().hex[:10]
    name = f"kafkasrc-{uid}"
    out, dlq, target = tmp_path / "events.jsonl", tmp_path / "dlq.jsonl", Target(tmp_path / "target.db")
    config = {
        "name": name,
        "source": {
            "type": "kafka",
            "bootstrap_servers": kafka_bootstrap,
            "topic": f"kafkasrc_{uid}",
            "group_id": f"kafkasrc-{uid}",
            "auto_offset_reset": "earliest",
            "table": "events",
            "watermark": {"column": "event_timestamp", "type": "timestamp"},
            "dead_letter": {"type": "file", "path": str(dlq)},
            # The group hands a SIGKILLed member's partitions to the restarted one only once its
            # session times out (librdkafka's default: 45 s); the broker's minimum is 6 s.
            "consumer_config": {"session.timeout.ms": 6000},
        },
        "destinations": [
            {"name": "archive", "type": "file", "path": str(out)},
            *(
                [{"name": "apply", "type": "sqlite", "url": f"sqlite:///{target.path}", "table": "events"}]
                * sql
            ),
        ],
        "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
        "sync": {
            "batch": {"max_events": BATCH, "max_wait_ms": 20},
            "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 500},
            "fanout": {"spool_dir": str(tmp_path / "spool")},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    runs = Runs(tmp_path, path, name)
    with _topic(kafka_bootstrap, f"kafkasrc_{uid}", 2, f"kafkasrc-{uid}") as topic:
        publisher = Publisher(kafka_bootstrap, topic)
        try:
            started = time.monotonic()
            runs.start()
            publisher.start()
            # A committed position too: the file sink runs ahead of the slower SQL sink (fan-out), and
            # on a loaded machine the first checkpoint can come after a third of the messages.
            runs.wait(
                "the file holds a third of the messages and a position is committed",
                lambda: len(_lines(out)) >= N // 3 and runs.committed_position() is not None,
            )
            runs.kill()
            killed = time.monotonic()
            held = _lines(out)
            position = runs.committed_position()
            assert position is not None and position["type"] == "kafka", position
            resume = {key: offset for key, offset in position["offsets"]}
            runs.start()
            delivered = N - len(POISON)
            runs.wait(
                "every message is in both sinks",
                lambda: (
                    len({e["after"]["id"] for e in _lines(out)}) == delivered
                    and (not sql or target.query("SELECT count(*) FROM events")[0][0] == delivered)
                ),
                timeout=60,
            )
            done = time.monotonic()
            runs.stop()
        finally:
            runs.close()
            publisher.join(30)
        assert publisher.error is None, publisher.error
        lines = _lines(out)
        offset_of = {i: where for i, where in publisher.where.items()}

        # Every message, each where it was published, in partition order.
        got = [(e["source"]["partition"], e["source"]["offset"], e["after"]["id"]) for e in lines]
        assert {i for _p, _o, i in got} == set(range(N)) - set(POISON)
        assert all(offset_of[i] == (p, o) for p, o, i in got), "source.partition/offset are the record's"
        first = lines[0]
        assert first["op"] == "c" and first["source"]["connector"] == "kafka"
        assert first["source"]["table"] == "events"
        stamp = dt.datetime.fromisoformat(first["after"]["event_timestamp"])
        assert first["source"]["ts_ms"] == int(stamp.timestamp() * 1000), "the watermark column's time"

        # The restart resumed exactly at the committed offsets: per partition, the lines after the kill
        # start at the committed offset, and what came again is only what the file held past it.
        duplicates = 0
        for partition in (0, 1):
            key = f"{topic}:{partition}"
            before = [o for p, o, _i in got[: len(held)] if p == partition]
            after = [o for p, o, _i in got[len(held) :] if p == partition]
            start = resume.get(key, 0)
            expected_first = min(
                o for i, (p, o) in offset_of.items() if p == partition and o >= start and i not in POISON
            )
            assert after[0] == expected_first, f"{key}: resumed at {after[0]}, committed {start}"
            assert after == sorted(after) and before == sorted(before), f"{key}: out of order"
            replayed = [o for o in after if o in set(before)]
            assert replayed == [o for o in before if o >= start], f"{key}: replayed {replayed}"
            duplicates += len(replayed)
        assert len(lines) == N - len(POISON) + duplicates
        print(
            f"kill at {killed - started:.1f}s after {len(held)} lines, all in {done - started:.1f}s;", end=" "
        )
        print(f"{duplicates} came again (batch {BATCH}); committed at the kill: {resume}")
        if not sql:
            assert duplicates <= BATCH, "more than the batch in flight came again"

        # SQL apply: every row, each message applied once (its replay guard skipped the replay).
        if sql:
            assert target.query("SELECT id, v FROM events ORDER BY id") == [
                (i, i * 10) for i in range(N) if i not in POISON
            ]
            audit = target.query("SELECT op, id FROM audit")
            assert len(audit) == len({i for _op, i in audit}) == N - len(POISON), "a message applied twice"

        # Poison: in the dead-letter file with its reason and coordinates; the rest delivered around it.
        dead = {
            (d["origin"]["partition"], d["origin"]["offset"]): d
            for d in map(orjson.loads, dlq.read_bytes().splitlines())
        }
        assert set(dead) == {offset_of[i] for i in POISON}
        for i, raw in POISON.items():
            record = dead[offset_of[i]]
            assert record["origin"]["topic"] == topic and record["raw"]["data"] == raw.decode()
            assert record["stage"] == "source" and record["component"] == "kafka"
        assert "not JSON" in dead[offset_of[150]]["reason"]
        assert "JSON list, not an object" in dead[offset_of[333]]["reason"]

        # The consumer group committed the end of both partitions.
        group = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"kafkasrc-{uid}"})
        try:
            committed = group.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
            ends = [group.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)]
        finally:
            group.close()
        assert [tp.offset for tp in committed] == ends


def test_avro_from_kafka_with_a_schema_registry(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    """Records cdc-logs' Avro Kafka sink wrote (Debezium's Avro envelopes), an Avro row framed as a
    Confluent serializer frames it, and poison: an id the registry does not have, a JSON value."""
    uid = uuid.uuid4().hex[:10]
    registry = SchemaRegistry(schema_registry_url)
    subjects = [f"kafkaavro_{uid}{s}" for s in ("-key", "-value", "_rows-key", "_rows-value")]
    with (
        _subjects(schema_registry_url, subjects),
        _topic(kafka_bootstrap, f"kafkaavro_{uid}", 1, f"kafkaavro-{uid}") as topic,
    ):
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        unknown = b"\x00" + struct.pack(">I", 2**31 - 7) + b"\x02"
        producer.produce(topic, key=b"k", value=unknown)
        producer.produce(topic, key=b"k", value=b'{"user_id": 8}')  # JSON: magic byte 123
        encoder = AvroEncoder(registry)
        for n in (1, 2):
            event = ChangeEvent(
                op=Op.CREATE,
                source=SourceInfo(connector="postgresql", name="shop", db="shop", schema="public", table="t"),
                after={"id": n, "v": n * 10},
                key={"id": n},
                ts_ms=1_700_000_000_000 + n,
            )
            key, value = encoder(event, topic, orjson.dumps(event.key))
            producer.produce(topic, key=key, value=value)
        row_schema = {
            "type": "record",
            "name": "Row",
            "namespace": f"kafkaavro_{uid}",
            "fields": [{"name": "user_id", "type": "long"}, {"name": "action", "type": "string"}],
        }
        row_id = registry.register(f"kafkaavro_{uid}_rows-value", row_schema)
        key_id = registry.register(f"kafkaavro_{uid}_rows-key", KEY_SCHEMA)
        producer.produce(
            topic,
            key=frame(key_id, KEY_SCHEMA, {"user_id": 7}),
            value=frame(row_id, row_schema, {"user_id": 7, "action": "delete"}),
        )
        assert producer.flush(15) == 0
        dlq = tmp_path / "dlq.jsonl"
        cfg = parse_config(
            {
                "name": "avro",
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": kafka_bootstrap,
                    "topic": topic,
                    "group_id": f"kafkaavro-{uid}",
                    "message_format": "avro",
                    "schema_registry_url": schema_registry_url,
                    "op_field": "action",
                    "dead_letter": {"type": "file", "path": str(dlq)},
                },
                "destination": {"type": "stdout"},
            },
            {},
        )
        sink = MemorySink()
        source = cfg.all_sources()[0]
        Pipeline(
            "avro",
            {"kafka": build_reader(source, "avro")},
            [sink],
            MemoryOffsetStore(),
            batch=BatchPolicy(max_events=10, max_wait_s=0.05),
            limit=3,
        ).run()
    creates, row = sink.events[:2], sink.events[2]
    assert [(e.op, e.after, e.key, e.source.table) for e in creates] == [
        (Op.CREATE, {"id": n, "v": n * 10}, {"id": n}, "t") for n in (1, 2)
    ], "the Avro sink's envelopes read back as the events it wrote"
    assert row.op is Op.DELETE and row.before == {"user_id": 7, "action": "delete"}
    assert row.key == {"user_id": 7} and row.source.connector == "kafka" and row.source.table == topic
    dead = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert [d["origin"]["offset"] for d in dead] == [0, 1]
    assert f"has no schema id {2**31 - 7}" in dead[0]["reason"]
    assert "magic byte 123 is not 0" in dead[1]["reason"]


def test_doctor_checks_the_brokers_topics_and_the_stored_position(kafka_bootstrap: str) -> None:
    from confluent_kafka import TopicPartition as TP

    from cdc_logs.position import KafkaOffsets
    from cdc_logs.readers.kafka.doctor import check_source

    uid = uuid.uuid4().hex[:10]
    with _topic(kafka_bootstrap, f"kafkadoc_{uid}", 1, f"kafkadoc-{uid}") as topic:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(5):
            producer.produce(topic, value=_value(i))
        assert producer.flush(15) == 0
        source = parse_config(
            {
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": kafka_bootstrap,
                    "topics": [topic, f"no_{uid}"],
                },
                "destination": {"type": "stdout"},
            },
            {},
        ).all_sources()[0]
        checks = {c.name: c for c in check_source(source)}
        assert checks["brokers"].ok and checks[f"topic {topic}"].ok
        missing = checks[f"topic no_{uid}"]
        assert missing.ok and missing.warning, "a topic that does not exist yet is read once it is created"
        cluster = checks["brokers"].detail.split()[1].rstrip(",")

        def resume(server: str, offset: int) -> Any:
            (check,) = [
                c
                for c in check_source(source, KafkaOffsets(server, ((f"{topic}:0", offset),)))
                if c.name == "stored position"
            ]
            return check

        assert resume(cluster, 2).ok
        assert not resume("another-cluster", 2).ok
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_records([TP(topic, 0, 3)]).values():
            future.result(15)  # as retention would: the log now starts at offset 3
        lost = resume(cluster, 2)
        assert not lost.ok and "the log starts at 3" in lost.detail
