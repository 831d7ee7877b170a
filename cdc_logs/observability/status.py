"""Health state of a running pipeline: what `/ready` and `/health` answer, and why.

The pipeline and the fan-out workers report what happens through one-line hooks (thread-safe and
cheap: a lock and a few assignments, once per batch; `source_moved`, once per event, is a set's
`add`); the HTTP endpoints ask `readiness()` and `liveness()`, which
return (ok, reasons) with one line per problem naming the sink or source.

Sequence numbers are the pipeline's (one per event or heartbeat): `submitted(seq)` says data up to
`seq` was handed to every sink, `sink_acked(name, seq)` that a sink holds everything up to `seq`.
A sink with submitted data it does not hold yet has *data waiting*; a sink without is idle, and an
idle sink is never a reason to fail, however long ago it last wrote.

Not ready (503) when
  * the pipeline is not running (starting, stopping, stopped, waiting for its next cron run);
  * a sink has data waiting and accepted no write for `sink_stall_s`;
  * a sink dead-lettered an event in the last `dead_letter_window_s`;
  * a monitor set a `condition` (retention.py: data not yet delivered is older than the retention);
  * a source's lag is past its `max_lag` with `on_max_lag: not_ready` or `stop` (the lag monitor,
    observability/lag.py, reports it through `source_lag`);
  * a source has not moved for `source_stall_s`: no event and no heartbeat (sources that send no
    heartbeats, like SQLite and polling, also count a completed poll, the idle tick). For a source
    with heartbeats, the threshold is at least three heartbeat intervals. While a sink has data
    waiting, a silent source is held back by backpressure, so it is named only if it is failing.
Not alive (`/health` 503) when
  * data waits and nothing was delivered to every sink for `stuck_s` (no commit can happen);
  * the pipeline stopped, or the thread running it died without stopping.
A threshold of 0 turns its check off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc_logs.observability.logging import redact


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    sink_stall_s: float = 60.0
    dead_letter_window_s: float = 300.0
    source_stall_s: float = 60.0
    stuck_s: float = 300.0


@dataclass(slots=True)
class _Sink:
    acked: int = 0
    last_write: float | None = None  # last write accepted (or acknowledgement)
    waiting_since: float | None = None  # data submitted that the sink does not hold yet
    failures: int = 0  # consecutive failed writes
    last_error: str | None = None
    dead_letters: int = 0
    last_dead_letter: float | None = None
    dead_letter_error: str | None = None


@dataclass(slots=True)
class _Source:
    heartbeat_s: float  # > 0: the reader sends heartbeats this often, so idle ticks do not count
    moved: float  # last event or heartbeat (start time until the first)
    tick: float  # last idle tick
    failures: int = 0
    last_error: str | None = None
    progress: Callable[[], list[Any]] | None = None  # the reader's snapshot_progress
    heartbeat: float | None = None  # last heartbeat that reached the pipeline
    beats: bool = False  # the reader sends heartbeats (Postgres heartbeat_interval_s, MySQL heartbeat_s)
    position: str | None = None  # last committed position, described
    committed_at: float | None = None
    committed_wall: float | None = None  # time.time() of that commit
    lag: dict[str, Any] = field(default_factory=dict)  # the lag monitor's last measure
    lag_reason: str | None = None  # past max_lag and not ready because of it


@dataclass(slots=True)
class _State:
    phase: str = "starting"  # starting | running | stopping | stopped | scheduled
    since: float = 0.0
    thread: threading.Thread | None = None
    next_run: str | None = None
    submitted: int = 0
    waiting_since: float | None = None  # data not yet in every sink
    durable: int = 0  # min over the sinks' acks
    durable_at: float | None = None
    last_commit: float | None = None
    sinks: dict[str, _Sink] = field(default_factory=dict)
    sources: dict[str, _Source] = field(default_factory=dict)
    batch_size: int | None = None  # adaptive batching's current size (adaptive.py)
    conditions: dict[str, str] = field(default_factory=dict)  # set by monitors (retention.py): not ready


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 1)


def _snapshot(progress: Callable[[], list[Any]] | None) -> list[dict[str, Any]]:
    """The reader's snapshot progress (readers/base.py SnapshotProgress), as JSON-able dicts."""
    if progress is None:
        return []
    try:
        items = progress()
    except Exception:  # a reader mid-reconnect: no progress to show, never a failed answer
        return []
    return [
        {"table": p.table, "rows": p.rows, "estimate": p.estimate, "done": p.done}
        for p in items
        if hasattr(p, "table")
    ]


