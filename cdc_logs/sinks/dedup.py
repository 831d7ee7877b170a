"""Replay protection shared by the sinks that can store a marker beside the data (Redis, SQL),
and stable per-event ids for the ones whose server deduplicates (NATS `Nats-Msg-Id`).

Replays come from the at-least-once contract: after a crash, or a reader restart, the pipeline
re-sends everything after the last checkpoint, which is always a transaction boundary. Events of a
transaction may share one position (a commit LSN; a primary-key change is a delete and an insert at
one position), and a batch may end in the middle of a transaction.

**Markers.** Per (source server, position kind, source table) the sink stores the position of the
last event it applied and whether that event closed its transaction (`boundary`), in the same atomic
write as the data. An incoming event is skipped when its position is below the marker, or equal to a
marker whose transaction was complete. An event equal to an *incomplete* marker is applied: it is
either the rest of a transaction cut by a batch, or a replay of its first part; the latter duplicates
(never loses) the events of that one transaction. The marker is per table, not per source, so a
transaction that touches two tables leaves the first table's marker incomplete until that table's
next change; replaying it then repeats those few events. Order is safe: a table's events arrive in
position order, so a marker at P proves every earlier event of that table was applied.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from cdc_logs.envelope import ChangeEvent, dumps
from cdc_logs.position import Position, decode


@dataclass(frozen=True, slots=True)
class Marker:
    position: Position
    complete: bool

    def encode(self) -> str:
        return orjson.dumps({"position": self.position.encode(), "complete": self.complete}).decode()

    @classmethod
    def decode(cls, text: str | bytes) -> Marker:
        data = orjson.loads(text)
        return cls(decode(data["position"]), bool(data["complete"]))


def marker_key(event: ChangeEvent) -> str | None:
    """Which marker guards `event`: None when it carries no position (it is always applied)."""
    pos = event.position
    if pos is None:
        return None
    src = event.source
    return f"{pos.kind}|{pos.server}|{src.db}.{src.schema or ''}.{src.table}"


class ReplayGuard:
    """Holds the durable markers (as last committed) and decides which events of a batch are new.

    Use: `plan(batch)` -> (events to apply, changed markers); write both atomically; then
    `committed(changed)`. If the write fails, nothing changes here and the retry plans again.
    """

    def __init__(self) -> None:
        self.markers: dict[str, Marker] = {}

    def plan(self, batch: Sequence[ChangeEvent]) -> tuple[list[ChangeEvent], dict[str, Marker]]:
        fresh: list[ChangeEvent] = []
        changed: dict[str, Marker] = {}
        for event in batch:
            key = marker_key(event)
            if key is None:
                fresh.append(event)
                continue
            assert event.position is not None
            current = changed.get(key) or self.markers.get(key)
            if current is not None and (
                event.position < current.position or (event.position == current.position and current.complete)
            ):
                continue  # applied before: a replay
            fresh.append(event)
            changed[key] = Marker(event.position, event.boundary)
        return fresh, changed

    def committed(self, changed: dict[str, Marker]) -> None:
        self.markers.update(changed)


class EventIds:
    """Stable ids for events, for servers that drop a message whose id they have seen.

    id = digest(position, key, op, before, after) + "-" + occurrence, where occurrence counts
    identical events at the same position (an UPDATE that flips a value and flips it back). The
    digest, not a counter alone, keeps ids stable when a replay restarts in the middle of a
    transaction; the counter is carried across batches only while the position stays the same.
    """

    def __init__(self) -> None:
        self._position: str | None = None
        self._seen: dict[str, int] = {}

    def assign(self, batch: Sequence[ChangeEvent]) -> tuple[list[str], tuple[str | None, dict[str, int]]]:
        """Ids for `batch` and the state to keep once it is delivered (`commit`)."""
        position, seen = self._position, dict(self._seen)
        ids: list[str] = []
        for event in batch:
            if event.position is None:
                ids.append(uuid.uuid4().hex)  # nothing stable to derive an id from: no dedup
                continue
            pos = event.position.encode()
            if pos != position:
                position, seen = pos, {}
            body = dumps(
                [pos, event.source.qualified_table, event.key, event.op.value, event.before, event.after]
            )
            digest = hashlib.sha256(body).hexdigest()[:32]
            count = seen.get(digest, 0)
            seen[digest] = count + 1
            ids.append(f"{digest}-{count}")
        return ids, (position, seen)

    def commit(self, state: tuple[str | None, dict[str, int]]) -> None:
        self._position, self._seen = state
