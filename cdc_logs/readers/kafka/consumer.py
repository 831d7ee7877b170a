"""KafkaReader: Kafka topics as a cdc-logs source (confluent-kafka consumer), shared by the `kafka`
source (readers/kafka/config.py) and the `debezium` source (debezium/consumer.py). What differs between
them is only how a record becomes an event: the `RecordDecoder` the reader is given.

Offsets: `enable.auto.commit` is off. The pipeline calls `commit(position)` only once every sink holds
the events before it; the reader then commits those offsets to the consumer group (synchronously, from
its own polling thread, for the partitions it still owns). The pipeline's offset store keeps the same
position (`KafkaOffsets`: next offset per `topic:partition`, stamped with the Kafka cluster id), and on
the first assignment of a run a stored offset wins over the group's; partitions it does not cover
start at the group's committed offset, else at `auto.offset.reset`. A start offset that retention has
already deleted is refused (POSITION_LOST) rather than silently skipped. A named topic that does not
exist yet (or a regex's new topic) is found at the next metadata refresh:
`topic.metadata.refresh.interval.ms` defaults to 5 s instead of librdkafka's 5 min.

Every event is a boundary: a Kafka offset is per message, and a partition is a lane. Records that carry
no change (a decoder returns None: a tombstone, a transaction marker) and rejected records (they go to
the dead-letter destination first, durably) emit a Heartbeat so the position still moves past them;
without a dead-letter destination a rejected record is yielded as an `Undecodable` for the pipeline
(which parks it with its dead letters, or stops at it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cdc_logs.debezium.deadletter import DeadLetter, DeadRecord
from cdc_logs.envelope import ChangeEvent, Heartbeat, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.kafka_logging import with_logger
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import KafkaOffsets, Position
from cdc_logs.readers.base import Reader, StreamItem

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be an event: why, and what to do about it (for the dead letter)."""

    reason: str
    hint: str


class RecordDecoder(Protocol):
    """Turns one consumed record (a confluent_kafka Message) into an event (its position is set by the
    reader), a `Rejected` (poison: dead-lettered), or None (no change in it: skipped, position moves)."""

    connector: str  # source.connector of its events, and the dead-letter records' component default

    def __call__(self, msg: Any, position: KafkaOffsets, cluster: str) -> ChangeEvent | Rejected | None: ...


