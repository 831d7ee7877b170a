"""`capture: auto | poll` on the stack: the log when the doctor's checks pass, polling when not.

- With the stack's role (REPLICATION, wal_level=logical) auto chooses the log.
- With a fresh role without REPLICATION (created here, dropped after) auto chooses polling; a
  `cdc-logs run` delivers inserts and updates made while it runs, warns at start-up what polling
  cannot see, and /ready's details carry the choice, the failed check and the caveats.
- MariaDB: auto chooses the binlog for the stack's user `cdc` (REPLICATION SLAVE), and polls for the
  stack's `cdc_poll` (SELECT on `test` only: readers/mariadb/setup.sql); `capture: poll` delivers
  inserts and updates through SQLAlchemy from the same settings.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import pytest

from cdc_logs.build import build_reader
from cdc_logs.configfile import parse_config
from cdc_logs.readers.capture import CaptureReader
from cdc_logs.readers.mysql.connection import parse_dsn

pytestmark = pytest.mark.integration


def _source(dsn: str, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "postgres",
        "dsn": dsn,
        "tables": [table],
        "capture": "auto",
        "poll": {"timestamp_column": "updated_at", "incrementing_column": "id", "interval_ms": 100},
        **extra,
    }


def test_auto_chooses_the_log_when_the_checks_pass(pg_dsn: str) -> None:
    uid = "capauto_" + uuid.uuid4().hex[:8]
    cfg = parse_config(
        {"name": uid, "source": _source(pg_dsn, "public.nothing"), "destination": {"type": "stdout"}}, {}
    )
    reader = build_reader(cfg.all_sources()[0], uid)
    assert isinstance(reader, CaptureReader)
    reader._choose()  # the choice alone: no slot is created
    assert reader.chosen == "log" and reader.reasons == [] and reader.caveats == []


def test_auto_polls_for_a_role_without_replication(pg_dsn: str, tmp_path: Path) -> None:
    uid = "capauto_" + uuid.uuid4().hex[:8]
    table = f"public.{uid}"
    password = uuid.uuid4().hex
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {uid} LOGIN NOREPLICATION PASSWORD '{password}'")
        conn.execute(
            f"CREATE TABLE {table} (id serial PRIMARY KEY, note text, "
            "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(f"GRANT SELECT ON {table} TO {uid}")
        conn.execute(f"INSERT INTO {table} (note) VALUES ('before the run')")
    parts = urlsplit(pg_dsn)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    role_dsn = urlunsplit((parts.scheme, f"{uid}:{password}@{host}", parts.path, parts.query, ""))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        json.dumps(
            {
                "name": uid,
                "source": _source(role_dsn, table),
                "destination": {"type": "file", "path": str(out)},
                "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
                "sync": {"batch": {"max_wait_ms": 50}},
            }
        )
    )
    doctor = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # The failed log check is a warning (auto will poll), the polling checks pass, the caveats are said.
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "REPLICATION privilege" in doctor.stdout and "deletes are not seen" in doctor.stdout, doctor.stdout
    log = tmp_path / "run.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config), "--http-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=tmp_path,
        )
    try:

        def rows() -> list[dict[str, Any]]:
            return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

        deadline = time.monotonic() + 60
        while len(rows()) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} (note) VALUES ('while polling')")
            conn.execute(f"UPDATE {table} SET note = 'updated', updated_at = clock_timestamp() WHERE id = 1")
        while len(rows()) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert [(r["after"]["id"], r["after"]["note"]) for r in rows()] == [
            (1, "before the run"),
            (2, "while polling"),
            (1, "updated"),
        ]
        text = log.read_text()
        assert "capturing by polling" in text and "REPLICATION privilege" in text, text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            body = json.loads(resp.read())
        capture = body["sources"]["postgres"]["capture"]
        assert capture["mode"] == "auto" and capture["chosen"] == "poll"
        assert any(r.startswith("REPLICATION privilege") for r in capture["because"])
        assert any("deletes are not seen" in c for c in capture["cannot_see"])
        assert any("intermediate states" in c for c in capture["cannot_see"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"DROP ROLE IF EXISTS {uid}")


def test_mariadb_auto_chooses_the_binlog(mariadb_dsn: str) -> None:
    uid = "capauto_" + uuid.uuid4().hex[:8]
    source = {
        "type": "mariadb",
        "dsn": mariadb_dsn,
        "tables": ["test.nothing"],
        "capture": "auto",
        "poll": {"incrementing_column": "id"},
    }
    cfg = parse_config({"name": uid, "source": source, "destination": {"type": "stdout"}}, {})
    reader = build_reader(cfg.all_sources()[0], uid)
    assert isinstance(reader, CaptureReader)
    reader._choose()
    assert reader.chosen == "log" and reader.reasons == []


def test_mariadb_capture_poll_delivers(mariadb_dsn: str, tmp_path: Path) -> None:
    uid = "cappoll_" + uuid.uuid4().hex[:8]
    settings = parse_dsn(mariadb_dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {uid} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50), "
                "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            )
            cur.execute(f"INSERT INTO {uid} (note) VALUES ('before')")
        out = tmp_path / "out.jsonl"
        config = tmp_path / "pipeline.yaml"
        config.write_text(
            json.dumps(
                {
                    "name": uid,
                    "source": {
                        "type": "mariadb",
                        "dsn": mariadb_dsn,
                        "tables": [f"{settings.database}.{uid}"],
                        "capture_mode": "polling",  # the seed's name
                        "poll": {
                            "timestamp_column": "updated_at",
                            "incrementing_column": "id",
                            "interval_ms": 100,
                        },
                    },
                    "destination": {"type": "file", "path": str(out)},
                    "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
                    "sync": {"batch": {"max_wait_ms": 50}},
                }
            )
        )
        log = tmp_path / "run.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=tmp_path,
            )
        try:

            def rows() -> list[dict[str, Any]]:
                return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

            deadline = time.monotonic() + 60
            while len(rows()) < 1:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {uid} (note) VALUES ('while polling')")
                cur.execute(f"UPDATE {uid} SET note = 'updated', updated_at = NOW(6) WHERE id = 1")
            while len(rows()) < 3:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert [(r["after"]["id"], r["after"]["note"]) for r in rows()] == [
                (1, "before"),
                (2, "while polling"),
                (1, "updated"),
            ]
            assert "capturing by polling" in log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {uid}")
        conn.close()


def test_mariadb_auto_polls_for_a_user_without_replication(mariadb_dsn: str, tmp_path: Path) -> None:
    """`capture: auto` with a user that may read the tables but not the binlog (the stack's
    `cdc_poll`: SELECT on `test` only, readers/mariadb/setup.sql): the binlog checks fail, so the
    run polls, says so at start-up and in /ready, and delivers inserts and updates."""
    uid = "capauto_" + uuid.uuid4().hex[:8]
    settings = parse_dsn(mariadb_dsn)
    parts = urlsplit(mariadb_dsn)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    poll_dsn = urlunsplit((parts.scheme, f"cdc_poll:cdc_poll@{host}", parts.path, parts.query, ""))
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {uid} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50), "
                "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
            )
            cur.execute(f"INSERT INTO {uid} (note) VALUES ('before the run')")
        out = tmp_path / "out.jsonl"
        config = tmp_path / "pipeline.yaml"
        source = {
            "type": "mariadb",
            "dsn": poll_dsn,
            "tables": [f"{settings.database}.{uid}"],
            "capture": "auto",
            "poll": {"timestamp_column": "updated_at", "incrementing_column": "id", "interval_ms": 100},
        }
        config.write_text(
            json.dumps(
                {
                    "name": uid,
                    "source": source,
                    "destination": {"type": "file", "path": str(out)},
                    "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
                    "sync": {"batch": {"max_wait_ms": 50}},
                }
            )
        )
        log = tmp_path / "run.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(config), "--http-port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=tmp_path,
            )
        try:

            def rows() -> list[dict[str, Any]]:
                return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

            deadline = time.monotonic() + 60
            while len(rows()) < 1:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {uid} (note) VALUES ('while polling')")
                cur.execute(f"UPDATE {uid} SET note = 'updated', updated_at = NOW(6) WHERE id = 1")
            while len(rows()) < 3:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            assert [(r["after"]["id"], r["after"]["note"]) for r in rows()] == [
                (1, "before the run"),
                (2, "while polling"),
                (1, "updated"),
            ]
            text = log.read_text()
            assert "capturing by polling" in text and "REPLICATION SLAVE" in text, text
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
                body = json.loads(resp.read())
            capture = next(iter(body["sources"].values()))["capture"]
            assert capture["mode"] == "auto" and capture["chosen"] == "poll", capture
            assert any("REPLICATION SLAVE" in r for r in capture["because"]), capture
            assert any("deletes are not seen" in c for c in capture["cannot_see"]), capture
            assert "cdc_poll:cdc_poll" not in text and "cdc_poll:cdc_poll" not in json.dumps(body)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {uid}")
        conn.close()
