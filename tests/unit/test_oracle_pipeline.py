"""The Oracle reader through the real pipeline into the file sink and the SQL sink (SQLite), on
recorded LogMiner rows replayed at its connection boundary (tests/unit/oracle_replay.py: recorded
data, not a server; no Oracle server runs here). The reader x sink matrix has an Oracle case too,
replayed the same way (tests/matrix/oracle_redo.py), which needs the stack's sinks; this one runs
without any server.

The pipeline is stopped after a few events (its checkpoint holds the last boundary the sinks made
durable), then run again from the stored position: the file sink's log holds every change exactly
once, and the SQL sink mirrors the table as the recorded transactions leave it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from cdc_logs.build import build_sink
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.position import OracleScn
from cdc_logs.readers.oracle.logs import WindowSizer
from cdc_logs.readers.oracle.reader import OracleReader
from cdc_logs.sinks.file import FileSinkConfig
from cdc_logs.sinks.sql import SqlSinkConfig
from tests.unit.oracle_replay import ReplaySession, load

FIXTURE = load("logminer_session.json")

#: HR.EMP's NAME per ID once every recorded transaction is applied (T2's row 2 deleted by T8; T3
#: rolled back; row 6 undone inside T4).
FINAL_NAMES = {
    1: "Anne",
    3: "O'Brien",
    5: "Eva",
    7: "Name with a very long text " + "x" * 60 + " end",
    9: "Nine",
    10: "Five",
    11: "Six",
}


def pipeline(tmp: Path, offsets: MemoryOffsetStore, limit: int | None) -> Pipeline:
    reader = OracleReader(
        lambda: ReplaySession(FIXTURE),
        ["HR.EMP"],
        pipeline_name="ora",
        start_scn=1000,
        poll_interval_s=0.01,
        window=WindowSizer(4, 2, 8),
        heartbeat_interval_s=0,
        idle_tick_s=0.05,
        redo_flush_lag_s=0,  # recorded rows: all of their redo is there
    )
    sinks = [
        build_sink(FileSinkConfig(type="file", path=str(tmp / "changes.jsonl")), "ora"),
        build_sink(
            SqlSinkConfig(type="sqlite", url=f"sqlite:///{tmp / 'target.db'}", table="emp", auto_create=True),
            "ora",
        ),
    ]
    return Pipeline(
        "ora",
        {"oracle": reader},
        sinks,
        offsets,
        batch=BatchPolicy(max_events=3, max_wait_s=0.01),
        retry=RetryPolicy(max_attempts=1, initial_backoff_s=0.01, max_backoff_s=0.01),
        limit=limit,
        stop_when_idle=True,
    )


def test_stop_then_resume_delivers_everything_once_to_file_and_sql(tmp_path: Path) -> None:
    offsets = MemoryOffsetStore()
    pipeline(tmp_path, offsets, limit=4).run()
    stored = offsets.load("ora", "oracle")
    assert stored is not None
    first = stored.decoded()
    assert isinstance(first, OracleScn) and first.xid  # a transaction boundary, mid-fixture
    pipeline(tmp_path, offsets, limit=None).run()
    log = [orjson.loads(line) for line in (tmp_path / "changes.jsonl").read_bytes().splitlines()]
    keys = [(e["transaction"]["id"], e["transaction"]["total_order"]) for e in log]
    assert len(keys) == len(set(keys)) == 12  # every change of the fixture, none twice
    conn = sqlite3.connect(tmp_path / "target.db")
    try:
        rows = dict(conn.execute("SELECT ID, NAME FROM emp").fetchall())
        salary = conn.execute("SELECT SALARY FROM emp WHERE ID = 3").fetchone()[0]
    finally:
        conn.close()
    assert rows == FINAL_NAMES
    assert str(salary) == "2000"


def test_schema_blocks_name_the_oracle_source_struct() -> None:
    """`schemas: true` / Avro: the events carry their table's schema, and the source struct is Debezium's
    Oracle one."""
    from cdc_logs import connect_schema
    from tests.unit.test_oracle_reader import events, run

    items, _, _ = run()
    event = events(items)[0]
    record = orjson.loads(connect_schema.envelope_record(event))
    source = next(f for f in record["schema"]["fields"] if f["field"] == "source")
    assert source["name"] == "io.debezium.connector.oracle.Source"
    assert {f["field"] for f in source["fields"]} >= {"txId", "scn", "commit_scn"}
    after = next(f for f in record["schema"]["fields"] if f["field"] == "after")
    assert [f["field"] for f in after["fields"]] == ["ID", "NAME", "SALARY", "HIRED", "UPDATED", "PHOTO"]


def test_tail_source_oracle_prints_envelopes(tmp_path: Path) -> None:
    """`cdc-logs tail --source oracle --snapshot --format json --limit 3`, as a user runs it, with the
    recorded rows replayed at the connection boundary (tests/matrix/oracle_replay_run.py: the CLI with
    the replay where the connection is)."""
    import json
    import os
    import subprocess
    import sys

    from tests.matrix.oracle_redo import ENV

    root = tmp_path / "redo"
    root.mkdir()
    (root / "catalog.json").write_text(json.dumps(FIXTURE["tables"]))
    (root / "redo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FIXTURE["rows"]))
    (root / "scn.json").write_text(json.dumps({"scn": FIXTURE["current_scn"]}))
    recorded = FIXTURE["snapshot"]["HR.EMP"]["rows"]
    (root / "snapshot.json").write_text(json.dumps({"scn": FIXTURE["current_scn"], "rows": recorded}))
    launcher = Path(__file__).resolve().parents[1] / "matrix" / "oracle_replay_run.py"
    argv = ["tail", "--source", "oracle", "--dsn", "oracle://cdc:pw@replay:1521/FREE", "--table", "HR.EMP"]
    proc = subprocess.run(
        [sys.executable, str(launcher), *argv, "--snapshot", "--format", "json", "--limit", "3"],
        capture_output=True,
        timeout=120,
        env={**os.environ, ENV: str(root)},
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["op"], e["after"]["ID"], e["source"]["snapshot"]) for e in lines] == [
        ("r", 100, "first"),
        ("r", 101, "true"),
        ("r", 102, "last"),
    ]
    assert lines[0]["source"]["connector"] == "oracle" and lines[0]["after"]["NAME"] == "Pre'existing"
