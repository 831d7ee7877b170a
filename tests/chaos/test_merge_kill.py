"""Chaos: `merge_strategy: timestamp_based` with two real SQLite sources, SIGKILLed while it delivers.

Two databases each get 1,500 changes (inserts and updates), written alternately so that their event
times (`source.ts_ms`, set by the capture triggers) interleave. `cdc-logs run` (a subprocess) delivers
them to a file sink and is killed three times mid-way, then runs to the end and is stopped. Judged:

1. event-time interleaving: what each run wrote is in `source.ts_ms` order across the two sources
   (both sources' backlogs are there when a run starts, so nothing may come out late);
2. per-source order: each source's changes, read in file order, are its commit order with replays
   only where a run starts, and the replay starts exactly at the position committed for that source
   when the previous run was killed;
3. checkpoints: after each kill, each source's committed position (offset store, one row per source)
   is a change the file already held (never one still held in the merge window or not written);
4. nothing lost and duplicates bounded: every change is in the file; each kill repeats at most one
   batch (the batch written but not yet committed).
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

pytestmark = pytest.mark.chaos

CHANGES = 1500  # per source
BATCH = 20
KILLS = 3
SOURCES = {"left": "ta", "right": "tb"}  # source name -> its table (in its own database)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def _write_backlog(tmp: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Alternate single-change transactions on the two databases; returns each source's changes
    (op, id, v) in commit order."""
    conns = {name: _connect(tmp / f"{name}.db") for name in SOURCES}
    made: dict[str, list[tuple[str, int, int]]] = {name: [] for name in SOURCES}
    v = 0
    try:
        for i in range(CHANGES):
            for name, table in SOURCES.items():
                v += 1
                if i % 4 == 3:  # an update of an earlier row (inserted at i - 3): per-key order matters
                    row = i - 2
                    conns[name].execute(f"UPDATE {table} SET v = ? WHERE id = ?", (v, row))
                    made[name].append(("u", row, v))
                else:
                    conns[name].execute(f"INSERT INTO {table} (id, v) VALUES (?, ?)", (i + 1, v))
                    made[name].append(("c", i + 1, v))
            time.sleep(0.001)  # event times of the two sources interleave
    finally:
        for conn in conns.values():
            conn.close()
    return made


