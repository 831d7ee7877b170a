"""Lag measurement and the max_lag guard (observability/lag.py): parsing the limit, the log timeline,
the monitor with a scripted probe, and through a real Pipeline whose sink is stuck."""

from __future__ import annotations

import dataclasses
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.lag import LagGuard, LagMonitor, LogTimeline, parse_max_lag
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import HealthThresholds, PipelineStatus
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import Position
from cdc_logs.readers.base import LagProbe, LogLag
from cdc_logs.readers.mysql.lag import binlog_lag_bytes, file_number, only_housekeeping
from tests.helpers import MemorySink, ScriptedReader, make_event


# -- max_lag -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "size", "seconds"),
    [
        ("64kB", 64 * 1024, None),
        ("512MB", 512 << 20, None),
        ("1.5GB", int(1.5 * (1 << 30)), None),
        ("100 MiB", 100 << 20, None),
        ("4096B", 4096, None),
        ("10m", None, 600.0),
        ("30s", None, 30.0),
        ("500ms", None, 0.5),
        ("2h", None, 7200.0),
        ("1d", None, 86400.0),
    ],
)
def test_max_lag_is_a_size_or_a_duration(text: str, size: int | None, seconds: float | None) -> None:
    limit = parse_max_lag(text)
    assert (limit.bytes, limit.seconds) == (size, seconds)


@pytest.mark.parametrize(
    ("text", "says"),
    [("10", "with a unit"), ("lots", "with a unit"), ("10 parsecs", "unknown unit"), ("0MB", "above zero")],
)
def test_a_max_lag_without_a_known_unit_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_max_lag(text)


def test_max_lag_is_checked_when_the_config_is_read() -> None:
    from cdc_logs.config import PipelineConfig

    base = {"destination": {"type": "stdout"}}
    source = {"type": "sqlite", "path": "a.db", "tables": ["t"]}
    guarded = {**source, "max_lag": "10m", "on_max_lag": "stop"}
    cfg = PipelineConfig.model_validate({**base, "source": guarded})
    assert cfg.all_sources()[0].max_lag == "10m" and cfg.all_sources()[0].on_max_lag == "stop"
    with pytest.raises(ValidationError, match=r"with a unit: bytes like"):
        PipelineConfig.model_validate({**base, "source": {**source, "max_lag": "10"}})
    with pytest.raises(ValidationError, match="on_max_lag"):
        PipelineConfig.model_validate({**base, "source": {**source, "max_lag": "1s", "on_max_lag": "panic"}})


def test_exceeded_compares_the_measure_of_the_limit_unit() -> None:
    size, time_ = parse_max_lag("1MB"), parse_max_lag("1m")
    assert size.exceeded(2 << 20, 0.0) == "lag 2.0 MB is past max_lag 1MB"
    assert size.exceeded(1 << 20, 9999.0) is None  # at the limit is not past it; seconds do not count
    assert time_.exceeded(10**12, 61.0) == "lag 61 s is past max_lag 1m"
    assert time_.exceeded(None, None) is None  # unknown is not past


# -- timeline ----------------------------------------------------------------------------------------
def test_the_timeline_dates_the_consumed_point() -> None:
    t = LogTimeline()
    assert t.age(0, 0.0) is None
    t.record(0.0, 100)
    t.record(5.0, 200)
    t.record(10.0, 300)
    assert t.age(300, 12.0) == 0.0  # everything consumed
    assert t.age(250, 12.0) == 7.0  # the log was at 200 (<= 250) at t=5: the rest is younger
    assert t.age(100, 12.0) == 12.0  # consumed up to where the log stood at t=0
    assert t.age(50, 12.0) == 12.0  # older than the first sample: bounded by it
    # Idle source, stuck sink: the log does not move, nothing is consumed, the age grows.
    t.record(20.0, 300)
    assert t.age(250, 30.0) == 25.0


def test_a_log_that_goes_back_starts_a_new_timeline() -> None:
    t = LogTimeline()
    t.record(0.0, 1000)
    t.record(1.0, 10)  # another server (failover): positions are not comparable with the old ones
    assert t.age(10, 3.0) == 0.0 and t.age(5, 3.0) == 2.0


