"""Chaos: iot_aggregation and anomaly_detection (robust z-score) through a real pipeline (Postgres slot
-> file sink and SQL sink), with `cdc-logs run` SIGKILLed while readings are inserted, then restarted.

The aggregates must equal what this test computes from the readings it inserted (exact decimals),
in both sinks: the SQL target holds each window exactly once (keyed by sensor and window), and every
line of a window in the file is identical (a replay after a kill may write one again, never a
different one). The anomalies (spikes inserted every 50th reading) must be those a z-score computed
here over the committed readings finds, each once in the SQL target. Windows close by event time: a
last reading an hour later moves the watermark past them all. Needs the stack's Postgres
(CDC_PG_DSN); slot, publication and tables are removed afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.chaos.test_pg_sigkill import _start, _wait_streaming
from tests.integration.conftest import pg_dsn, unique_name  # noqa: F401 - fixtures, used by name

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.chaos

READINGS = 600
SENSORS = ("s0", "s1", "s2")
WINDOW_MS = 10_000
T0 = 1_800_000_000_000  # a multiple of the window: windows are aligned to the epoch


def _writer(
    dsn: str, table: str, done: threading.Event, rng: random.Random, rows: list[tuple[Any, ...]]
) -> None:
    """Readings in event-time order give or take 300 ms (inside the 1 s allowed lateness), in small
    transactions; `rows` gets each reading once committed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while i < READINGS:
            batch = []
            with conn.transaction():
                for _ in range(min(rng.randint(1, 5), READINGS - i)):
                    t = T0 + i * 200 + rng.randint(-300, 300)
                    v = (
                        Decimal(rng.randint(-5000, 5000)) / 100 if i % 50 != 49 else Decimal("999.99")
                    )  # spikes
                    reading = (i + 1, rng.choice(SENSORS), t, v)
                    at = dt.datetime.fromtimestamp(t / 1000, dt.UTC)
                    conn.execute(
                        f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                        (reading[0], reading[1], at, reading[3]),
                    )
                    batch.append(reading)
                    i += 1
            rows.extend(batch)
            time.sleep(rng.uniform(0.005, 0.025))
    done.set()


