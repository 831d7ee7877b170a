"""Replay protection shared by the sinks that can store a marker beside the data (Redis, SQL),
and stable per-event ids for the ones whose server deduplicates (NATS `Nats-Msg-Id`).

Replays come from the at-least-once contract: after a crash, or a reader restart, the pipeline
re-sends everything after the last checkpoint. The event contract (docs/event-contract.md) gives every
stream event its own position, increasing within its lane and the same on replay, so a replay is
recognised exactly:

**Markers.** Per (source server, position kind, source table, lane) the sink stores the position of
the last event it applied, in the same atomic write as the data. A sink stores them under its owner
(`<pipeline>/<destination name>`) and prefixes each key with the target the event went to
(schema.table, stream), so two pipelines, or two targets of one, never read each other's marker: one
pipeline's marker says nothing about what another applied (`owner`, `targeted`). An incoming event
is skipped when its position is at or below the marker. The marker is per table: a table's events
arrive in position order, so a marker at P proves every earlier event of that table was applied.

Snapshot rows (op "r") are always applied and never move a marker: a snapshot that is read again
after a crash reads the rows as they are now, which is never older than what was applied, and rows
of one snapshot chunk may share a position.

Markers written before positions were unique (`complete: false`) keep their old meaning: an event
at exactly that position is applied again. So do events whose number past the resume point is not
replay-stable (polled rows sharing one timestamp, `Position.replayable_event`): they are compared by
resume point only, so a replay of such a group may apply some of its rows twice, never skip one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from cdc_logs.envelope import ChangeEvent, Op, dumps
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
    """Which marker guards `event`: None when nothing guards it (no position, or a snapshot row)."""
    pos = event.position
    if pos is None or event.op is Op.READ:
        return None
    src = event.source
    key = f"{pos.kind}|{pos.server}|{src.db}.{src.schema or ''}.{src.table}"
    lane = pos.lane()
    return f"{key}|{lane}" if lane else key


def owner(pipeline: str, name: str) -> str:
    """Whose markers: pipeline names are letters, digits, `_ . -`, so the first `/` splits this."""
    return f"{pipeline}/{name}"


def targeted(target: str, event: ChangeEvent) -> str | None:
    """The marker key of `event` written to `target` (a table, a stream): None when nothing guards it."""
    key = marker_key(event)
    return None if key is None else f"{target}|{key}"


class ReplayGuard:
    """Holds the durable markers (as last committed) and decides which events of a batch are new.

    Use: `plan(batch)` -> (events to apply, changed markers); write both atomically; then
    `committed(changed)`. If the write fails, nothing changes here and the retry plans again.
    """

    def __init__(self, key: Callable[[ChangeEvent], str | None] = marker_key) -> None:
        self.markers: dict[str, Marker] = {}
        self.key = key  # which marker guards an event (`targeted` for a sink with several targets)

    def plan(self, batch: Sequence[ChangeEvent]) -> tuple[list[ChangeEvent], dict[str, Marker]]:
        fresh: list[ChangeEvent] = []
        changed: dict[str, Marker] = {}
        for event in batch:
            key = self.key(event)
            if key is None:
                fresh.append(event)
                continue
            assert event.position is not None
            current = changed.get(key) or self.markers.get(key)
            if current is not None and _applied(event.position, current):
                continue  # applied before: a replay
            fresh.append(event)
            changed[key] = Marker(event.position, True)
        return fresh, changed

    def committed(self, changed: dict[str, Marker]) -> None:
        self.markers.update(changed)


def _applied(position: Position, marker: Marker) -> bool:
    mine, theirs = position.lane_key(), marker.position.lane_key()
    if not position.replayable_event():
        # Events past one resume point may be numbered differently on a replay: only a resume point
        # below the marker's proves the event was applied; at the same one it is applied again.
        return mine[:-1] < theirs[:-1]
    return mine < theirs or (mine == theirs and marker.complete)


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
            pos = event.position.bare().encode()  # a reader's snapshot state is not the event's place
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