def _lines(path: Path) -> list[dict[str, Any]]:
    """The file sink's complete lines (a line torn by a kill is cut off when the next run opens it)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def _committed(offsets: Path, pipeline: str) -> dict[str, int]:
    """Per source, the change id its committed position stands at."""
    if not offsets.exists():
        return {}
    with contextlib.closing(sqlite3.connect(offsets, timeout=30)) as conn:
        rows = conn.execute("SELECT source, position FROM cdc_offsets WHERE pipeline = ?", (pipeline,))
        return {source: int(orjson.loads(position)["values"][0]) for source, position in rows}


class Run:
    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp, self.config, self.n = tmp, config, 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.n += 1
        with open(self.tmp / f"run{self.n}.log", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(self.config)],
                cwd=self.tmp,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def log(self) -> str:
        return (self.tmp / f"run{self.n}.log").read_text(errors="replace")

    def wait(self, what: str, predicate: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"run {self.n} exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting until {what}:\n{self.log()[-3000:]}")
            time.sleep(0.01)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _ident(envelope: dict[str, Any]) -> tuple[str, int, int]:
    return (envelope["op"], int(envelope["after"]["id"]), int(envelope["after"]["v"]))


def test_timestamp_merge_of_two_sqlite_sources_under_sigkill(tmp_path: Path) -> None:
    for name, table in SOURCES.items():
        with contextlib.closing(_connect(tmp_path / f"{name}.db")) as conn:
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v BIGINT)")
    out = tmp_path / "out.jsonl"
    offsets = tmp_path / "offsets.db"
    pipeline = "merge-kill"
    config = {
        "name": pipeline,
        "sources": [
            {
                "name": name,
                "type": "sqlite",
                "path": str(tmp_path / f"{name}.db"),
                "tables": [table],
                "snapshot": False,
                "poll_interval_ms": 20,
            }
            for name, table in SOURCES.items()
        ],
        "merge_strategy": "timestamp_based",
        "merge_window_ms": 5000,
        "destination": {"type": "file", "path": str(out)},
        "offsets": {"type": "sqlite", "path": str(offsets)},
        "sync": {"batch": {"max_events": BATCH, "max_wait_ms": 20}, "dead_letters": {"enabled": False}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = Run(tmp_path, path)
    try:
        # A first run registers both consumers (from then on the triggers keep their changes).
        run.start()
        run.wait("both sources started", lambda: set(_committed(offsets, pipeline)) == set(SOURCES))
        assert run.signal(signal.SIGTERM) == 0
        initial = _committed(offsets, pipeline)
        made = _write_backlog(tmp_path)
        total = sum(len(v) for v in made.values())

        kills: list[tuple[int, dict[str, int]]] = []  # (lines the file held, committed change ids)
        for k in range(KILLS):
            run.start()
            target = (k + 1) * total // (KILLS + 2)
            run.wait(f"{target} lines", lambda t=target: len(_lines(out)) >= t)  # type: ignore[misc]
            run.signal(signal.SIGKILL)
            kills.append((len(_lines(out)), _committed(offsets, pipeline)))
        run.start()
        everything = {e for changes in made.values() for e in changes}
        run.wait("every change delivered", lambda: everything <= {_ident(e) for e in _lines(out)})
        assert run.signal(signal.SIGTERM) == 0
    finally:
        run.close()

    lines = _lines(out)
    starts = [0, *[held for held, _ in kills]]  # the first line each run wrote

    # 1. event-time order within each run, across the sources
    for n, (begin, end) in enumerate(zip(starts, [*starts[1:], len(lines)], strict=True)):
        times = [e["source"]["ts_ms"] for e in lines[begin:end]]
        behind = [i for i in range(1, len(times)) if times[i] < max(times[:i])]
        assert not behind, f"run {n + 2} wrote {len(behind)} events behind a later event time: {behind[:5]}"
        tables = [e["source"]["table"] for e in lines[begin:end]]
        if len(tables) > 50:
            switches = sum(a != b for a, b in itertools.pairwise(tables))
            assert switches > len(tables) // 4, f"run {n + 2} did not interleave the sources: {switches}"

    for name, table in SOURCES.items():
        mine = [(i, e) for i, e in enumerate(lines) if e["source"]["table"] == table]
        change_id = {_ident(e): int(e["source"]["change_id"]) for _i, e in mine}
        order = {ident: i for i, ident in enumerate(made[name])}
        # 3. checkpoints: at each kill, a change the file already held (or the start position)
        for held, committed in kills:
            written = {int(e["source"]["change_id"]) for i, e in mine if i < held}
            assert committed[name] in written | {initial[name]}, (
                f"{name}: committed change {committed[name]} at a kill, but the file held only up to "
                f"{max(written, default=None)}"
            )
        # 2. per-source order: commit order, each run starting right after its committed position
        expected = 0
        run_starts = {_first_after(mine, held): committed[name] for held, committed in kills}
        for line, envelope in mine:
            index = order[_ident(envelope)]
            if line in run_starts:
                resume = sum(1 for ident in made[name] if change_id[ident] <= run_starts[line])
                assert index == resume, (
                    f"{name}: the run from line {line} starts at change {index}, not {resume}"
                )
            else:
                assert index == expected, f"{name}: line {line} is change {index}, expected {expected}"
            expected = index + 1
        assert expected == len(made[name]), f"{name}: changes from {expected} on are missing"
    # 4. nothing lost (checked above), duplicates at most one batch per kill
    assert len(lines) - total <= KILLS * BATCH, f"{len(lines) - total} duplicates for {KILLS} kills"


def _first_after(mine: list[tuple[int, dict[str, Any]]], held: int) -> int | None:
    """The first line at or after `held` that belongs to this source."""
    return next((i for i, _e in mine if i >= held), None)
