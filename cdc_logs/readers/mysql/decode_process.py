"""The MySQL/MariaDB reader's side of its decode process (decode_worker.py): two cores for a backlog.

On its own thread, the binlog stream spends most of a core in python-mysql-replication's parsing
and the conversion to envelopes, the same core the pipeline and its sinks need. With a backlog at the
start (`decode_process: auto`, reader.py) or always (`on`), the reader runs that stream in a child
process instead; `BinlogProcess` has the interface the reader uses of `BinlogStream` (start, poll,
stop, close), and mirrors the converter's state it reads (`server_idle`, `position`).

The child resumes, reconnects and fails exactly as the thread does: it runs the same classes. Its
failure arrives as the same CdcError; a child that dies is a CONNECTION error, so the pipeline
reopens the reader and resumes from its committed position.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.wire import ItemDecoder, decode_position
from cdc_logs.readers.worker_process import WorkerProcess, error_of

log = get_logger(__name__)
FRAMES_PER_POLL = 16  # frames rebuilt per poll, at most (a big transaction's rest waits in the pipe)


class BinlogProcess:
    """The binlog stream in a child process; see the module docstring."""

    def __init__(self, stream: dict[str, Any], converter: dict[str, Any], *, serialize: bool = False) -> None:
        # serialize: the pipeline has no transforms, so the child also writes each event's JSON.
        self._settings = {"stream": stream, "converter": converter, "serialize": serialize}
        self._child: WorkerProcess | None = None
        self._decoder = ItemDecoder()
        self._error: CdcError | None = None
        self._ready: deque[list[Any]] = deque()
        self.server_idle = False
        self.position: BinlogPosition = converter["start"]

    def start(self) -> None:
        self._child = WorkerProcess("cdc_logs.readers.mysql.decode_worker")
        self._child.send(("init", self._settings))
        log.info("binlog decoding in a second process", pid=self._child.pid)

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def poll(self, timeout: float) -> list[Any] | None:
        """The next items, or None after `timeout`; raises the stream's CdcError."""
        child = self._child
        assert child is not None, "BinlogProcess.poll() before start()"
        if not self._ready:
            self._receive(child)
            if not self._ready and self._error is None and child.wait(timeout):
                self._receive(child)
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        return None

    def _receive(self, child: WorkerProcess) -> None:
        if self._error is not None:
            return
        try:
            for message in child.receive(limit=FRAMES_PER_POLL):
                if message[0] == "items":
                    _, items, idle, position = message
                    decode = self._decoder.decode
                    if items:
                        self._ready.append([decode(item) for item in items])
                    self.server_idle = idle
                    self.position = decode_position(position)
                elif message[0] == "error":
                    self._error = error_of(message)
                    return
        except CdcError as exc:
            self._error = exc

    def stop(self) -> None:
        """Nothing to wake here: the reader's poll returns within its timeout, and close() ends the child."""

    def close(self, timeout: float = 5.0) -> None:
        if self._child is not None:
            self._child.close()