def test_binlog_bytes_after_the_committed_file_and_position() -> None:
    files = [("bin.000001", 1000), ("bin.000002", 5000), ("bin.000003", 800)]
    assert file_number("bin.000010") == 10
    assert binlog_lag_bytes(files, ("bin.000003", 800), ("bin.000003", 800)) == 0
    assert binlog_lag_bytes(files, ("bin.000003", 800), ("bin.000003", 300)) == 500
    assert binlog_lag_bytes(files, ("bin.000003", 900), ("bin.000002", 4000)) == 1000 + 900
    assert binlog_lag_bytes(files, ("bin.000003", 800), ("bin.000001", 0)) == 6800
    assert binlog_lag_bytes(files[1:], ("bin.000003", 800), ("bin.000001", 10)) is None  # purged


def test_a_rotation_alone_leaves_nothing_to_consume() -> None:
    # The head of a new binlog file after a rotation (MariaDB): nothing a consumer reads.
    assert only_housekeeping(["Rotate"]) and only_housekeeping(
        ["Format_desc", "Gtid_list", "Binlog_checkpoint"]
    )
    assert only_housekeeping(["Format_desc", "Previous_gtids"])  # MySQL
    assert only_housekeeping([])
    assert not only_housekeeping(["Format_desc", "Gtid_list", "Gtid", "Query"])
    assert not only_housekeeping(["Table_map", "Write_rows_v1", "Xid"])


# -- the monitor -------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeProbe(LagProbe):
    def __init__(self) -> None:
        self.head = 1000
        self.consumed = 1000
        self.committed: list[Position | None] = []
        self.closed = False

    def measure(self, committed: Position | None) -> LogLag:
        self.committed.append(committed)
        return LogLag(self.head, self.consumed, self.head - self.consumed, self.head - 900, slot="s")

    def close(self) -> None:
        self.closed = True


class ProbedReader(ScriptedReader):
    def __init__(self, probe: LagProbe) -> None:
        super().__init__([])
        self.probe = probe

    def lag_probe(self) -> LagProbe | None:
        return self.probe


def _monitor(
    guard: LagGuard | None, pending: Callable[[str], int | None] = lambda _: None
) -> tuple[LagMonitor, FakeProbe, Clock, dict[str, Any]]:
    probe, clock = FakeProbe(), Clock()
    seen: dict[str, Any] = {"reports": [], "stops": []}
    monitor = LagMonitor(
        {"pg": ProbedReader(probe)},
        guards={"pg": guard} if guard else {},
        committed=lambda _: None,
        oldest_pending_ms=pending,
        report=lambda name, lag: seen["reports"].append((name, dataclasses.replace(lag))),
        stop_pipeline=seen["stops"].append,
        clock=clock,
    )
    return monitor, probe, clock, seen


def test_the_lag_in_seconds_grows_while_nothing_is_consumed_even_when_the_source_is_idle() -> None:
    monitor, probe, clock, _ = _monitor(LagGuard(parse_max_lag("1m")))
    assert monitor.measure("pg").lag_seconds == 0.0  # caught up
    probe.head = 5000  # something was written; the sink is stuck: nothing is consumed any more
    clock.now += 5
    lag = monitor.measure("pg")
    assert lag.lag_bytes == 4000 and lag.retained_bytes == 4100 and lag.lag_seconds == 5.0
    for _ in range(6):  # the source is idle now: the log does not move; the lag keeps growing
        clock.now += 10
        lag = monitor.measure("pg")
    assert lag.lag_seconds == 65.0 and lag.exceeded == "lag 65 s is past max_lag 1m"
    probe.consumed = 5000  # the sink is back and everything is confirmed
    clock.now += 1
    lag = monitor.measure("pg")
    assert lag.lag_seconds == 0.0 and lag.lag_bytes == 0 and lag.exceeded is None


def test_changes_read_but_not_delivered_count_by_their_commit_time() -> None:
    clock_now = Clock().now
    monitor, _, _, _ = _monitor(None, pending=lambda _: int((clock_now - 42) * 1000))
    assert monitor.measure("pg").lag_seconds == pytest.approx(42.0)


def test_on_max_lag_stop_stops_once_with_a_lag_error() -> None:
    monitor, probe, _, seen = _monitor(LagGuard(parse_max_lag("1kB"), "stop", grace_s=0))
    probe.head += 4096
    monitor.measure("pg")
    monitor.measure("pg")
    assert len(seen["stops"]) == 1
    error = seen["stops"][0]
    assert error.kind is ErrorKind.LAG and error.exit_code == 3
    assert "source pg: lag 4.0 kB is past max_lag 1kB and not shrinking for 0 s (on_max_lag: stop)" in (
        error.message
    )