def _expected(rows: list[tuple[Any, ...]]) -> dict[tuple[str, int], dict[str, Any]]:
    windows: dict[tuple[str, int], list[Decimal]] = {}
    for _, sensor, t, v in rows:
        windows.setdefault((sensor, t // WINDOW_MS * WINDOW_MS), []).append(v)
    return {
        k: {
            "count": len(vs),
            "v_sum": sum(vs),
            "v_min": min(vs),
            "v_max": max(vs),
            "v_avg": sum(vs) / len(vs),
        }
        for k, vs in windows.items()
    }


def _expected_anomalies(rows: list[tuple[Any, ...]]) -> dict[tuple[str, int], float]:
    """The robust z-score (window 20, 10 values first, |z| > 3.5) per sensor, in commit order."""
    history: dict[str, list[float]] = {}
    found = {}
    for _, sensor, t, v in rows:
        window = history.setdefault(sensor, [])
        if len(window) >= 10:
            median = statistics.median(window)
            mad = statistics.median(abs(x - median) for x in window)
            z = abs(0.6745 * (float(v) - median) / mad)
            if z > 3.5:
                found[(sensor, t)] = z
        window.append(float(v))
        del window[:-20]
    return found


@pytest.fixture
def iot_tables(pg_dsn: str, unique_name: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    table, slot = unique_name, f"cdc_logs_{unique_name}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, sensor text, measured_at timestamptz, v numeric(8,2))"
        )
        try:
            yield table, slot
        finally:
            row = db.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row and row[0]:
                db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                time.sleep(0.5)
            with contextlib.suppress(psycopg.Error):
                db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            db.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
            for name in (table, f"{table}_agg", f"{table}_anomalies", f"{table}_applied"):
                db.execute(f"DROP TABLE IF EXISTS {name}")


def _file_windows(
    out: Path, table: str, suffix: str = "_agg", at: str = "window_start"
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    seen: dict[tuple[str, int], list[dict[str, Any]]] = {}
    if out.exists():
        for line in out.read_bytes().splitlines():
            event = orjson.loads(line)
            if event["source"]["table"] == f"{table}{suffix}":
                row = event["after"]
                seen.setdefault((row["sensor"], row[at]), []).append(row)
    return seen


def test_windows_survive_sigkill_and_match_the_inserted_readings(
    pg_dsn: str,  # noqa: F811
    iot_tables: tuple[str, str],
    tmp_path: Path,
) -> None:
    table, slot = iot_tables
    rng = random.Random(20261206)
    out = tmp_path / "out" / "aggregates.jsonl"
    url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {table}
source:
  type: pg
  dsn: "{pg_dsn}"
  tables: [public.{table}]
  slot: {slot}
  snapshot: false
  heartbeat_interval_ms: 500
  status_interval_ms: 500
destinations:
  - {{type: file, path: {out}}}
  - {{type: sql, url: "{url}", schema: public, auto_create: true, applied_table: {table}_applied}}
plugins:
  transformers:
    - type: anomaly_detection  # first: the aggregation drops the readings (pass_through)
      params:
        algorithm: zscore
        fields: [v]
        group_by: [sensor]
        event_time_field: measured_at
        window_size: 20
        min_samples: 10
        tables: [public.{table}]
    - type: iot_aggregation
      params:
        time_window: 10s
        aggregation_functions: [avg, min, max, sum, count]
        fields: [v]
        group_by: [sensor]
        event_time_field: measured_at
        allowed_lateness: 1s
        pass_through: false
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  state_dir: {tmp_path / "state"}
  batch: {{max_events: 40, max_wait_ms: 20}}
  retry: {{max_attempts: 30, initial_backoff_ms: 100, max_backoff_ms: 1000}}
"""
    )
    proc = _start(config, tmp_path)
    _wait_streaming(pg_dsn, slot, proc)
    rows: list[tuple[Any, ...]] = []
    done = threading.Event()
    writer = threading.Thread(target=_writer, args=(pg_dsn, table, done, rng, rows), daemon=True)
    writer.start()
    try:
        for _ in range(2):
            time.sleep(rng.uniform(0.6, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = _start(config, tmp_path)
        writer.join(60)
        assert done.is_set(), "the workload did not finish"
        with psycopg.connect(pg_dsn, autocommit=True) as db:  # an hour later: closes every window
            at = dt.datetime.fromtimestamp((T0 + 3_600_000) / 1000, dt.UTC)
            db.execute(f"INSERT INTO {table} VALUES (%s, 's0', %s, 0)", (READINGS + 1, at))
        expected = _expected(rows)  # the last reading's window stays open
        rows.append((READINGS + 1, "s0", T0 + 3_600_000, Decimal(0)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(_file_windows(out, table)) != set(expected):
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            time.sleep(0.2)
        _wait_streaming(pg_dsn, slot, proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert len(rows) == READINGS + 1 and len(expected) >= 3 * (READINGS * 200 // WINDOW_MS)

    in_file = _file_windows(out, table)
    assert set(in_file) == set(expected)
    for key, lines in in_file.items():
        want = expected[key]
        assert all(line == lines[0] for line in lines), f"window {key} emitted with different values: {lines}"
        got = lines[0]
        assert got["window_end"] == key[1] + WINDOW_MS and got["count"] == want["count"]
        for name in ("v_sum", "v_min", "v_max", "v_avg"):
            assert Decimal(got[name]) == want[name], (key, name, got[name], want[name])

    with psycopg.connect(pg_dsn, autocommit=True) as db:
        stored = db.execute(
            f"SELECT sensor, window_start, count, v_sum, v_min, v_max, v_avg FROM {table}_agg"
        ).fetchall()
    assert len(stored) == len(expected)  # each window once
    for sensor, start, count, v_sum, v_min, v_max, v_avg in stored:
        key = (sensor, int(start.replace(tzinfo=dt.UTC).timestamp() * 1000))
        want = expected[key]
        assert (count, v_sum, v_min, v_max, v_avg) == (
            want["count"],
            want["v_sum"],
            want["v_min"],
            want["v_max"],
            want["v_avg"],
        )

    anomalies = _expected_anomalies(rows)
    assert len(anomalies) >= READINGS // 50 - 3  # the spikes (a sensor's first values are not scored)
    flagged = _file_windows(out, table, "_anomalies", "event_time")
    assert set(flagged) == set(anomalies)
    for key, lines in flagged.items():
        assert all(line == lines[0] for line in lines)
        assert lines[0]["score"] == pytest.approx(anomalies[key]) and lines[0]["method"] == "zscore"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        stored_anomalies = db.execute(f"SELECT sensor, event_time FROM {table}_anomalies").fetchall()
    assert len(stored_anomalies) == len(anomalies)  # each once
    assert {(s, int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)) for s, t in stored_anomalies} == set(
        anomalies
    )
