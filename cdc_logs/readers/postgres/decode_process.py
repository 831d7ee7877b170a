"""The Postgres reader's side of its decode process (decode_worker.py): two cores while a backlog drains.

The reader thread reads the socket and sends raw XLogData payloads in batches; the child decodes them
with the same `ChangeStream` the reader runs inline and answers with the items; the reader rebuilds
them (readers/wire.py) and yields them in the order they were read, as inline decoding would have.

The reader (reader.py, `decode_process: auto`) spawns it once a backlog shows and keeps decoding
inline until the child is up; then, at a transaction boundary, hands over what its builder learned
(`begin`). A quiet or lightly loaded pipeline never pays for a second process, its memory, or a hop
of latency; once it has taken over, the process serves until the stream ends.

Flow control: at most `MAX_BATCHES` batches are outstanding; past that the reader stops reading the
socket until answers come, and the server's own flow control holds the rest.

Failure: an error the child hits (a DECODE error, a lost catalog connection) is raised here at the
same place in the stream as inline; a child that dies is a CONNECTION error, so the pipeline reopens
the reader and resumes from its committed position (nothing is lost, nothing confirmed early).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.observability.logging import get_logger
from cdc_logs.readers.postgres.changes import Item
from cdc_logs.readers.wire import ItemDecoder
from cdc_logs.readers.worker_process import WorkerProcess, error_of
from cdc_logs.schema import TableSchema

log = get_logger(__name__)

BATCH_MESSAGES = 256  # XLogData payloads per batch sent
MAX_BATCHES = 8  # batches sent and not yet answered, at most
FRAMES_PER_TAKE = 8  # frames (up to 512 items each) rebuilt per take, at most (more wait in the pipe)


class DecodeProcess:
    """A running decode process; see the module docstring."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._child = WorkerProcess("cdc_logs.readers.postgres.decode_worker")
        self._decoder = ItemDecoder()
        self._batch: list[tuple[int, bytes]] = []
        self._sent = 0  # batches sent
        self._answered = 0  # batches fully answered
        self._ready: deque[Item] = deque()
        self._error: CdcError | None = None
        self._up = False  # the child said it is ready (imports done, catalog connected)
        self.in_flight_remote = False
        self.last_boundary = 0
        self._child.send(("init", settings))

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def ready(self) -> bool:
        """The child has started up (without waiting: the reader decodes inline meanwhile)."""
        if not self._up:
            self._receive()
            if self._error is not None:
                raise self._error
        return self._up

    def begin(self, state: list[Any], last_boundary: int, known: Iterable[TableSchema]) -> None:
        """Hand decoding over at a transaction boundary: the relations and types the reader's builder
        learned (`EventBuilder.export_state`), and the schemas it made (kept as the same objects)."""
        self._decoder = ItemDecoder(known)
        self.last_boundary = last_boundary
        self._child.send(("start", state, last_boundary))
        log.info("postgres decoding in a second process", pid=self._child.pid)

    @property
    def full(self) -> bool:
        """Enough is outstanding: read answers before reading more of the stream."""
        return self._sent - self._answered >= MAX_BATCHES

    @property
    def in_flight(self) -> bool:
        """Something read is not yet back as items, or the child holds an open transaction."""
        return bool(self._batch) or self._sent > self._answered or bool(self._ready) or self.in_flight_remote

    def submit(self, wal_start: int, payload: bytes | memoryview) -> None:
        self._batch.append((wal_start, bytes(payload)))
        if len(self._batch) >= BATCH_MESSAGES:
            self.flush()

    def flush(self) -> None:
        """Send the partial batch (the socket has nothing more right now)."""
        if self._batch:
            self._sent += 1
            self._child.send(("feed", self._sent, self._batch))
            self._batch = []

    def take(self, timeout: float, also: int | None = None) -> list[Item]:
        """The items that are back. With none ready, waits up to `timeout` for the child, or until the
        descriptor `also` (the replication socket) is readable."""
        if not self._ready:
            self._receive()
            if not self._ready and self._error is None and timeout > 0 and self._child.wait(timeout, also):
                self._receive()
        items = list(self._ready)
        self._ready.clear()
        if not items and self._error is not None:
            raise self._error
        return items

    def _receive(self) -> None:
        if self._error is not None:
            return
        try:
            for message in self._child.receive(limit=FRAMES_PER_TAKE):
                tag = message[0]
                if tag == "items":
                    _, _seq, items, done, in_flight, last_boundary = message
                    decode = self._decoder.decode
                    self._ready.extend(decode(item) for item in items)
                    self.last_boundary = last_boundary
                    if done:
                        self._answered += 1
                        self.in_flight_remote = in_flight
                elif tag == "ready":
                    self._up = True
                elif tag == "error":
                    self._error = error_of(message)
                    return  # its end follows: the error is what the reader must see
        except CdcError as exc:
            self._error = exc

    def close(self) -> None:
        self._child.close()
