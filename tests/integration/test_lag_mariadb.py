"""Binlog lag of a MariaDB source on the stack: the probe's byte count against what was written, and
a pipeline whose sink is stuck goes past `max_lag` (bytes) and back under it when the sink returns."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pymysql
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.lag import LagGuard, parse_max_lag
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import HealthThresholds, PipelineStatus
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.lag import BinlogLagProbe
from cdc_logs.readers.mysql.reader import MysqlReader
from tests.helpers import MemorySink


@pytest.fixture
def db(mariadb_dsn: str) -> Iterator[pymysql.connections.Connection]:
    conn = pymysql.connect(**parse_dsn(mariadb_dsn).kwargs(), autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def table(db: pymysql.connections.Connection) -> Iterator[str]:
    name = "lag_" + uuid.uuid4().hex[:10]
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, pad TEXT)")
    yield name
    with db.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def _insert(db: pymysql.connections.Connection, table: str, first: int, count: int, pad: int) -> None:
    with db.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (id, pad) VALUES (%s, %s)",
            [(n, "x" * pad) for n in range(first, first + count)],
        )


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_probe_counts_the_binlog_written_after_the_committed_position(
    mariadb_dsn: str, db: pymysql.connections.Connection, table: str
) -> None:
    probe = BinlogLagProbe(parse_dsn(mariadb_dsn))
    try:
        now = probe.measure(None)
        assert now.consumed is None and now.lag_bytes is None  # nothing committed: no byte count
        file, pos = now.extra["binlog_file"], now.extra["binlog_pos"]
        committed = BinlogPosition(server="s", file=file, pos=pos, gtid=None, flavor="mariadb")
        _insert(db, table, 1, 50, 1000)  # ~50 kB of row images
        later = probe.measure(committed)
        assert later.consumed == (int(file.rsplit(".", 1)[1]), pos)
        assert later.head > later.consumed
        assert later.lag_bytes is not None and later.lag_bytes >= 50 * 1000, later
    finally:
        probe.close()


def test_a_stuck_sink_drives_binlog_lag_past_max_lag_and_back(
    mariadb_dsn: str, db: pymysql.connections.Connection, table: str
) -> None:
    reader = MysqlReader(parse_dsn(mariadb_dsn), [table], pipeline_name="lag-test", heartbeat_s=0.5,
                         temporary=True, flavor="mariadb")  # fmt: skip
    sink = MemorySink("stuck")
    status = PipelineStatus(HealthThresholds(sink_stall_s=0, source_stall_s=0, stuck_s=0))
    pipeline = Pipeline(
        "p", {"maria": reader}, [sink], MemoryOffsetStore(),
        batch=BatchPolicy(max_wait_s=0.05),
        retry=RetryPolicy(max_attempts=0, initial_backoff_s=0.05, max_backoff_s=0.2),
        status=status, metrics=Metrics("p"),
        lag_guards={"maria": LagGuard(parse_max_lag("200kB"))}, lag_interval_s=0.2,
    )  # fmt: skip
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        _wait(pipeline.ready.is_set, 30, "the pipeline to start")
        _wait(lambda: status.details()["sources"]["maria"]["position"] is not None, 30, "a first commit")
        sink.fail(*[CdcError(ErrorKind.SINK_TRANSIENT, "down (scripted)")] * 100_000)
        _insert(db, table, 1, 400, 1000)  # ~400 kB, past 200 kB
        _wait(lambda: not status.readiness()[0], 30, "/ready to fail past max_lag")
        reasons = status.readiness()[1]
        assert any(r.startswith("source maria: lag ") and "past max_lag 200kB" in r for r in reasons), reasons
        lag = status.details()["sources"]["maria"]["lag"]
        assert lag["lag_bytes"] > 200 * 1024 and lag["binlog_file"], lag
        with sink.lock:
            sink.failures.clear()
        _wait(lambda: status.readiness()[0], 60, "/ready once the sink delivers again")
        _wait(lambda: len(sink.events) >= 400, 30, "every change delivered")

        def seconds() -> float:
            return float((status.details()["sources"]["maria"]["lag"] or {}).get("lag_seconds") or 0)

        _wait(lambda: seconds() < 5, 30, "the lag in seconds back down (heartbeats move the position)")
    finally:
        pipeline.stop()
        runner.join(15)


def test_an_idle_binlog_keeps_heartbeat_and_checkpoint_ages_small(mariadb_dsn: str, table: str) -> None:
    """Nothing is written to the captured table: the server's heartbeats (every 0.5 s here) confirm the
    committed position, so neither age grows past a few intervals (on a quiet server, with no other
    writers, they grew by the second before each heartbeat counted)."""
    reader = MysqlReader(parse_dsn(mariadb_dsn), [table], pipeline_name="lag-idle", heartbeat_s=0.5,
                         temporary=True, flavor="mariadb")  # fmt: skip
    status = PipelineStatus(HealthThresholds(sink_stall_s=0, source_stall_s=0, stuck_s=0))
    pipeline = Pipeline(
        "p", {"maria": reader}, [MemorySink("s")], MemoryOffsetStore(),
        batch=BatchPolicy(max_wait_s=0.05), status=status, metrics=Metrics("p"),
    )  # fmt: skip
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        _wait(pipeline.ready.is_set, 30, "the pipeline to start")
        _wait(lambda: "maria" in status.ages()["checkpoint"], 30, "a first commit")
        worst = {"checkpoint": 0.0, "heartbeat": 0.0}
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            ages = status.ages()
            for what in worst:
                worst[what] = max(worst[what], ages[what].get("maria", 0.0))
            time.sleep(0.1)
        assert worst["heartbeat"] < 2.5 and worst["checkpoint"] < 2.5, worst
    finally:
        pipeline.stop()
        runner.join(15)
