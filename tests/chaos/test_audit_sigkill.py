"""Chaos: SIGKILL `cdc-logs run` with audit_trail and financial_validation while a workload writes.

After the kills and a clean stop, the signed audit log verifies and holds every committed change exactly
once (records written for a batch whose positions were not committed are kept, and their replays are
not logged again), and the control totals count every change exactly once, with the exact sum, though
the file sink itself may hold replays (at-least-once). Needs the stack's Postgres."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from cdc_logs.middleware import audit_log
from tests.chaos.test_pg_sigkill import _start, _wait_streaming
from tests.integration.conftest import pg_dsn, unique_name  # noqa: F401 - fixtures, used by name
from tests.integration.inprocess_cli import cli_here
from tests.integration.test_audit_financial_pg import config, ledger  # noqa: F401 - fixture

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("cryptography")

pytestmark = pytest.mark.chaos

CHANGES = 400
KILLS = 3


def _workload(
    dsn: str, table: str, expected: list[tuple[str, int, str]], done: threading.Event, seed: int
) -> None:
    """Inserts and updates in small transactions; each change recorded (op, id, amount) once committed."""
    rng = random.Random(seed)
    ids: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        while len(expected) < CHANGES:
            batch = []
            with conn.transaction():
                for _ in range(rng.randint(1, 3)):
                    amount = f"{rng.randint(0, 10**15)}.{rng.randint(0, 99):02d}"
                    if ids and rng.random() < 0.3:
                        key = rng.choice(ids)
                        conn.execute(f"UPDATE {table} SET amount = %s WHERE id = %s", (amount, key))
                        batch.append(("u", key, amount))
                    else:
                        key = len(ids) + 1
                        ids.append(key)
                        conn.execute(f"INSERT INTO {table} VALUES (%s, %s, 'EUR')", (key, amount))
                        batch.append(("c", key, amount))
            expected.extend(batch)
            time.sleep(rng.uniform(0, 0.01))
    done.set()


class SlowSink(BaseHTTPRequestHandler):
    """A webhook that takes 0.1 s per request: a kill then mostly lands while a batch is already in the
    audit log but its positions are not committed yet, the case the replay rule is for."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.1)
        self.received.extend(body.splitlines())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_sink() -> Iterator[str]:
    SlowSink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/changes"
    finally:
        server.shutdown()
        server.server_close()


def _audit_changes(log_dir: Path) -> list[tuple[str, int, str]]:
    return [
        (r["op"], r["after"]["id"], r["after"]["amount"])
        for _, path in audit_log.segments(log_dir)
        for line in path.read_bytes().splitlines()
        if (r := orjson.loads(line))["kind"] == "change"
    ]


def test_sigkill_leaves_a_verifying_log_with_each_change_once(
    pg_dsn: str,  # noqa: F811
    ledger: tuple[str, str],  # noqa: F811
    slow_sink: str,
    tmp_path: Path,
) -> None:
    table, slot = ledger
    rng = random.Random(20261206)
    keys = tmp_path / "keys"
    assert cli_here("audit", "keygen", "--out", str(keys)).returncode == 0
    cfg: dict[str, Any] = config(pg_dsn, table, slot, tmp_path, keys)
    cfg["destination"] = {"type": "http", "url": slow_sink, "body_format": "ndjson"}
    cfg["sync"].update(mode="continuous", batch={"max_events": 20, "max_wait_ms": 20})
    cfg["source"].update(heartbeat_interval_ms=500, status_interval_ms=500)
    cfg["plugins"]["middleware"]["middleware"][1]["params"]["max_segment_records"] = 50
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))

    proc = _start(path, tmp_path)
    _wait_streaming(pg_dsn, slot, proc)
    expected: list[tuple[str, int, str]] = []
    done = threading.Event()
    writer = threading.Thread(
        target=_workload, args=(pg_dsn, table, expected, done, rng.random()), daemon=True
    )
    writer.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = _start(path, tmp_path)
            _wait_streaming(pg_dsn, slot, proc)
        writer.join(120)
        assert done.is_set(), "the workload did not finish"
        log_dir = tmp_path / "state" / "audit_trail"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(_audit_changes(log_dir)) < len(expected):
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            time.sleep(0.2)
        _wait_streaming(pg_dsn, slot, proc)
        time.sleep(1)  # the last batch committed
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]

    verified = cli_here("audit", "verify", str(log_dir), "--public-key", str(keys / "audit-public.pem"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    logged = _audit_changes(log_dir)
    replayed = len(SlowSink.received) - len(expected)
    assert replayed > 0, "no kill came between the audit log and the commit: the test proved nothing"
    assert len(logged) == len(set(logged)), "a change is in the audit log twice"
    assert logged == expected  # every committed change once, in commit order (one connection)

    totals = orjson.loads(cli_here("audit", "totals", str(tmp_path / "state"), "--json").stdout)["total"]
    per_code = {k: v for k, v in totals.items() if k.startswith("amount:")}  # never a cross-currency sum
    assert "amount" not in totals and per_code
    assert sum(v["count"] for v in per_code.values()) == len(expected)
    assert sum(Decimal(v["sum"]) for v in per_code.values()) == sum(Decimal(a) for _, _, a in expected)
