"""How far behind a source is, and the `max_lag` guard that acts on it.

Two measures per source, refreshed by `LagMonitor` on its own thread every `interval_s`:

* bytes: what the source's server reports through the reader's `LagProbe` (readers/base.py), on a
  connection of its own, never the replication one: Postgres `pg_current_wal_lsn() -
  confirmed_flush_lsn` of the slot (and `- restart_lsn`, the WAL the slot retains), MariaDB/MySQL the
  binlog bytes written after the committed file:pos. Sources without a probe have no byte lag.
* seconds: the larger of
  - the age, by the source's own commit time (`source.ts_ms`), of the oldest change the pipeline
    read and no sink-set holds yet (the pipeline reports it: `Pipeline.oldest_pending_ms`), and
  - for sources with a probe, how long ago the log's end was last at or behind the consumed point
    (`LogTimeline`: each probe records when the log's end was where; the consumed point's age is the
    time of the newest sample not past it). While the sink is stuck this grows even when nothing is
    written to the captured tables, because nothing is consumed; when everything is consumed it is 0.

`max_lag` (a source option: "512MB" or "10m") is compared with the measure of its unit. Past it the
monitor logs a warning, and per `on_max_lag`: `warn` only that; `not_ready` (the default) also makes
`/ready` answer 503 naming the source and the lag, until the lag is back under the limit; `stop` ends
the run with a LAG error (exit 3) after delivering what it can, but only once the lag has stayed past
the limit without shrinking for `max_lag_grace` (default 60 s): a pipeline restarted behind a slot that
already holds more than `max_lag` is catching up, and stopping it at once would make it loop forever
under a supervisor. "Shrinking" means a new lowest measure (in the limit's unit) since the lag went
past the limit; each new low restarts the grace period.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position
from cdc_logs.readers.base import LagProbe, LogLag, Reader

log = get_logger(__name__)

OnMaxLag = Literal["warn", "not_ready", "stop"]

_BYTES = {
    "b": 1,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
MAX_LAG_HINT = (
    'write max_lag with a unit: bytes like "64kB", "512MB", "2GB", or a time like "30s", "10m", "1h"'
)


@dataclass(frozen=True, slots=True)
class MaxLag:
    """A parsed `max_lag`: exactly one of `bytes` and `seconds`."""

    text: str
    bytes: int | None = None
    seconds: float | None = None

    def exceeded(self, lag_bytes: int | None, lag_seconds: float | None) -> str | None:
        """The reason text when the lag is past the limit, else None (also when it is unknown)."""
        if self.bytes is not None and lag_bytes is not None and lag_bytes > self.bytes:
            return f"lag {format_bytes(lag_bytes)} is past max_lag {self.text}"
        if self.seconds is not None and lag_seconds is not None and lag_seconds > self.seconds:
            return f"lag {lag_seconds:.0f} s is past max_lag {self.text}"
        return None


def parse_max_lag(text: str | int | float) -> MaxLag:
    """`"512MB"` -> bytes (kB, MB, GB, TB are powers of 1024, as in postgresql.conf; KiB... too);
    `"10m"` -> seconds (ms, s, m/min, h, d). A bare number is refused: bytes or seconds?"""
    raw = str(text)
    match = _LIMIT.match(raw)
    if not match:
        raise ValueError(f"max_lag {raw!r} is not a size or a duration with a unit; {MAX_LAG_HINT}")
    number, unit = float(match.group(1)), match.group(2)
    if number <= 0:
        raise ValueError(f"max_lag {raw!r} must be above zero")
    key = unit.lower()
    if key in _BYTES:
        return MaxLag(raw.strip(), bytes=int(number * _BYTES[key]))
    if unit in _SECONDS or key in _SECONDS:
        return MaxLag(raw.strip(), seconds=number * _SECONDS.get(unit, _SECONDS.get(key, 1.0)))
    raise ValueError(f"max_lag {raw!r}: unknown unit {unit!r}; {MAX_LAG_HINT}")


def format_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - loop returns


class LogTimeline:
    """When the source's log end was where: `age(consumed)` is how long ago the log's end was last at
    or behind `consumed`, i.e. the age of the oldest log the consumer has not consumed (0 when it has
    consumed everything). Positions are anything comparable (an LSN, a (file number, offset) pair)."""

    def __init__(self, keep: int = 4096) -> None:
        self._times: deque[float] = deque(maxlen=keep)
        self._heads: deque[Any] = deque(maxlen=keep)

    def record(self, now: float, head: Any) -> None:
        if self._heads and head < self._heads[-1]:  # the log went back (another server?): start over
            self._times.clear()
            self._heads.clear()
        self._times.append(now)
        self._heads.append(head)

    def age(self, consumed: Any, now: float) -> float | None:
        """Seconds; None before any sample."""
        if not self._heads:
            return None
        if consumed >= self._heads[-1]:
            return 0.0
        # the newest sample whose head is not past `consumed`; if none, the oldest sample bounds it
        i = bisect.bisect_right(list(self._heads), consumed) - 1
        since = self._times[i] if i >= 0 else self._times[0]
        return max(0.0, now - since)


@dataclass(slots=True)
class SourceLag:
    """The latest measures of one source (see the module docstring); None: not known."""

    lag_bytes: int | None = None
    lag_seconds: float | None = None
    retained_bytes: int | None = None
    slot: str | None = None
    measured_at: float | None = None  # time.time() of the last probe
    probe_error: str | None = None
    exceeded: str | None = None  # the reason when past max_lag
    extra: dict[str, Any] = field(default_factory=dict)


DEFAULT_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class LagGuard:
    max_lag: MaxLag
    on_max_lag: OnMaxLag = "not_ready"
    grace_s: float = DEFAULT_GRACE_S  # `stop` only after this long past the limit without shrinking


@dataclass(slots=True)
class _Episode:
    """One stretch past max_lag: its lowest measure and when that low was reached."""

    best: float
    best_at: float


class LagMonitor:
    """Probes every source with a `LagProbe` on its own thread, computes the lag, updates the metrics
    and the health state, and applies the guards. `stop_pipeline(error)` is called once when a guard
    with `on_max_lag: stop` trips."""

    def __init__(
        self,
        readers: Mapping[str, Reader],
        *,
        guards: Mapping[str, LagGuard],
        committed: Callable[[str], Position | None],
        oldest_pending_ms: Callable[[str], int | None],
        report: Callable[[str, SourceLag], None],
        stop_pipeline: Callable[[CdcError], None],
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.readers = readers
        self.guards = dict(guards)
        self.committed = committed
        self.oldest_pending_ms = oldest_pending_ms
        self.report = report
        self.stop_pipeline = stop_pipeline
        self.interval_s = interval_s
        self.clock = clock
        self.lags: dict[str, SourceLag] = {name: SourceLag() for name in readers}
        self._probes: dict[str, LagProbe | None] = {}
        self._timelines: dict[str, LogTimeline] = {name: LogTimeline() for name in readers}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped_for: str | None = None
        self._episodes: dict[str, _Episode] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lag-monitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for probe in self._probes.values():
            if probe is not None:
                try:
                    probe.close()
                except Exception as exc:  # closing a measuring connection never fails a run
                    log.debug("closing a lag probe failed", error=str(exc))

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.readers:
                if self._stop.is_set():
                    return
                try:
                    self.measure(name)
                except Exception as exc:  # the monitor must never take the pipeline down
                    log.warning("measuring the lag failed", source=name, error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.interval_s)

    def _probe(self, name: str) -> LagProbe | None:
        if name not in self._probes:
            self._probes[name] = self.readers[name].lag_probe()
        return self._probes[name]

    def measure(self, name: str) -> SourceLag:
        """One measurement of source `name` (also called by tests): lag, metrics, guard."""
        now = self.clock()
        lag = self.lags[name]
        lag.measured_at = now
        seconds: float | None = None
        pending = self.oldest_pending_ms(name)
        if pending is not None:
            seconds = max(0.0, now - pending / 1000)
        probe = self._probe(name)
        if probe is not None:
            try:
                log_lag = probe.measure(self.committed(name))
            except CdcError as exc:
                lag.probe_error = exc.message
                log.debug("lag probe failed", source=name, error=exc.message)
                log_lag = None
            if log_lag is not None:
                lag.probe_error = None
                self._apply(name, lag, log_lag, now)
                if lag.lag_seconds is not None:
                    seconds = lag.lag_seconds if seconds is None else max(seconds, lag.lag_seconds)
        lag.lag_seconds = seconds if seconds is not None else (0.0 if probe is None else lag.lag_seconds)
        self._guard(name, lag)
        self.report(name, lag)
        return lag

    def _apply(self, name: str, lag: SourceLag, log_lag: LogLag, now: float) -> None:
        timeline = self._timelines[name]
        timeline.record(now, log_lag.head)
        lag.lag_bytes = log_lag.lag_bytes
        lag.retained_bytes = log_lag.retained_bytes
        lag.slot = log_lag.slot
        lag.extra = dict(log_lag.extra)
        lag.lag_seconds = None if log_lag.consumed is None else timeline.age(log_lag.consumed, now)

    def _shrinking(self, name: str, guard: LagGuard, lag: SourceLag, now: float) -> bool:
        """Whether the lag past the limit made a new low within the grace period (catching up)."""
        value = lag.lag_bytes if guard.max_lag.bytes is not None else lag.lag_seconds
        episode = self._episodes.get(name)
        if episode is None:
            self._episodes[name] = _Episode(float(value or 0), now)
            return guard.grace_s > 0
        if value is not None and value < episode.best:
            episode.best, episode.best_at = float(value), now
        return now - episode.best_at < guard.grace_s

    def _guard(self, name: str, lag: SourceLag) -> None:
        guard = self.guards.get(name)
        if guard is None:
            lag.exceeded = None
            return
        was = lag.exceeded
        lag.exceeded = guard.max_lag.exceeded(lag.lag_bytes, lag.lag_seconds)
        if lag.exceeded and not was:
            log.warning(
                "source lag past max_lag",
                source=name,
                lag=lag.exceeded,
                on_max_lag=guard.on_max_lag,
                fix="see docs/operations.md#max_lag: find the stuck or slow destination (/ready, cdc-logs "
                "status), fix it; the lag drains once it delivers again",
            )
        elif was and not lag.exceeded:
            log.info("source lag back under max_lag", source=name, max_lag=guard.max_lag.text)
        if not lag.exceeded:
            self._episodes.pop(name, None)
            return
        if guard.on_max_lag == "stop" and self._stopped_for is None:
            if self._shrinking(name, guard, lag, lag.measured_at or self.clock()):
                return
            self._stopped_for = name
            self.stop_pipeline(
                CdcError(
                    ErrorKind.LAG,
                    f"source {name}: {lag.exceeded} and not shrinking for {guard.grace_s:g} s "
                    "(on_max_lag: stop)",
                    "find why the destinations fall behind (cdc-logs status, /ready, the log), fix it and "
                    "run again; or raise max_lag or max_lag_grace, or set on_max_lag: not_ready to keep "
                    "running while lagging",
                )
            )


def parse_grace(text: str | int | float) -> float:
    """`max_lag_grace`: a time ("60s", "5m"); "0s" means stop as soon as the lag is past the limit."""
    raw = str(text).strip()
    if re.fullmatch(r"0+(\.0+)?\s*[A-Za-z]*", raw):
        return 0.0
    try:
        limit = parse_max_lag(raw)
    except ValueError as exc:
        raise ValueError(f'max_lag_grace {raw!r} is not a duration like "60s" or "5m"') from exc
    if limit.seconds is None:
        raise ValueError(f'max_lag_grace {raw!r} is a size; give a duration like "60s" or "5m"')
    return limit.seconds
