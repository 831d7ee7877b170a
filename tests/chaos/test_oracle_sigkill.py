"""Chaos: SIGKILL `cdc-logs run` (oracle -> file sink) at random points while transactions commit.

No Oracle server can run here: the source is the replay the matrix uses (tests/matrix/oracle_redo.py,
FileReplaySession standing where the reader's connection stands, started through
tests/matrix/oracle_replay_run.py), fed by a writer that appends LogMiner rows as a database would
commit them. Recorded-style data, not a server; the reader, its restart SCN logic, the pipeline's
checkpoints and the file sink are the product's.

The writer keeps some transactions open across others' commits (so a committed position's restart
SCN lags its commit SCN, and a restart must mine an open transaction again from its start) and rolls
some back. Judged: every committed change reaches the file, each transaction whole; nothing of a
rolled-back one does; duplicates only for what was in flight at each kill.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.matrix.oracle_redo import ENV

pytestmark = pytest.mark.chaos

BATCH = 20
TRANSACTIONS = 300
KILLS = 6
LAUNCHER = Path(__file__).resolve().parents[1] / "matrix" / "oracle_replay_run.py"
Ident = tuple[Any, ...]
OPERATIONS = {1: "INSERT", 2: "DELETE", 3: "UPDATE", 6: "START", 7: "COMMIT", 36: "ROLLBACK"}


class Writer:
    """Appends LogMiner rows for table CHAOS."T" (id, v): START, DML, COMMIT / undo rows + ROLLBACK."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.scn = 100
        self.txn = 0
        self.next_id = 1
        self.v = 0
        self.live: dict[int, int] = {}  # committed rows id -> v
        self.committed: list[list[Ident]] = []  # per committed transaction, in commit order
        self.rolled_back: set[Ident] = set()

    def _row(
        self, code: int, xid: str, sql: str | None, rowid: str = "", rollback: int = 0
    ) -> dict[str, Any]:
        self.scn += 1
        dml = code in (1, 2, 3)
        return {
            "SCN": self.scn, "START_SCN": None, "COMMIT_SCN": self.scn if code == 7 else None, "XID": xid,
            "OPERATION_CODE": code,
            "OPERATION": OPERATIONS[code],
            "SEG_OWNER": "CHAOS" if dml else None, "TABLE_NAME": "T" if dml else None, "SQL_REDO": sql,
            "CSF": 0, "ROLLBACK": rollback, "RS_ID": f" 0x000001.{self.scn:08x}.0010 ", "SSN": 0,
            "ROW_ID": rowid or "AAAAAAAAAAAAAAAAAA", "TIMESTAMP": dt.datetime(2026, 1, 1).isoformat(),
        }  # fmt: skip

    def _append(self, rows: list[dict[str, Any]]) -> None:
        with open(self.root / "redo.jsonl", "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        tmp = self.root / "scn.tmp"
        tmp.write_text(json.dumps({"scn": self.scn}))
        os.replace(tmp, self.root / "scn.json")

    def begin(self) -> tuple[str, list[Ident], dict[int, int]]:
        self.txn += 1
        xid = f"{self.txn:016X}"
        self._append([self._row(6, xid, "set transaction read write;")])
        return xid, [], {}

    def change(self, xid: str, idents: list[Ident], mine: dict[int, int], undo: list[dict[str, Any]]) -> None:
        """One change of an open transaction: rows it inserted itself are its own to update or delete."""
        self.v += 1
        choice = self.rng.random()
        rowid = lambda i: f"AAACH{i:013d}"  # noqa: E731
        if not mine or choice < 0.5:
            i, self.next_id = self.next_id, self.next_id + 1
            sql = f'insert into "CHAOS"."T"("ID","V") values (\'{i}\',\'{self.v}\');'
            row = self._row(1, xid, sql, rowid(i))
            undo.append(
                self._row(
                    2,
                    xid,
                    f'delete from "CHAOS"."T" where "ID" = \'{i}\' and "V" = \'{self.v}\';',
                    rowid(i),
                    1,
                )
            )
            mine[i] = self.v
            idents.append(("c", i, self.v))
        elif choice < 0.8:
            i = self.rng.choice(list(mine))
            old = mine[i]
            sql = f'update "CHAOS"."T" set "V" = \'{self.v}\' where "ID" = \'{i}\' and "V" = \'{old}\';'
            row = self._row(3, xid, sql, rowid(i))
            undo.append(
                self._row(
                    3,
                    xid,
                    f'update "CHAOS"."T" set "V" = \'{old}\' where "ID" = \'{i}\' and "V" = \'{self.v}\';',
                    rowid(i),
                    1,
                )
            )
            mine[i] = self.v
            idents.append(("u", i, self.v))
        else:
            i = self.rng.choice(list(mine))
            sql = f'delete from "CHAOS"."T" where "ID" = \'{i}\' and "V" = \'{mine.pop(i)}\';'
            row = self._row(2, xid, sql, rowid(i))
            undo.append(
                self._row(1, xid, f'insert into "CHAOS"."T"("ID","V") values (\'{i}\',\'0\');', rowid(i), 1)
            )
            idents.append(("d", i))
        self._append([row])

    def end(self, xid: str, idents: list[Ident], undo: list[dict[str, Any]], rollback: bool) -> None:
        if rollback:
            rows = []
            for row in reversed(undo):
                self.scn += 1
                row["SCN"] = self.scn
                rows.append(row)
            self._append([*rows, self._row(36, xid, "rollback;")])
            self.rolled_back.update(idents)
        else:
            self._append([self._row(7, xid, "commit;")])
            self.committed.append(idents)

    def run(self, done: threading.Event, go: threading.Event) -> None:
        """Transactions of 1-4 changes; about one in three stays open across the next 1-6 commits. It
        writes while `go` is set (a run is streaming), so kills land while transactions are open."""
        held: list[tuple[int, str, list[Ident], list[dict[str, Any]]]] = []  # (commits to wait, ...)
        for _ in range(TRANSACTIONS):
            go.wait()
            xid, idents, mine = self.begin()
            undo: list[dict[str, Any]] = []
            for _ in range(self.rng.randint(1, 4)):
                self.change(xid, idents, mine, undo)
                time.sleep(self.rng.uniform(0, 0.004))
            if len(held) < 2 and self.rng.random() < 0.33:
                held.append((self.rng.randint(1, 6), xid, idents, undo))
                continue
            self.end(xid, idents, undo, rollback=self.rng.random() < 0.1)
            still = []
            for wait, *tx in held:
                if wait <= 1:
                    self.end(tx[0], tx[1], tx[2], rollback=False)
                else:
                    still.append((wait - 1, *tx))
            held = still  # type: ignore[assignment]
            time.sleep(self.rng.uniform(0, 0.02))
        for _, *tx in held:
            self.end(tx[0], tx[1], tx[2], rollback=False)
        done.set()


def _ident(envelope: dict[str, Any]) -> Ident:
    if envelope["op"] == "d":
        return ("d", int(envelope["before"]["ID"]))
    return (envelope["op"], int(envelope["after"]["ID"]), int(envelope["after"]["V"]))


def _start(config: Path, cwd: Path, root: Path) -> subprocess.Popen[bytes]:
    with open(cwd / "run.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(LAUNCHER), "run", "-c", str(config)],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=log,
            # The waits read info lines: never inherit a quieter level.
            env={**os.environ, ENV: str(root), "CDC_LOG_LEVEL": "info", "CDC_LOG_FORMAT": "console"},
        )


def _wait_streaming(proc: subprocess.Popen[bytes], log: Path, runs: int) -> None:
    """Until the `runs`-th run has started its source (a kill during Python's start proves nothing)."""
    deadline = time.monotonic() + 90
    while log.read_text(errors="replace").count("source started") < runs:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"run {runs} did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.05)


def test_sigkill_at_random_points_loses_nothing_and_keeps_transactions_whole(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CDC_CHAOS_SEED", "20261206")))
    root = tmp_path / "redo"
    root.mkdir()
    catalog = [
        {"COLUMN_NAME": "ID", "DATA_TYPE": "NUMBER", "DATA_LENGTH": 22, "DATA_PRECISION": 10, "DATA_SCALE": 0,
         "NULLABLE": "N", "PK": True},
        {"COLUMN_NAME": "V", "DATA_TYPE": "NUMBER", "DATA_LENGTH": 22, "DATA_PRECISION": 18, "DATA_SCALE": 0,
         "NULLABLE": "Y", "PK": False},
    ]  # fmt: skip
    (root / "catalog.json").write_text(json.dumps({"CHAOS.T": catalog}))
    (root / "redo.jsonl").write_text("")
    (root / "scn.json").write_text(json.dumps({"scn": 100}))
    out = tmp_path / "out" / "changes.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: chaos-oracle
source:
  type: oracle
  dsn: oracle://replay@replay:1521/REPLAY
  tables: [CHAOS.T]
  logminer_config: {{start_scn: 100}}
  window_scns: 40
  min_window_scns: 10
  max_window_scns: 200
  poll_interval_ms: 20
  heartbeat_interval_ms: 200
  redo_flush_lag_ms: 0
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: {BATCH}, max_wait_ms: 20}}
"""
    )
    writer = Writer(root, rng)
    done, go = threading.Event(), threading.Event()
    thread = threading.Thread(target=writer.run, args=(done, go), daemon=True)
    log = tmp_path / "run.log"
    proc = _start(config, tmp_path, root)
    thread.start()
    kills = 0
    try:
        while kills < KILLS:
            _wait_streaming(proc, log, kills + 1)
            go.set()  # the writer runs while this run streams, and is killed in the middle
            time.sleep(rng.uniform(0.2, 0.8))
            go.clear()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = _start(config, tmp_path, root)
        _wait_streaming(proc, log, kills + 1)
        go.set()
        thread.join(120)
        assert done.is_set(), "the writer did not finish"
        expected = {i for tx in writer.committed for i in tx}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen = (
                {_ident(orjson.loads(line)) for line in out.read_bytes().splitlines()}
                if out.exists()
                else set()
            )
            if expected <= seen:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    envelopes = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    seen_list = [_ident(e) for e in envelopes]
    seen = set(seen_list)
    missing = expected - seen
    assert not missing, f"{len(missing)} committed changes lost, e.g. {sorted(missing)[:5]}"
    leaked = seen & writer.rolled_back
    assert not leaked, f"changes of rolled-back transactions delivered: {sorted(leaked)[:5]}"
    assert seen <= expected, f"changes nobody committed: {sorted(seen - expected)[:5]}"
    duplicates = len(seen_list) - len(seen)
    assert duplicates <= kills * (BATCH + 4), f"{duplicates} duplicates for {kills} kills"
    # Each transaction arrives whole and contiguous, in commit order (a replay may repeat a tail).
    by_tx: dict[str, list[Ident]] = {}
    for envelope, one in zip(envelopes, seen_list, strict=True):
        by_tx.setdefault(envelope["transaction"]["id"], []).append(one)
    for idents in writer.committed:
        if idents:
            tx_seen = next(v for v in by_tx.values() if idents[0] in v)
            assert set(tx_seen) == set(idents), "a transaction arrived in part"
    assert kills == KILLS
