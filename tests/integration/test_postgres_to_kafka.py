"""Native Postgres reader -> pipeline -> Kafka sink, read back as a Debezium JSON consumer would.

Two consumers read the topic: a plain one (json.loads on key and value, no cdc_logs code), checking the
shape a consumer written for Debezium's JSON converter (schemas disabled) relies on; and the project's
own Debezium-topic decoder (cdc_logs.debezium.decode), which was written against Debezium's records.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from cdc_logs.debezium.decode import Skip, decode_record
from cdc_logs.envelope import ChangeEvent
from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.readers.postgres.reader import PostgresReader
from cdc_logs.sinks.kafka import KafkaSink
from tests.contract.test_kafka_sink import consume_all, create_topic


def test_postgres_changes_on_kafka_read_as_debezium_json(
    pg_dsn: str, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    table = unique_name
    topic = f"{unique_name}.public.{table}"
    create_topic(kafka_bootstrap, topic)
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, email text, amount numeric(10,2))")
        try:
            reader = PostgresReader(
                pg_dsn, [f"public.{table}"], pipeline_name=unique_name, temporary=True, heartbeat_interval_s=0
            )
            pipeline = Pipeline(
                unique_name,
                {"pg": reader},
                [KafkaSink(kafka_bootstrap, prefix=unique_name)],
                SqliteOffsetStore(tmp_path / "offsets.db"),
                batch=BatchPolicy(max_events=100, max_wait_s=0.05),
            )
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    pipeline.run()
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            assert pipeline.ready.wait(30) and not errors, errors
            # Changes count from the slot's consistent point (its creation waits for transactions
            # already running): wait for that before writing.
            deadline = time.monotonic() + 60
            while not db.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND confirmed_flush_lsn IS NOT NULL",
                (reader.slot,),
            ).fetchone():
                assert time.monotonic() < deadline and not errors, errors or "the slot was never created"
                time.sleep(0.2)
            db.execute(f"INSERT INTO {table} VALUES (1, 'a@x', 12.50)")
            db.execute(f"UPDATE {table} SET email = 'b@x' WHERE id = 1")
            db.execute(f"DELETE FROM {table} WHERE id = 1")
            records: list[Any] = []
            deadline = time.monotonic() + 30
            while len(records) < 4 and time.monotonic() < deadline and not errors:
                time.sleep(0.3)
                records = consume_all(kafka_bootstrap, topic)
            pipeline.stop()
            thread.join(30)
            assert not errors, errors
        finally:
            db.execute(f"DROP TABLE {table}")

    assert len(records) == 4, [r.value() for r in records]
    insert, update, delete, tombstone = records
    # A plain JSON consumer, as written for Debezium (schemas disabled).
    assert [json.loads(r.key()) for r in records] == [{"id": 1}] * 4
    value = json.loads(insert.value())
    assert set(value) >= {"before", "after", "source", "op", "ts_ms"}
    assert value["op"] == "c" and value["before"] is None
    assert value["after"] == {"id": 1, "email": "a@x", "amount": "12.50"}  # decimal.handling.mode=string
    source = value["source"]
    assert source["connector"] == "postgresql" and source["schema"] == "public" and source["table"] == table
    assert isinstance(source["lsn"], int) and isinstance(source["txId"], int)
    assert json.loads(update.value())["after"]["email"] == "b@x" and json.loads(update.value())["op"] == "u"
    assert json.loads(delete.value())["op"] == "d" and json.loads(delete.value())["after"] is None
    assert tombstone.value() is None
    # The project's decoder of Debezium records reads them back into the same changes.
    decoded = [decode_record(r.key(), r.value()) for r in records]
    assert isinstance(decoded[-1], Skip) and decoded[-1].reason == "tombstone"
    events = [d for d in decoded if isinstance(d, ChangeEvent)]
    assert [e.op.value for e in events] == ["c", "u", "d"]
    assert events[0].key == {"id": 1} and events[0].after == value["after"]
