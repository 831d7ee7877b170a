"""The `type: debezium` source in a real pipeline against the stack's Kafka (and Connect).

Records are produced straight to a topic (a Debezium event, a tombstone, a malformed record, another
event), so the source's contract is checked without a connector: events reach the sink, the malformed
record lands in the dead-letter file with its reason, offsets are committed to the consumer group only
after the sink, and a second run resumes after them; `tail` stops at a malformed record or parks it
with --dead-letter-dir. A last test provisions a connector from the seed's `connector_config` shape
when the source opens.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cdc_logs import deadletter
from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.connect import ConnectClient
from cdc_logs.debezium.provision import MARKER_KEY
from cdc_logs.offsets.file import FileOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.position import KafkaOffsets
from tests.helpers import MemorySink
from tests.integration.debezium_support import cleanup, pg_connector_config
from tests.unit.test_debezium_decode import VALUE

pytestmark = pytest.mark.integration


def _event(row_id: int, op: str = "c") -> bytes:
    value = dict(VALUE, op=op, after={"id": row_id, "v": f"row {row_id}"})
    return orjson.dumps(value)


def _source(bootstrap: str, prefix: str, dlq: Path) -> Any:
    cfg = parse_config(
        {
            "name": "dbzsource",
            "source": {
                "type": "debezium",
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "auto_offset_reset": "earliest",
                "dead_letter": {"type": "file", "path": str(dlq)},
            },
            "destination": {"type": "stdout"},
        },
        {},
    )
    return cfg.all_sources()[0]


def _run(source: Any, store: FileOffsetStore, limit: int) -> MemorySink:
    sink = MemorySink()
    pipeline = Pipeline(
        "dbzsource",
        {"debezium": build_reader(source, "dbzsource")},
        [sink],
        store,
        batch=BatchPolicy(max_events=10, max_wait_s=0.05),
        limit=limit,
    )
    pipeline.run()
    return sink


def test_pipeline_delivers_dead_letters_and_commits_after_the_sink(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = "dbzsrc_" + uuid.uuid4().hex[:10]
    topic = f"{prefix}.public.orders"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in [
        (b'{"id": 1}', _event(1)),
        (b'{"id": 1}', None),  # tombstone
        (b'{"id": 9}', b"this is not json"),
        (b'{"id": 2}', _event(2)),
    ]:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(15) == 0
    dlq = tmp_path / "dlq.jsonl"
    store = FileOffsetStore(tmp_path / "offsets.json")
    source = _source(kafka_bootstrap, prefix, dlq)
    try:
        first = _run(source, store, limit=2)
        assert [e.after["id"] for e in first.events if e.after] == [1, 2]
        assert first.events[0].key == {"id": 1} and first.events[0].source.extra["version"] == "3.6.1.Final"
        dead = [orjson.loads(line) for line in dlq.read_text().splitlines()]
        assert (
            len(dead) == 1 and dead[0]["origin"]["offset"] == 2 and "value is not JSON" in dead[0]["reason"]
        )
        assert dead[0]["raw"] == {"encoding": "utf-8", "data": "this is not json"}
        assert dead[0]["origin"]["key"] == {"encoding": "utf-8", "data": '{"id": 9}'}

        stored = store.load("dbzsource", "debezium")
        assert stored is not None
        position = stored.decoded()
        assert isinstance(position, KafkaOffsets) and dict(position.offsets) == {f"{topic}:0": 4}
        group = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "cdc-logs.dbzsource.debezium"})
        try:
            (committed,) = group.committed([TopicPartition(topic, 0)], timeout=10)
        finally:
            group.close()
        assert committed.offset == 4  # committed to the group too, once the sink held the events

        producer.produce(topic, key=b'{"id": 3}', value=_event(3))
        assert producer.flush(15) == 0
        second = _run(source, store, limit=1)
        assert [e.after["id"] for e in second.events if e.after] == [3]  # resumed after the commit
    finally:
        _drop_topics(kafka_bootstrap, prefix)


def test_tail_stops_at_a_malformed_record_or_parks_it_with_dead_letter_dir(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`tail --source debezium` treats a malformed record as the native readers' tail treats an
    undecodable change: it stops there (naming --dead-letter-dir), or parks it there and goes on."""
    prefix = "dbztail_" + uuid.uuid4().hex[:10]
    topic = f"{prefix}.public.orders"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in [(b'{"id": 1}', _event(1)), (b'{"id": 9}', b"\xffnot json"), (b'{"id": 2}', _event(2))]:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(15) == 0
    args = ["tail", "--source", "debezium", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
            "--from-beginning", "--format", "json", "--limit", "2"]  # fmt: skip

    def tail(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cdc_logs", *args, *extra]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=90)

    try:
        stopped = tail()
        assert stopped.returncode == 1 and "--dead-letter-dir" in stopped.stderr, stopped.stderr[-2000:]
        assert [orjson.loads(line)["after"]["id"] for line in stopped.stdout.splitlines()] == [1]
        parked = tail("--dead-letter-dir", str(tmp_path / "dl"))
        assert parked.returncode == 0, parked.stderr[-2000:]
        assert [orjson.loads(line)["after"]["id"] for line in parked.stdout.splitlines()] == [1, 2]
        (record,) = deadletter.read(tmp_path / "dl" / "debezium.undecodable.jsonl")
        assert record.raw == b"\xffnot json" and record.origin["key"] == b'{"id": 9}'
        assert record.origin["topic"] == topic and record.origin["offset"] == 1
        assert list(tmp_path.iterdir()) == [tmp_path / "dl"], "nothing else left behind"
    finally:
        _drop_topics(kafka_bootstrap, prefix)


def _drop_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{prefix}.")]
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            future.result(15)


def test_connector_config_is_provisioned_when_the_source_opens(
    connect_url: str, pg_dsn: str, connect_pg_dsn: str, kafka_bootstrap: str
) -> None:
    uid = "dbzprov_" + uuid.uuid4().hex[:10]
    connector = {"name": uid, **pg_connector_config(connect_pg_dsn, uid, f"public.{uid}")}
    connector["database.server.name"] = connector.pop("topic.prefix")  # the seed's (Debezium 1.x) key
    cfg = parse_config(
        {
            "name": "prov",
            "source": {
                "type": "debezium",
                "bootstrap_servers": kafka_bootstrap,
                "connect_url": connect_url,
                "connector_config": connector,
                "dead_letter": {"type": "log"},
            },
            "destination": {"type": "stdout"},
        },
        {},
    )
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{uid} (id int PRIMARY KEY)")
    reader = build_reader(cfg.all_sources()[0], "prov")
    try:
        reader.open()
        with ConnectClient(connect_url) as client:
            config = client.get_config(uid)
        assert config[MARKER_KEY] == "pipeline:prov"
        assert config["topic.prefix"] == uid and "database.server.name" not in config
        reader.close()
        reader.open()  # opening again changes nothing
        reader.close()
    finally:
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=[uid],
            slots=[uid],
            publications=[uid],
            tables=[f"public.{uid}"],
            topic_prefixes=[uid],
        )
