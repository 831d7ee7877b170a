"""Shared pieces of the event-bus source tests (MQTT, NATS): the pipeline file, the SQL apply target,
the file sink read back, and the checks of a run that was SIGKILLed and started again.

Every message is `{"id": i, "device": ..., "v": i * 7}` with a unique id, so each line of the file sink
names the message it came from. The pipeline runs as a user runs it (`python -m cdc_logs run -c`,
tests/chaos/killkit.Runs), on the direct delivery path (fan-out off): every batch is written to the
file and then to the SQL target, and only then committed, so a kill repeats at most the batch in
flight.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.chaos.killkit import Runs

BATCH = 50  # sync.batch.max_events


def body(i: int) -> bytes:
    return orjson.dumps({"id": i, "device": f"dev{i % 3}", "v": i * 7})


POISON = b'{"id": "not closed'


class Target:
    """The SQL apply sink's SQLite file, its table created here (the sink only writes rows). Triggers
    log every row write the sink makes into `audit`, so a message applied twice shows."""

    TABLE = "readings"

    def __init__(self, path: Path) -> None:
        self.path = path
        t = self.TABLE
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.executescript(f"""
                CREATE TABLE {t} (id INTEGER PRIMARY KEY, device TEXT, v BIGINT);
                CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER);
                CREATE TRIGGER {t}_i AFTER INSERT ON {t} BEGIN INSERT INTO audit (id) VALUES (NEW.id); END;
                CREATE TRIGGER {t}_u AFTER UPDATE ON {t} BEGIN INSERT INTO audit (id) VALUES (NEW.id); END;
            """)

    def writes(self) -> int:
        """Row writes the sink made (inserts and updates)."""
        with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as conn:
            return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])

    def destination(self) -> dict[str, Any]:
        return {"name": "apply", "type": "sqlite", "url": f"sqlite:///{self.path}", "table": self.TABLE}

    def rows(self) -> dict[int, int]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as conn:
            return {int(i): int(v) for i, v in conn.execute(f"SELECT id, v FROM {self.TABLE}")}


def file_ids(path: Path) -> list[int]:
    """The ids of the file sink's complete lines, in file order."""
    if not path.exists():
        return []
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    return [int(orjson.loads(line)["after"]["id"]) for line in data.splitlines()]


def write_pipeline(tmp: Path, name: str, source: dict[str, Any], target: Target) -> Runs:
    config = {
        "name": name,
        "source": {"name": "bus", **source},
        "destinations": [
            {"name": "archive", "type": "file", "path": str(tmp / "out.jsonl")},
            target.destination(),
        ],
        "offsets": {"type": "sqlite", "path": str(tmp / "offsets.db")},
        "sync": {
            "batch": {"max_events": BATCH, "max_wait_ms": 20},
            "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 500},
            "fanout": {"enabled": False},
            "dead_letters": {"dir": str(tmp / "dead")},
        },
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Runs(tmp, path, name)


def dead_letters(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "dead" / "bus.undecodable.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def check_delivery(
    tmp: Path, target: Target, n: int, *, at_kill: list[int], ordered: bool = True
) -> dict[str, Any]:
    """Every message 0..n-1 in the file and the SQL target; a run started after a kill repeats only
    messages written before (the batch in flight at the kill: at most one batch); with `ordered`, the
    first occurrences are in publish order. `at_kill`: the file's complete lines at each kill. Returns
    facts to print."""
    ids = file_ids(tmp / "out.jsonl")
    missing, unexpected = sorted(set(range(n)) - set(ids)), sorted(set(ids) - set(range(n)))
    assert not missing and not unexpected, f"file sink: missing {missing[:10]}, unexpected {unexpected[:10]}"
    firsts: list[int] = []
    per_kill: list[int] = []  # messages each restarted run wrote again
    seen: set[int] = set()
    bounds = [*at_kill, len(ids)]
    start = 0
    for n_run, end in enumerate(bounds):
        again = [i for i in ids[start:end] if i in seen]
        for i in ids[start:end]:
            if i not in seen:
                firsts.append(i)
                seen.add(i)
        if n_run:
            per_kill.append(len(again))
        else:
            assert not again, "the first run wrote a message twice"
        start = end
    assert all(k <= BATCH for k in per_kill), (
        f"repeated messages per restart {per_kill}: more than the batch in flight ({BATCH})"
    )
    if ordered:
        assert firsts == list(range(n)), "the messages' first deliveries are not in publish order"
    rows = target.rows()
    assert rows == {i: i * 7 for i in range(n)}, f"SQL target: {len(rows)} rows, expected {n}"
    return {"lines": len(ids), "repeated_per_restart": per_kill, "sql_writes": target.writes()}


def check_poison(tmp: Path, kills: int, **origin: Any) -> None:
    """The poison message is in the dead letters with the reason, its bytes and where it came from.
    Like any message of the batch in flight at a kill, it can be parked once more by the next run."""
    letters = dead_letters(tmp)
    assert 1 <= len(letters) <= 1 + kills, letters
    for letter in letters:
        assert "not JSON" in letter["reason"], letter["reason"]
        assert letter["raw"] == {"encoding": "utf-8", "data": POISON.decode()}
        for key, value in origin.items():
            assert letter["origin"][key] == value, (key, letter["origin"])
