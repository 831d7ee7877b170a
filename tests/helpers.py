"""Test helpers shared by unit, contract and chaos tests: event builders and a scripted reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position, Watermark
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.sinks.base import Sink

SERVER = "test-server"


def make_event(
    n: int,
    *,
    op: str = "c",
    table: str = "t",
    key: int | None = None,
    boundary: bool = True,
    tx: str | None = None,
) -> ChangeEvent:
    """Event number `n` (its position is Watermark((n,))) for row `key` (default n)."""
    row_key = n if key is None else key
    after = None if op == "d" else {"id": row_key, "v": n}
    before = {"id": row_key, "v": n - 1} if op in ("u", "d") else None
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("test", "p", "db", table, schema="main", ts_ms=1000 + n, extra={"seq": n}),
        before=before,
        after=after,
        key={"id": row_key},
        ts_ms=2000 + n,
        transaction=Transaction(tx, n, n) if tx else None,
        position=Watermark(SERVER, (n,)),
        boundary=boundary,
    )


class ScriptedReader(Reader):
    """Replays a fixed list of items from a start position; records commits. Optionally fails once."""

    connector = "test"

    def __init__(
        self, items: Sequence[ChangeEvent | Heartbeat], *, fail_after: int | None = None, follow: bool = True
    ) -> None:
        self.items = list(items)
        self.fail_after = fail_after
        self.follow = follow
        self.commits: list[Position] = []
        self.opens = 0
        self.starts: list[Position | None] = []
        self._stop = threading.Event()

    def open(self) -> None:
        self.opens += 1
        self._stop.clear()

    def server_identity(self) -> str:
        return SERVER

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        self.starts.append(start)
        begin = 0
        if start is not None:
            assert isinstance(start, Watermark)
            begin = next((i + 1 for i, it in enumerate(self.items) if it.position == start), 0)
        for index in range(begin, len(self.items)):
            if self.fail_after is not None and index == self.fail_after:
                self.fail_after = None
                raise CdcError(ErrorKind.CONNECTION, "connection reset by peer (scripted)")
            yield self.items[index]
        while self.follow and not self._stop.wait(0.02):
            yield None

    def commit(self, position: Position) -> None:
        self.commits.append(position)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()


class MemorySink(Sink):
    """Keeps what it was given; `fail` makes the next writes raise (fault injection)."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.events: list[ChangeEvent] = []
        self.writes = 0
        self.failures: list[CdcError | Exception] = []
        self.lock = threading.Lock()

    def fail(self, *errors: CdcError | Exception) -> None:
        self.failures.extend(errors)

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        with self.lock:
            self.writes += 1
            if self.failures:
                raise self.failures.pop(0)
            self.events.extend(batch)


def seqs(events: Sequence[ChangeEvent]) -> list[Any]:
    return [e.source.extra["seq"] for e in events]
