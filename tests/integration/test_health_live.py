"""/ready and /health of `cdc-logs run` while a real sink goes down and comes back.

A private redis-server (with a password, on a free port) is the sink; the test stops it with the
pipeline running and changes waiting: /ready turns 503 naming the Redis destination within the
threshold, /health reports the pipeline stuck; once Redis is back both return to 200 and every change
arrives. Run with fan-out (file + Redis: the file sink is never named) and with Redis alone. The
shared stack is not touched. The password must never appear in a response or a log.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

PASSWORD = "s3cret-health-pw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
         "--requirepass", PASSWORD, "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, password=PASSWORD)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("private redis-server did not start")


def _get(port: int, path: str) -> tuple[int, dict[str, Any], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            raw = resp.read()
            return resp.status, orjson.loads(raw), raw
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, orjson.loads(raw), raw


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("fanout", [True, False], ids=["fanout", "single"])
def test_ready_and_health_follow_a_sink_that_goes_down_and_returns(tmp_path: Path, fanout: bool) -> None:
    redis_port, http_port = _free_port(), _free_port()
    server = _start_redis(redis_port, tmp_path / "redis")
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    file_sink = f"  - {{name: archive, type: file, path: {tmp_path / 'out.jsonl'}}}\n" if fanout else ""
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: health-live
source: {{type: sqlite, path: {db}, tables: [users]}}
destinations:
{file_sink}  - name: cache
    type: redis_stream
    url: "redis://:{PASSWORD}@127.0.0.1:{redis_port}/0"
    stream_name: changes
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 50, max_wait_ms: 50}}
  retry: {{max_attempts: 0, initial_backoff_ms: 200, max_backoff_ms: 500}}
  fanout: {{spool_dir: {tmp_path / "spool"}}}
health_checks:
  sink_stall_ms: 2000
  stuck_after_ms: 4000
  source_stall_ms: 30000
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config), "--http-port", str(http_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = redis.Redis(port=redis_port, password=PASSWORD)
    bodies: list[bytes] = []

    def status(path: str) -> tuple[int, dict[str, Any]]:
        code, body, raw = _get(http_port, path)
        bodies.append(raw)
        return code, body

    def insert(first: int, count: int) -> None:
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO users (id, email) VALUES (?, ?)",
                [(n, f"u{n}@x") for n in range(first, first + count)],
            )

    try:

        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            try:
                return status("/ready")[0] == 200
            except OSError:
                return False

        _until(up, 30, "/ready 200 at start")
        assert status("/health")[0] == 200
        insert(1, 10)
        _until(lambda: client.xlen("changes") == 10, 30, "the first changes in Redis")
        assert status("/ready")[0] == 200 and status("/health")[0] == 200

        server.send_signal(signal.SIGKILL)  # the sink's server dies
        server.wait(10)
        insert(11, 10)  # changes now wait for Redis
        took = _until(lambda: status("/ready")[0] == 503, 20, "/ready 503 while Redis is down")
        assert took < 2.0 + 6.0, f"/ready took {took:.1f} s to fail with a 2 s threshold"
        code, ready = status("/ready")
        assert code == 503 and ready["ready"] is False
        assert any(r.startswith("sink cache: no write accepted for") for r in ready["reasons"]), ready
        assert not any(r.startswith("sink archive") for r in ready["reasons"]), "the file sink is healthy"
        assert ready["sinks"]["cache"]["waiting"] and ready["sinks"]["cache"]["failing"]
        if fanout:
            assert ready["sinks"]["archive"]["waiting"] is False
        _until(lambda: status("/health")[0] == 503, 20, "/health 503 while Redis is down")
        code, alive = status("/health")
        assert alive["status"] == "unhealthy"
        assert any(r.startswith("stuck: nothing delivered to every sink") and "waiting on: cache" in r
                   for r in alive["reasons"]), alive  # fmt: skip

        server = _start_redis(redis_port, tmp_path / "redis")  # back, with its append-only file
        client = redis.Redis(port=redis_port, password=PASSWORD)
        _until(lambda: status("/ready")[0] == 200 and status("/health")[0] == 200, 30, "recovery")
        _until(lambda: client.xlen("changes") == 20, 30, "the changes made while Redis was down")
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
    if fanout:
        assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 20
    assert PASSWORD.encode() not in err and not any(PASSWORD.encode() in b for b in bodies)


@pytest.mark.parametrize("case", ["heartbeats", "heartbeats_lost", "no_heartbeats"])
def test_an_idle_postgres_source_is_ready_on_heartbeats_and_not_without_them(
    pg_dsn: str, unique_name: str, case: str
) -> None:
    """For a source with heartbeats, idle ticks do not count: its heartbeats keep an idle source
    ready, and if they stop arriving /ready names it. Without heartbeats, the idle ticks count."""
    psycopg = pytest.importorskip("psycopg")
    from cdc_logs.observability.status import HealthThresholds, PipelineStatus
    from cdc_logs.offsets.memory import MemoryOffsetStore
    from cdc_logs.pipeline import BatchPolicy, Pipeline
    from cdc_logs.readers.postgres.reader import PostgresReader
    from tests.helpers import MemorySink

    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {unique_name} (id int PRIMARY KEY)")
        try:
            status = PipelineStatus(HealthThresholds(source_stall_s=3))
            reader = PostgresReader(
                pg_dsn, [f"public.{unique_name}"], pipeline_name="p", temporary=True,
                heartbeat_interval_s=0.0 if case == "no_heartbeats" else 1.0,
            )  # fmt: skip
            if case == "heartbeats_lost":  # the messages never come back through the stream
                reader._emit_heartbeat = lambda: None  # type: ignore[method-assign]
            pipeline = Pipeline(
                "p", {"pg": reader}, [MemorySink()], MemoryOffsetStore(),
                batch=BatchPolicy(max_wait_s=0.05), status=status,
            )  # fmt: skip
            runner = threading.Thread(target=pipeline.run, daemon=True)
            runner.start()
            try:
                _until(pipeline.ready.is_set, 30, "the reader to start")
                if case == "heartbeats_lost":  # not ready once source_stall_s passes without one
                    # (a deadline, not a fixed sleep: on a loaded machine the start itself is late)
                    _until(lambda: not status.readiness()[0], 30, "/ready to name the lost heartbeats")
                else:
                    time.sleep(6)  # idle: no change at all, twice source_stall_s
                ok, reasons = status.readiness()
            finally:
                pipeline.stop()
                runner.join(30)
        finally:
            db.execute(f"DROP TABLE {unique_name}")
    if case == "heartbeats_lost":
        assert not ok and reasons[0].startswith("source pg: no event or heartbeat for"), reasons
    else:
        assert (ok, reasons) == (True, [])
