"""Issue 17 parts 4 and 5 through a real pipeline (Postgres source from the stack, file destination):

- `opentelemetry`: every batch's span reaches an OTLP/HTTP receiver. No Collector or Jaeger binary can
  be installed here in minutes (both are large Go builds), so the receiver is this test's own HTTP
  server, which decodes the real OTLP protobuf (opentelemetry-proto's ExportTraceServiceRequest) that
  the real exporter sends.
- `gdpr_compliance`: PII hashed with a salt from the environment (never in the output or the log), and
  `retention_period_days` prunes the dead-letter directory (records dated back, a file whose mtime is
  set back with os.utime) without touching a file cdc-logs does not own.
- the fan-out spool: batches spilled for a destination that is down, their mtimes set back past the
  retention, are kept (never deleted) and reported: /ready's reason and the overdue gauge.

Slot, publication and table carry the test's unique name and are dropped at the end.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from cdc_logs.build import make_pipeline
from cdc_logs.configfile import load_config
from cdc_logs.deadletter import DeadLetterDir, DeadLetterWriter, refused
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import PipelineStatus
from tests.helpers import make_event

psycopg = pytest.importorskip("psycopg")
trace_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

SALT = "pepper-for-the-gdpr-test-0f3a"
DAY = 86_400


@pytest.fixture
def pg_table(pg_dsn: str, unique_name: str) -> Iterator[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE public.{unique_name} (id int PRIMARY KEY, email text, pad text)")
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


class _Receiver:
    """An OTLP/HTTP traces endpoint: decodes each ExportTraceServiceRequest and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.headers["Content-Type"] == "application/x-protobuf"
                request = trace_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for rs in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        receiver.spans.extend((resource, span) for span in ss.spans)
                reply = trace_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def _attrs(span: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def _config(tmp_path: Path, pg_dsn: str, table: str, extra: str, destinations: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
name: gdpr-{table}
source:
  type: postgresql
  name: pg
  dsn: "{pg_dsn}"
  tables: [public.{table}]
  slot: {table}
  publication: {table}
  snapshot: true
  heartbeat_interval_ms: 500
{destinations}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 20, max_wait_ms: 50}}
  retry: {{max_attempts: 0, initial_backoff_ms: 100, max_backoff_ms: 200}}
  dead_letters: {{dir: {tmp_path / "dead"}}}
  fanout: {{spool_dir: {tmp_path / "spool"}, max_memory_bytes: 1048576}}
