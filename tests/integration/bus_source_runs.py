"""Running an event-bus source end to end, as a user runs it: `cdc-logs run -c pipeline.yaml` (a
subprocess) into a file sink and the SQL apply sink (a SQLite file), killed and restarted at will.

The messages are rows {"id": i, "v": i} (ids 1..N, each published once), so every sink line names
the message it came from. The SQL target (tests/chaos/killkit.SqlTarget) logs every row write the
sink makes into `audit`, so a message applied twice shows. The judge (`judge_kills`) reads the file
sink in order and, for each SIGKILL, counts how many messages the next run wrote again.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.chaos.killkit import Runs, SqlTarget

BATCH = 50  # sync.batch.max_events


def pipeline(tmp: Path, name: str, source: dict[str, Any], sql: SqlTarget, *, one_time: bool = False) -> Runs:
    """Write the pipeline file (file sink + SQL apply, batches written to each in turn) and return its
    runner."""
    config = {
        "name": name,
        "source": source,
        "destinations": [
            {"name": "archive", "type": "file", "path": str(tmp / "out" / "events.jsonl")},
            sql.destination(),
        ],
        "offsets": {"type": "sqlite", "path": str(tmp / "offsets.db")},
        "sync": {
            "mode": "one_time" if one_time else "continuous",
            "batch": {"max_events": BATCH, "max_wait_ms": 20},
            "retry": {"max_attempts": 50, "initial_backoff_ms": 100, "max_backoff_ms": 500},
            # Each batch goes to the file, then to SQL, then the position is committed: a kill
            # replays at most the batch in flight (fan-out would let the file run ahead of SQL).
            "fanout": {"enabled": False},
            "dead_letters": {"dir": str(tmp / "dead")},
        },
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Runs(tmp, path, name)


def row(i: int) -> bytes:
    return orjson.dumps({"id": i, "v": i})


def file_ids(tmp: Path) -> list[int]:
    """The ids of the file sink's complete lines, in order."""
    path = tmp / "out" / "events.jsonl"
    if not path.exists():
        return []
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    return [int(orjson.loads(line)["after"]["id"]) for line in data.splitlines()]


def dead_letters(tmp: Path, source: str) -> list[dict[str, Any]]:
    path = tmp / "dead" / f"{source}.undecodable.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_once(runs: Runs, timeout: float = 60) -> None:
    """A one_time run: it delivers what there is and exits 0."""
    runs.start()
    assert runs.proc is not None
    try:
        runs.proc.wait(timeout)
    except Exception:
        runs.close()
        pytest.fail("the one_time run did not finish:\n" + runs.log_text()[-3000:], pytrace=False)
    assert runs.proc.returncode == 0, runs.log_text()[-3000:]


def wait_for(what: str, predicate: Any, runs: Runs, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        runs.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}:\n" + runs.log_text()[-3000:], pytrace=False)
        time.sleep(0.02)


def kill_and_restart(runs: Runs, tmp: Path, kill_at: list[int]) -> list[int]:
    """SIGKILL the running pipeline each time the file holds `kill_at[k]` lines, start it again; the
    complete lines the file held at each kill."""
    held = []
    for target in kill_at:
        wait_for(f"the file sink holds {target} lines", lambda t=target: len(file_ids(tmp)) >= t, runs)
        runs.kill()
        held.append(len(file_ids(tmp)))
        runs.start()
    return held


def judge_kills(ids: list[int], n: int, held: list[int], max_repeat: int = BATCH) -> list[int]:
    """Every message 1..n is in the file; after each kill the next run repeats at most `max_repeat`
    (one batch, for sources whose commit returns when the server has it) of what was there; nothing
    is repeated except right after a kill. Returns the repeats per kill."""
    want = set(range(1, n + 1))
    assert set(ids) == want, (
        f"missing: {sorted(want - set(ids))[:20]}, unknown: {sorted(set(ids) - want)[:20]}"
    )
    repeats = []
    for start, end in zip(held, [*held[1:], len(ids)], strict=True):
        before = set(ids[:start])
        repeated = [i for i in ids[start:end] if i in before]
        repeats.append(len(repeated))
        assert len(repeated) <= max_repeat, (
            f"the run after the kill at line {start} repeated {len(repeated)} messages"
        )
        # The repeats are the first lines the run wrote: a replay of what was in flight, then new ones.
        assert all(i in before for i in ids[start : start + len(repeated)]), (
            f"the run after the kill at line {start} repeated messages past its first lines"
        )
    assert len(ids[: held[0]]) == len(set(ids[: held[0]])), "the first run wrote a message twice"
    return repeats


def sql_rows(sql: SqlTarget) -> dict[int, int]:
    return sql.state()


def close_quietly(runs: Runs) -> None:
    with contextlib.suppress(Exception):
        runs.close()
