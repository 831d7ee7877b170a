"""What crosses the pipe between a reader and its decode process (readers/worker_process.py).

Both directions are frames: a 4-byte big-endian length, then one codec byte and the body. The codec
is `marshal` (C speed, no classes) when every value is a plain Python value, and `pickle` otherwise
(a converter that produced a Decimal or a date, a position holding a dataclass): the choice is made
per frame, so the rare odd value costs only its own frame.

Items (ChangeEvent, Heartbeat, Undecodable) travel as tuples of their fields, not as pickled
objects: pickling a slotted dataclass graph cost ~7.5 us per event and unpickling ~4 us, where the
tuples cost ~1 us each way (measured on 10,000 Postgres events; docs/benchmarks.md, Profile). A
position travels as its type and its instance dict (positions are frozen dataclasses without
slots), so every reader's position type works unchanged. Any other item (the Postgres reader's
incremental snapshot watermark) is sent as the object itself, and its frame is pickled.

A table's `TableSchema` is shared by reference in a reader (sinks compare it by identity), so it is
sent once, under a number, and every event after names the number. An event's JSON (`encoded`) is
sent when the process made it: only for a pipeline without transforms (Reader.serialize_early), as
transforms run on the reader's side, before the envelope is first serialized.
"""

from __future__ import annotations

import marshal
import pickle
import struct
from collections.abc import Iterable
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Transaction, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position, position_type
from cdc_logs.schema import TableSchema

HEADER = struct.Struct(">I")
_MARSHAL, _PICKLE = b"M", b"P"
_OPS = {op._value_: op for op in Op}


def frame(message: Any) -> bytes:
    """One frame: length, codec, body."""
    try:
        body = _MARSHAL + marshal.dumps(message)
    except ValueError:  # a value marshal does not know (Decimal, datetime, a dataclass)
        body = _PICKLE + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def unframe(body: bytes | memoryview) -> Any:
    """The message of one frame's body (without its length)."""
    codec = bytes(body[:1])
    if codec == _MARSHAL:
        return marshal.loads(body[1:])
    if codec == _PICKLE:
        return pickle.loads(body[1:])
    raise CdcError(ErrorKind.INTERNAL, f"the decode process sent a frame of unknown codec {codec!r}")


class Frames:
    """Splits a byte stream into frame bodies as its bytes arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        while len(buf) - start >= 4:
            (size,) = HEADER.unpack_from(buf, start)
            if len(buf) - start - 4 < size:
                break
            out.append(bytes(buf[start + 4 : start + 4 + size]))
            start += 4 + size
        if start:
            del buf[:start]
        return out

    @property
    def partial(self) -> bool:
        return bool(self._buf)


# -- items -> tuples (in the decode process) ------------------------------------------------------
class ItemEncoder:
    """Encodes items; remembers which schemas the other side already has."""

    def __init__(self) -> None:
        self._schemas: dict[int, int] = {}  # id(schema) -> its number on the wire
        self._keep: list[TableSchema] = []  # keeps the numbered objects alive (ids stay unique)

    def encode(self, item: Any) -> tuple[Any, ...]:
        kind = type(item)
        if kind is ChangeEvent:
            return self._event(item)
        if kind is Heartbeat:
            return ("h", encode_position(item.position), item.boundary)
        if kind is Undecodable:
            position = encode_position(item.position)
            return ("x", position, item.table, item.reason, item.boundary, item.raw, item.hint, item.origin)
        return ("o", item)  # rare kinds, as they are: the frame is pickled

    def _event(self, event: ChangeEvent) -> tuple[Any, ...]:
        src = event.source
        tx = event.transaction
        schema = event.schema
        schema_ref: Any = None
        if schema is not None:
            number = self._schemas.get(id(schema))
            if number is None:
                number = self._schemas[id(schema)] = len(self._keep)
                self._keep.append(schema)
                schema_ref = (number, pickle.dumps(schema, protocol=pickle.HIGHEST_PROTOCOL))
            else:
                schema_ref = number
        return (
            "e",
            event.op._value_,
            (src.connector, src.name, src.db, src.table, src.schema, src.ts_ms, src.snapshot, src.extra),
            event.before,
            event.after,
            event.key,
            event.ts_ms,
            None if tx is None else (tx.id, tx.total_order, tx.data_collection_order),
            event.unchanged,
            encode_position(event.position),
            event.boundary,
            event.content,
            schema_ref,
            event.key_change,
            event.text_documents,
            event.update_description,
            event.whole_row,
            event.encoded,
        )


def encode_position(position: Position | None) -> Any:
    """A position as (kind, instance dict), for a frame."""
    return None if position is None else (position.kind, position.__dict__)


# -- tuples -> items (in the reader) --------------------------------------------------------------
class ItemDecoder:
    """Rebuilds items; one TableSchema object per schema number, as the reader would share it.
    `known`: the schemas the reader made before the process took over; an equal one arriving is
    replaced by the reader's own object, so a table's version keeps one identity across the switch."""

    def __init__(self, known: Iterable[TableSchema] = ()) -> None:
        self._schemas: list[TableSchema] = []
        self._known = {_content(schema): schema for schema in known}

    def decode(self, data: tuple[Any, ...]) -> Any:
        tag = data[0]
        if tag == "e":
            return self._event(data)
        if tag == "h":
            return Heartbeat(decode_position(data[1]), data[2])
        if tag == "x":
            position, table, reason, boundary, raw, hint, origin = data[1:]
            return Undecodable(decode_position(position), table, reason, boundary, raw, hint, origin)
        if tag == "o":
            return data[1]
        raise CdcError(ErrorKind.INTERNAL, f"the decode process sent an item of unknown kind {tag!r}")

    def _event(self, data: tuple[Any, ...]) -> ChangeEvent:
        (_, op, src, before, after, key, ts_ms, tx, unchanged, position, boundary, content, ref, *rest) = data
        key_change, text_documents, update_description, whole_row, encoded = rest
        schema: TableSchema | None = None
        if ref is not None:
            if isinstance(ref, tuple):
                number, blob = ref
                if number != len(self._schemas):
                    raise CdcError(
                        ErrorKind.INTERNAL, "the decode process numbered a table schema out of order"
                    )
                received: TableSchema = pickle.loads(blob)
                self._schemas.append(self._known.get(_content(received), received))
                ref = number
            schema = self._schemas[ref]
        connector, name, db, table, schema_name, src_ts, snapshot, extra = src
        return ChangeEvent(
            _OPS[op],
            SourceInfo(connector, name, db, table, schema_name, src_ts, snapshot, extra),
            before,
            after,
            key,
            ts_ms,
            None if tx is None else Transaction(tx[0], tx[1], tx[2]),
            unchanged,
            decode_position(position),
            boundary,
            content,
            schema=schema,
            text_documents=text_documents,
            update_description=update_description,
            whole_row=whole_row,
            encoded=encoded,
            key_change=key_change,
        )


def _content(schema: TableSchema) -> tuple[Any, ...]:
    return (schema.db, schema.schema, schema.table, schema.columns, schema.version)


def decode_position(data: Any) -> Any:
    """The position of `encode_position`'s value: a frozen dataclass filled without __init__, as
    Position.at_event copies one."""
    if data is None:
        return None
    kind, state = data
    position = object.__new__(position_type(kind))
    position.__dict__.update(state)
    return position
