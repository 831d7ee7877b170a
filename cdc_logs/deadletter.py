"""Dead letters: the one record format, and the durable writer every dead-letter file goes through.

What cannot be delivered is parked with the reason instead of being dropped, by four paths; they all
write the record below, so one tool (`read`) reads any dead-letter file:

- events a sink refuses, isolated by the pipeline (delivery.py): `<dir>/<sink>.deadletter.jsonl`;
- changes a reader cannot decode, parked by the pipeline: `<dir>/<source>.undecodable.jsonl`;
- events a webhook receiver refuses (4xx): the HTTP sink's `dead_letter_path`;
- Kafka records that cannot be read: the kafka and debezium sources' `dead_letter.path`.

One JSON object per line (docs/configuration.md#dead-letters):

  format_version  1
  ts_ms           when it was dead-lettered (ms since the epoch)
  stage           "sink" (a destination refused it), "middleware" (a batch middleware refused it, e.g.
                  financial_validation) or "source" (it could not be read)
  component       the sink's, the middleware's or the source's name
  kind            the error kind: "sink_rejected", "decode", "invalid_data"
  reason, hint    why, and what to do about it
  position        where it stood in the source's order, as the offset store encodes positions, or null
  table           schema.table (a Debezium record: the topic it came from), or null
  key             the event's key, or null
  envelope        stage sink or middleware: the whole envelope, as it was given; else null
  raw             stage source: the bytes read, or null
  origin          facts of the path: the webhook's `status` and the start of its `response`; a
                  Kafka record's `topic`, `partition`, `offset`, `timestamp_ms` and `key` (bytes)

Bytes (`raw`, a Kafka key) are `{"encoding": "utf-8", "data": text}` when they are UTF-8, else
`{"encoding": "base64", "data": ...}`. `reason` and `hint` go through the redaction every message does
(observability/redact.py): they may quote a server's answer. The payload (envelope, key, raw) is the
data to repair and replay, and is kept exactly as it was.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from cdc_logs import position as positions
from cdc_logs.envelope import ChangeEvent, Undecodable, dumps, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position

FORMAT_VERSION = 1

UNDECODABLE_HINT = (
    "repair the row at the source (or re-save it) so it is read again, or replay the raw value from "
    "this file; to stop at such rows instead, set sync.dead_letters.enabled: false"
)


class Stage(StrEnum):
    SINK = "sink"  # a destination refused the event
    MIDDLEWARE = "middleware"  # a batch middleware refused it (financial_validation's checks)
    SOURCE = "source"  # what the source held could not be read into an event


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter (see the module docstring for the fields as written)."""

    stage: Stage
    component: str
    kind: ErrorKind
    reason: str
    hint: str | None = None
    position: Position | None = None
    table: str | None = None
    key: Any = None
    envelope: dict[str, Any] | None = None
    raw: bytes | None = None
    origin: dict[str, Any] = field(default_factory=dict)
    ts_ms: int = field(default_factory=now_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "ts_ms": self.ts_ms,
            "stage": self.stage.value,
            "component": self.component,
            "kind": self.kind.value,
            "reason": redact(self.reason),
            "hint": redact(self.hint) if self.hint else None,
            "position": orjson.loads(self.position.encode()) if self.position is not None else None,
            "table": self.table,
            "key": self.key,
            "envelope": self.envelope,
            "raw": encode_bytes(self.raw),
            "origin": {k: encode_bytes(v) if isinstance(v, bytes) else v for k, v in self.origin.items()},
        }

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeadLetterRecord:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"not a version {FORMAT_VERSION} dead-letter record (format_version {version!r})"
            )
        where = data.get("position")
        return cls(
            stage=Stage(data["stage"]),
            component=data["component"],
            kind=ErrorKind(data["kind"]),
            reason=data["reason"],
            hint=data.get("hint"),
            position=positions.decode(orjson.dumps(where).decode()) if where is not None else None,
            table=data.get("table"),
            key=data.get("key"),
            envelope=data.get("envelope"),
            raw=decode_bytes(data.get("raw")),
            origin={k: decode_bytes(v) if _is_bytes(v) else v for k, v in (data.get("origin") or {}).items()},
            ts_ms=data["ts_ms"],
        )

    @classmethod
    def from_json(cls, line: bytes | str) -> DeadLetterRecord:
        return cls.from_dict(orjson.loads(line))


