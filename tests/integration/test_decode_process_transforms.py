"""`cdc-logs run` with the decode process on (Postgres and MariaDB): a pipeline without transforms gets
each event's JSON made in the decode process, one with transforms must not, or the JSON written
would be the envelope before the transform changed it (ChangeEvent.encoded is a cache).

Both runs write a backlog of changes to a file: with a `mask` transform every written value of the
masked column is the pattern, and without it the file equals what the reader built.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

psycopg = pytest.importorskip("psycopg")

from cdc_logs.readers.mysql.connection import parse_dsn  # noqa: E402

pytestmark = pytest.mark.integration
ROWS = 3000
MASK = {"plugins": {"transformers": [{"type": "mask", "params": {"fields": ["v"], "strategy": "mask"}}]}}
RUNS = ("plain", "masked")


def _pg_source(dsn: str, name: str) -> tuple[dict[str, dict[str, Any]], Any]:
    """A slot per run, both made before the rows: each run reads the same changes."""
    db = psycopg.connect(dsn, autocommit=True)
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    db.execute(f"CREATE PUBLICATION {name}_pub FOR TABLE {name}")
    for run in RUNS:
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"{name}_{run}",))
    db.execute(f"INSERT INTO {name} SELECT g, 'secret ' || g FROM generate_series(1, {ROWS}) g")

    def cleanup() -> None:
        for run in RUNS:
            db.execute("SELECT pg_drop_replication_slot(%s)", (f"{name}_{run}",))
        db.execute(f"DROP PUBLICATION {name}_pub")
        db.execute(f"DROP TABLE {name}")
        db.close()

    source = {"type": "pg", "dsn": dsn, "tables": [f"public.{name}"], "publication": f"{name}_pub"}
    return {run: {**source, "slot": f"{name}_{run}"} for run in RUNS}, cleanup


def _mariadb_source(dsn: str, name: str) -> tuple[dict[str, dict[str, Any]], Any]:
    db = pymysql.connect(**parse_dsn(dsn).kwargs(), autocommit=True)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, v VARCHAR(40))")
        cur.execute("SELECT @@gtid_binlog_pos")
        (gtid,) = cur.fetchone()
        cur.execute(f"INSERT INTO {name} SELECT seq, CONCAT('secret ', seq) FROM seq_1_to_{ROWS}")

    def cleanup() -> None:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE {name}")
        db.close()

    source = {"type": "mariadb", "dsn": dsn, "tables": [f"test.{name}"], "binlog_config": {"gtid_set": gtid}}
    return {run: source for run in RUNS}, cleanup


def _run(tmp_path: Path, source: dict[str, Any], extra: dict[str, Any], key: str) -> list[dict[str, Any]]:
    out = tmp_path / f"{key}.jsonl"
    config = {
        "name": f"dpt-{key}-{uuid.uuid4().hex[:6]}",
        "source": {**source, "snapshot": False, "decode_process": "on"},
        "destination": {"type": "file", "path": str(out)},
        "offsets": {"type": "sqlite", "path": str(tmp_path / f"{key}.db")},
        **extra,
    }
    path = tmp_path / f"{key}.yaml"
    path.write_bytes(orjson.dumps(config))  # JSON is YAML
    done = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(path), "--limit", str(ROWS)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_a_transform_changes_what_is_written_when_decoding_runs_in_a_second_process(
    kind: str, pg_dsn: str, mariadb_dsn: str, tmp_path: Path
) -> None:
    name = "dpt_" + uuid.uuid4().hex[:10]
    make = _pg_source if kind == "postgres" else _mariadb_source
    sources, cleanup = make(pg_dsn if kind == "postgres" else mariadb_dsn, name)
    try:
        plain = _run(tmp_path, sources["plain"], {}, "plain")
        masked = _run(tmp_path, sources["masked"], MASK, "masked")
    finally:
        cleanup()
    assert len(plain) == len(masked) == ROWS
    assert {e["after"]["v"] for e in plain} == {f"secret {n}" for n in range(1, ROWS + 1)}
    assert {e["after"]["v"] for e in masked} == {"****"}, "the JSON written predates the transform"
