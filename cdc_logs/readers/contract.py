"""The event contract every reader keeps, as a checker (docs/event-contract.md explains each rule).

`ContractChecker.feed(item)` takes a reader's stream items one by one (events, heartbeats, idle ticks)
and records every broken rule; `violations` lists them. The suite runs it over the real output of
every reader (tests/matrix/test_event_contract.py), and a reader under development can run it too.

Rules:
  P1  every event has a position;
  P2  within a lane (kind, server, lane), stream events (c/u/d/t/m) have strictly increasing
      positions; snapshot rows (r) and heartbeats never go backwards;
  P3  a boundary (and a heartbeat) is a resume point: `event == 0`; a stream event that is not a
      boundary has `event >= 1`, so it can never be mistaken for one;
  T1  the events of one transaction (same `transaction.id`) are contiguous, numbered 1, 2, 3... by
      `total_order`, and per table by `data_collection_order`;
  T2  a transaction's last event is a boundary: nothing else comes before it closes (a source that
      resumes exactly mid-transaction, like Kafka offsets, may have boundaries inside one too);
  V1  values are JSON-ready: None, bool, int, float, str, bytes, lists and dicts of those;
  V2  `key` columns are present in the row with the same values;
  V3  the row shape fits the op (c/r: after; u: after; d: before; t: neither);
  V4  `source.snapshot` is "false" on stream events and one of true/first/last/incremental on rows;
  V5  the envelope serializes, and a schema, when attached, names every column of the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, Undecodable
from cdc_logs.position import Position

_SNAPSHOT_MARKS = {"true", "first", "last", "incremental"}
_SCALARS = (type(None), bool, int, float, str, bytes)


def json_ready(value: Any) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, list):
        return all(json_ready(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_ready(v) for k, v in value.items())
    return False


@dataclass
class _Tx:
    id: str
    total: int = 0
    per_table: dict[str, int] = field(default_factory=dict)


@dataclass
class ContractChecker:
    """`transactions=False` skips T1/T2 for a source that passes another producer's transaction
    blocks through unchanged (the Debezium source: Debezium 3.6 gives each event its own
    `transaction.id` "<xid>:<lsn>" while numbering the events of the transaction)."""

    transactions: bool = True
    violations: list[str] = field(default_factory=list)
    events: int = 0
    _last: dict[tuple[str, str, str], Position] = field(default_factory=dict)
    _tx: _Tx | None = None
    _boundary: bool = True  # whether the last event was a boundary
    _closed: set[str] = field(default_factory=set)

    def feed(self, item: ChangeEvent | Heartbeat | Undecodable | None) -> None:
        if item is None:
            return
        if isinstance(item, Heartbeat | Undecodable):
            self._heartbeat(item)
            return
        self.events += 1
        self._event(item)

    def check_all(self, items: list[ChangeEvent | Heartbeat | Undecodable | None]) -> list[str]:
        for item in items:
            self.feed(item)
        return self.violations

    # -- rules ---------------------------------------------------------------------------------------
    def _fail(self, rule: str, event: ChangeEvent | Heartbeat | Undecodable, text: str) -> None:
        where = ""
        if isinstance(event, ChangeEvent):
            where = f"{event.op.value} {event.source.qualified_table} key={event.key} "
        pos = event.position.describe() if event.position is not None else "no position"
        self.violations.append(f"{rule}: {where}at {pos}: {text}")

    def _lane(self, position: Position) -> tuple[str, str, str]:
        return (position.kind, position.server, position.lane())

    def _heartbeat(self, beat: Heartbeat | Undecodable) -> None:
        """A heartbeat, or a change the reader could not decode (it holds its change's place)."""
        pos = beat.position
        if beat.boundary and pos.event != 0:
            self._fail("P3", beat, "a resume point must have event 0")
        last = self._last.get(self._lane(pos))
        if last is not None and pos.lane_key() < last.lane_key():
            self._fail("P2", beat, f"heartbeat goes back from {last.describe()}")
        self._last[self._lane(pos)] = pos if last is None or last.lane_key() < pos.lane_key() else last
        if isinstance(beat, Heartbeat) and self._tx is not None and not self._boundary:
            self._fail("T2", beat, f"heartbeat inside transaction {self._tx.id}")

    def _event(self, event: ChangeEvent) -> None:
        pos = event.position
        snapshot_row = event.op is Op.READ
        if pos is None:
            self._fail("P1", event, "no position")
        else:
            lane = self._lane(pos)
            last = self._last.get(lane)
            if last is not None:
                if snapshot_row and pos.lane_key() < last.lane_key():
                    self._fail("P2", event, f"goes back from {last.describe()}")
                elif not snapshot_row and not last.lane_key() < pos.lane_key():
                    self._fail("P2", event, f"not after {last.describe()}")
            self._last[lane] = pos
            if event.boundary and pos.event != 0:
                self._fail("P3", event, "a boundary must be a resume point (event 0)")
            if not event.boundary and not snapshot_row and pos.event < 1:
                self._fail("P3", event, "a mid-transaction event must be past its resume point (event >= 1)")
        if self.transactions:
            self._transaction(event)
        self._values(event)

    def _transaction(self, event: ChangeEvent) -> None:
        tx = event.transaction
        current = self._tx
        if tx is None or current is None or current.id != tx.id:
            if current is not None:
                if not self._boundary:
                    self._fail("T2", event, f"transaction {current.id} ended without a boundary")
                self._closed.add(current.id)
            self._tx = current = None
            if tx is not None:
                if tx.id in self._closed:
                    self._fail("T1", event, f"transaction {tx.id} is not contiguous")
                self._tx = current = _Tx(tx.id)
        self._boundary = event.boundary
        if tx is None or current is None:
            return
        table = event.source.qualified_table
        current.total += 1
        current.per_table[table] = current.per_table.get(table, 0) + 1
        if tx.total_order != current.total:
            self._fail("T1", event, f"total_order {tx.total_order}, expected {current.total}")
        if tx.data_collection_order != current.per_table[table]:
            self._fail("T1", event, f"data_collection_order {tx.data_collection_order}")

    def _values(self, event: ChangeEvent) -> None:
        op = event.op
        for part in ("before", "after", "key"):
            value = getattr(event, part)
            if value is not None and not (isinstance(value, dict) and json_ready(value)):
                bad = {k: type(v).__name__ for k, v in (value or {}).items() if not json_ready(v)}
                self._fail("V1", event, f"{part} is not JSON-ready: {bad}")
        shape_ok = {
            Op.CREATE: event.after is not None and event.before is None,
            Op.READ: event.after is not None and event.before is None,
            Op.UPDATE: event.after is not None,
            Op.DELETE: event.before is not None and event.after is None,
            Op.TRUNCATE: event.before is None and event.after is None,
            Op.MESSAGE: event.content is not None,
        }[op]
        if not shape_ok:
            self._fail("V3", event, "before/after do not fit the op")
        row = event.after if event.after is not None else event.before
        if event.key and row is not None:
            for name, value in event.key.items():
                if name in row and row[name] != value:
                    self._fail("V2", event, f"key {name}={value!r} but the row has {row[name]!r}")
        marker = event.source.snapshot
        if (op is Op.READ) != (marker in _SNAPSHOT_MARKS) or (op is not Op.READ and marker != "false"):
            self._fail("V4", event, f"source.snapshot is {marker!r} on op {op.value}")
        try:
            event.to_json()
        except TypeError as exc:
            self._fail("V5", event, f"does not serialize: {exc}")
        if event.schema is not None and row is not None:
            missing = [name for name in row if event.schema.column(name) is None]
            if missing:
                self._fail("V5", event, f"columns {missing} are not in the attached schema")
