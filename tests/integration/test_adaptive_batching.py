"""Adaptive batching through a real pipeline: Postgres (pgoutput) -> webhook on a loopback receiver
whose answer takes a set time per change. While the receiver is fast and changes wait, the batch size
grows from min_batch_size to max_batch_size; once each change costs 1 ms, a batch of 640 takes 640 ms,
three times the 200 ms target, and the size comes down to about what the target allows (200).
The sizes are read off the requests the receiver got (one request per batch) and the status."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from cdc_logs.build import make_pipeline
from cdc_logs.config import PipelineConfig
from cdc_logs.observability.metrics import Metrics
from tests.chaos.killkit import Postgres

pytestmark = pytest.mark.integration


class Receiver:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.per_event_s = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                events = len(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(outer.per_event_s * events)
                with outer.lock:
                    outer.sizes.append(events)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self) -> int:
        with self.lock:
            return sum(self.sizes)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def wait(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_batch_size_follows_the_write_time(pg_dsn: str, receiver: Receiver, tmp_path: Path) -> None:
    db = Postgres(pg_dsn, uuid.uuid4().hex[:10])
    db.create({})
    try:
        cfg = PipelineConfig.model_validate(
            {
                "name": f"adaptive-{db.slot}",
                "source": db.source(snapshot=False, chunk=1000),
                "destination": {"type": "webhook", "url": receiver.url},
                "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
                "sync": {
                    "batch_optimization": {
                        "adaptive_batching": True,
                        "min_batch_size": 20,
                        "max_batch_size": 640,
                        "target_latency_ms": 200,
                    }
                },
            }
        )
        pipeline = make_pipeline(cfg, metrics=Metrics.disabled(), stop_when_idle=False)
        assert pipeline.status.details()["batch_size"] == 20
        runner = threading.Thread(target=pipeline.run, daemon=True)
        runner.start()
        try:
            wait(pipeline.ready.is_set, "the pipeline is ready")
            time.sleep(0.5)  # the slot exists and the stream is open
            with psycopg.connect(pg_dsn, autocommit=True) as conn:  # one backlog of 6000 changes
                conn.execute(f"INSERT INTO {db.table} SELECT g, g FROM generate_series(1, 6000) g")
            wait(lambda: receiver.total() >= 6000, "the fast receiver has every change")
            fast = list(receiver.sizes)
            assert fast[0] == 20, fast[:5]
            assert max(fast) == 640, f"never grew to max_batch_size: {fast}"
            assert {40, 80, 160, 320} <= set(fast), fast  # doubled while fast with a backlog

            receiver.per_event_s = 0.001  # now each change costs 1 ms: 640 take 3x the target
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(f"UPDATE {db.table} SET v = v + 1 WHERE id <= 3000")
            wait(lambda: receiver.total() >= 9000, "the slow receiver has every change")
            slow = receiver.sizes[len(fast) :]
            assert max(slow[2:]) <= 320, f"did not shrink: {slow}"
            settled = pipeline.status.details()["batch_size"]
            # Near 200 (target / 1 ms) on an idle machine; lower when the machine is slow.
            assert 20 <= settled <= 320, f"the size should settle under 320, is {settled}: {slow}"
            print(f"fast: {fast}\nslow: {slow}\nsettled at {settled}")
        finally:
            pipeline.stop()
            runner.join(30)
        assert receiver.total() == 9000
    finally:
        db.cleanup()
