"""NatsReader: a NATS JetStream stream as a cdc-logs source (nats-py, durable pull consumer).

Consumer: a durable pull consumer on the stream (created when missing, with `deliver_policy`,
`filter_subject`, AckExplicit, `ack_wait`, `max_ack_pending`); an existing one must be a pull consumer
with explicit acks and the configured filter. Explicit acks, not AckAll: after a crash the server
sends the unacknowledged messages again only once their ack_wait runs out, and an AckAll ack of a
newer message would acknowledge those older ones before they came again, losing them.

Acknowledgements: the pipeline's `commit(position)` (any thread) records the stream sequence that
is durable and wakes the reader; the reader's thread acks every message up to there, in order, and
flushes. While messages wait for the sinks the reader tells the server they are in progress (+WPI)
every third of ack_wait, so a slow sink does not make the server send them again mid-flight.

Restart in order: when the consumer has unacknowledged messages at open (the previous run died), the
reader re-creates it (same config) to start at its ack floor + 1. The server would otherwise send
those messages only after ack_wait, behind newer ones; re-created, it sends them first and in stream
order, so positions never go backwards and a sink's replay guard recognises the repeats exactly.

Positions (`NatsSequence`): the message's stream sequence, one lane per stream; every message is a
boundary. The consumer holds the resume state; the stored position is for display.

nats-py is asyncio-only: the reader owns a private event loop and runs it (`run_until_complete`) on
whichever thread calls it, one at a time: `open` on the pipeline's thread, `stream` on the reader's
own thread, `close` after that thread has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import NatsSequence, Position
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.readers.messages import Message, MessageMapping, decode_message

log = get_logger(__name__)
_T = TypeVar("_T")
# The description cdc-logs gives the consumers it creates: only those it may delete and re-create.
_OURS = "created by cdc-logs for pipeline"


@dataclass(frozen=True)
class NatsSettings:
    """What the reader needs from `NatsSourceConfig` (secrets as plain text, never logged)."""

    url: str
    stream: str
    durable: str
    subject: str | None = None
    deliver_policy: str = "all"
    start_sequence: int | None = None
    start_time: datetime | None = None
    ack_wait_s: float = 30.0
    max_ack_pending: int = 1000
    fetch_batch: int = 100
    user: str | None = None
    password: str | None = None
    token: str | None = None
    connect_timeout_s: float = 10.0
    temporary: bool = False  # tail: a throwaway consumer the server deletes when idle


class NatsReader(Reader):
    """Read a JetStream stream as change events (module docstring)."""

    connector = "nats"

    def __init__(
        self, settings: NatsSettings, mapping: MessageMapping, *, pipeline: str, idle_tick_s: float = 0.5
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.pipeline = pipeline
        self.idle_tick_s = idle_tick_s
        self.commit_wait_s = 1.0
        self.durable = f"cdc-logs-tail-{uuid.uuid4().hex[:12]}" if settings.temporary else settings.durable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._identity = ""
        self._db = ""
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._acks_done = 0  # the durable sequence whose acks the reader's thread has flushed
        self._durable_seq = 0  # the highest stream sequence commit() said is durable
        self._acked_seq = 0  # the highest stream sequence acknowledged (acks go in order)
        self._unacked: OrderedDict[int, Any] = OrderedDict()  # stream seq -> message, in stream order
        self._highest = 0  # the highest stream sequence yielded this connection
        self._wake: asyncio.Event | None = None
        self._last_progress = time.monotonic()
        self._mappings: dict[str, MessageMapping] = {}

    # -- the private event loop ----------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        self._stop.clear()
        self._unacked.clear()
        self._highest = 0
        with self._lock:
            self._durable_seq = self._acked_seq = self._acks_done = 0
        try:
            self._run(self._open())
        except CdcError:
            self._run(self._close_quietly())
            raise
        except Exception as exc:
            self._run(self._close_quietly())
            raise CdcError(
                ErrorKind.CONNECTION,
                f"cannot read JetStream stream {self.settings.stream!r} at {_hosts(self.settings.url)}: "
                f"{exc!r}",
                "check the source's url and that the server runs with JetStream enabled (-js)",
            ) from exc

    async def _open(self) -> None:
        from nats.js.errors import NotFoundError

        s = self.settings
        self._nc = await connect(s, f"cdc-logs {self.pipeline}")
        self._js = self._nc.jetstream(timeout=s.connect_timeout_s)
        try:
            info = await self._js.stream_info(s.stream)
        except NotFoundError:
            raise CdcError(
                ErrorKind.NOT_FOUND,
                f"JetStream stream {s.stream!r} does not exist",
                "create it (nats stream add), or fix the source's stream",
            ) from None
        created = info.created.isoformat() if info.created else ""
        self._identity = f"nats-jetstream:{s.stream}" + (f"@{created}" if created else "")
        self._db = s.stream
        consumer, floor = await self._consumer()
        self._sub = await self._js.pull_subscribe_bind(durable=self.durable, stream=s.stream)
        self._acked_seq = floor
        log.info(
            "nats consumer bound",
            stream=s.stream,
            consumer=self.durable,
            ack_floor=floor,
            pending=consumer.num_pending,
        )

    async def _consumer(self) -> tuple[Any, int]:
        """The durable consumer (created when missing; re-created at its ack floor when an earlier run
        left messages unacknowledged, so they come again first and in order: module docstring) and
        the stream sequence everything up to which is acknowledged."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        s = self.settings
        try:
            info = await self._js.consumer_info(s.stream, self.durable)
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=None if s.temporary else self.durable,
                name=self.durable,
                deliver_policy=DeliverPolicy(s.deliver_policy),
                opt_start_seq=s.start_sequence,
                opt_start_time=s.start_time,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.ack_wait_s,
                max_ack_pending=s.max_ack_pending,
                filter_subject=s.subject,
                inactive_threshold=60.0 if s.temporary else None,
                description=f"{_OURS} {self.pipeline}",
            )
            log.info("creating nats consumer", stream=s.stream, consumer=self.durable)
            return await self._js.add_consumer(s.stream, config=config), 0
        config = info.config
        if config.deliver_subject:
            raise CdcError(
                ErrorKind.CONFIG,
                f"consumer {self.durable!r} of stream {s.stream!r} is a push consumer",
                "give the source a pull consumer's name (durable), or a new name to create one",
            )
        if config.ack_policy != AckPolicy.EXPLICIT:
            raise CdcError(
                ErrorKind.CONFIG,
                f"consumer {self.durable!r} acknowledges with policy {config.ack_policy}, not explicit",
                "cdc-logs acks each message once it is durable: use a consumer with ack_policy explicit",
            )
        if (config.filter_subject or None) != s.subject:
            raise CdcError(
                ErrorKind.CONFIG,
                f"consumer {self.durable!r} filters subject {config.filter_subject!r}, the source "
                f"{s.subject!r}",
                "use the consumer's filter, or a new durable name for the new subject",
            )
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if info.num_ack_pending and not (config.description or "").startswith(_OURS):
            # Not ours to delete (the user's consumer, maybe shared with other readers): its
            # unacknowledged messages come again after ack_wait, behind newer ones.
            log.info(
                "nats consumer has unacknowledged messages from an earlier run; they are redelivered "
                "after its ack_wait (a consumer cdc-logs did not create is never re-created)",
                stream=s.stream,
                consumer=self.durable,
                unacknowledged=info.num_ack_pending,
            )
        elif info.num_ack_pending:
            log.info(
                "nats consumer has unacknowledged messages from an earlier run: re-creating it at its ack "
                "floor so they come again first, in order",
                stream=s.stream,
                consumer=self.durable,
                unacknowledged=info.num_ack_pending,
                from_sequence=floor + 1,
            )
            await self._js.delete_consumer(s.stream, self.durable)
            fresh = replace(
                config,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=floor + 1,
                opt_start_time=None,
            )
            return await self._js.add_consumer(s.stream, config=fresh), floor
        return info, floor

    def server_identity(self) -> str:
        return self._identity

    def stop(self) -> None:
        self._stop.set()
        self._poke()
        with self._lock:
            self._lock.notify_all()  # a commit() waiting for acks returns now

    def close(self) -> None:
        self._stop.set()
        if self._loop is None:
            return
        try:
            if self._nc is not None and self._nc.is_connected:
                self._run(self._send_acks())
        except Exception as exc:
            log.warning("acknowledging on close failed; those messages come again", error=str(exc))
        self._run(self._close_quietly())
        self._loop.close()
        self._loop = None
        self._wake = None

    async def _close_quietly(self) -> None:
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    # -- commits -------------------------------------------------------------------------------------
    def commit(self, position: Position) -> None:
        """Record what is durable, wake the reader's thread, and give it a moment to send the acks:
        the pipeline writes the next batch after this returns, and a crash before the acks are out
        would repeat both batches. Bounded (`commit_wait_s`): a reader held back by a full queue
        acks later."""
        if not isinstance(position, NatsSequence):
            return
        with self._lock:
            self._durable_seq = max(self._durable_seq, position.seq)
        self._poke()
        with self._lock:
            self._lock.wait_for(
                lambda: self._acks_done >= position.seq or self._nc is None or self._stop.is_set(),
                self.commit_wait_s,
            )

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(wake.set)

    def _acks_due(self) -> bool:
        with self._lock:
            return self._durable_seq > self._acked_seq and bool(self._unacked)

    async def _send_acks(self) -> None:
        """Ack every message up to the durable sequence, in stream order, and flush them out."""
        with self._lock:
            durable = self._durable_seq
        sent = 0
        while self._unacked:
            seq = next(iter(self._unacked))
            if seq > durable:
                break
            msg = self._unacked.pop(seq)
            await msg.ack()
            self._acked_seq = seq
            sent += 1
        if sent:
            await self._nc.flush(timeout=self.settings.connect_timeout_s)
            self._last_progress = time.monotonic()
        with self._lock:
            self._acks_done = max(self._acks_done, durable)
            self._lock.notify_all()

    async def _keep_in_progress(self) -> None:
        """Tell the server the messages waiting for the sinks are still being worked on (+WPI), so it
        does not send them again when their ack_wait runs out."""
        if not self._unacked or time.monotonic() - self._last_progress < self.settings.ack_wait_s / 3:
            return
        for msg in self._unacked.values():
            await msg.in_progress()
        self._last_progress = time.monotonic()

    async def _fetch(self) -> list[Any]:
        """The next messages (empty after an idle tick), sending acks whenever a commit comes in."""
        import nats.errors

        if self._wake is None:
            self._wake = asyncio.Event()
        await self._send_acks()
        await self._keep_in_progress()
        batch = self.settings.fetch_batch
        fetch = asyncio.ensure_future(self._sub.fetch(batch, timeout=self.idle_tick_s))
        while True:
            self._wake.clear()
            waker = asyncio.ensure_future(self._wake.wait())
            done, _ = await asyncio.wait({fetch, waker}, return_when=asyncio.FIRST_COMPLETED)
            if waker not in done:
                waker.cancel()
            else:
                await self._send_acks()
            if fetch.done():
                try:
                    return list(fetch.result())
                except (TimeoutError, nats.errors.TimeoutError):
                    return []
            if self._stop.is_set():
                # Not cancelled: messages a pull request brought in later wait in the subscription.
                with contextlib.suppress(Exception):
                    await fetch
                return []

    # -- streaming -----------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        if self._nc is None:
            raise CdcError(ErrorKind.INTERNAL, "NatsReader.stream() before open()", None)
        if start is None:
            yield Heartbeat(NatsSequence(self._identity, stream=self.settings.stream, seq=self._acked_seq))
        last_yield = time.monotonic()
        while not self._stop.is_set():
            try:
                msgs = self._run(self._fetch())
            except CdcError:
                raise
            except Exception as exc:
                raise CdcError(
                    ErrorKind.CONNECTION,
                    f"reading JetStream stream {self.settings.stream!r} failed: {exc!r}",
                    "the source reconnects; unacknowledged messages come again",
                ) from exc
            if self._nc is None or self._nc.is_closed:
                raise CdcError(
                    ErrorKind.CONNECTION,
                    f"lost the connection to NATS at {_hosts(self.settings.url)}",
                    "the source reconnects; unacknowledged messages come again",
                )
            if not msgs:
                if time.monotonic() - last_yield >= self.idle_tick_s:
                    last_yield = time.monotonic()
                    yield None
                continue
            for msg in msgs:
                item = self._convert(msg)
                if item is not None:
                    last_yield = time.monotonic()
                    yield item
                    if self._acks_due():  # a batch became durable while we were held: ack it now
                        self._run(self._send_acks())

    def _convert(self, msg: Any) -> StreamItem:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self._highest or seq <= self._acked_seq:
            # Sent again while its first delivery still waits for the sinks (or was just acked): keep
            # the newest delivery to ack, never yield it twice within one connection.
            if seq in self._unacked:
                self._unacked[seq] = msg
            elif seq <= self._acked_seq:
                self._run_ack(msg)
            else:
                log.warning("nats message out of stream order, skipped", stream=meta.stream, sequence=seq)
            return None
        self._highest = seq
        self._unacked[seq] = msg
        position = NatsSequence(self._identity, stream=self.settings.stream, seq=seq)
        headers = msg.headers or {}
        key = headers.get("key")
        message = Message(
            body=msg.data,
            channel=msg.subject,
            db=self._db,
            position=position,
            key=key.encode() if isinstance(key, str) else None,
            ts_ms=int(meta.timestamp.timestamp() * 1000) if meta.timestamp else None,
            coordinates={
                "subject": msg.subject,
                "stream_seq": seq,
                "delivered": meta.num_delivered,
            },
        )
        if not msg.data:
            return Heartbeat(position)  # no row in an empty message
        item = decode_message(
            message, self._mapping(msg.subject), connector=self.connector, pipeline=self.pipeline
        )
        return Heartbeat(position) if item is None else item

    def _run_ack(self, msg: Any) -> None:
        # Inside a generator step: the loop is not running here, so run the ack to completion.
        assert self._loop is not None
        self._loop.run_until_complete(msg.ack())

    def _mapping(self, subject: str) -> MessageMapping:
        mapping = self._mappings.get(subject)
        if mapping is None:
            if self.mapping.table is not None or self.mapping.debezium:
                mapping = self.mapping
            else:
                mapping = replace(self.mapping, table=subject.replace(".", "_"))
            if len(self._mappings) < 100_000:
                self._mappings[subject] = mapping
        return mapping


async def connect(s: NatsSettings, name: str, **options: Any) -> Any:
    """A nats-py connection as the source makes it (servers, auth, timeout); `options` override."""
    import nats

    auth = {k: v for k, v in {"user": s.user, "password": s.password, "token": s.token}.items() if v}
    kwargs: dict[str, Any] = {
        "connect_timeout": s.connect_timeout_s,
        "max_reconnect_attempts": 5,
        "allow_reconnect": True,
        "name": name,
        "error_cb": _client_error,
        **auth,
        **options,
    }
    return await nats.connect(s.url, **kwargs)


async def _client_error(exc: Exception) -> None:
    # nats-py's default logs every client error with a traceback; the reader raises what matters as a
    # CdcError with the fix, so the client's own reports are debug lines.
    log.debug("nats client error", error=str(exc))


def _hosts(url: str) -> str:
    """The server list without credentials (the config refuses them in the URL anyway)."""
    return ",".join(u.strip().rpartition("@")[2] for u in url.split(","))
