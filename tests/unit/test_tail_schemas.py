"""`cdc-logs tail --format json --schemas`: the JsonConverter form on stdout, as a user runs it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from cdc_logs.cli.tail_cmd import SchemaStdoutSink
from cdc_logs.errors import CdcError, ErrorKind
from tests.helpers import make_event


def _tail(db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cdc_logs",
            "tail",
            "--source",
            "sqlite",
            "--dsn",
            f"sqlite:///{db}",
            "--table",
            "t",
            "--snapshot",
            "--limit",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, blob BLOB)")
        conn.execute("INSERT INTO t VALUES (1, 'ada', 1.5, x'00ff'), (2, 'bob', NULL, NULL)")
    return db


def test_schemas_adds_the_schema_block_around_the_same_envelope(tmp_path: Path) -> None:
    db = _db(tmp_path)
    plain = _tail(db, "--format", "json")
    typed = _tail(db, "--format", "json", "--schemas")
    assert plain.returncode == 0 and typed.returncode == 0, plain.stderr + typed.stderr
    envelopes = [orjson.loads(line) for line in plain.stdout.splitlines()]
    records = [orjson.loads(line) for line in typed.stdout.splitlines()]
    assert len(records) == 2 and all(set(r) == {"schema", "payload"} for r in records)
    assert "schema" not in envelopes[0]  # the plain form is unchanged
    for envelope, record in zip(envelopes, records, strict=True):
        for part in ("before", "after", "op"):
            assert record["payload"][part] == envelope[part]
    schema = records[0]["schema"]
    assert schema["name"].endswith(".main.t.Envelope") and schema["version"] == 2
    fields = {f["field"]: f for f in schema["fields"]}
    row = {f["field"]: f for f in fields["after"]["fields"]}
    assert list(row) == ["id", "name", "score", "blob"]
    assert (
        row["id"]["type"] == "int64" and row["score"]["type"] == "double" and row["blob"]["type"] == "bytes"
    )
    assert row["score"]["optional"] is True
    # the key record is not printed (tail prints values), but the envelope's payload is the key's row
    assert records[1]["payload"]["after"] == {"id": 2, "name": "bob", "score": None, "blob": None}
    assert fields["source"]["name"] == "cdc_logs.connector.sqlite.Source"


def test_schemas_needs_json(tmp_path: Path) -> None:
    result = _tail(_db(tmp_path), "--schemas")
    assert result.returncode == 2 and "--schemas needs --format json" in result.stderr


def test_schemas_for_events_without_a_table_schema_says_to_drop_the_flag() -> None:
    # a `debezium` source reading a topic written without schemas: tail's fix is the flag, not the
    # destination setting `schemas: false` a sink's error names
    sink = SchemaStdoutSink("json")
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.USAGE
    assert "drop --schemas" in (err.value.hint or "") and "schemas: false" not in (err.value.hint or "")
