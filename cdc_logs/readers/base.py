"""The Reader contract every source implements.

A reader is opened once, then `stream(start)` yields `ChangeEvent`s and `Heartbeat`s in log order
(snapshot rows first when a snapshot is due, with op "r"). It may also yield `None` as an idle tick,
at least every `idle_tick_s` seconds, so the pipeline can stop it promptly; it must never block
forever. `commit(position)` is called by the pipeline (from another thread) once every event at or
before `position` is durable in every sink: the reader then lets the database discard that log
(Postgres flush LSN, SQLite change-table trim). `commit` must be thread-safe and cheap: record the
position, act on it from the reader's own loop.

A change the reader cannot decode is yielded as an `Undecodable` (position, table, reason, raw
bytes): the pipeline dead-letters it and goes on, or stops when dead letters are off. A reader never
skips a change silently and never puts row data in its error messages.

Every item follows the event contract (cdc_logs/readers/contract.py, docs/event-contract.md).

Started without a position (`start is None`), a reader first yields a `Heartbeat` of the position it
starts from (after the snapshot, if any, the snapshot's own events carry positions): the pipeline
commits it, so a later run resumes there and never skips changes made while it was down.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.position import Position

StreamItem = ChangeEvent | Heartbeat | Undecodable | None


@dataclass(slots=True)
class SnapshotProgress:
    """How far the initial snapshot of one table is: rows read, and the server's estimate of the total."""

    table: str
    rows: int = 0
    estimate: int | None = None
    done: bool = False


@dataclass(slots=True)
class LogLag:
    """What a source's server says about the consumer's place in its log (`LagProbe.measure`).

    `head` and `consumed` are comparable positions (an LSN, a (binlog file number, offset) pair):
    the log's current end, and what the server counts as consumed (None: unknown). The byte counts
    are None where the source cannot tell."""

    head: Any
    consumed: Any | None
    lag_bytes: int | None = None  # log written after `consumed`
    retained_bytes: int | None = None  # log the server keeps for this consumer (a slot's restart_lsn)
    slot: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # shown by /status (e.g. wal_status)


class LagProbe(ABC):
    """Measures a source's lag on a connection of its own (never the streaming one), from the lag
    monitor's thread (observability/lag.py). Errors are CdcErrors; the monitor logs them and goes on."""

    @abstractmethod
    def measure(self, committed: Position | None) -> LogLag:
        """The log's state now; `committed` is the pipeline's last committed position, if any."""

    @abstractmethod
    def close(self) -> None:
        """Release the probe's connection."""


class Reader(ABC):
    """A source of change events. Subclasses: postgres, mysql (and MariaDB), sqlite, polling, and the
    debezium source (Debezium's Kafka topics)."""

    #: Debezium connector name written to `source.connector`.
    connector: str = ""

    @abstractmethod
    def open(self) -> None:
        """Connect and check the source (raises CdcError naming the fix)."""

    @abstractmethod
    def server_identity(self) -> str:
        """The identity stamped on positions; stored with offsets and checked on resume."""

    @abstractmethod
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        """Yield changes after `start` (or a snapshot then changes when `start` is None)."""

    def serialize_early(self) -> None:  # noqa: B027 - optional hook
        """Called by a pipeline without transforms: its events are serialized exactly as the reader
        built them, so a reader that builds them in another process (readers/worker_process.py) may
        serialize them there too (`ChangeEvent.encoded`), off the pipeline's core."""

    def commit(self, position: Position) -> None:  # noqa: B027 - optional hook
        """Everything up to `position` is durable downstream; the source may discard it."""

    def snapshot_progress(self) -> list[SnapshotProgress]:
        """Per-table progress of a running snapshot (empty when none runs); read from another thread."""
        return []

    def lag_probe(self) -> LagProbe | None:
        """A probe of how far behind the server this consumer is (slot or binlog lag), or None when the
        source cannot tell; called after `open()`, used from another thread."""
        return None

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Ask a blocking `stream` to return soon (called from another thread)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Temporary server-side state (temporary slots) goes away here."""

    def __enter__(self) -> Reader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def idle_pause(
    stop: threading.Event, interval_s: float, idle_tick_s: float, next_tick: float
) -> Generator[None, None, float]:
    """Wait one poll interval (returning early on stop), yielding idle ticks when they are due.

    For polling readers: `next_tick = yield from idle_pause(...)` between polls.
    """
    deadline = time.monotonic() + interval_s
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_tick:
            yield None
            now = time.monotonic()  # the consumer may have held us for a while
            next_tick = now + idle_tick_s
        if now >= deadline:
            break
        stop.wait(min(deadline, next_tick) - now)
    return next_tick
