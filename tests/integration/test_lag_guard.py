"""A stopped sink drives a Postgres slot's lag past `max_lag`: /ready turns 503 naming the lag, and
back to 200 when the sink returns (issue 14's done-when); `cdc-logs status` against the running
service and, once it stopped, against the offset store.

`cdc-logs run` runs as a subprocess with its HTTP port; the sink is a private redis-server the test
kills and restarts (test_health_live.py's), so the shared stack is never touched. The slot,
publication and table carry the test's unique name and are dropped at the end. The sink-stall and
source-stall checks are off, so the 503 can only come from the lag guard.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests.integration.test_health_live import PASSWORD, _free_port, _get, _start_redis, _until

psycopg = pytest.importorskip("psycopg")

MAX_LAG = "256kB"
LIMIT = 256 * 1024


@pytest.fixture
def pg_table(pg_dsn: str, unique_name: str) -> Iterator[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, pad text)")
    try:
        yield unique_name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the walsender may need a moment to let go of the slot
                row = db.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (unique_name,)
                ).fetchone()
                if row is None:
                    break
                if not row[0]:
                    db.execute("SELECT pg_drop_replication_slot(%s)", (unique_name,))
                    break
                time.sleep(0.2)
            db.execute(f"DROP PUBLICATION IF EXISTS {unique_name}")
            db.execute(f"DROP TABLE IF EXISTS public.{unique_name}")


def _metric(text: str, name: str, source: str = "pg") -> float | None:
    match = re.search(rf'^{name}{{pipeline="[^"]*",source="{source}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def test_a_stopped_sink_drives_slot_lag_past_max_lag_and_ready_follows(
    tmp_path: Path, pg_dsn: str, pg_table: str
) -> None:
    table = pg_table
    redis_port, http_port = _free_port(), _free_port()
    server = _start_redis(redis_port, tmp_path / "redis")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: lag-{table}
source:
  type: postgresql
  name: pg
  dsn: "{pg_dsn}"
  tables: [public.{table}]
  slot: {table}
  publication: {table}
  snapshot: false
  heartbeat_interval_ms: 500
  status_interval_ms: 500
  max_lag: {MAX_LAG}
destination:
  name: cache
  type: redis_stream
  url: "redis://:{PASSWORD}@127.0.0.1:{redis_port}/0"
  stream_name: changes
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  queue_size: 200
  batch: {{max_events: 100, max_wait_ms: 50}}
  retry: {{max_attempts: 0, initial_backoff_ms: 200, max_backoff_ms: 500}}
health_checks:
  enabled: true
  port: {http_port}
  sink_stall_ms: 0
  stuck_after_ms: 0
  source_stall_ms: 0
  lag_interval_ms: 300
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis(port=redis_port, password=PASSWORD)
    url = f"http://127.0.0.1:{http_port}"
    bodies: list[bytes] = []

    def get(path: str) -> tuple[int, dict[str, Any]]:
        code, body, raw = _get(http_port, path)
        bodies.append(raw)
        return code, body

    def metrics() -> str:
        import urllib.request

        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
        bodies.append(text.encode())
        return text

    def insert(first: int, count: int, pad: int = 10) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(
                f"INSERT INTO public.{table} SELECT n, repeat('x', %s::int) "
                "FROM generate_series(%s::int, %s::int) n",
                (pad, first, first + count - 1),
            )

    def status_cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "status", "-c", str(config), *args],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        bodies.append(done.stdout + done.stderr)
        return done.stdout.decode()

    try:

        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            try:
                return get("/ready")[0] == 200
            except OSError:
                return False

        def streaming() -> bool:
            with psycopg.connect(pg_dsn, autocommit=True) as db:
                row = db.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (table,)
                ).fetchone()
            return bool(row and row[0])

        _until(up, 60, "/ready 200 at start")
        # /ready answers once the pipeline runs; the new slot is made on its reader thread just after,
        # and rows committed before it exists are not in it (a loaded CI machine showed the gap).
        _until(streaming, 60, "the new slot streaming")
        insert(1, 10)
        _until(lambda: client.xlen("changes") == 10, 30, "the first changes in Redis")
        _until(lambda: get("/ready")[0] == 200, 30, "/ready 200 with the sink up")

        server.send_signal(signal.SIGKILL)  # the sink dies; the slot can no longer be confirmed
        server.wait(10)
        insert(11, 300, pad=2000)  # ~600 kB of WAL, past the 256 kB limit
        _until(lambda: get("/ready")[0] == 503, 30, "/ready 503 past max_lag")
        code, ready = get("/ready")
        assert code == 503 and ready["ready"] is False
        lag_reasons = [r for r in ready["reasons"] if r.startswith("source pg: lag ")]
        assert lag_reasons and f"past max_lag {MAX_LAG}" in lag_reasons[0], ready["reasons"]
        lag = ready["sources"]["pg"]["lag"]
        assert lag["lag_bytes"] > LIMIT and lag["exceeded"] and lag["slot"] == table, lag
        assert lag["retained_bytes"] >= lag["lag_bytes"], lag

        # While nothing more is written and the sink stays down, the lag in seconds grows.
        text = metrics()
        assert (_metric(text, "cdc_logs_source_lag_bytes") or 0) > LIMIT
        assert _metric(text, "cdc_logs_source_max_lag_exceeded") == 1.0
        first = _metric(text, "cdc_logs_source_lag_seconds")
        assert first is not None
        time.sleep(2.5)
        second = _metric(metrics(), "cdc_logs_source_lag_seconds")
        assert second is not None and second >= first + 1.5, (first, second)
        assert 'cdc_logs_sink_backlog_events{pipeline="' in text
        assert re.search(r'^cdc_logs_ready\{pipeline="[^"]*"\} 0\.0$', text, re.M), "ready gauge"

        live = status_cli()  # from the running service's /status (health_checks.port of the config)
        assert "source pg" in live and "NOT READY" in live and "EXCEEDED" in live, live
        assert "sink cache" in live and "waiting" in live, live

        server = _start_redis(redis_port, tmp_path / "redis")  # the sink returns
        client = redis.Redis(port=redis_port, password=PASSWORD)
        _until(lambda: get("/ready")[0] == 200, 60, "/ready 200 once the sink delivers again")

        def ids() -> set[int]:
            return {orjson.loads(f[b"value"])["after"]["id"] for _, f in client.xrange("changes")}

        try:
            _until(lambda: ids() == set(range(1, 311)), 60, "every change, after the sink returned")
        except AssertionError:
            held = ids()
            raise AssertionError(
                f"Redis holds {client.xlen('changes')} entries, {len(held)} distinct rows, missing "
                f"{sorted(set(range(1, 311)) - held)[:10]}...; /status: {get('/status')}"
            ) from None
        code, ready = get("/ready")
        assert not any(r.startswith("source pg: lag") for r in ready["reasons"])
        assert _metric(metrics(), "cdc_logs_source_max_lag_exceeded") == 0.0

        def caught_up() -> bool:
            seconds = _metric(metrics(), "cdc_logs_source_lag_seconds")
            return seconds is not None and seconds < 10

        _until(caught_up, 30, "the lag in seconds back down once everything is confirmed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            server.kill()
            server.wait(10)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"source lag past max_lag" in err and b"source lag back under max_lag" in err
    offline = status_cli()  # the service is gone: the offset store answers
    assert "from the offset store" in offline and "does not answer" in offline, offline
    assert "source pg" in offline, offline
    assert "of log not consumed (measured now; the service is not running)" in offline, offline
    assert "slot retained WAL" in offline, offline  # measured from pg_replication_slots, not the service
    assert re.search(r"position\s+│?\s*\S*[0-9A-F]+/[0-9A-F]+", offline), offline
    for text in [*bodies, err]:
        assert PASSWORD.encode() not in text
        assert pg_dsn.encode() not in text