def refused(
    sink: str,
    event: ChangeEvent,
    error: CdcError,
    origin: dict[str, Any] | None = None,
    stage: Stage = Stage.SINK,
) -> DeadLetterRecord:
    """The record of an event `sink` (or a middleware, with `stage`) refused with `error`."""
    key = event.key_json()
    return DeadLetterRecord(
        stage,
        sink,
        error.kind,
        error.message,
        error.hint,
        position=event.position,
        table=event.source.qualified_table,
        # Read back from the event's own JSON: the record holds exactly what the sink was given.
        key=orjson.loads(key) if key is not None else None,
        envelope=orjson.loads(event.to_json()),
        origin=origin or {},
    )


def undecodable(source: str, item: Undecodable) -> DeadLetterRecord:
    """The record of a change `source` could not decode."""
    return DeadLetterRecord(
        Stage.SOURCE,
        source,
        ErrorKind.DECODE,
        item.reason,
        item.hint or UNDECODABLE_HINT,
        position=item.position,
        table=item.table,
        raw=item.raw,
        origin=dict(item.origin or {}),
    )


def encode_bytes(raw: bytes | None) -> dict[str, str] | None:
    """Bytes as JSON: the text when it is UTF-8 (readable, greppable), else base64; always labelled."""
    if raw is None:
        return None
    try:
        return {"encoding": "utf-8", "data": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(raw).decode("ascii")}


def decode_bytes(value: dict[str, str] | None) -> bytes | None:
    if value is None:
        return None
    if value["encoding"] == "utf-8":
        return value["data"].encode("utf-8")
    if value["encoding"] == "base64":
        return base64.b64decode(value["data"])
    raise ValueError(f"unknown bytes encoding {value['encoding']!r}")


def _is_bytes(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"encoding", "data"}


# -- files -------------------------------------------------------------------------------------------
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    # One lock per file for the whole process: two writers of one path (fan-out workers, a webhook
    # path equal to the pipeline's) must not interleave their lines.
    with _locks_guard:
        return _locks.setdefault(path.absolute(), threading.Lock())


class DeadLetterWriter:
    """Appends records to one JSON-lines file; `write` returns once they are on disk (fsync'd),
    because the caller moves its checkpoint past them right after. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = _lock_for(self.path)

    def check(self) -> None:
        """Create the directory and the file now, so a path that cannot be written fails at start."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._append(b"")

    def write(self, records: Iterable[DeadLetterRecord]) -> Path:
        data = b"".join(record.to_json() + b"\n" for record in records)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(data)
        return self.path

    def _append(self, data: bytes) -> None:
        created = not self.path.exists()
        with open(self.path, "ab") as fh:
            if data:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if created:
            # A new file's name is durable only once its directory is.
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class DeadLetterDir:
    """The pipeline's dead letters (`sync.dead_letters.dir`, `tail --dead-letter-dir`): one file per
    sink for refused events, one per source for undecodable changes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, sink: str) -> Path:
        return self.directory / f"{sink}.deadletter.jsonl"

    def write(self, sink: str, events: Sequence[ChangeEvent], error: CdcError) -> Path:
        return DeadLetterWriter(self.path(sink)).write(refused(sink, e, error) for e in events)

    def write_middleware(self, name: str, events: Sequence[ChangeEvent], error: CdcError) -> Path:
        """Events a batch middleware (stages.py) refused: stage "middleware", in `<name>.deadletter.jsonl`."""
        records = (refused(name, e, error, stage=Stage.MIDDLEWARE) for e in events)
        return DeadLetterWriter(self.path(name)).write(records)

    def write_undecodable(self, source: str, item: Undecodable) -> Path:
        path = self.directory / f"{source}.undecodable.jsonl"
        return DeadLetterWriter(path).write([undecodable(source, item)])


def read(path: str | Path) -> Iterator[DeadLetterRecord]:
    """The records of a dead-letter file, in order."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield DeadLetterRecord.from_json(line)
