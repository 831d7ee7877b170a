"""The one workload every reader x sink cell runs, as logical operations with typed values.

Each source case turns the operations into its own SQL; the model here says what the source table
holds afterwards (`expected_state`) and which changes a log-based reader must deliver for each key,
in order (`expected_changes`). Values cover every common type, negative and fractional values, dates
around the epoch, 4-byte UTF-8, bytes with zeros, JSON, and a row of NULLs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

COLUMNS = ("n", "big", "dec", "dbl", "txt", "flag", "d", "ts3", "ts6", "tstz", "tm", "bin", "js", "note")
SNAPSHOT_IDS = tuple(range(500, 510))  # rows that exist before the pipeline starts
BIG_TX = range(1000, 11000)  # one 10,000-row transaction
SENTINEL = 999_999  # written last: when every sink holds it, the drain is complete


def values(row_id: int, version: int) -> dict[str, Any]:
    """Row `row_id` at `version`: deterministic, typed, covering the interesting cases."""
    sign = -1 if row_id % 3 == 0 else 1
    return {
        "n": version * 10 + row_id % 7 - 3,
        "big": sign * row_id * 10**12 + version,
        "dec": (sign * Decimal(row_id) + Decimal(version) / 1000).quantize(Decimal("0.001")),
        "dbl": row_id / 8 + version * 0.25 - 3.5,
        "txt": f"row {row_id} v{version} ü✓😀 'q' \"dq\"",
        "flag": (row_id + version) % 2 == 0,
        "d": dt.date(1969, 12, 30) + dt.timedelta(days=row_id % 400 + version),
        "ts3": dt.datetime(1969, 12, 31, 23, 59, 59, 123000) + dt.timedelta(minutes=row_id, days=version),
        "ts6": dt.datetime(2024, 2, 29, 12, 0, 0, 123456) + dt.timedelta(seconds=row_id, days=version),
        "tstz": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        + dt.timedelta(hours=row_id % 5000, microseconds=version),
        "tm": dt.time(row_id % 24, version % 60, 30, 654321),
        "bin": bytes([row_id % 256, 0, 255, version % 256]),
        "js": {"id": row_id, "v": version, "tags": ["a", "ü"], "nested": {"x": None}},
        "note": None if row_id % 5 == 0 else f"note {row_id}",
    }


def nulls(row_id: int) -> dict[str, Any]:
    """A row whose every column but the key is NULL."""
    return dict.fromkeys(COLUMNS)


@dataclass(frozen=True)
class Op:
    kind: str  # insert | update | delete | move (an update of the primary key)
    row_id: int
    version: int = 0
    new_id: int | None = None
    null: bool = False

    def row(self) -> dict[str, Any]:
        return nulls(self.row_id) if self.null else values(self.new_id or self.row_id, self.version)


@dataclass(frozen=True)
class Tx:
    ops: tuple[Op, ...]
    rollback: bool = False


def _ins(*ids: int, version: int = 0) -> tuple[Op, ...]:
    return tuple(Op("insert", i, version) for i in ids)


def transactions(*, deletes: bool = True, moves: bool = True) -> list[Tx]:
    """The stream part of the workload (after the snapshot rows). Polling cannot see hard deletes or
    primary-key changes: its case passes deletes/moves False and gets soft deletes instead."""
    txs = [
        Tx(_ins(1, 2, 3, 4, 5)),  # a multi-row transaction
        Tx((Op("update", 2, 1), *_ins(6), Op("delete", 3))),
        Tx((Op("insert", 7), Op("update", 1, 9)), rollback=True),  # rolled back: never seen
        Tx((Op("insert", 8, null=True),)),
        Tx(tuple(Op("insert", i) for i in BIG_TX)),  # the large transaction
        Tx(
            tuple(Op("update", i, 1) for i in range(1000, 1100))
            + tuple(Op("delete", i) for i in range(1100, 1150))
        ),
        Tx((Op("update", 1, 1),)),
        Tx((Op("update", 1, 2),)),
        Tx((Op("update", 1, 3),)),
        Tx((Op("update", 5, 1), Op("update", 5, 2))),  # one key twice in one transaction
        Tx((Op("update", 501, 1), Op("delete", 502))),  # changes to snapshot rows
    ]
    if moves:
        txs.insert(3, Tx((Op("move", 4, 1, new_id=104),)))  # an update that changes the primary key
    if not deletes:
        txs = [Tx(tuple(o for o in tx.ops if o.kind != "delete"), tx.rollback) for tx in txs]
        txs.append(Tx(tuple(Op("soft_delete", i) for i in (3, 502, *range(1100, 1150)))))
    return txs


def sentinel() -> Tx:
    return Tx(_ins(SENTINEL))


@dataclass
class Model:
    """What the source holds and which changes each key went through."""

    state: dict[int, dict[str, Any]] = field(default_factory=dict)
    changes: dict[int, list[str]] = field(default_factory=dict)

    def apply(self, tx: Tx) -> None:
        if tx.rollback:
            return
        for op in tx.ops:
            if op.kind == "insert":
                self.state[op.row_id] = op.row()
                self.changes.setdefault(op.row_id, []).append("c")
            elif op.kind == "update":
                self.state[op.row_id] = op.row()
                self.changes.setdefault(op.row_id, []).append("u")
            elif op.kind in ("delete", "soft_delete"):
                self.state.pop(op.row_id, None)
                self.changes.setdefault(op.row_id, []).append("d")
            elif op.kind == "move":
                assert op.new_id is not None
                self.state.pop(op.row_id, None)
                self.state[op.new_id] = op.row()
                self.changes.setdefault(op.row_id, []).append("d")
                self.changes.setdefault(op.new_id, []).append("c")


def expected(*, deletes: bool = True, moves: bool = True) -> Model:
    model = Model()
    for row_id in SNAPSHOT_IDS:
        model.state[row_id] = values(row_id, 0)
        model.changes[row_id] = ["r"]
    for tx in [*transactions(deletes=deletes, moves=moves), sentinel()]:
        model.apply(tx)
    return model
