"""PulsarReader: a Pulsar subscription as a cdc-logs source (pulsar-client). NOT tested against a live
broker: none can run on the project's machines (docs/sources/pulsar.md); the acknowledgement
bookkeeping, message decoding and error mapping are unit-tested with the client's own message-id
objects, and the real client is run against an unreachable service URL.

Each received message becomes a ChangeEvent through readers/messages.py (`decode_message`), an
Undecodable (the pipeline dead-letters it), or a Heartbeat (a message with nothing to deliver, e.g. a
Debezium tombstone): every message keeps its place, so its acknowledgement waits for its turn.

Acknowledgement after durable: `commit(position)` (the pipeline's thread, once every sink holds the
data up to `position`) only records the position; the reader's loop then acknowledges every message
it yielded up to that one: message by message on shared/key_shared subscriptions, cumulatively per
topic partition (the last one) on exclusive/failover. Nothing is acknowledged before. The broker
keeps the subscription's cursor and re-delivers every unacknowledged message after a restart or a
reconnect, so the only duplicates are the messages in flight at a crash. The stored position
(`PulsarMessageId`) is informational: it is never used to seek.

Poison: an undecodable message goes to the pipeline's dead-letter file with the reason (the pipeline
does that) and is acknowledged at commit like any other; with `dead_letter_topic` (shared/key_shared)
it is negatively acknowledged instead, and the client's dead-letter policy moves it to that topic
after `max_redeliver_count` redeliveries; those redeliveries are negatively acknowledged at once and
not dead-lettered to the file again.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position, PulsarMessageId
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.readers.messages import Message, MessageMapping, decode_message

log = get_logger(__name__)

CUMULATIVE = frozenset({"exclusive", "failover"})
#: Client results that a reconnect can cure (the rest need an operator: auth, names, config).
_TRANSIENT = frozenset(
    {
        "Timeout",
        "ConnectError",
        "NotConnected",
        "ReadError",
        "LookupError",
        "TooManyLookupRequestException",
        "ServiceUnitNotReady",
        "BrokerMetadataError",
        "BrokerPersistenceError",
        "ConsumerBusy",  # an exclusive subscription still held by a consumer that is going away
        "AlreadyClosed",
        "UnknownError",
    }
)


def error_kind(exc: BaseException) -> ErrorKind:
    name = type(exc).__name__
    if name in ("AuthenticationError", "AuthorizationError", "ErrorGettingAuthenticationData"):
        return ErrorKind.AUTH
    if name in ("TopicNotFound", "SubscriptionNotFound"):
        return ErrorKind.NOT_FOUND
    return ErrorKind.CONNECTION if name in _TRANSIENT else ErrorKind.CONFIG


def position_of(server: str, topic: str, message_id: Any) -> PulsarMessageId:
    return PulsarMessageId(
        server,
        topic=topic,
        ledger=int(message_id.ledger_id()),
        entry=int(message_id.entry_id()),
        batch=int(message_id.batch_index()),
    )


@dataclass(slots=True)
class _Delivered:
    """A message yielded to the pipeline and not acknowledged yet."""

    position: Position
    message_id: Any
    topic: str
    poison: bool = False


class Acks:
    """Which messages to acknowledge once the pipeline commits a position (the reader's loop only)."""

    def __init__(self, subscription_type: str, *, nack_poison: bool) -> None:
        self.cumulative = subscription_type in CUMULATIVE
        self.nack_poison = nack_poison
        self._pending: deque[_Delivered] = deque()

    def delivered(self, position: Position, message_id: Any, topic: str, *, poison: bool = False) -> None:
        self._pending.append(_Delivered(position, message_id, topic, poison))

    def due(self, committed: Position) -> tuple[list[Any], list[Any], list[Any]]:
        """(individual acks, cumulative acks, negative acks) for everything yielded up to `committed`.
        A position not among the pending ones (a previous connection's) acknowledges nothing: the
        broker re-delivers those messages."""
        if not any(d.position == committed for d in self._pending):
            return [], [], []
        done: list[_Delivered] = []
        while self._pending:
            delivered = self._pending.popleft()
            done.append(delivered)
            if delivered.position == committed:
                break
        nacks = [d.message_id for d in done if d.poison and self.nack_poison]
        if not self.cumulative:
            return [d.message_id for d in done if not (d.poison and self.nack_poison)], [], nacks
        last: dict[str, Any] = {}
        for d in done:
            last[d.topic] = d.message_id  # per partition: acknowledge_cumulative is per partition
        return [], list(last.values()), nacks

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


class PulsarReader(Reader):
    connector = "pulsar"

    def __init__(
        self,
        service_url: str,
        topics: Sequence[str],
        subscription_name: str,
        *,
        subscription_type: str = "exclusive",
        mapping: MessageMapping | None = None,
        pipeline: str = "cdc",
        consumer_name: str | None = None,
        initial_position: str = "earliest",
        receiver_queue_size: int = 1000,
        dead_letter_topic: str | None = None,
        max_redeliver_count: int = 1,
        negative_ack_redelivery_delay_ms: int = 1000,
        auth_token: str | None = None,
        temporary: bool = False,
        idle_tick_s: float = 0.5,
        connection_timeout_ms: int = 10_000,
        client_factory: Any = None,
    ) -> None:
        self.service_url = service_url
        self.topics = list(topics)
        self.subscription_name = subscription_name
        self.subscription_type = subscription_type
        self.mapping = mapping or MessageMapping()
        self.pipeline = pipeline
        self.consumer_name = consumer_name
        self.initial_position = initial_position
        self.receiver_queue_size = receiver_queue_size
        self.dead_letter_topic = dead_letter_topic
        self.max_redeliver_count = max_redeliver_count
        self.negative_ack_redelivery_delay_ms = negative_ack_redelivery_delay_ms
        self.auth_token = auth_token
        self.temporary = temporary
        self.idle_tick_s = idle_tick_s
        self.connection_timeout_ms = connection_timeout_ms
        self._client_factory = client_factory
        self._client: Any = None
        self._consumer: Any = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._commit_to: Position | None = None
        self._acks = Acks(subscription_type, nack_poison=dead_letter_topic is not None)
        self.server = "pulsar:" + ",".join(
            sorted((urlsplit(service_url).netloc.rpartition("@")[2]).split(","))
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        import pulsar

        self._stop.clear()
        self._acks.clear()
        with self._lock:
            self._commit_to = None
        auth = pulsar.AuthenticationToken(self.auth_token) if self.auth_token else None
        factory = self._client_factory or pulsar.Client
        try:
            self._client = factory(
                self.service_url,
                authentication=auth,
                connection_timeout_ms=self.connection_timeout_ms,
                operation_timeout_seconds=max(1, self.connection_timeout_ms // 1000),
                logger=_quiet_logger(),
            )
            topics = self.topics[0] if len(self.topics) == 1 else self.topics
            self._consumer = self._client.subscribe(topics, **self.subscribe_args())
        except Exception as exc:
            self._close_client()
            kind = error_kind(exc)
            raise CdcError(
                kind,
                f"cannot subscribe {self.subscription_name!r} to {', '.join(self.topics)} at "
                f"{redact(self.service_url)}: {type(exc).__name__}: {redact(str(exc))}",
                {
                    ErrorKind.AUTH: "check auth_token and the role's consume permission on the namespace",
                    ErrorKind.NOT_FOUND: "create the topic, or let the namespace auto-create topics",
                    ErrorKind.CONNECTION: "check service_url and that the broker is up (retried)",
                }.get(kind, "check the source's pulsar settings"),
            ) from exc

    def subscribe_args(self) -> dict[str, Any]:
        """`Client.subscribe` keyword arguments (besides the topics)."""
        import pulsar

        consumer_type = {
            "exclusive": pulsar.ConsumerType.Exclusive,
            "shared": pulsar.ConsumerType.Shared,
            "failover": pulsar.ConsumerType.Failover,
            "key_shared": pulsar.ConsumerType.KeyShared,
        }[self.subscription_type]
        name = self.subscription_name
        if self.temporary:  # tail: a throwaway subscription, removed on close
            name = f"{name}-tail-{uuid.uuid4().hex[:8]}"
        args: dict[str, Any] = {
            "subscription_name": name,
            "consumer_type": consumer_type,
            "receiver_queue_size": self.receiver_queue_size,
            "initial_position": pulsar.InitialPosition.Earliest
            if self.initial_position == "earliest" and not self.temporary
            else pulsar.InitialPosition.Latest,
        }
        if self.consumer_name:
            args["consumer_name"] = self.consumer_name
        if self.dead_letter_topic:
            args["dead_letter_policy"] = pulsar.ConsumerDeadLetterPolicy(
                self.max_redeliver_count, self.dead_letter_topic
            )
            args["negative_ack_redelivery_delay_ms"] = self.negative_ack_redelivery_delay_ms
        return args

    def server_identity(self) -> str:
        return self.server

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._consumer is not None:
            try:
                self._apply_acks()  # what the pipeline committed last, before the consumer goes
                if self.temporary:
                    self._consumer.unsubscribe()
                self._consumer.close()
            except Exception as exc:  # unacknowledged messages come again: at-least-once
                log.warning("closing the pulsar consumer failed", error=str(exc))
            self._consumer = None
        self._close_client()

    def _close_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:
                log.debug("closing the pulsar client failed", error=str(exc))
            self._client = None

    # -- reading ---------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        import pulsar

        if start is None:  # the contract's first heartbeat; the broker's cursor is the real start
            yield Heartbeat(PulsarMessageId(self.server))
        timeout_ms = max(1, int(self.idle_tick_s * 1000))
        while not self._stop.is_set():
            self._apply_acks()
            try:
                msg = self._consumer.receive(timeout_millis=timeout_ms)
            except pulsar.Timeout:
                yield None
                continue
            except Exception as exc:
                if self._stop.is_set():
                    return
                raise CdcError(
                    error_kind(exc),
                    f"pulsar receive on {self.subscription_name!r} failed: {type(exc).__name__}: "
                    f"{redact(str(exc))}",
                    "the source reconnects; unacknowledged messages are delivered again",
                ) from exc
            item = self.decode(msg)
            if item is not None:
                yield item

    def decode(self, msg: Any) -> ChangeEvent | Heartbeat | Undecodable | None:
        """The item for one received message, recorded for its acknowledgement (None: a poison
        message's redelivery, negatively acknowledged at once)."""
        topic = str(msg.topic_name())
        message_id = msg.message_id()
        position = position_of(self.server, topic, message_id)
        key = msg.partition_key()
        item = decode_message(
            Message(
                body=msg.data(),
                channel=topic,
                db=self.server,
                position=position,
                key=key.encode() if key else None,
                ts_ms=msg.event_timestamp() or msg.publish_timestamp() or None,
                coordinates=_coordinates(position, msg.redelivery_count()),
            ),
            self.mapping,
            connector=self.connector,
            pipeline=self.pipeline,
        )
        if isinstance(item, Undecodable) and self._acks.nack_poison and msg.redelivery_count() > 0:
            # Already in the dead-letter file: back to Pulsar, whose policy moves it to the DLQ topic.
            self._consumer.negative_acknowledge(message_id)
            return None
        self._acks.delivered(position, message_id, topic, poison=isinstance(item, Undecodable))
        return item if item is not None else Heartbeat(position)

    def commit(self, position: Position) -> None:
        with self._lock:
            self._commit_to = position

    def _apply_acks(self) -> None:
        with self._lock:
            target, self._commit_to = self._commit_to, None
        if target is None or self._consumer is None:
            return
        individual, cumulative, nacks = self._acks.due(target)
        try:
            for message_id in individual:
                self._consumer.acknowledge(message_id)
            for message_id in cumulative:
                self._consumer.acknowledge_cumulative(message_id)
            for message_id in nacks:
                self._consumer.negative_acknowledge(message_id)
        except Exception as exc:  # not acknowledged: the broker delivers them again (duplicates only)
            log.warning("pulsar acknowledgement failed; the messages will be delivered again", error=str(exc))


def _coordinates(position: PulsarMessageId, redelivery_count: int) -> Mapping[str, Any]:
    out: dict[str, Any] = {"message_id": f"{position.ledger}:{position.entry}:{position.batch}"}
    if redelivery_count:
        out["redelivery_count"] = redelivery_count
    return out


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("cdc_logs.pulsar_client")
    logger.setLevel(logging.WARNING)
    return logger