def test_on_max_lag_stop_lets_a_pipeline_that_starts_behind_catch_up() -> None:
    """Restarted behind a slot that holds more than max_lag, with healthy sinks: the lag shrinks, so the
    run goes on past the grace period; it stops only once the lag stays put for the whole grace."""
    monitor, probe, clock, seen = _monitor(LagGuard(parse_max_lag("1kB"), "stop", grace_s=60))
    probe.head, probe.consumed = 1_000_000, 0  # far behind at start
    for _ in range(30):  # 150 s of catching up, 30 kB per 5 s: past the limit all along
        monitor.measure("pg")
        assert monitor.lags["pg"].exceeded
        clock.now += 5
        probe.consumed += 30_000
    assert seen["stops"] == []
    for _ in range(12):  # the sink gets stuck: the lag stays where it is
        monitor.measure("pg")
        clock.now += 5
    assert seen["stops"] == []  # 55 s without a new low: still within the grace
    monitor.measure("pg")
    assert len(seen["stops"]) == 1 and "not shrinking for 60 s" in seen["stops"][0].message


def test_the_grace_starts_again_after_the_lag_went_under_the_limit() -> None:
    monitor, probe, clock, seen = _monitor(LagGuard(parse_max_lag("1kB"), "stop", grace_s=10))
    probe.head += 4096
    monitor.measure("pg")
    clock.now += 8
    probe.consumed = probe.head  # caught up
    monitor.measure("pg")
    probe.head += 4096
    clock.now += 8
    monitor.measure("pg")  # past the limit again: a new episode, not 16 s of the old one
    assert seen["stops"] == []
    clock.now += 10
    monitor.measure("pg")
    assert len(seen["stops"]) == 1


def test_max_lag_grace_is_a_duration() -> None:
    from cdc_logs.config import PipelineConfig
    from cdc_logs.observability.lag import parse_grace

    assert parse_grace("60s") == 60.0 and parse_grace("5m") == 300.0 and parse_grace("0s") == 0.0
    base = {"destination": {"type": "stdout"}}
    source = {"type": "sqlite", "path": "a.db", "tables": ["t"], "max_lag": "1s", "on_max_lag": "stop"}
    cfg = PipelineConfig.model_validate({**base, "source": source})
    assert cfg.all_sources()[0].max_lag_grace == "60s"
    with pytest.raises(ValidationError, match="is a size"):
        PipelineConfig.model_validate({**base, "source": {**source, "max_lag_grace": "1MB"}})


def test_the_monitor_closes_its_probes() -> None:
    monitor, probe, _, _ = _monitor(None)
    monitor.start()
    deadline = time.monotonic() + 5
    while not probe.committed and time.monotonic() < deadline:
        time.sleep(0.01)
    monitor.close()
    assert probe.committed and probe.closed


# -- through a pipeline whose sink is stuck ------------------------------------------------------------
def _recent(n: int) -> Any:
    event = make_event(n)
    return dataclasses.replace(event, source=dataclasses.replace(event.source, ts_ms=int(time.time() * 1000)))


def _wait(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _stuck_pipeline(
    on_max_lag: str, grace_s: float = 0.5
) -> tuple[Pipeline, MemorySink, PipelineStatus, Metrics]:
    sink = MemorySink("cache")
    sink.fail(*[CdcError(ErrorKind.SINK_TRANSIENT, "connection refused (scripted)")] * 100_000)
    status = PipelineStatus(HealthThresholds(sink_stall_s=0, source_stall_s=0, stuck_s=0))
    metrics = Metrics("p")
    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader([_recent(1), _recent(2)])},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_wait_s=0.01),
        retry=RetryPolicy(max_attempts=0, initial_backoff_s=0.01, max_backoff_s=0.02),
        status=status,
        metrics=metrics,
        lag_guards={"src": LagGuard(parse_max_lag("1s"), on_max_lag, grace_s)},  # type: ignore[arg-type]
        lag_interval_s=0.1,
    )
    return pipeline, sink, status, metrics


