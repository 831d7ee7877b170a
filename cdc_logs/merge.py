"""Multi-source merge: the seed's pipeline-level `merge_strategy` (docs/configuration.md, "Merging
several sources").

Every source has its own reader thread feeding the pipeline's one queue, so without a strategy the
pipeline delivers items in the order they *arrived* from the readers. That is `key_based`: the events
of one key (from one source or several) reach every sink in arrival order, and nothing is buffered.

`timestamp_based` puts a bounded reordering window between the queue and the batcher
(`TimestampMerge`): each source is a FIFO lane, and the lane head with the smallest event time
(`source.ts_ms`) is released first. Rules, each one needed for the delivery guarantees:

- A source's own order is never changed: only lane heads are ever released, so two events of the same
  source leave in the order the source gave them (per-key order and the event contract hold).
- A head is released when no other source can still send an earlier event: every other lane has a
  head (which is later, as the smallest was picked) or its source reported idle (an idle tick or a
  heartbeat after its last event). Otherwise it waits at most `window_s` from its arrival, or until
  `max_held` events are held (memory stays bounded), then goes out anyway, still in merge order.
- An event whose time is before the last released event time arrived too late for the window: it is
  released at once (with what its lane holds before it, in merge order), never dropped, counted in
  `cdc_logs_merge_late_events_total{source}` and logged. Any event released below the released time (also
  one that its own source emitted out of time order) is counted the same way.
- Positions: the pipeline numbers items for the checkpoint only when they leave the merge, so a held
  event has no sequence number yet and nothing of its source after it can be committed (those items
  sit behind it in its lane). A source's checkpoint therefore never passes an event still held.
- Heartbeats and undecodable items carry positions but no data to order: at a lane's head they leave
  at once; behind events they keep their place.
- An event without a time (ts_ms 0) takes its lane's previous time, so it stays with its neighbours.

Trade-off of idle sources: an idle source does not hold the others back (its idle tick says it has
nothing pending), so if it then sends an event older than what was already released (a commit read
late), that event is late. A source that neither sends nor ticks (reconnecting) holds the others at
most `window_s`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics

__all__ = ["TimestampMerge"]

Payload = ChangeEvent | Heartbeat | Undecodable

log = get_logger(__name__)

_LOG_EVERY_S = 10.0  # late events are logged at most this often per source, with the count since


@dataclass(slots=True)
class _Held:
    payload: Payload
    ts: int  # event time used for ordering (ChangeEvents only)
    arrived: float  # monotonic seconds
    order: int  # arrival number: ties in ts leave in arrival order


class TimestampMerge:
    """The reordering window of `timestamp_based` (rules in the module docstring). Not thread-safe:
    the pipeline's main thread alone calls it."""

    def __init__(
        self,
        sources: Iterable[str],
        window_s: float,
        *,
        max_held: int = 10_000,
        metrics: Metrics | None = None,
    ) -> None:
        self.window_s = window_s
        self.max_held = max_held
        self.metrics = metrics or Metrics.disabled()
        self._lanes: dict[str, deque[_Held]] = {s: deque() for s in sources}
        self._caught_up: dict[str, bool] = dict.fromkeys(self._lanes, False)
        self._last_ts: dict[str, int] = dict.fromkeys(self._lanes, 0)
        self._force: _Held | None = None  # a late event: release in merge order until it is out
        self._order = 0
        self.held = 0
        self.watermark = 0  # the highest event time released so far
        self.late: Counter[str] = Counter()
        self._late_logged: dict[str, tuple[float, int]] = {}

    # -- input -----------------------------------------------------------------------------------
    def push(self, source: str, payload: Payload, now: float) -> None:
        """An item read from `source`, in that source's order."""
        if isinstance(payload, Heartbeat):
            self._caught_up[source] = True  # at a position with nothing pending
            ts = self._last_ts[source]
        else:
            self._caught_up[source] = False
            ts = payload.source.ts_ms if isinstance(payload, ChangeEvent) else 0
            ts = ts or self._last_ts[source]
            self._last_ts[source] = ts
        self._order += 1
        held = _Held(payload, ts, now, self._order)
        self._lanes[source].append(held)
        self.held += 1
        if isinstance(payload, ChangeEvent) and ts < self.watermark and self._force is None:
            self._force = held  # too late for the window: out at once, with its lane before it

    def idle(self, source: str) -> None:
        """`source` has nothing pending (an idle tick): it holds no other source back."""
        self._caught_up[source] = True

    # -- output ----------------------------------------------------------------------------------
    def release(self, now: float) -> list[tuple[str, Payload]]:
        """Everything that may leave now, in merge order."""
        out: list[tuple[str, Payload]] = []
        while self.held:
            self._release_positions(out)
            source = self._min_head()
            if source is None:
                break
            forced = self._force is not None or self.held > self.max_held or self._overdue(now)
            if not forced and not self._others_clear(source):
                break
            self._emit(source, out)
        return out

    def drain(self) -> list[tuple[str, Payload]]:
        """Everything held, in merge order (the pipeline is ending: deliver what was read)."""
        out: list[tuple[str, Payload]] = []
        while self.held:
            self._release_positions(out)
            source = self._min_head()
            if source is not None:
                self._emit(source, out)
        return out

    def due_in(self, now: float) -> float | None:
        """Seconds until the oldest held head must leave (None: nothing held)."""
        heads = [lane[0].arrived for lane in self._lanes.values() if lane]
        return None if not heads else max(0.0, min(heads) + self.window_s - now)

    @property
    def empty(self) -> bool:
        return self.held == 0

    # -- internals -------------------------------------------------------------------------------
    def _release_positions(self, out: list[tuple[str, Payload]]) -> None:
        for source, lane in self._lanes.items():
            while lane and not isinstance(lane[0].payload, ChangeEvent):
                self._emit(source, out)

    def _min_head(self) -> str | None:
        best: str | None = None
        best_key = (0, 0)
        for source, lane in self._lanes.items():
            if lane and (best is None or (lane[0].ts, lane[0].order) < best_key):
                best, best_key = source, (lane[0].ts, lane[0].order)
        return best

    def _others_clear(self, source: str) -> bool:
        return all(lane or self._caught_up[other] for other, lane in self._lanes.items() if other != source)

    def _overdue(self, now: float) -> bool:
        due = self.due_in(now)
        return due is not None and due <= 0

    def _emit(self, source: str, out: list[tuple[str, Payload]]) -> None:
        held = self._lanes[source].popleft()
        self.held -= 1
        if held is self._force:
            self._force = None
        if isinstance(held.payload, ChangeEvent):
            if held.ts < self.watermark:
                self._count_late(source, held)
            else:
                self.watermark = held.ts
        out.append((source, held.payload))

    def _count_late(self, source: str, held: _Held) -> None:
        self.late[source] += 1
        self.metrics.merge_late_event(source)
        last, count = self._late_logged.get(source, (0.0, 0))
        now = time.monotonic()
        if now - last < _LOG_EVERY_S:
            self._late_logged[source] = (last, count + 1)
            return
        self._late_logged[source] = (now, 0)
        log.warning(
            "late event released out of event-time order (merge_strategy timestamp_based)",
            source=source,
            behind_ms=self.watermark - held.ts,
            late_since_last_log=count + 1,
            late_total=self.late[source],
            hint="raise merge_window_ms if this is frequent; late events are delivered, never dropped",
        )
