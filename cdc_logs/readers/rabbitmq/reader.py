"""RabbitMQReader: one queue, manual acknowledgements, acked only after the sinks.

`open()` connects (pika BlockingConnection), declares the topology as configured (or checks it
passively) and sets the prefetch (basic.qos). `stream()` consumes with manual acks: every message
becomes a change event (or an Undecodable, which the pipeline dead-letters) whose position is its
delivery tag on this channel.

Acknowledgement: `commit(position)` (the pipeline, once every sink holds the events up to that
message, from its own thread) records the position and wakes the consuming loop with pika's one
thread-safe call (`add_callback_threadsafe`); that loop, which owns the connection (pika is not
thread-safe), then acks every delivery up to that tag with one `basic.ack(multiple=True)`. Poison
messages are settled in the same turn: when the queue has a dead-letter exchange they are first
nacked with requeue=False, so the broker routes them there (after the pipeline's own dead-letter file
holds them); otherwise the multiple ack takes them too.

A restart, or a reconnect, gets every message that was not acknowledged again from the broker: the
broker holds the resume state, not the position, so the stored position is informational and the
only duplicates are the messages in flight when the run died (at-least-once). A reconnect makes a new
channel: positions of the old one are never acked on it (their messages are redelivered anyway).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cdc_logs.envelope import Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.position import AmqpDelivery, Position
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.readers.messages import Message, MessageMapping, decode_message

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Topology:
    """What to declare (or, with `declare` false, only check) when the source opens."""

    queue: str
    exchange: str | None = None
    exchange_type: str = "topic"
    routing_keys: tuple[str, ...] = ("#",)
    declare: bool = True
    queue_arguments: dict[str, Any] = field(default_factory=dict)


class RabbitMQReader(Reader):
    """Consumes `topology.queue`.

    Args:
        parameters: pika connection parameters (URLParameters / ConnectionParameters).
        where: the broker's address for messages (no credentials).
        prefetch: basic.qos prefetch_count: deliveries unacknowledged at most.
        nack_poison: nack poison messages with requeue=False (the queue has a dead-letter exchange).
        ack: false (tail) settles nothing: every message goes back to the queue when the source closes.
    """

    connector = "rabbitmq"

    def __init__(
        self,
        parameters: Any,
        where: str,
        topology: Topology,
        *,
        mapping: MessageMapping,
        pipeline: str,
        prefetch: int = 500,
        nack_poison: bool = False,
        ack: bool = True,
        idle_tick_s: float = 0.5,
    ) -> None:
        self.parameters = parameters
        self.where = where
        self.topology = topology
        self.mapping = mapping
        self.pipeline = pipeline
        self.prefetch = prefetch
        self.nack_poison = nack_poison
        self.ack = ack
        self.idle_tick_s = idle_tick_s
        self._connection: Any = None
        self._channel: Any = None
        self._identity = ""
        self._run = ""
        self._stopping = False
        self._pending: AmqpDelivery | None = None
        self._acked = 0  # highest delivery tag settled on this channel
        self._delivered = 0  # highest delivery tag received on this channel
        self._poison: list[int] = []  # tags of poison messages not settled yet, ascending
        self._table = mapping.table or topology.queue

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        import pika
        import pika.exceptions as pex

        self._stopping = False
        try:
            self._connection = pika.BlockingConnection(self.parameters)
            channel = self._connection.channel()
            self._declare(channel)
            channel.basic_qos(prefetch_count=self.prefetch)
        except pex.ProbableAuthenticationError as exc:
            self._reset()
            raise CdcError(
                ErrorKind.AUTH, f"RabbitMQ at {self.where} refused the login", "check username/password"
            ) from exc
        except pex.AMQPError as exc:
            self._reset()
            raise self._error(
                exc, f"opening queue {self.topology.queue!r} on RabbitMQ at {self.where}"
            ) from exc
        self._channel = channel
        props = self._connection._impl.server_properties  # cluster_name: stable across restarts
        cluster = props.get("cluster_name") or self.where
        if isinstance(cluster, bytes):
            cluster = cluster.decode()
        self._identity = f"rabbitmq://{cluster}/{quote(self.parameters.virtual_host, safe='')}"
        # A new channel: its delivery tags start at 1, and no position of an earlier one applies.
        self._run = uuid.uuid4().hex[:8]
        self._pending, self._acked, self._delivered, self._poison = None, 0, 0, []

    def _declare(self, channel: Any) -> None:
        t = self.topology
        if not t.declare:
            # The operator owns the topology: check that the queue (and exchange) exist, change nothing.
            channel.queue_declare(t.queue, passive=True)
            if t.exchange:
                channel.exchange_declare(t.exchange, passive=True)
            return
        if t.exchange:
            channel.exchange_declare(t.exchange, exchange_type=t.exchange_type, durable=True)
        channel.queue_declare(t.queue, durable=True, arguments=t.queue_arguments or None)
        if t.exchange:
            for key in t.routing_keys:
                channel.queue_bind(t.queue, t.exchange, routing_key=key)

    def server_identity(self) -> str:
        return self._identity

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._stopping = True
        if self._channel is not None:
            try:
                self._apply_commit()
            except Exception as exc:
                log.warning("acknowledging on close failed; those messages come again", error=str(exc))
        self._reset()

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Closing the connection returns every unacknowledged message to the queue.
            with contextlib.suppress(Exception):
                connection.close()

    # -- acknowledgement -------------------------------------------------------------------------
    def commit(self, position: Position) -> None:
        if not (self.ack and isinstance(position, AmqpDelivery) and position.run == self._run):
            return
        self._pending = position
        connection = self._connection
        if connection is not None:
            # The one thread-safe call of a BlockingConnection: the consuming loop wakes up and acks
            # now, not at its next message or idle tick, so a kill finds little durable and unacked.
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(self._apply_commit)

    def _apply_commit(self) -> None:
        position, self._pending = self._pending, None
        if position is None or position.run != self._run or position.tag <= self._acked:
            return
        tag = position.tag
        while self._poison and self._poison[0] <= tag:
            poison = self._poison.pop(0)
            if self.nack_poison:
                self._channel.basic_nack(poison, multiple=False, requeue=False)
        if tag > self._acked:
            self._channel.basic_ack(tag, multiple=True)  # a nacked delivery is settled already
            self._acked = tag

    # -- consuming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        import pika.exceptions as pex

        if start is None:
            yield Heartbeat(AmqpDelivery(self._identity, queue=self.topology.queue, run=self._run))
        else:
            log.info(
                "the broker holds this queue's resume state: unacknowledged messages come again",
                last_committed=start.describe(),
            )
        channel = self._channel
        try:
            for method, props, body in channel.consume(
                self.topology.queue, auto_ack=False, inactivity_timeout=self.idle_tick_s
            ):
                self._apply_commit()
                if self._stopping:
                    break
                if method is None:
                    if not self.ack or self._delivered <= self._acked:
                        # Idle only when nothing is unacked: with deliveries in flight the broker may
                        # be holding messages back for the prefetch limit (a one_time run would end).
                        yield None
                    continue
                self._delivered = int(method.delivery_tag)
                yield self._item(method, props, body)
            self._apply_commit()
        except pex.AMQPError as exc:
            raise self._error(exc, f"consuming {self.topology.queue!r}") from exc

    def _item(self, method: Any, props: Any, body: bytes) -> StreamItem:
        position = AmqpDelivery(
            self._identity, queue=self.topology.queue, run=self._run, tag=int(method.delivery_tag)
        )
        coordinates: dict[str, Any] = {
            "exchange": method.exchange,
            "routing_key": method.routing_key,
            "delivery_tag": method.delivery_tag,
            "redelivered": bool(method.redelivered),
        }
        if props is not None and props.message_id:
            coordinates["message_id"] = props.message_id
        ts = props.timestamp if props is not None else None
        message = Message(
            body,
            channel=self.topology.queue,
            db=self._identity,
            position=position,
            ts_ms=int(ts) * 1000 if ts else None,  # AMQP timestamps are whole seconds
            coordinates=coordinates,
        )
        decoded = decode_message(message, self.mapping, connector=self.connector, pipeline=self.pipeline)
        if decoded is None:
            return Heartbeat(position)  # nothing to deliver (a Debezium tombstone): acked in turn
        if isinstance(decoded, Undecodable):
            self._poison.append(position.tag)
            if self.nack_poison:
                decoded.hint = (
                    decoded.hint or ""
                ) + "; the message is also nacked to the queue's dead-letter exchange"
        return decoded

    def _error(self, exc: Exception, what: str) -> CdcError:
        import pika.exceptions as pex

        if isinstance(exc, pex.ChannelClosedByBroker):
            code, text = exc.reply_code, exc.reply_text
            if code == 404:
                return CdcError(
                    ErrorKind.NOT_FOUND,
                    f"{what}: {text}",
                    "create the queue/exchange, or set declare: true to let cdc-logs declare them",
                )
            if code == 406:
                return CdcError(
                    ErrorKind.NOT_FOUND,
                    f"{what}: {text}",
                    "the existing queue or exchange was declared with other settings (durable, type, "
                    "arguments): match them in the source's config, or set declare: false",
                )
            if code == 403:
                return CdcError(
                    ErrorKind.PERMISSION, f"{what}: {text}", "grant the user configure/read on the queue"
                )
        return CdcError(
            ErrorKind.CONNECTION,
            f"{what}: {redact(repr(exc))}",
            "check that RabbitMQ runs; the source reconnects and the broker redelivers what was not acked",
        )
