"""A bounded buffer between the pipeline and several sinks, each reading at its own cursor.

The pipeline appends every flushed batch once, as a chunk; each sink's worker reads forward from its
own cursor, so a slow or stopped sink falls behind without holding the others back. Chunks every
cursor has passed are dropped.

Chunks hold the pipeline's own event objects, so every sink receives exactly the events a single
sink would (same values and types, positions and boundaries: one delivery path). Sinks must not
modify events. When the chunks in memory exceed `max_memory_bytes`, new chunks are spilled to disk
(pickled: a lossless copy of the objects) and read back by the workers that reach them. When the
spilled chunks reach `max_bytes` the append blocks: the slowest sink then slows the source down
(bounded memory and disk), it never drops data.

The spool is a buffer, not the record of truth: a restart starts it empty and the source replays
from the checkpoint, which is the minimum over the sinks. So spilled chunks are not fsync'd.
Emptying it removes only the chunk files it names (`<12 digits>.pickle`), and the directory once it is
empty: whatever else a user keeps there stays.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)

_CHUNK_FILE = re.compile(r"\d{12}\.pickle")


@dataclass(slots=True)
class _Chunk:
    index: int
    events: list[ChangeEvent] | None  # None while spilled to `path`
    ack: int  # the checkpoint sequence number acknowledged once every event of the chunk is delivered
    size: int  # bytes: the events' JSON size in memory, the file size on disk
    count: int = 0  # events in the chunk (also while spilled)
    path: Path | None = None


@dataclass(slots=True)
class Read:
    """What a worker takes in one read: events of one or more chunks, and the ack that closes them."""

    events: list[ChangeEvent] = field(default_factory=list)
    ack: int = 0
    chunks: int = 0


class Spool:
    def __init__(
        self,
        directory: str | Path,
        readers: list[str],
        *,
        max_bytes: int = 1 << 30,
        max_memory_bytes: int = 64 << 20,
    ) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise CdcError(
                ErrorKind.CONFIG,
                f"the fan-out spool's directory {self.directory} is a file",
                "move that file, or set sync.fanout.spool_dir to another directory (the spool lives in "
                "<spool_dir>/<pipeline name>.spool)",
            )
        self._empty_directory()  # a restart replays from the source
        self.max_bytes = max_bytes
        self.max_memory_bytes = max_memory_bytes
        self._chunks: deque[_Chunk] = deque()
        self._next = 0  # index of the next chunk appended
        self._cursors = dict.fromkeys(readers, 0)  # index of the next chunk each reader takes
        self._memory = 0
        self._disk = 0
        self._cond = threading.Condition()
        self._closed = False
        self._failed = False  # a reader (sink worker) stopped for good: nobody will free space
        self._disk_warned = False

    @property
    def size(self) -> int:
        """Bytes held (memory and disk)."""
        with self._cond:
            return self._memory + self._disk

    def append(self, events: list[ChangeEvent], ack: int, size: int, stop: threading.Event) -> bool:
        """Append one flush (blocks while memory and disk are full). False if stopped while waiting."""
        with self._cond:
            in_memory = not self._chunks or self._memory + size <= self.max_memory_bytes
            while not in_memory:
                if stop.is_set() or self._closed or self._failed:
                    return False
                if self._disk < self.max_bytes or not self._spilled():
                    break
                self._cond.wait(0.2)
                in_memory = not self._chunks or self._memory + size <= self.max_memory_bytes
            chunk = _Chunk(self._next, events, ack, size, len(events))
            if not in_memory and not self._try_spill(chunk):
                # The disk refused the spill (full): wait for the sinks to free memory instead.
                while self._chunks and self._memory + size > self.max_memory_bytes:
                    if stop.is_set() or self._closed or self._failed:
                        return False
                    self._cond.wait(0.2)
                in_memory = True
            if in_memory:
                self._memory += size
            self._chunks.append(chunk)
            self._next += 1
            self._cond.notify_all()
        return True

    def read(self, reader: str, max_events: int, timeout: float) -> Read:
        """Chunks after `reader`'s cursor, up to about `max_events` events (at least one chunk);
        waits up to `timeout` for one."""
        with self._cond:
            if self._closed:
                return Read()
            if self._cursors[reader] >= self._next:
                self._cond.wait(timeout)
            taken: list[_Chunk] = []
            count = 0
            cursor = self._cursors[reader]
            while cursor + len(taken) < self._next and self._chunks and (not taken or count < max_events):
                chunk = self._chunks[cursor + len(taken) - self._chunks[0].index]
                if taken and count + chunk.count > max_events:
                    break
                taken.append(chunk)
                count += chunk.count
        # Spilled chunks are read from disk outside the lock (the other workers and the pipeline go
        # on meanwhile). They cannot be deleted under us: release() only drops chunks every cursor has
        # passed, and this reader's cursor moves past them only below, once they are loaded.
        out = Read()
        for chunk in taken:
            out.events.extend(chunk.events if chunk.events is not None else _load(chunk))
            out.ack = chunk.ack
            out.chunks += 1
        if taken:
            with self._cond:
                self._cursors[reader] += len(taken)
        return out

    def fail(self) -> None:
        """A reader stopped for good: wake and refuse appends that wait for it to free space."""
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def release(self) -> None:
        """Drop chunks every cursor has moved past."""
        with self._cond:
            floor = min(self._cursors.values(), default=self._next)
            while self._chunks and self._chunks[0].index < floor:
                chunk = self._chunks.popleft()
                if chunk.path is not None:
                    chunk.path.unlink(missing_ok=True)
                    self._disk -= chunk.size
                else:
                    self._memory -= chunk.size
            self._cond.notify_all()

    def lag_bytes(self, reader: str) -> int:
        """Bytes appended that `reader` has not taken yet."""
        with self._cond:
            start = self._cursors[reader]
            return sum(c.size for c in self._chunks if c.index >= start)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._cond.notify_all()
        self._empty_directory()

    def _empty_directory(self) -> None:
        """Remove the chunk files this spool writes, then the directory if nothing else is in it."""
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return  # not there (yet): nothing to empty
        for path in entries:
            if _CHUNK_FILE.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: the user's files stay, and so does the directory
            self.directory.rmdir()

    def _spilled(self) -> bool:
        return any(c.path is not None for c in self._chunks)

    def _try_spill(self, chunk: _Chunk) -> bool:
        """Write a chunk to disk; False (and nothing left behind) when the disk refuses it."""
        path = self.directory / f"{chunk.index:012d}.pickle"
        data = pickle.dumps(chunk.events, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            with contextlib.suppress(OSError):  # e.g. the directory's name is taken by a file
                path.unlink(missing_ok=True)
            if not self._disk_warned:
                log.warning(
                    "spool: cannot spill to disk, the source waits for the sinks instead",
                    directory=str(self.directory),
                    error=exc.strerror,
                )
                self._disk_warned = True
            return False
        chunk.events, chunk.path, chunk.size = None, path, len(data)
        self._disk += chunk.size
        return True


def _load(chunk: _Chunk) -> list[ChangeEvent]:
    assert chunk.path is not None
    try:
        events: list[ChangeEvent] = pickle.loads(chunk.path.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise CdcError(
            ErrorKind.DECODE,
            f"the spool file {chunk.path} is damaged or gone ({type(exc).__name__})",
            "restart the pipeline: the spool is only a buffer, and the source replays from the last "
            "checkpoint (nothing past it was committed)",
        ) from exc
    return events