plugins:
  middleware:
    middleware:
{extra}
""")
    return path


def _dead_letters(dead: Path, old_ms: int, new_ms: int) -> None:
    """Real dead-letter records (the pipeline's writer and format), some dated past the retention."""
    error = CdcError(ErrorKind.SINK_REJECTED, "value too long", "shorten it")
    records = []
    for n in range(5):
        event = make_event(n + 1)
        event.after = {"id": n + 1, "email": f"{'old' if n < 3 else 'new'}{n}@x.org"}
        records.append(dataclasses.replace(refused("cache", event, error), ts_ms=old_ms if n < 3 else new_ms))
    DeadLetterWriter(DeadLetterDir(dead).path("cache")).write(records)
    old_file = dead / "pg.undecodable.jsonl"
    DeadLetterWriter(old_file).write(records[:2])
    os.utime(old_file, (old_ms / 1000, old_ms / 1000))
    notes = dead / "notes.jsonl"  # not a dead-letter file: the user's, never touched
    notes.write_bytes(records[0].to_json() + b"\n")
    os.utime(notes, (old_ms / 1000, old_ms / 1000))


def test_spans_per_batch_reach_an_otlp_receiver_and_gdpr_retention_prunes_dead_letters(
    tmp_path: Path,
    pg_dsn: str,
    pg_table: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rows = 50
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        for n in range(1, rows + 1):
            db.execute(f"INSERT INTO public.{pg_table} VALUES (%s, %s, 'x')", (n, f"user{n}@example.org"))
    now_ms = int(time.time() * 1000)
    _dead_letters(tmp_path / "dead", now_ms - 40 * DAY * 1000, now_ms - 1000)
    receiver = _Receiver()
    monkeypatch.setenv("PII_SALT", SALT)
    out = tmp_path / "out.jsonl"
    config = _config(tmp_path, pg_dsn, pg_table, f"""
      - type: gdpr_compliance
        params:
          pii_fields: [email]
          anonymization_strategy: hash
          salt: ${{PII_SALT}}
          retention_period_days: 30
      - type: opentelemetry
        params:
          service_name: gdpr-test
          jaeger_endpoint: http://127.0.0.1:{receiver.port}
          trace_sampling_rate: 1.0
""", f"destination: {{type: file, name: out, path: {out}}}")  # fmt: skip
    try:
        cfg = load_config(config)
        pipeline = make_pipeline(cfg, metrics=Metrics(cfg.name), stop_when_idle=True, limit=rows)
        started = time.time_ns()
        saved = structlog.get_config()
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        try:
            with capture_logs() as logs:
                stats = pipeline.run()
        finally:
            structlog.configure(**saved)
        assert stats.events == rows
    finally:
        receiver.close()

    # -- spans: one per batch, every change counted once, durable, with positions and names -------------
    spans = [s for _, s in receiver.spans]
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert {r["service.name"] for r, _ in receiver.spans} == {"gdpr-test"}
    assert len(spans) == stats.batches >= 3, (len(spans), stats.batches)
    attrs = [_attrs(s) for s in spans]
    assert sum(a["cdc.events"] for a in attrs) == rows
    for span, a in zip(spans, attrs, strict=True):
        assert span.name == "cdc.batch"
        assert a["cdc.pipeline"] == cfg.name and a["cdc.sources"] == ["pg"] and a["cdc.sinks"] == ["out"]
        assert a["cdc.outcome"] == "durable"
        assert a["cdc.position.first"] and a["cdc.position.last"]
        assert started - 10**9 <= span.start_time_unix_nano <= span.end_time_unix_nano <= time.time_ns()
    assert len({s.trace_id for s in spans}) == len(spans)

    # -- PII: hashed with the salt from the environment; neither the salt nor an address in output ------
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) == rows
    for e in events:
        n = e["after"]["id"]
        assert e["after"]["email"] == hashlib.sha256((SALT + f"user{n}@example.org").encode()).hexdigest()
    logged = capfd.readouterr()
    text = out.read_text() + logged.out + logged.err + repr(logs)
    assert SALT not in text and "@example.org" not in text

    # -- retention: old dead letters gone (counted in the log, never shown), new kept, the user's file kept
    dead = tmp_path / "dead"
    kept = [orjson.loads(line) for line in (dead / "cache.deadletter.jsonl").read_bytes().splitlines()]
    assert [k["envelope"]["after"]["email"] for k in kept] == ["new3@x.org", "new4@x.org"]
    assert not (dead / "pg.undecodable.jsonl").exists()
    assert (dead / "notes.jsonl").exists()
    removed = [e for e in logs if e["event"].startswith("retention:")]
    assert {(e["event"], e.get("records")) for e in removed} == {
        ("retention: dead letters removed", 3),
        ("retention: dead-letter file removed", 2),
    }
    assert "@x.org" not in repr(logs)
    assert not list(dead.glob(".*retention-tmp"))


def test_undelivered_spool_data_past_the_retention_is_kept_and_reported(
    tmp_path: Path, pg_dsn: str, pg_table: str
) -> None:
    rows = 1500  # ~1.5 MB of envelopes: past the 1 MiB in memory, so batches spill to the spool
    with socket.socket() as sock:  # the webhook's port: nothing listens there until it "comes back"
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with psycopg.connect(pg_dsn, autocommit=True) as db, db.cursor() as cur:
        cur.executemany(
            f"INSERT INTO public.{pg_table} VALUES (%s, %s, %s)",
            [(n, f"u{n}@example.org", "p" * 1000) for n in range(1, rows + 1)],
        )
    config = _config(tmp_path, pg_dsn, pg_table, """
      - type: gdpr_compliance
        params: {pii_fields: [email], anonymization_strategy: drop, retention_period_days: 7}
""", f"""destinations:
  - {{type: file, name: out, path: {tmp_path / "out.jsonl"}}}
  - {{type: webhook, name: down, url: "http://127.0.0.1:{port}/hook", max_attempts: 1}}""")  # fmt: skip
    cfg = load_config(config)
    status = PipelineStatus()
    metrics = Metrics(cfg.name)
    pipeline = make_pipeline(cfg, metrics=metrics, stop_when_idle=False, status=status)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    spool = tmp_path / "spool" / f"{cfg.name}.spool"  # the pipeline's own directory under spool_dir
    try:
        deadline = time.monotonic() + 60
        while not list(spool.glob("*.pickle")):
            assert time.monotonic() < deadline, "nothing spilled to the spool"
            assert runner.is_alive()
            time.sleep(0.2)
        retention = pipeline._retention
        assert retention is not None
        assert retention.run_once()["spool"] == 0
        assert not any("retention" in r for r in status.readiness()[1])
        files = sorted(spool.glob("*.pickle"))
        old = time.time() - 8 * DAY
        for f in files:
            os.utime(f, (old, old))
        assert retention.run_once()["spool"] == len(files)
        assert all(f.exists() for f in files), "an undelivered spool file was deleted"
        ready, reasons = status.readiness()
        assert not ready
        assert any("retention (spool)" in r and "never deleted" in r for r in reasons), reasons
        assert f'cdc_logs_retention_overdue_files{{pipeline="{cfg.name}",what="spool"}} {len(files)}.0' in (
            metrics.render().decode()
        )
        # the file destination got everything read so far, with the email column dropped
        first = orjson.loads((tmp_path / "out.jsonl").read_bytes().splitlines()[0])
        assert "email" not in first["after"] and first["after"]["pad"] == "p" * 1000

        # the destination comes back: the spool drains, and the report clears at the next pass
        hook = ThreadingHTTPServer(("127.0.0.1", port), _Ok)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while list(spool.glob("*.pickle")):
                assert time.monotonic() < deadline, "the spool did not drain"
                time.sleep(0.2)
            assert retention.run_once()["spool"] == 0
            assert not any("retention" in r for r in status.readiness()[1])
            text = metrics.render().decode()
            assert f'cdc_logs_retention_overdue_files{{pipeline="{cfg.name}",what="spool"}} 0.0' in text
        finally:
            pipeline.stop()
            runner.join(timeout=30)
            hook.shutdown()
            hook.server_close()
    finally:
        pipeline.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_cdc_logs_run_serves_the_metrics_on_prometheus_metrics_port_with_the_seed_names(
    tmp_path: Path, pg_dsn: str, pg_table: str
) -> None:
    rows = 12
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        for n in range(1, rows + 1):
            db.execute(f"INSERT INTO public.{pg_table} VALUES (%s, %s, 'x')", (n, f"m{n}@example.org"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = _config(tmp_path, pg_dsn, pg_table, f"""
      - type: prometheus_metrics
        params:
          metrics_port: {port}
          custom_metrics:
            - {{name: records_processed_total, type: counter}}
            - {{name: processing_latency_seconds, type: histogram}}
""", f"destination: {{type: file, name: out, path: {tmp_path / 'out.jsonl'}}}")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                text = ""
            if _sum(text, "records_processed_total") == rows:
                break
            time.sleep(0.2)
        assert _sum(text, "records_processed_total") == rows == _sum(text, "cdc_logs_events_total"), text
        assert _sum(text, "processing_latency_seconds_count") == _sum(
            text, "cdc_logs_batch_write_seconds_count"
        )
        assert _sum(text, "processing_latency_seconds_count") >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]


def _sum(text: str, name: str) -> float:
    """The sum of a metric's samples in a /metrics text (every label set)."""
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
