"""The reader's side of the decode process (decode_worker.py): use both cores while a backlog drains.

One Python thread cannot read the stream, decode pgoutput, convert values, build envelopes, and run
the pipeline and its sinks faster than one core allows (the GIL). While the slot holds a backlog, the
reader hands decoding to a child process: the reader thread reads the socket and sends raw XLogData
payloads in batches; the child decodes and answers with the items; the reader rebuilds them and
yields them in the order they were read, exactly as the inline `ChangeStream` would have.

The reader starts it (reader.py, `decode_process: auto`) only once a backlog shows, at a transaction
boundary, so a quiet or lightly loaded pipeline never pays for a second process, its memory or a
hop of latency; once started it serves until the stream ends.

Flow control: at most `MAX_BATCHES` batches are outstanding; past that the reader stops reading the
socket until answers come, and the server's own flow control holds the rest. Writes to the child
happen on a writer thread so the reader never blocks on a full pipe while the child blocks on one too.

Failure: an error the child hits (a DECODE error, a lost catalog connection) is raised here at the
same place in the stream as inline; a child that dies is a CONNECTION error, so the pipeline reopens
the reader and resumes from its committed position (nothing is lost, nothing confirmed early).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.readers.postgres.changes import Item
from cdc_logs.readers.postgres.decode_wire import Frames, ItemDecoder, frame, unframe
from cdc_logs.schema import TableSchema

log = get_logger(__name__)

BATCH_MESSAGES = 256  # XLogData payloads per batch sent
MAX_BATCHES = 8  # batches sent and not yet answered, at most
READY_ITEMS = 2048  # items rebuilt and not yet taken, at most (more wait in the pipe)
_DIED_HINT = (
    "the pipeline reopens the source and resumes from its last commit; if it repeats, set decode_process: off"
)


class DecodeProcess:
    """A running decode process; see the module docstring."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs.readers.postgres.decode_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out_fd = self._proc.stdout.fileno()
        os.set_blocking(self._out_fd, False)
        self._frames = Frames()
        self._decoder = ItemDecoder()
        self.started = False  # begin() was called: the child decodes from then on
        self._up = False  # the child said it is ready (imports done, catalog connected)
        self._batch: list[tuple[int, bytes]] = []
        self._sent = 0  # batches sent
        self._answered = 0  # batches fully answered
        self._ready: deque[Item] = deque()
        self._error: CdcError | None = None
        self.in_flight_remote = False
        self.last_boundary = 0
        self._writes: queue.Queue[bytes | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="pg-decode-writer", daemon=True)
        self._writer.start()
        self._writes.put(frame(("init", settings)))

    # -- reader side -------------------------------------------------------------------------------
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
        self.started = True
        self._writes.put(frame(("start", state, last_boundary)))
        log.info("postgres decoding in a second process", pid=self._proc.pid)

    @property
    def fileno(self) -> int:
        return self._out_fd

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
            self._writes.put(frame(("feed", self._sent, self._batch)))
            self._batch = []

    def take(self, timeout: float, also: int | None = None) -> list[Item]:
        """The items that are back. With none ready, waits up to `timeout` for the child, or until the
        descriptor `also` (the replication socket) is readable."""
        if not self._ready:
            self._receive()
            if not self._ready and self._error is None and timeout > 0:
                fds = [self._out_fd] if also is None else [self._out_fd, also]
                ready, _, _ = select.select(fds, [], [], timeout)
                if self._out_fd in ready:
                    self._receive()
        items = list(self._ready)
        self._ready.clear()
        if not items and self._error is not None:
            raise self._error
        return items

    def _receive(self) -> None:
        # Bounded: a big transaction's items keep coming while they are read; the rest waits in the pipe.
        while self._error is None and len(self._ready) < READY_ITEMS:
            try:
                data = os.read(self._out_fd, 1 << 20)
            except BlockingIOError:
                return
            if not data:
                self._error = self._died()
                return
            for body in self._frames.feed(data):
                self._handle(unframe(body))

    def _handle(self, message: tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == "ready":
            self._up = True
        elif tag == "items":
            _, _seq, items, done, in_flight, last_boundary = message
            decode = self._decoder.decode
            self._ready.extend(decode(item) for item in items)
            self.last_boundary = last_boundary
            if done:
                self._answered += 1
                self.in_flight_remote = in_flight
        elif tag == "error":
            _, _seq, kind, text, hint = message
            self._error = CdcError(ErrorKind(kind), text, hint)
        else:
            self._error = CdcError(ErrorKind.INTERNAL, f"the decode process sent an unknown message {tag!r}")

    def _died(self) -> CdcError:
        code = self._proc.poll()
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self._proc.wait(1.0)
        return CdcError(
            ErrorKind.CONNECTION, f"the decode process ended unexpectedly (exit code {code})", _DIED_HINT
        )

    # -- writer thread -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        while True:
            data = self._writes.get()
            if data is None:
                break
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                break  # the child is gone: the reader sees its stdout end
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def close(self) -> None:
        """End the child: stdin closes (it exits on EOF); killed if it does not within a moment."""
        self._writes.put(None)
        self._writer.join(2.0)
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(2.0)
        with contextlib.suppress(OSError):
            assert self._proc.stdout is not None
            self._proc.stdout.close()
