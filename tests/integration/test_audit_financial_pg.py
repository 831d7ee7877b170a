"""audit_trail + financial_validation through a real pipeline: Postgres (the stack's) -> file sink.

Amounts stay exact from a NUMERIC column to the sink (12345678901234567.89 is not a float), invalid rows
are dead-lettered with their reason and the batch goes on, the control totals equal the sum of what the
sink holds, and the signed audit log verifies and holds each delivered change once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from cdc_logs.build import make_pipeline
from cdc_logs.configfile import parse_config
from cdc_logs.middleware import audit_log
from cdc_logs.observability.metrics import Metrics
from tests.integration.inprocess_cli import cli_here

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("cryptography")

BIG = "12345678901234567.89"


@pytest.fixture
def ledger(pg_dsn: str, unique_name: str) -> Iterator[tuple[str, str]]:
    table, slot = unique_name, f"cdc_logs_{unique_name}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric, currency text)")
        try:
            yield table, slot
        finally:
            for _ in range(50):
                with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                    db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                if not db.execute(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone():
                    break
                time.sleep(0.1)
            db.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
            db.execute(f"DROP TABLE IF EXISTS {table}")


def config(pg_dsn: str, table: str, slot: str, tmp: Path, keys: Path) -> dict[str, Any]:
    return {
        "name": slot.removeprefix("cdc_logs_"),
        "source": {
            "type": "pg",
            "dsn": pg_dsn,
            "tables": [f"public.{table}"],
            "slot": slot,
            "snapshot": False,
        },
        "destination": {"type": "file", "path": str(tmp / "out" / "changes.jsonl")},
        "offsets": {"type": "sqlite", "path": str(tmp / "offsets.db")},
        "sync": {
            "mode": "one_time",
            "state_dir": str(tmp / "state"),
            "dead_letters": {"dir": str(tmp / "dead")},
            "batch": {"max_events": 3, "max_wait_ms": 20},
        },
        "plugins": {
            "middleware": {
                "middleware": [
                    {
                        "type": "financial_validation",
                        "params": {
                            "currency_fields": ["amount"],
                            "precision_check": True,
                            "regulatory_compliance": "SOX",
                            "currency_code_field": "currency",
                            "max_scale": 2,
                        },
                    },
                    {
                        "type": "audit_trail",
                        "params": {
                            "audit_level": "full",
                            "immutable_log": True,
                            "digital_signature": True,
                            "private_key_file": str(keys / "audit-private.pem"),
                            "max_segment_records": 3,
                        },
                    },
                ]
            }
        },
    }


def run_once(cfg: dict[str, Any]) -> None:
    parsed = parse_config(cfg)
    make_pipeline(parsed, metrics=Metrics(parsed.name, enabled=False), stop_when_idle=True).run()


def test_exact_amounts_dead_letters_totals_and_a_verifying_log(
    pg_dsn: str, ledger: tuple[str, str], tmp_path: Path
) -> None:
    table, slot = ledger
    keys = tmp_path / "keys"
    assert cli_here("audit", "keygen", "--out", str(keys)).returncode == 0
    cfg = config(pg_dsn, table, slot, tmp_path, keys)
    run_once(cfg)  # creates the slot: changes from now on are captured
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(
            f"INSERT INTO {table} VALUES (1, %s, 'EUR'), (2, 0.10, 'USD'), (3, 1.234, 'EUR'), "
            "(4, 5.00, 'ZZZ'), (5, 7.25, 'usd'), (6, NULL, 'EUR')",
            (BIG,),
        )
        db.execute(f"UPDATE {table} SET amount = amount + 0.01 WHERE id = 2")
        db.execute(f"INSERT INTO {table} VALUES (7, -99999999999999999.99, 'EUR')")
    run_once(cfg)

    out = [orjson.loads(line) for line in (tmp_path / "out" / "changes.jsonl").read_bytes().splitlines()]
    assert [(e["op"], e["after"]["id"]) for e in out] == [("c", 1), ("c", 2), ("c", 5), ("u", 2), ("c", 7)]
    assert out[0]["after"]["amount"] == BIG  # the exact digits, a decimal string, never a float
    raw = (tmp_path / "out" / "changes.jsonl").read_bytes()
    assert b'"amount":"12345678901234567.89"' in raw

    dead = [
        orjson.loads(line)
        for line in (tmp_path / "dead" / "financial_validation.deadletter.jsonl").read_bytes().splitlines()
    ]
    reasons = {d["key"]["id"]: d["reason"] for d in dead}
    assert set(reasons) == {3, 4, 6}
    assert "3 decimal places (trailing zeros not counted); at most 2" in reasons[3] and "SOX" in reasons[3]
    assert {(d["stage"], d["kind"]) for d in dead} == {("middleware", "invalid_data")}
    assert "unknown currency code in currency" in reasons[4]
    assert "missing amount" in reasons[6]

    # Control totals equal the sink's content, exactly, per currency.
    totals = orjson.loads(cli_here("audit", "totals", str(tmp_path / "state"), "--json").stdout)["total"]
    held: dict[str, Decimal] = {}
    for e in out:
        held[e["after"]["currency"].upper()] = held.get(e["after"]["currency"].upper(), Decimal(0)) + Decimal(
            e["after"]["amount"]
        )
    assert "amount" not in totals  # per code only: currencies are never added together
    assert sum(totals[f"amount:{code}"]["count"] for code in held) == len(out)
    for code, value in held.items():
        assert Decimal(totals[f"amount:{code}"]["sum"]) == value

    # The signed log verifies and holds each delivered change once, with its exact images.
    log_dir = tmp_path / "state" / "audit_trail"
    done = cli_here("audit", "verify", str(log_dir), "--public-key", str(keys / "audit-public.pem"))
    assert done.returncode == 0, done.stdout + done.stderr
    records = [
        orjson.loads(line)
        for _, path in audit_log.segments(log_dir)
        for line in path.read_bytes().splitlines()
        if b'"kind":"change"' in line
    ]
    assert [(r["op"], r["after"]) for r in records] == [(e["op"], e["after"]) for e in out]
    assert all(p.stat().st_mode & 0o777 == 0o444 for _, p in audit_log.segments(log_dir))

    # `audit totals -c` finds the same file through the config's state directory.
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    by_config = cli_here("audit", "totals", "-c", str(tmp_path / "pipeline.yaml"), "--json")
    assert orjson.loads(by_config.stdout)["total"] == totals

    # Tampering with the real log: one byte, then a removed record; each named.
    segment = audit_log.segment_path(log_dir, 1)
    original = segment.read_bytes()
    segment.chmod(0o644)
    segment.write_bytes(original.replace(b"12345678901234567.89", b"12345678901234567.99", 1))
    done = cli_here("audit", "verify", str(log_dir), "--public-key", str(keys / "audit-public.pem"))
    assert done.returncode == 1 and "BAD: segment 1, line 2, record 1: altered" in done.stdout, done.stdout
    lines = original.splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:2] + lines[3:]))  # record 2 removed
    done = cli_here("audit", "verify", str(log_dir), "--public-key", str(keys / "audit-public.pem"))
    assert done.returncode == 1 and "BAD: segment 1, line 3, record 3: its prev is not" in done.stdout, (
        done.stdout
    )