def _capture(reader: Any) -> dict[str, Any]:
    """`capture: poll | auto` sources say which way they capture and what polling cannot see."""
    info = getattr(type(reader), "capture_info", None)
    return {"capture": info(reader)} if info is not None else {}


def _error(message: object) -> str:
    text = redact(str(message)).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


class PipelineStatus:
    """Thread-safe health state; see the module docstring. One per service (cron runs share it)."""

    def __init__(
        self, thresholds: HealthThresholds | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self._clock = clock
        self._lock = threading.Lock()
        self._s = _State(since=clock())
        self._moved: set[str] = set()
        self._readers: dict[str, Any] = {}
        # `source_moved(source)`: an event or a heartbeat arrived from `source`. Called once per event,
        # so it is the set's own C `add` (no lock, no clock); the names are collected at each
        # `submitted()` (every flush) and each answer, with the time then.
        self.source_moved: Callable[[str], None] = self._moved.add

    # -- lifecycle ------------------------------------------------------------------------------
    def attach(self, sources: Mapping[str, Any], sinks: Iterable[str]) -> PipelineStatus:
        """A (new) pipeline with these readers and sink names; returns self. Resets the run's state."""
        now = self._clock()
        with self._lock:
            self._moved.clear()
            self._s = _State(
                since=now,
                sinks={name: _Sink() for name in sinks},
                sources={
                    name: _Source(
                        float(getattr(reader, "heartbeat_interval_s", 0) or 0),
                        now,
                        now,
                        progress=getattr(reader, "snapshot_progress", None),
                        beats=bool(
                            getattr(reader, "heartbeat_interval_s", 0) or getattr(reader, "heartbeat_s", 0)
                        ),
                    )
                    for name, reader in sources.items()
                },
                last_commit=self._s.last_commit,  # a cron service's last commit survives its runs
            )
            self._readers = dict(sources)  # for `capture` in details (readers/capture.py)
        return self

    def running(self) -> None:
        """Every source is open; called on the thread that runs the pipeline."""
        now = self._clock()
        with self._lock:
            self._set_phase("running", now)
            self._s.thread = threading.current_thread()
            for source in self._s.sources.values():  # the grace period starts now
                source.moved = source.tick = now

    def stopping(self) -> None:
        with self._lock:
            if self._s.phase in ("starting", "running"):
                self._set_phase("stopping", self._clock())

    def ended(self) -> None:
        with self._lock:
            if self._s.phase != "scheduled":
                self._set_phase("stopped", self._clock())

    def scheduled(self, next_run: str) -> None:
        """Between cron runs: alive, not ready."""
        with self._lock:
            self._set_phase("scheduled", self._clock())
            self._s.next_run = next_run

    def _set_phase(self, phase: str, now: float) -> None:
        if self._s.phase != phase:
            self._s.phase, self._s.since = phase, now

    # -- sources ----------------------------------------------------------------------------------
    def _collect_moved(self, now: float) -> None:
        """Apply the `source_moved` calls since the last time (holding the lock)."""
        while self._moved:
            try:
                name = self._moved.pop()  # atomic: safe against a concurrent add
            except KeyError:
                break
            state = self._s.sources.get(name)
            if state is not None:
                state.moved = state.tick = now
                state.failures = 0

    def source_idle(self, source: str) -> None:
        """An idle tick: the reader is looping and found nothing new."""
        now = self._clock()
        with self._lock:
            state = self._s.sources.get(source)
            if state is not None:
                state.tick = now
                state.failures = 0

    def source_heartbeat(self, source: str) -> None:
        """A heartbeat of `source` reached the pipeline (heartbeats are seconds apart: a lock is fine)."""
        now = self._clock()
        with self._lock:
            state = self._s.sources.get(source)
            if state is not None:
                state.heartbeat = now

    def source_lag(self, source: str, lag: dict[str, Any], not_ready: str | None) -> None:
        """The lag monitor's measure of `source`; `not_ready`: the reason /ready fails (past max_lag)."""
        with self._lock:
            state = self._s.sources.get(source)
            if state is not None:
                state.lag = dict(lag)
                state.lag_reason = not_ready

    def source_failed(self, source: str, error: object) -> None:
        with self._lock:
            state = self._s.sources.get(source)
            if state is not None:
                state.failures += 1
                state.last_error = _error(error)

    # -- sinks ------------------------------------------------------------------------------------
    def submitted(self, seq: int) -> None:
        """Everything up to `seq` was handed to the sinks."""
        now = self._clock()
        with self._lock:
            self._collect_moved(now)
            s = self._s
            if seq <= s.submitted:
                return
            s.submitted = seq
            for sink in s.sinks.values():
                if sink.acked < seq and sink.waiting_since is None:
                    sink.waiting_since = now
            if s.durable < seq and s.waiting_since is None:
                s.waiting_since = now

    def sink_written(self, sink: str) -> None:
        """`sink` accepted a write."""
        now = self._clock()
        with self._lock:
            state = self._s.sinks.get(sink)
            if state is not None:
                state.last_write = now
                state.failures = 0

    def sink_acked(self, sink: str, seq: int) -> None:
        """`sink` holds everything up to `seq`."""
        now = self._clock()
        with self._lock:
            s = self._s
            state = s.sinks.get(sink)
            if state is None or seq <= state.acked:
                return
            state.acked, state.last_write = seq, now
            state.waiting_since = None if seq >= s.submitted else now
            durable = min(x.acked for x in s.sinks.values())
            if durable > s.durable:
                s.durable, s.durable_at = durable, now
                s.waiting_since = None if durable >= s.submitted else now

    def sink_failed(self, sink: str, error: object) -> None:
        with self._lock:
            state = self._s.sinks.get(sink)
            if state is not None:
                state.failures += 1
                state.last_error = _error(error)

    def sink_dead_lettered(self, sink: str, events: int, error: object) -> None:
        """`sink` refused `events` events, which went to its dead-letter file."""
        now = self._clock()
        with self._lock:
            state = self._s.sinks.get(sink)
            if state is not None:
                state.dead_letters += events
                state.last_dead_letter = now
                state.dead_letter_error = _error(error)

    def committed(self, source: str | None = None, position: str | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._s.last_commit = now
            state = self._s.sources.get(source) if source is not None else None
            if state is not None:
                state.position, state.committed_at, state.committed_wall = position, now, time.time()

    def ages(self) -> dict[str, dict[str, float]]:
        """For the metrics scrape: seconds since each source's last commit and heartbeat, each sink's
        backlog (sequence numbers handed over, not acknowledged) and last write."""
        now = self._clock()
        with self._lock:
            self._collect_moved(now)
            s = self._s
            return {
                "checkpoint": {n: now - x.committed_at for n, x in s.sources.items() if x.committed_at},
                "heartbeat": {
                    n: now - (x.heartbeat if x.heartbeat is not None else s.since)
                    for n, x in s.sources.items()
                    if x.beats
                },
                "sink_backlog": {n: max(0, s.submitted - x.acked) for n, x in s.sinks.items()},
                "sink_last_write": {n: now - x.last_write for n, x in s.sinks.items() if x.last_write},
            }

    def condition(self, name: str, reason: str | None) -> None:
        """A monitor's problem (`reason`) that makes /ready fail until it is cleared (None)."""
        with self._lock:
            if reason is None:
                self._s.conditions.pop(name, None)
            else:
                self._s.conditions[name] = reason

    # -- answers ----------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, list[str]]:
        now = self._clock()
        t = self.thresholds
        with self._lock:
            self._collect_moved(now)
            s = self._s
            reasons: list[str] = []
            if s.phase != "running":
                reasons.append(self._phase_reason(now))
            sinks_waiting = False
            for name, sink in s.sinks.items():
                if sink.waiting_since is not None:
                    sinks_waiting = True
                    quiet = now - max(sink.waiting_since, sink.last_write or sink.waiting_since)
                    if t.sink_stall_s and quiet > t.sink_stall_s:
                        reasons.append(
                            f"sink {name}: no write accepted for {quiet:.0f} s while data waits for it "
                            f"(threshold {t.sink_stall_s:g} s)"
                            + self._last_error(sink.failures, sink.last_error)
                        )
                if sink.last_dead_letter is not None and t.dead_letter_window_s:
                    ago = now - sink.last_dead_letter
                    if ago <= t.dead_letter_window_s:
                        reasons.append(
                            f"sink {name}: dead-lettering, {sink.dead_letters} event(s) so far, the last "
                            f"{ago:.0f} s ago (window {t.dead_letter_window_s:g} s)"
                            + self._last_error(1, sink.dead_letter_error)
                        )
            reasons.extend(f"{name}: {reason}" for name, reason in s.conditions.items())
            for name, source in s.sources.items():
                if source.lag_reason and s.phase == "running":
                    reasons.append(f"source {name}: {source.lag_reason}")
            if s.phase == "running" and t.source_stall_s:
                for name, source in s.sources.items():
                    threshold = t.source_stall_s
                    moved = source.moved
                    if source.heartbeat_s > 0:
                        threshold = max(threshold, 3 * source.heartbeat_s)
                    else:
                        moved = max(moved, source.tick)
                    quiet = now - moved
                    if quiet > threshold and (source.failures or not sinks_waiting):
                        what = "no event or heartbeat" if source.heartbeat_s > 0 else "no event or poll"
                        reasons.append(
                            f"source {name}: {what} for {quiet:.0f} s (threshold {threshold:g} s)"
                            + self._last_error(source.failures, source.last_error)
                        )
            return not reasons, reasons

    def liveness(self) -> tuple[bool, list[str]]:
        now = self._clock()
        t = self.thresholds
        with self._lock:
            self._collect_moved(now)
            s = self._s
            reasons: list[str] = []
            if s.phase == "stopped":
                reasons.append(self._phase_reason(now))
            elif s.phase == "running" and s.thread is not None and not s.thread.is_alive():
                reasons.append(f"the pipeline thread {s.thread.name!r} died without stopping")
            if s.waiting_since is not None and t.stuck_s and s.phase in ("running", "stopping"):
                quiet = now - max(s.waiting_since, s.durable_at or s.waiting_since)
                if quiet > t.stuck_s:
                    behind = [n for n, x in s.sinks.items() if x.acked < s.submitted]
                    commit = _age(now, s.last_commit)
                    reasons.append(
                        f"stuck: nothing delivered to every sink for {quiet:.0f} s while data waits "
                        f"(threshold {t.stuck_s:g} s), so nothing can be committed; waiting on: "
                        f"{', '.join(behind) or '-'}; last commit: "
                        + ("never" if commit is None else f"{commit:.0f} s ago")
                    )
            return not reasons, reasons

    def _phase_reason(self, now: float) -> str:
        s = self._s
        for_s = f"{now - s.since:.0f} s"
        if s.phase == "starting":
            return f"pipeline is starting (opening sources and sinks for {for_s})"
        if s.phase == "scheduled":
            return f"pipeline is waiting for its next scheduled run at {s.next_run}"
        return f"pipeline is {s.phase} (for {for_s})"

    @staticmethod
    def _last_error(failures: int, error: str | None) -> str:
        return f"; last error: {error}" if failures and error else ""

    def batch_size(self, size: int) -> None:
        """Adaptive batching's current batch size (adaptive.py), shown in `details`."""
        with self._lock:
            self._s.batch_size = size

    def details(self) -> dict[str, Any]:
        """The state behind the answers, for the endpoints' JSON bodies (ages in seconds)."""
        now = self._clock()
        with self._lock:
            self._collect_moved(now)
            s = self._s
            return {
                "state": s.phase,
                "last_commit_age_s": _age(now, s.last_commit),
                "batch_size": s.batch_size,
                "sinks": {
                    name: {
                        "waiting": x.waiting_since is not None,
                        "backlog": max(0, s.submitted - x.acked),
                        "last_write_age_s": _age(now, x.last_write),
                        "failing": x.failures > 0,
                        "consecutive_failures": x.failures,
                        "last_error": x.last_error if x.failures else None,
                        "recent_error": x.last_error,  # also after it recovered (cdc-logs status)
                        "dead_lettered_events": x.dead_letters,
                        "last_dead_letter_age_s": _age(now, x.last_dead_letter),
                        "dead_letter_error": x.dead_letter_error,
                    }
                    for name, x in s.sinks.items()
                },
                "sources": {
                    name: {
                        "last_moved_age_s": _age(now, x.moved),
                        "last_idle_tick_age_s": _age(now, x.tick),
                        "heartbeat_interval_s": x.heartbeat_s or None,
                        "failing": x.failures > 0,
                        "last_error": x.last_error if x.failures else None,
                        "recent_error": x.last_error,  # also after it recovered (cdc-logs status)
                        "position": x.position,
                        "last_commit_age_s": _age(now, x.committed_at),
                        "last_commit_at": x.committed_wall,
                        "heartbeat_age_s": (
                            _age(now, s.since if x.heartbeat is None else x.heartbeat) if x.beats else None
                        ),
                        "lag": x.lag or None,
                        "snapshot": _snapshot(x.progress),
                        **_capture(self._readers.get(name)),
                    }
                    for name, x in s.sources.items()
                },
            }
