"""A bounded on-disk spool between the pipeline and several sinks, each reading at its own cursor.

The pipeline appends every flushed batch once; each sink's worker reads forward from its own cursor,
so a slow or stopped sink falls behind without holding the others back. Segments every cursor has
passed are deleted. When the spool reaches `max_bytes` the append blocks: the slowest sink then slows
the source down (bounded disk, bounded memory), it never drops data.

The spool is a buffer, not the record of truth: a restart starts it empty and the source replays from
the checkpoint, which is the minimum over the sinks. So it is not fsync'd.

Line format (JSON): `{"s": seq, "k": key, "p": position, "v": envelope}` for an event, and
`{"a": seq}` closing each flush: a worker acknowledges `a` once it delivered every event before it.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent, dumps
from cdc_logs.position import decode

_READ_CHUNK = 4 << 20


@dataclass(slots=True)
class _Segment:
    index: int
    path: Path
    size: int = 0


@dataclass(slots=True)
class Cursor:
    segment: int = 0
    offset: int = 0


def encode_record(seq: int, event: ChangeEvent) -> bytes:
    # Splices in the envelope's cached JSON instead of serializing it a second time.
    head = dumps({"s": seq, "k": event.key, "p": event.position.encode() if event.position else None})
    return head[:-1] + b',"v":' + event.to_json() + b"}"


def decode_record(data: dict[str, Any]) -> ChangeEvent:
    event = ChangeEvent.from_dict(data["v"], key=data.get("k"))
    if data.get("p"):
        event.position = decode(data["p"])
    return event


class Spool:
    def __init__(
        self,
        directory: str | Path,
        readers: list[str],
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
    ) -> None:
        self.directory = Path(directory)
        shutil.rmtree(self.directory, ignore_errors=True)  # a restart replays from the source
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._cursors = {name: Cursor() for name in readers}
        self._cond = threading.Condition()
        self._closed = False
        self._new_segment(0)

    def _new_segment(self, index: int) -> None:
        seg = _Segment(index, self.directory / f"{index:08d}.jsonl")
        seg.path.touch()
        self._segments.append(seg)

    @property
    def size(self) -> int:
        with self._cond:
            return sum(s.size for s in self._segments)

    def append(self, lines: list[bytes], stop: threading.Event) -> bool:
        """Append lines (one flush); blocks while the spool is full. False if stopped while waiting."""
        data = b"".join(line + b"\n" for line in lines)
        with self._cond:
            while (
                sum(s.size for s in self._segments) + len(data) > self.max_bytes and len(self._segments) > 1
            ):
                if stop.is_set() or self._closed:
                    return False
                self._cond.wait(0.2)
            tail = self._segments[-1]
            if tail.size and tail.size + len(data) > self.segment_bytes:
                self._new_segment(tail.index + 1)
                tail = self._segments[-1]
            with open(tail.path, "ab") as fh:
                fh.write(data)
            tail.size += len(data)
            self._cond.notify_all()
        return True

    def read(self, reader: str, max_lines: int, timeout: float) -> list[dict[str, Any]]:
        """Up to `max_lines` records after `reader`'s cursor (waits up to `timeout` for new data)."""
        with self._cond:
            cursor = self._cursors[reader]
            if not self._has_data(cursor):
                self._cond.wait(timeout)
            if not self._has_data(cursor):
                return []
            out: list[dict[str, Any]] = []
            while len(out) < max_lines and self._has_data(cursor):
                seg = self._segment(cursor.segment)
                with open(seg.path, "rb") as fh:
                    fh.seek(cursor.offset)
                    chunk = fh.read(min(seg.size - cursor.offset, _READ_CHUNK))
                    if b"\n" not in chunk:  # one line longer than a chunk
                        chunk += fh.read(seg.size - cursor.offset - len(chunk))
                lines = chunk.split(b"\n")[:-1]  # the last piece is empty or a partial line
                take = lines[: max_lines - len(out)]
                out.extend(orjson.loads(line) for line in take)
                cursor.offset += sum(len(line) + 1 for line in take)
                if cursor.offset >= seg.size and seg is not self._segments[-1]:
                    cursor.segment, cursor.offset = seg.index + 1, 0
            return out

    def release(self) -> None:
        """Delete segments every cursor has moved past."""
        with self._cond:
            floor = min(c.segment for c in self._cursors.values())
            while len(self._segments) > 1 and self._segments[0].index < floor:
                self._segments.pop(0).path.unlink(missing_ok=True)
            self._cond.notify_all()

    def lag_bytes(self, reader: str) -> int:
        """Bytes appended that `reader` has not read yet."""
        with self._cond:
            cursor = self._cursors[reader]
            return sum(s.size for s in self._segments if s.index >= cursor.segment) - cursor.offset

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _segment(self, index: int) -> _Segment:
        return self._segments[index - self._segments[0].index]

    def _has_data(self, cursor: Cursor) -> bool:
        seg = self._segment(cursor.segment)
        return cursor.offset < seg.size or seg is not self._segments[-1]