def test_a_stuck_sink_makes_the_pipeline_not_ready_past_max_lag_then_ready_again() -> None:
    pipeline, sink, status, metrics = _stuck_pipeline("not_ready")
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        _wait(pipeline.ready.is_set)
        _wait(lambda: not status.readiness()[0])
        reasons = status.readiness()[1]
        assert len(reasons) == 1 and reasons[0].startswith("source src: lag "), reasons
        assert reasons[0].endswith("s is past max_lag 1s")
        text = metrics.render().decode()
        assert 'cdc_logs_source_max_lag_exceeded{pipeline="p",source="src"} 1.0' in text
        assert 'cdc_logs_sink_backlog_events{pipeline="p",sink="cache"} 2.0' in text
        assert 'cdc_logs_ready{pipeline="p"} 0.0' in text
        assert 'cdc_logs_sink_errors_total{kind="sink_transient",pipeline="p",sink="cache"}' in text
        with sink.lock:
            sink.failures.clear()
        _wait(lambda: status.readiness()[0])
        _wait(lambda: len(sink.events) == 2)
        text = metrics.render().decode()
        assert 'cdc_logs_source_lag_seconds{pipeline="p",source="src"} 0.0' in text
        assert 'cdc_logs_sink_write_seconds_count{pipeline="p",sink="cache"} 1.0' in text
        assert 'cdc_logs_checkpoint_age_seconds{pipeline="p",source="src"}' in text
    finally:
        pipeline.stop()
        runner.join(10)


def test_on_max_lag_stop_ends_the_run_with_the_lag_error() -> None:
    pipeline, sink, _, _ = _stuck_pipeline("stop")
    started = time.monotonic()
    with pytest.raises(CdcError) as caught:
        pipeline.run()
    assert caught.value.kind is ErrorKind.LAG
    assert "source src: lag" in caught.value.message and "max_lag 1s" in caught.value.message
    assert time.monotonic() - started < 10
    assert not sink.events


def test_max_lag_in_bytes_needs_a_source_that_can_measure_it() -> None:
    with pytest.raises(CdcError, match=r"cannot measure its lag in bytes") as caught:
        Pipeline(
            "p",
            {"src": ScriptedReader([])},
            [MemorySink()],
            MemoryOffsetStore(),
            lag_guards={"src": LagGuard(parse_max_lag("64kB"))},
        )
    assert caught.value.kind is ErrorKind.CONFIG


def test_run_stops_with_a_lag_error_and_exit_3_when_on_max_lag_is_stop(tmp_path: Path) -> None:
    """`cdc-logs run` as a user runs it: a webhook nobody listens to, a SQLite source with a snapshot
    of existing rows, `max_lag: 1s` with `on_max_lag: stop`: the run ends with the lag error."""
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(n, f"u{n}@x") for n in range(5)])
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: lagstop
source: {{type: sqlite, name: app, path: {db}, tables: [users], snapshot: true, max_lag: 1s,
          on_max_lag: stop, max_lag_grace: 1s}}
destination: {{type: webhook, url: "http://127.0.0.1:{port}/hook", max_attempts: 1}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync: {{retry: {{max_attempts: 0, initial_backoff_ms: 100, max_backoff_ms: 200}}}}
health_checks: {{lag_interval_ms: 200}}
""")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()
    said = r"error: lag: source app: lag \d+ s is past max_lag 1s and not shrinking for 1 s "
    said += r"\(on_max_lag: stop\)"
    assert any(re.fullmatch(said, x) for x in last), last[-5:]
    assert any(x.strip().startswith("fix: find why the destinations fall behind") for x in last), last[-5:]
    assert time.monotonic() - started < 30


def test_on_max_lag_warn_only_warns() -> None:
    pipeline, _, status, metrics = _stuck_pipeline("warn")
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        _wait(pipeline.ready.is_set)
        exceeded = 'cdc_logs_source_max_lag_exceeded{pipeline="p",source="src"} 1.0'
        _wait(lambda: exceeded in metrics.render().decode())
        assert status.readiness() == (True, [])  # past max_lag, and still ready: only the warning
        assert status.details()["sources"]["src"]["lag"]["exceeded"].endswith("past max_lag 1s")
    finally:
        pipeline.stop()
        runner.join(10)


def test_events_total_labels_the_table_with_its_schema() -> None:
    """Same-named tables in two schemas must not share a `cdc_logs_events_total` series."""
    first, second = make_event(1, table="orders"), make_event(2, table="orders")
    events = [
        dataclasses.replace(first, source=dataclasses.replace(first.source, schema="eu")),
        dataclasses.replace(second, source=dataclasses.replace(second.source, schema="us")),
    ]
    metrics = Metrics("p")
    pipeline = Pipeline(
        "p", {"src": ScriptedReader(events)}, [MemorySink()], MemoryOffsetStore(), metrics=metrics,
        stop_when_idle=True,
    )  # fmt: skip
    pipeline.run()
    text = metrics.render().decode()
    for schema in ("eu", "us"):
        series = f'cdc_logs_events_total{{op="c",pipeline="p",source="src",table="{schema}.orders"}}'
        assert f"{series} 1.0" in text
