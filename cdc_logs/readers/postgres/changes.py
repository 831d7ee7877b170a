"""ChangeStream: pgoutput messages in walsender order -> envelopes and heartbeats in commit order.

Fed one XLogData payload at a time (with its WAL start, the LSN of the change), it yields what the
pipeline gets. No I/O: unit-tested on captured replication traffic.

  * A plain transaction (Begin ... Commit) is yielded as it arrives, one event held back so the last
    one can carry the boundary and the position `Lsn(commit end_lsn)` (the only position a restart
    may resume from: it never splits a transaction). The others carry (commit LSN, their change's
    LSN, their place in it): every event has its own position (docs/event-contract.md).
  * A streamed transaction (protocol 2+) waits in `StreamBuffers` until Stream Commit, then is decoded
    and yielded the same way; Stream Abort drops it, or one subtransaction's part of it.
  * A non-transactional logical message is its own boundary event at its LSN; one with the heartbeat
    prefix is not an event but a `Heartbeat` of that LSN, so the pipeline commits it and the slot
    advances while only uncaptured tables are written.
  * Relation and Type messages update the builder's relation cache as they come, and inside a
    streamed transaction at replay, in the order the server sent them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Lsn
from cdc_logs.readers.postgres.convert import EventBuilder
from cdc_logs.readers.postgres.pgoutput import (
    Begin,
    Commit,
    Decoder,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Relation,
    StreamAbort,
    StreamCommit,
    Truncate,
    Type,
    Update,
    decode_message,
)
from cdc_logs.readers.postgres.txbuffer import StreamBuffers

HEARTBEAT_PREFIX = "cdc-logs-heartbeat"
# Incremental snapshot watermarks: transactional messages {"id": chunk id, "open": bool}, never events.
WATERMARK_PREFIX = "cdc-logs-isnap"
_STREAM_START, _STREAM_STOP = ord("S"), ord("E")


@dataclass(slots=True)
class WindowMark:
    """An incremental snapshot watermark read from the log (readers/incremental.py). `at` is the
    message's own place in its transaction; `position`/`boundary` are set like an event's (its
    transaction's end, as the watermark is alone in it)."""

    chunk: str
    opening: bool
    at: Lsn
    position: Lsn
    boundary: bool = False


Item = ChangeEvent | Heartbeat | Undecodable | WindowMark


class ChangeStream:
    """See the module docstring. `tables`: qualified names to emit (None: every published table)."""

    def __init__(
        self,
        builder: EventBuilder,
        buffers: StreamBuffers,
        server: str,
        *,
        tables: set[str] | None = None,
        messages: bool = True,
    ) -> None:
        self.builder = builder
        self.buffers = buffers
        self.server = server
        self.tables = tables
        self.messages = messages
        self.decoder = Decoder()
        self._held: ChangeEvent | Undecodable | WindowMark | None = None
        self._in_tx = False
        self.last_boundary = 0  # LSN of the last boundary yielded (event or heartbeat)
        self._record_lsn, self._record_events = -1, 0  # see _ordinal

    @property
    def in_flight(self) -> bool:
        """A transaction is open here: a plain one between Begin and Commit, or a buffered stream."""
        return self._in_tx or len(self.buffers) > 0 or self.decoder.in_stream

    def feed(self, wal_start: int, payload: bytes | memoryview) -> Iterator[Item]:
        decoder = self.decoder
        if decoder.in_stream and payload[0] != _STREAM_STOP and payload[0] != _STREAM_START:
            # Inside a stream block: keep the raw message; it is decoded once, at Stream Commit.
            assert decoder.stream_xid is not None
            self.buffers.append(decoder.stream_xid, wal_start, bytes(payload))
            return
        msg = decoder.decode(payload)
        yield from self._handle(msg, wal_start)

    def _handle(self, msg: Message, lsn: int) -> Iterator[Item]:
        kind = type(msg)
        if kind is Insert or kind is Update or kind is Delete:
            try:
                events = self.builder.change(msg, lsn)  # type: ignore[arg-type]
            except CdcError as exc:
                if exc.kind is not ErrorKind.DECODE or self.builder.tx is None:
                    raise
                yield from self._undecodable(msg, lsn, exc)  # type: ignore[arg-type]
                return
            self._place(events, lsn)
            # One table per row change (both halves of a key change): filtered once. `_push` inlined:
            # a generator per event was a measurable share of the reader (docs/benchmarks.md, Profile).
            if self.tables is None or events[0].source.qualified_table in self.tables:
                for event in events:
                    held, self._held = self._held, event
                    if held is not None:
                        yield held
        elif kind is Begin:
            assert isinstance(msg, Begin)
            self._open(msg.xid, msg.final_lsn, msg.commit_ts)
        elif kind is Commit:
            assert isinstance(msg, Commit)
            yield from self._close(msg.end_lsn)
        elif kind is Relation:
            assert isinstance(msg, Relation)
            self.builder.on_relation(msg)
        elif kind is Type:
            assert isinstance(msg, Type)
            self.builder.on_type(msg)
        elif kind is Truncate:
            assert isinstance(msg, Truncate)
            events = self.builder.truncate(msg, lsn)
            self._place(events, lsn)
            for event in events:
                if self._wanted(event):
                    yield from self._push(event)
        elif kind is LogicalMessage:
            assert isinstance(msg, LogicalMessage)
            yield from self._message(msg, lsn)
        elif kind is StreamCommit:
            assert isinstance(msg, StreamCommit)
            yield from self._stream_commit(msg)
        elif kind is StreamAbort:
            assert isinstance(msg, StreamAbort)
            self.buffers.abort(msg.xid, msg.subxid)
        # Origin, Stream Start/Stop: nothing to do. Two-phase messages are never requested.

    def _ordinal(self, lsn: int) -> int:
        """The next event's place among those of WAL record `lsn`. Counted across messages, before any
        table filter: one record can carry many rows (COPY writes a multi-insert record, so every
        Insert of it arrives with the same LSN) and the numbering must be the same on a replay."""
        if lsn != self._record_lsn:
            self._record_lsn, self._record_events = lsn, 0
        self._record_events += 1
        return self._record_events

    def _place(self, events: list[ChangeEvent], lsn: int) -> None:
        """Mid-transaction positions: (commit LSN, the change's own LSN, its place in that record).
        `_close` gives the transaction's last event the commit end LSN instead."""
        tx = self.builder.tx
        assert tx is not None
        for event in events:
            event.position = Lsn(self.server, tx.commit_lsn, lsn, event=self._ordinal(lsn))

    def _undecodable(self, msg: Insert | Update | Delete, lsn: int, exc: CdcError) -> Iterator[Item]:
        """A row whose values cannot be converted: held in its place in the transaction like an
        event, for the dead-letter file (the raw column texts kept; the message names no value)."""
        tx = self.builder.tx
        assert tx is not None
        position = Lsn(self.server, tx.commit_lsn, lsn, event=self._ordinal(lsn))  # before the filter
        relation = self.builder.relation(msg.relation_oid)
        if self.tables is not None and relation.qualified_name not in self.tables:
            return
        values = getattr(msg, "new", None) or getattr(msg, "old", None) or ()
        raw = orjson.dumps([v if isinstance(v, str) or v is None else repr(v) for v in values])
        item = Undecodable(position, relation.qualified_name, exc.message, boundary=False, raw=raw)
        yield from self._push(item)

    def _wanted(self, event: ChangeEvent) -> bool:
        return self.tables is None or event.source.qualified_table in self.tables

    # -- transactions --------------------------------------------------------------------------------
    def _open(self, xid: int, commit_lsn: int, commit_ts: int) -> None:
        if self._in_tx:
            raise CdcError(ErrorKind.DECODE, "pgoutput: Begin inside an open transaction")
        self._in_tx = True
        self._held = None
        self.builder.begin(xid, commit_lsn, commit_ts)

    def _push(self, event: ChangeEvent | Undecodable | WindowMark) -> Iterator[Item]:
        held, self._held = self._held, event
        if held is not None:
            yield held

    def _close(self, end_lsn: int) -> Iterator[Item]:
        if not self._in_tx:
            raise CdcError(ErrorKind.DECODE, "pgoutput: Commit without Begin")
        held, self._held = self._held, None
        self._in_tx = False
        self.builder.end()
        if held is not None:
            held.position = Lsn(self.server, end_lsn)
            held.boundary = True
            self.last_boundary = end_lsn
            yield held

    def _stream_commit(self, msg: StreamCommit) -> Iterator[Item]:
        self._open(msg.xid, msg.commit_lsn, msg.commit_ts)
        for lsn, payload in self.buffers.take(msg.xid):
            inner = decode_message(payload, in_stream=True)
            yield from self._handle(inner, lsn)
        yield from self._close(msg.end_lsn)

    def _message(self, msg: LogicalMessage, lsn: int) -> Iterator[Item]:
        if not msg.transactional:
            if self._in_tx:
                raise CdcError(ErrorKind.DECODE, "pgoutput: a non-transactional message inside a transaction")
            if msg.prefix == HEARTBEAT_PREFIX:
                self.last_boundary = msg.lsn
                yield Heartbeat(Lsn(self.server, msg.lsn))
            elif self.messages:
                event = self.builder.message(msg, msg.lsn)
                # `change` set too: the message's own record, after a transaction that may end at this
                # very LSN (a resume point at msg.lsn either way).
                event.position = Lsn(self.server, msg.lsn, msg.lsn)
                self.last_boundary = msg.lsn
                yield event
            return
        if msg.prefix == WATERMARK_PREFIX:
            yield from self._watermark(msg)
            return
        if self.messages and msg.prefix != HEARTBEAT_PREFIX:
            event = self.builder.message(msg, msg.lsn)
            self._place([event], msg.lsn)
            yield from self._push(event)

    def _watermark(self, msg: LogicalMessage) -> Iterator[Item]:
        tx = self.builder.tx
        assert tx is not None
        try:
            data = orjson.loads(msg.content)
            chunk, opening = str(data["id"]), bool(data["open"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise CdcError(
                ErrorKind.DECODE, f"an incremental snapshot watermark is not valid ({exc})"
            ) from exc
        at = Lsn(self.server, tx.commit_lsn, msg.lsn, event=self._ordinal(msg.lsn))
        yield from self._push(WindowMark(chunk, opening, at, at))

    def reset(self) -> None:
        """Forget partial state (after a reconnect the server sends every open transaction again)."""
        self.decoder = Decoder()
        self.buffers.clear()
        self._held = None
        self._in_tx = False
        self.builder.end()
