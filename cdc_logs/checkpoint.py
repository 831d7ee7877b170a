"""Checkpoint tracking: which source position is safe to commit.

Every event gets a sequence number when it enters the pipeline. Each sink acknowledges sequence
numbers once they are durable. The committable position of a source is the position of the highest
*boundary* event (last of its transaction, or a heartbeat) whose sequence number is at or below every
sink's acknowledgement. Anything later is still in flight, so a crash replays it: at-least-once,
never lost.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from cdc_logs.position import Position


@dataclass(slots=True)
class _Mark:
    seq: int
    source: str
    position: Position


class Checkpointer:
    """Tracks in-flight boundary positions per source and the durable sequence per sink."""

    def __init__(self, sinks: list[str]) -> None:
        if not sinks:
            raise ValueError("a pipeline needs at least one sink")
        self._acked: dict[str, int] = dict.fromkeys(sinks, 0)
        self._marks: deque[_Mark] = deque()
        self._next_seq = 1
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        """Assign the next sequence number (one per event or heartbeat, in source order)."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def track(self, seq: int, source: str, position: Position | None, boundary: bool) -> None:
        """Remember a position that may be committed once `seq` is durable everywhere."""
        if position is None or not boundary:
            return
        with self._lock:
            self._marks.append(_Mark(seq, source, position))

    def ack(self, sink: str, seq: int) -> None:
        """`sink` holds every event up to and including `seq` durably."""
        with self._lock:
            if seq > self._acked[sink]:
                self._acked[sink] = seq

    def durable_seq(self) -> int:
        with self._lock:
            return min(self._acked.values())

    def behind(self, seq: int) -> list[str]:
        """The sinks that do not hold everything up to `seq` yet."""
        with self._lock:
            return [sink for sink, acked in self._acked.items() if acked < seq]

    def take_committable(self, limit: int | None = None) -> dict[str, Position]:
        """Pop and return, per source, the highest position now durable in every sink (and at or
        below sequence number `limit`, when given: stateful middleware's last snapshot, stages.py)."""
        out: dict[str, Position] = {}
        with self._lock:
            durable = min(self._acked.values())
            if limit is not None:
                durable = min(durable, limit)
            while self._marks and self._marks[0].seq <= durable:
                mark = self._marks.popleft()
                out[mark.source] = mark.position
        return out

    def pending(self) -> int:
        """Number of boundary marks not yet durable in every sink."""
        with self._lock:
            return len(self._marks)