class KafkaReader(Reader):
    """Read Kafka records as change events (what a record means: `decoder`).

    Args:
        consumer_config: librdkafka settings (`bootstrap.servers`, `group.id`, `auto.offset.reset`,
            security); `enable.auto.commit` is forced off.
        topics: the subscription (topic names or `^regex`).
        decoder: record -> event | Rejected | None.
        dead_letter: where rejected records go; None (tail): they are yielded as `Undecodable`, so
            the pipeline stops at them, or parks them with its dead letters, as for any reader.
        commit_offsets: commit to the consumer group (off for `tail`, whose group is throwaway).
        provision: called once in `open()` before consuming (the debezium source creates/updates its
            connector there).
        consumer_factory: builds the consumer from its settings (tests pass a fake).
    """

    def __init__(
        self,
        consumer_config: dict[str, Any],
        topics: Sequence[str],
        *,
        decoder: RecordDecoder,
        dead_letter: DeadLetter | None = None,
        commit_offsets: bool = True,
        provision: Callable[[], None] | None = None,
        idle_tick_s: float = 0.5,
        assignment_wait_s: float = 10.0,
        broker_down_limit_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if str(consumer_config.get("enable.auto.commit", "false")).lower() == "true":
            raise CdcError(
                ErrorKind.CONFIG,
                "enable.auto.commit=true would commit offsets before the sinks hold the events",
                "remove it: cdc-logs commits offsets itself once every sink is durable",
            )
        self.consumer_config = {**consumer_config, "enable.auto.commit": False}
        # Topics appear while we run (Debezium creates a table's topic with its first change): a regex
        # must see new topics, and a named topic that does not exist yet must be found, both soon.
        self.consumer_config.setdefault("topic.metadata.refresh.interval.ms", 5000)
        self.topics = list(topics)
        self.decoder = decoder
        self.connector = decoder.connector
        self.dead_letter = dead_letter
        self.commit_offsets = commit_offsets
        self.provision = provision
        self.idle_tick_s = idle_tick_s
        self.assignment_wait_s = assignment_wait_s
        self.broker_down_limit_s = broker_down_limit_s
        self.connect_timeout_s = connect_timeout_s
        self._factory = consumer_factory
        self.reset = str(self.consumer_config.get("auto.offset.reset", "latest")).lower()
        self._consumer: Any = None
        self._cluster_id = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: KafkaOffsets | None = None
        self._committed: KafkaOffsets | None = None
        self._positions: dict[str, int] = {}
        self._assigned: set[str] = set()
        self._start_offsets: dict[str, int] | None = None
        self._assignments = 0
        self._error: CdcError | None = None
        self._down_since: float | None = None
        self._broker_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        from confluent_kafka import KafkaException

        self._stop.clear()
        if self.provision is not None:
            self.provision()
        self._error, self._down_since = None, None
        self._positions, self._assigned, self._assignments = {}, set(), 0
        self._broker_error = None
        settings = {**self.consumer_config, "error_cb": self._on_error}
        if self._factory is None:
            settings = with_logger(settings)  # librdkafka's lines go to our log, not raw to stderr
        self._consumer = self._make_consumer(settings)
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                metadata = self._consumer.list_topics(timeout=min(1.0, self.connect_timeout_s))
                break
            except KafkaException as exc:
                # poll() serves error_cb: once every bootstrap broker has refused, fail now, not at
                # the timeout (tail exits with one line; run retries with backoff).
                self._consumer.poll(0)
                if self._down_since is None and time.monotonic() < deadline and not self._stop.is_set():
                    continue
                self._close_consumer()
                reason = self._broker_error or str(exc.args[0].str() if exc.args else exc)
                self._error, self._down_since = None, None
                raise CdcError(
                    ErrorKind.CONNECTION,
                    f"cannot reach Kafka at {self.consumer_config.get('bootstrap.servers')}: {reason}",
                    "check bootstrap_servers (--bootstrap) and the security settings",
                ) from exc
        self._cluster_id = metadata.cluster_id or str(self.consumer_config.get("bootstrap.servers"))
        if self.dead_letter is not None:
            self.dead_letter.open()

    def _make_consumer(self, settings: dict[str, Any]) -> Any:
        if self._factory is not None:
            return self._factory(settings)
        from confluent_kafka import Consumer

        return Consumer(settings)

    def server_identity(self) -> str:
        return self._cluster_id

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._consumer is not None:
            self._apply_commit()
        self._close_consumer()
        if self.dead_letter is not None:
            self.dead_letter.close()

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()  # leaves the group now instead of after the session timeout
            except Exception as exc:
                log.warning("closing the Kafka consumer failed", error=str(exc))

    # -- positions and commits -------------------------------------------------------------------
    def _position(self, partition: str = "") -> KafkaOffsets:
        """The consumer's position; `partition`: the lane of the record it follows (event contract)."""
        return KafkaOffsets(self._cluster_id, tuple(sorted(self._positions.items())), partition)

    def commit(self, position: Position) -> None:
        if isinstance(position, KafkaOffsets):
            with self._lock:
                self._pending = position

    def _apply_commit(self) -> None:
        """Commit the last durable position to the group (from the polling thread, or at close)."""
        with self._lock:
            position, self._pending = self._pending, None
        if position is None or not self.commit_offsets or position == self._committed:
            return
        from confluent_kafka import KafkaException, TopicPartition

        owned = [
            TopicPartition(key.rpartition(":")[0], int(key.rpartition(":")[2]), offset)
            for key, offset in position.offsets
            if key in self._assigned
        ]
        if not owned:
            return
        try:
            self._consumer.commit(offsets=owned, asynchronous=False)
            self._committed = position
        except KafkaException as exc:
            # A rebalance took the partitions away: their next owner resumes from the previous commit
            # (at-least-once). Any other failure is retried with the next commit.
            log.warning("committing Kafka offsets failed; retried with the next commit", error=str(exc))

    # -- assignment ------------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        start = self._start_offsets if self._assignments == 0 else None
        self._assignments += 1
        committed = consumer.committed(partitions, timeout=10) if partitions else []
        assigned = []
        for tp, done in zip(partitions, committed, strict=True):
            key = f"{tp.topic}:{tp.partition}"
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            if start is not None and key in start:
                offset, origin = start[key], "the stored position"
            elif done.offset >= 0:
                offset, origin = done.offset, "the group's committed offset"
            else:
                offset, origin = (
                    (low if self.reset in ("earliest", "smallest", "beginning") else high),
                    "reset",
                )
            if offset < low:
                self._error = CdcError(
                    ErrorKind.POSITION_LOST,
                    f"{key}: resume offset {offset} ({origin}) was deleted by retention "
                    f"(the log starts at {low})",
                    "start over with `cdc-logs offsets reset` (and a new group_id), accepting the gap",
                )
            assigned.append(TopicPartition(tp.topic, tp.partition, offset))
            self._positions[key] = offset
            self._assigned.add(key)
            log.info("partition assigned", partition=key, offset=offset, origin=origin, end=high)
        consumer.assign(assigned)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._apply_commit()
        for tp in partitions:
            key = f"{tp.topic}:{tp.partition}"
            self._assigned.discard(key)
            # Its next owner continues from the group's offset; our stale one must not be stored.
            self._positions.pop(key, None)
        consumer.unassign()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        code = err.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            self._down_since = self._down_since or time.monotonic()
        elif code in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            # "host:port/bootstrap: Connect to ipv4#host:port failed: Connection refused (after 0ms ...)"
            self._broker_error = err.str().split(" (after ")[0]
            log.debug("kafka client error", error=err.str())
        elif err.fatal() or code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            kind = ErrorKind.AUTH if "AUTH" in err.name() else ErrorKind.INTERNAL
            self._error = CdcError(kind, f"Kafka client error: {err.str()}", "check the security settings")
        else:
            log.debug("kafka client error", error=err.str())

    # -- streaming -------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        if start is not None and not isinstance(start, KafkaOffsets):
            raise CdcError(
                ErrorKind.POSITION_LOST,
                f"stored position is a {start.kind} position, not Kafka offsets",
                "reset the source's offsets: `cdc-logs offsets reset -c <pipeline.yaml> --source NAME`",
            )
        self._start_offsets = dict(start.offsets) if start is not None else {}
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        announce = start is None
        announce_by = time.monotonic() + self.assignment_wait_s
        last_yield = time.monotonic()
        while not self._stop.is_set():
            self._apply_commit()
            msg = self._consumer.poll(min(self.idle_tick_s, 0.5))
            self._check_health()
            if announce and (self._assignments or time.monotonic() >= announce_by):
                # Started without a position: the pipeline stores where this run begins.
                announce = False
                yield Heartbeat(self._position())
            if msg is None:
                if time.monotonic() - last_yield >= self.idle_tick_s:
                    last_yield = time.monotonic()
                    yield None
                continue
            if msg.error() is not None:
                self._message_error(msg)
                continue
            last_yield = time.monotonic()
            key = f"{msg.topic()}:{msg.partition()}"
            if key not in self._assigned:
                continue  # fetched just before a revoke
            self._down_since = None
            self._positions[key] = msg.offset() + 1
            yield self._convert(msg)

    def _convert(self, msg: Any) -> ChangeEvent | Heartbeat | Undecodable:
        position = self._position(f"{msg.topic()}:{msg.partition()}")
        decoded = self.decoder(msg, position, self._cluster_id)
        if isinstance(decoded, ChangeEvent):
            decoded.position = position
            decoded.boundary = True
            return decoded
        if isinstance(decoded, Rejected):
            _kind, timestamp = msg.timestamp()
            record = DeadRecord(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                msg.key(),
                msg.value(),
                decoded.reason,
                position,
                timestamp,
                hint=decoded.hint,
            )
            if self.dead_letter is None:
                return record.undecodable()  # the pipeline stops at it, or parks it (tail)
            self.dead_letter.send(record)
        return Heartbeat(position)

    def _message_error(self, msg: Any) -> None:
        from confluent_kafka import KafkaError

        err = msg.error()
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
            raise CdcError(
                ErrorKind.PERMISSION, f"Kafka refused access: {err.str()}", "grant the consumer READ"
            )
        if err.fatal():
            raise CdcError(ErrorKind.INTERNAL, f"Kafka consumer failed: {err.str()}", None)
        # Unknown topic (nothing written to it yet) and other transient errors: keep going.
        log.warning("kafka consumer error", topic=msg.topic(), error=err.str())

    def _check_health(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._down_since is not None and time.monotonic() - self._down_since > self.broker_down_limit_s:
            try:
                self._consumer.list_topics(timeout=5)
                self._down_since = None
            except Exception as exc:
                raise CdcError(
                    ErrorKind.CONNECTION,
                    f"all Kafka brokers unreachable for {self.broker_down_limit_s:.0f} s: {exc}",
                    "check the brokers; the pipeline reconnects and resumes from the last commit",
                ) from exc
