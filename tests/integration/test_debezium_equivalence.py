"""Equivalence: one Postgres workload captured by the Debezium connector and by the native reader.

The Debezium Postgres connector (provisioned through cdc-logs' Connect client; JSON converter without
schemas, provide.transaction.metadata=true, decimal.handling.mode=string) writes to Kafka, where the
`type: debezium` source reads it back; the native reader (`type: postgres`) follows its own slot. Both
are built through `cdc_logs.build.build_reader` from config, as a pipeline builds them.

The envelopes must agree on op, before, after, key, schema/table, the Postgres transaction id and the
grouping and order of rows within each transaction. The fields that differ are asserted too, so
docs/debezium.md's table of differences stays true.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.debezium.connect import ConnectClient
from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.base import Reader
from tests.integration.debezium_support import cleanup, pg_connector_config, slot_exists, wait_running

pytestmark = pytest.mark.integration

COLUMNS = (
    "id int PRIMARY KEY, name text, qty int, price numeric(10,2), active boolean, seen_at timestamptz, "
    "day date, doc jsonb"
)


def _workload(full: str, dflt: str) -> list[list[str]]:
    """Five transactions; the first mixes tables and operations."""
    row = "'2024-05-06 07:08:09.123456+00', '2024-05-06', '{\"k\": [1, 2]}'"
    return [
        [
            f"INSERT INTO {full} VALUES (1, 'one', 1, 10.50, true, {row})",
            f"INSERT INTO {full} VALUES (2, 'two', 2, 20.00, false, {row})",
            f"INSERT INTO {full} VALUES (3, 'three', 3, 0.01, true, {row})",
            f"INSERT INTO {dflt} VALUES (10, 'ten', 10, 99.99, true, {row})",
            f"UPDATE {full} SET name = 'TWO', price = 21.25 WHERE id = 2",
            f"DELETE FROM {full} WHERE id = 3",
        ],
        [f"UPDATE {full} SET qty = qty + 1 WHERE id = 1"],
        [f"UPDATE {dflt} SET name = 'TEN' WHERE id = 10"],
        [f"DELETE FROM {full} WHERE id = 1", f"DELETE FROM {dflt} WHERE id = 10"],
        [f"INSERT INTO {full} (id) VALUES (4)"],
    ]


EXPECTED_EVENTS = 11


class Collector:
    """Runs a reader's stream in a thread and keeps its ChangeEvents."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.events: list[ChangeEvent] = []
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Collector:
        self.reader.open()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for item in self.reader.stream(None):
                self.started.set()  # the first item is the Heartbeat of the start position
                if isinstance(item, ChangeEvent):
                    self.events.append(item)
        except BaseException as exc:
            self.error = exc
            self.started.set()

    def wait_for(self, count: int, timeout: float) -> list[ChangeEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and self.error is None:
            time.sleep(0.1)
        if self.error is not None:
            raise self.error
        return list(self.events)

    def close(self) -> None:
        self.reader.stop()
        self._thread.join(10)
        self.reader.close()


@pytest.fixture(scope="module")
def captured(
    pg_dsn: str, connect_pg_dsn: str, connect_url: str, kafka_bootstrap: str
) -> Iterator[tuple[list[ChangeEvent], list[ChangeEvent], str, str]]:
    uid = "dbzeq_" + uuid.uuid4().hex[:10]
    full, dflt = f"public.{uid}_full", f"public.{uid}_dflt"
    native_slot = f"{uid}_native"
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {full} ({COLUMNS})")
        conn.execute(f"ALTER TABLE {full} REPLICA IDENTITY FULL")
        conn.execute(f"CREATE TABLE {dflt} ({COLUMNS})")
    collectors: list[Collector] = []
    try:
        pipeline = parse_config(
            {
                "name": "equivalence",
                "sources": [
                    {
                        "type": "postgres",
                        "name": "native",
                        "dsn": pg_dsn,
                        "tables": [full, dflt],
                        "slot": native_slot,
                        "publication": native_slot,
                        "snapshot": False,
                    },
                    {
                        "type": "debezium",
                        "name": "debezium",
                        "bootstrap_servers": kafka_bootstrap,
                        "topic_prefix": uid,
                        # The tables' topics only: `<prefix>.message` carries every logical decoding
                        # message in the database (native readers' heartbeats too), as op "m".
                        "tables": [full, dflt],
                        "group_id": f"{uid}-group",
                        "auto_offset_reset": "earliest",
                        "dead_letter": {"type": "log"},
                    },
                ],
                "destination": {"type": "stdout"},
            },
            {},
        )
        native_cfg, debezium_cfg = pipeline.all_sources()
        native = Collector(build_reader(native_cfg, "equivalence")).start()
        collectors.append(native)
        assert native.started.wait(60), "the native reader did not start (slot creation blocked?)"
        if native.error:
            raise native.error

        with ConnectClient(connect_url) as client:
            client.put_config(uid, pg_connector_config(connect_pg_dsn, uid, f"{full},{dflt}"))
        wait_running(connect_url, uid)
        deadline = time.monotonic() + 30
        while not slot_exists(pg_dsn, uid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slot_exists(pg_dsn, uid), "Debezium's slot was not created"

        with psycopg.connect(pg_dsn, connect_timeout=5) as conn:
            for transaction in _workload(full, dflt):
                with conn.transaction():
                    for statement in transaction:
                        conn.execute(statement)

        debezium = Collector(build_reader(debezium_cfg, "equivalence")).start()
        collectors.append(debezium)
        native_events = native.wait_for(EXPECTED_EVENTS, 60)
        debezium_events = debezium.wait_for(EXPECTED_EVENTS, 90)
        yield native_events, debezium_events, f"{uid}_full", f"{uid}_dflt"
    finally:
        for collector in collectors:
            collector.close()
        cleanup(
            connect_url,
            pg_dsn,
            kafka_bootstrap,
            connectors=[uid],
            slots=[uid, native_slot],
            publications=[uid, native_slot],
            tables=[full, dflt],
            topic_prefixes=[uid],
        )


def _by_transaction(events: list[ChangeEvent]) -> list[list[ChangeEvent]]:
    """Events grouped by Postgres transaction (source.txId), in commit order, each in total_order."""
    groups: dict[int, list[ChangeEvent]] = defaultdict(list)
    for event in events:
        groups[event.source.extra["txId"]].append(event)
    ordered = sorted(groups.values(), key=lambda g: min(e.source.extra["lsn"] for e in g))
    return [sorted(g, key=lambda e: e.transaction.total_order if e.transaction else 0) for g in ordered]


def _pairs(captured: Any) -> list[tuple[ChangeEvent, ChangeEvent]]:
    native, debezium, _full, _dflt = captured
    assert len(native) == EXPECTED_EVENTS, [e.to_dict() for e in native]
    assert len(debezium) == EXPECTED_EVENTS, [e.to_dict() for e in debezium]
    pairs = []
    for n_tx, d_tx in zip(_by_transaction(native), _by_transaction(debezium), strict=True):
        assert len(n_tx) == len(d_tx)
        pairs.extend(zip(n_tx, d_tx, strict=True))
    return pairs


def _shape(events: list[ChangeEvent]) -> list[list[tuple[str, str, Any]]]:
    return [
        [(e.op.value, e.source.table, (e.row or {}).get("id")) for e in tx] for tx in _by_transaction(events)
    ]


def test_same_transactions_with_the_same_rows(captured: Any) -> None:
    native, debezium, _full, _dflt = captured
    assert _shape(native) == _shape(debezium)
    assert [len(tx) for tx in _shape(native)] == [6, 1, 1, 2, 1]
    for n, d in _pairs(captured):
        assert n.source.extra["txId"] == d.source.extra["txId"]  # the same Postgres xid
        assert n.transaction is not None and d.transaction is not None
        assert (n.transaction.total_order, n.transaction.data_collection_order) == (
            d.transaction.total_order,
            d.transaction.data_collection_order,
        )


def test_same_op_table_after_and_key(captured: Any) -> None:
    for n, d in _pairs(captured):
        assert n.op == d.op
        assert (n.source.db, n.source.schema, n.source.table) == (
            d.source.db,
            d.source.schema,
            d.source.table,
        )
        assert n.after == d.after, (n.to_dict(), d.to_dict())
        assert n.key == d.key
        assert n.to_dict()["after"] == d.to_dict()["after"]  # identical once serialized, too


def test_same_before_with_replica_identity_full(captured: Any) -> None:
    _native, _debezium, full, _dflt = captured
    for n, d in _pairs(captured):
        if n.source.table == full:
            assert n.before == d.before, (n.to_dict(), d.to_dict())


def test_before_under_replica_identity_default_differs_only_by_null_columns(captured: Any) -> None:
    """REPLICA IDENTITY DEFAULT: Postgres sends only the key of a deleted row. The native reader emits
    exactly those columns; Debezium emits every column, the non-key ones null."""
    _native, _debezium, _full, dflt = captured
    seen = 0
    for n, d in _pairs(captured):
        if n.source.table != dflt or n.op.value != "d":
            continue
        seen += 1
        assert n.before == {"id": 10}
        assert d.before is not None and {k: v for k, v in d.before.items() if v is not None} == n.before
        assert set(d.before) == set(d.key or {}) | {"name", "qty", "price", "active", "seen_at", "day", "doc"}
    assert seen == 1


def test_documented_differences(captured: Any) -> None:
    """The fields docs/debezium.md lists as differing; anything else in `source` must agree."""
    for n, d in _pairs(captured):
        ns, ds = n.to_dict()["source"], d.to_dict()["source"]
        assert ns["connector"] == ds["connector"] == "postgresql"
        assert ds["version"].endswith(".Final") and ns["version"] != ds["version"]
        # Debezium 3 adds these; the native reader does not write them.
        assert set(ds) - set(ns) <= {"sequence", "ts_us", "ts_ns", "origin", "origin_lsn"}
        assert set(ns) - set(ds) <= {"unchanged"}
        # Everything else in `source` is equal: db/schema/table, txId, the change's LSN, commit ts_ms.
        differ = {"version", "name", "sequence", "ts_us", "ts_ns", "origin", "origin_lsn"}
        assert {k: v for k, v in ns.items() if k not in differ} == {
            k: v for k, v in ds.items() if k not in differ
        }
        # `name`: the pipeline name natively, the connector's topic.prefix in Debezium.
        assert ns["name"] == "equivalence" and ds["name"] != ns["name"]
        # Transaction ids: "<xid>:<commit LSN>" natively, one per transaction; Debezium 3.6.1 writes
        # "<xid>:<LSN of the event>", so the id differs from event to event within a transaction.
        assert n.transaction is not None and d.transaction is not None
        assert n.transaction.id.split(":")[0] == d.transaction.id.split(":")[0] == str(ns["txId"])
        assert d.transaction.id == f"{ds['txId']}:{ds['lsn']}"
