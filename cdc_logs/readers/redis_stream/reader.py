"""RedisStreamReader: one stream read through a consumer group, acknowledged after the sinks.

Order of reading in `stream()`:

1. this consumer's own pending entries (XREADGROUP with id 0, then after the last one seen): what an
   earlier run read but never acknowledged, because it was killed before every sink held it;
2. pending entries of other consumers idle for `claim_min_idle_ms` (XAUTOCLAIM, in passes through the
   group's pending list, again every `claim_interval_s`): the work of a consumer that died;
3. new entries (XREADGROUP `>` with BLOCK), in a loop, until stopped.

Nothing is acknowledged on reading: `commit(position)` (the pipeline, once every sink holds the events
up to `position`) records the position, and the reading loop then XACKs every entry it delivered up to
that one. A kill therefore leaves the unacknowledged entries pending, and the next run reads them
first (1.). An entry the pipeline still holds when the reader reconnects is not delivered twice.

Positions: see `StreamEntry`. Own pending entries delivered only once so far keep the stream's lane
(their entry id orders them, and a replay guard skips exactly what its sink already applied); claimed
entries and pending entries already delivered more than once (a consumer killed twice, or an entry
claimed from a dead one) come out of id order and get a lane of this run, so they are applied again
rather than wrongly taken for replays (at-least-once). `times_delivered` (XPENDING) tells them apart,
read before the entries are read again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from cdc_logs.envelope import Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position, StreamEntry
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.readers.messages import Message, MessageMapping, decode_message
from cdc_logs.readers.redis_stream.entries import EntryReading, body_of

log = get_logger(__name__)

_ACK_CHUNK = 1000


class RedisStreamReader(Reader):
    """Reads `stream` as `consumer` of `group`.

    Args:
        connect: returns a connected redis-py client (config.py builds it from the source's settings).
        identity: the server's identity (redis://host:port/db, never credentials).
        start_id: where a group created here starts: "0" the stream's first entry, "$" new entries only.
        max_pending: entries read and not yet acknowledged at most (new ones are read only below it).
        claim_min_idle_ms: claim other consumers' entries pending this long; None: never claim.
        temporary: (tail) a throwaway group, destroyed at close.
    """

    connector = "redis_stream"

    def __init__(
        self,
        connect: Callable[[], Any],
        identity: str,
        stream: str,
        group: str,
        consumer: str,
        *,
        mapping: MessageMapping,
        reading: EntryReading,
        pipeline: str,
        start_id: str = "0",
        block_ms: int = 1000,
        count: int = 100,
        max_pending: int = 1000,
        claim_min_idle_ms: int | None = 60_000,
        claim_interval_s: float = 30.0,
        temporary: bool = False,
    ) -> None:
        self.connect = connect
        self.identity = identity
        self.stream_name = stream
        self.group = group
        self.consumer = consumer
        self.mapping = mapping
        self.reading = reading
        self.pipeline = pipeline
        self.start_id = start_id
        self.block_ms = block_ms
        self.count = count
        self.max_pending = max_pending
        self.claim_min_idle_ms = claim_min_idle_ms
        self.claim_interval_s = claim_interval_s
        self.temporary = temporary
        self._client: Any = None
        self._stopping = False
        self._pending: StreamEntry | None = None
        # Entries delivered and not yet acknowledged, in delivery order: id -> delivery number.
        # Kept across reconnects: the pipeline still holds them, so they are not delivered again.
        self._inflight: dict[str, int] = {}
        self._delivered = 0
        self._run = ""
        self._order = 0
        self._table = mapping.table or stream

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        import redis

        self._stopping = False
        self._client = self.connect()
        try:
            self._client.xgroup_create(self.stream_name, self.group, id=self.start_id, mkstream=True)
            log.info("consumer group created", stream=self.stream_name, group=self.group, start=self.start_id)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                self._close_client()
                raise self._error(exc, f"creating consumer group {self.group} on {self.stream_name}") from exc
        except redis.RedisError as exc:
            self._close_client()
            raise self._error(exc, f"creating consumer group {self.group} on {self.stream_name}") from exc
        self._run = uuid.uuid4().hex[:8]
        self._order = 0

    def server_identity(self) -> str:
        return self.identity

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._stopping = True
        if self._client is None:
            return
        try:
            self._apply_commit()
            if self.temporary:
                self._client.xgroup_destroy(self.stream_name, self.group)
        except Exception as exc:
            log.warning("acknowledging on close failed; those entries are read again", error=str(exc))
        self._close_client()

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a broken connection must not mask what broke it
                log.debug("closing the redis client failed", error=str(exc))

    # -- acknowledgement -------------------------------------------------------------------------
    def commit(self, position: Position) -> None:
        if isinstance(position, StreamEntry) and position.stream == self.stream_name:
            self._pending = position  # applied by the reading loop (or close)

    def _apply_commit(self) -> None:
        position, self._pending = self._pending, None
        if position is None:
            return
        upto = self._inflight.get(position.entry_id)
        if upto is None:
            return  # a heartbeat's position, or acknowledged already
        done: list[str] = []
        for entry_id, number in self._inflight.items():  # delivery order
            if number > upto:
                break
            done.append(entry_id)
        try:
            for start in range(0, len(done), _ACK_CHUNK):
                self._client.xack(self.stream_name, self.group, *done[start : start + _ACK_CHUNK])
        except Exception:
            if self._pending is None:
                self._pending = position  # acknowledged with the next commit, or read again
            raise
        for entry_id in done:
            del self._inflight[entry_id]

    # -- reading ---------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        import redis

        if start is None:
            yield Heartbeat(StreamEntry(self.identity, stream=self.stream_name))
        try:
            yield from self._own_pending(start)
            next_claim = time.monotonic() if self.claim_min_idle_ms is not None else None
            cursor = "0-0"
            while not self._stopping:
                self._apply_commit()
                if next_claim is not None and time.monotonic() >= next_claim:
                    cursor, claimed = self._claim(cursor)
                    yield from claimed
                    if cursor == "0-0":  # a whole pass through the group's pending entries
                        next_claim = time.monotonic() + self.claim_interval_s
                    continue
                if len(self._inflight) >= self.max_pending:
                    # Read ahead no further than max_pending: entries waiting in this process grow
                    # idle in the group, and another consumer would claim them.
                    time.sleep(0.02)
                    continue
                reply = self._client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream_name: ">"},
                    count=min(self.count, self.max_pending - len(self._inflight)),
                    block=self.block_ms,
                )
                entries = _entries(reply)
                if not entries:
                    yield None  # idle tick
                    continue
                for entry_id, fields in entries:
                    yield self._item(entry_id, fields, in_order=True)
        except redis.RedisError as exc:
            raise self._error(exc, f"reading {self.stream_name}") from exc

    def _own_pending(self, start: Position | None) -> Iterator[StreamItem]:
        """This consumer's pending entries, oldest first.

        They are taken back with XCLAIM JUSTID (which resets their idle time, so no other consumer
        claims them meanwhile, without counting a delivery) and read with XRANGE (which counts none
        either): `times_delivered` stays 1 for an entry only ever read with `>`, however many runs
        were killed holding it, and such entries keep the stream's lane.

        The stored position is written before the entries are acknowledged (and the acknowledgement
        waits for the reading loop), so a kill can leave durable entries pending: those read in the
        stream's lane up to the stored position are acknowledged here instead of read again."""
        times = self._times_delivered()
        waiting = [i for i in times if i not in self._inflight]  # the pipeline holds the others
        if not waiting:
            return
        durable = (
            _id(start.entry_id)
            if isinstance(start, StreamEntry) and start.stream == self.stream_name and not start.run
            else None
        )
        done = [i for i in waiting if durable is not None and times[i] <= 1 and _id(i) <= durable]
        for first in range(0, len(done), _ACK_CHUNK):
            self._client.xack(self.stream_name, self.group, *done[first : first + _ACK_CHUNK])
        waiting = [i for i in waiting if i not in set(done)]
        log.info(
            "reading this consumer's pending entries first",
            stream=self.stream_name,
            pending=len(waiting),
            acknowledged_as_delivered=len(done),
        )
        for first in range(0, len(waiting), self.count):
            if self._stopping:
                return
            chunk = waiting[first : first + self.count]
            pipe = self._client.pipeline(transaction=False)
            pipe.xclaim(self.stream_name, self.group, self.consumer, 0, chunk, justid=True)
            for entry_id in chunk:
                pipe.xrange(self.stream_name, entry_id, entry_id, count=1)
            replies = pipe.execute()
            ours = {i.decode() if isinstance(i, bytes) else str(i) for i in replies[0]}
            for entry_id, found in zip(chunk, replies[1:], strict=True):
                if found and entry_id not in ours:
                    continue  # another consumer claimed it meanwhile
                fields = _field_map(found[0][1]) if found else None  # None: deleted from the stream
                yield self._item(entry_id.encode(), fields, in_order=times[entry_id] <= 1)

    def _times_delivered(self) -> dict[str, int]:
        out: dict[str, int] = {}
        low = "-"
        while True:
            rows = self._client.xpending_range(
                self.stream_name, self.group, min=low, max="+", count=1000, consumername=self.consumer
            )
            for row in rows:
                out[row["message_id"].decode()] = int(row["times_delivered"])
            if len(rows) < 1000:
                return out
            low = "(" + rows[-1]["message_id"].decode()

    def _claim(self, cursor: str) -> tuple[str, list[StreamItem]]:
        """One XAUTOCLAIM step: entries pending longer than claim_min_idle_ms, now this consumer's."""
        reply = self._client.execute_command(
            "XAUTOCLAIM", self.stream_name, self.group, self.consumer, self.claim_min_idle_ms, cursor,
            "COUNT", self.count,
        )  # fmt: skip
        next_cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        items: list[StreamItem] = []
        claimed = 0
        for raw in reply[1]:
            entry_id, fields = raw[0], _field_map(raw[1])
            if entry_id.decode() in self._inflight:
                continue  # this run's own entry, still on its way to the sinks
            claimed += 1
            items.append(self._item(entry_id, fields, in_order=False))
        for entry_id in reply[2] if len(reply) > 2 else ():
            # Redis 7 drops claimed entries that were deleted from the stream and lists them here.
            claimed += 1
            items.append(self._item(entry_id, None, in_order=False))
        if claimed:
            log.warning(
                "claimed entries pending in other consumers",
                stream=self.stream_name,
                entries=claimed,
                idle_ms=self.claim_min_idle_ms,
            )
        return next_cursor, items

    def _item(self, entry_id: bytes, fields: dict[bytes, bytes] | None, *, in_order: bool) -> StreamItem:
        text = entry_id.decode()
        ms, _, seq = text.partition("-")
        if in_order:
            position = StreamEntry(self.identity, stream=self.stream_name, ms=int(ms), seq=int(seq or 0))
        else:
            self._order += 1
            position = StreamEntry(
                self.identity,
                stream=self.stream_name,
                ms=int(ms),
                seq=int(seq or 0),
                run=self._run,
                order=self._order,
            )
        self._delivered += 1
        self._inflight[text] = self._delivered
        origin = {"channel": self.stream_name, "entry_id": text}
        if not fields:
            return Undecodable(
                position,
                self._table,
                "the entry was deleted from the stream (XDEL, XTRIM or MAXLEN) before it was acknowledged",
                hint="trim streams only past what every consumer group has acknowledged",
                origin=origin,
            )
        body = body_of(fields, self.reading)
        if body.problem is not None:
            return Undecodable(
                position, self._table, body.problem, raw=_raw(fields), hint=body.hint, origin=origin
            )
        message = Message(
            body.body,
            channel=self.stream_name,
            db=self.identity,
            position=position,
            key=body.key,
            ts_ms=int(ms),  # the entry id's time: when Redis added it
            coordinates={"entry_id": text},
        )
        decoded = decode_message(message, self.mapping, connector=self.connector, pipeline=self.pipeline)
        if decoded is None:
            return Heartbeat(position)  # nothing to deliver (a Debezium tombstone): acknowledged in turn
        return decoded

    def _error(self, exc: Exception, what: str) -> CdcError:
        import redis

        text = str(exc)
        if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
            return CdcError(
                ErrorKind.AUTH, f"{what}: Redis refused the credentials", "check username/password"
            )
        if "NOPERM" in text:
            return CdcError(
                ErrorKind.PERMISSION,
                f"{what}: {text}",
                "grant the user the stream commands (+@stream) on the stream's key",
            )
        if "NOGROUP" in text:
            return CdcError(
                ErrorKind.NOT_FOUND,
                f"{what}: consumer group {self.group} no longer exists (XGROUP DESTROY, or the stream was "
                "deleted)",
                f"start the pipeline again to create it (from start_id {self.start_id}), or restore it",
            )
        if "WRONGTYPE" in text:
            return CdcError(
                ErrorKind.NOT_FOUND,
                f"{what}: the key {self.stream_name} is not a stream",
                "set stream_name to a stream's key",
            )
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return CdcError(
                ErrorKind.CONNECTION,
                f"{what}: {text}",
                "check that Redis runs; the source reconnects and reads its pending entries again",
            )
        return CdcError(ErrorKind.INTERNAL, f"{what}: {text}", None)


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply (redis-py, RESP2): [[stream, [(id, fields), ...]]]."""
    if not reply:
        return []
    return [(e[0], _field_map(e[1])) for _name, entries in reply for e in entries]


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _field_map(value: Any) -> dict[bytes, bytes] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return dict(zip(value[::2], value[1::2], strict=True))


def _raw(fields: dict[bytes, bytes]) -> bytes:
    """An entry's field map as JSON text, for a dead letter (bytes that are not UTF-8 escaped)."""
    return orjson.dumps(
        {
            k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
            for k, v in fields.items()
        }
    )
