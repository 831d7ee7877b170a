"""Dead-letter destinations for Kafka records that cannot be decoded (the debezium and kafka sources,
through their shared consumer, readers/kafka/consumer.py).

A malformed record must not stop the pipeline (one bad message would block a topic forever), and must
not vanish either: it goes to a dead-letter destination with the reason, and the consumer moves on.
`send` returns only once the record is durable there, because the consumer's position (committed once
the sinks hold everything before it) moves past the record right after.

- `FileDeadLetter`: cdc-logs' dead-letter record (cdc_logs/deadletter.py: stage `source`, the value in
  `raw`, the topic, partition, offset, timestamp and key in `origin`), one JSON line each, fsync'd.
- `KafkaDeadLetter`: the original key and value bytes to a topic (default `<pipeline>.dlq`), the reason
  and origin in headers `cdc-logs.dlq.reason|topic|partition|offset` (Kafka Connect's convention, so
  the topic's consumers get the record as it was); waits for the broker's ack.
- `LogDeadLetter`: a warning on stderr only (`dead_letter.type: log`): the record is not kept.

Without a destination (`tail`), the reader hands the record to the pipeline as an `Undecodable`, which
stops at it, or parks it with `--dead-letter-dir`, exactly as for the native readers' changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_logs.deadletter import DeadLetterWriter, undecodable
from cdc_logs.envelope import Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position

log = get_logger(__name__)

MALFORMED_HINT = (
    "the record is not a Debezium JSON envelope: check what writes to the topic (Debezium's JSON "
    "converter is expected); to replay it, produce the corrected value with origin.key to origin.topic"
)


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """A Kafka record that cannot be an event; `position` is the consumer's, past it. `hint`: what to do
    (default: the debezium source's)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    position: Position
    timestamp_ms: int = 0
    hint: str = MALFORMED_HINT

    def undecodable(self) -> Undecodable:
        """As the pipeline's undecodable change (the key, being data, travels in `origin`)."""
        return Undecodable(
            self.position,
            self.topic,
            self.reason,
            raw=self.value,
            hint=self.hint,
            origin={
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "timestamp_ms": self.timestamp_ms,
                "key": self.key,
            },
        )


class DeadLetter(ABC):
    def open(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    def send(self, record: DeadRecord) -> None:
        """Store `record` durably (raise CdcError if that is impossible)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        return type(self).__name__


class LogDeadLetter(DeadLetter):
    def send(self, record: DeadRecord) -> None:
        log.warning(
            "skipped a malformed Kafka record",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=record.reason,
        )

    def describe(self) -> str:
        return "the log (stderr)"


class FileDeadLetter(DeadLetter):
    def __init__(self, path: str | Path, source: str = "debezium") -> None:
        self.path = Path(path)
        self.source = source
        self._writer = DeadLetterWriter(self.path)

    def open(self) -> None:
        try:
            self._writer.check()
        except OSError as exc:
            raise CdcError(
                ErrorKind.CONFIG,
                f"cannot open the dead-letter file {self.path}: {exc.strerror}",
                "set dead_letter.path to a writable file",
            ) from exc

    def send(self, record: DeadRecord) -> None:
        self._writer.write([undecodable(self.source, record.undecodable())])
        log.warning(
            "malformed Kafka record sent to the dead-letter file",
            path=str(self.path),
            topic=record.topic,
            offset=record.offset,
            reason=record.reason,
        )

    def describe(self) -> str:
        return f"file {self.path}"


class KafkaDeadLetter(DeadLetter):
    def __init__(self, topic: str, producer_config: dict[str, Any], timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.producer_config = {**producer_config, "enable.idempotence": True, "acks": "all"}
        self.timeout_s = timeout_s
        self._producer: Any = None

    def open(self) -> None:
        from confluent_kafka import Producer

        from cdc_logs.kafka_logging import with_logger

        self._producer = Producer(with_logger(self.producer_config))

    def send(self, record: DeadRecord) -> None:
        if self._producer is None:
            self.open()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        headers = [
            ("cdc-logs.dlq.reason", redact(record.reason).encode()),
            ("cdc-logs.dlq.topic", record.topic.encode()),
            ("cdc-logs.dlq.partition", str(record.partition).encode()),
            ("cdc-logs.dlq.offset", str(record.offset).encode()),
        ]
        self._producer.produce(
            self.topic, key=record.key, value=record.value, headers=headers, on_delivery=delivered
        )
        if self._producer.flush(self.timeout_s) > 0 or errors:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"cannot write to the dead-letter topic {self.topic}: {errors[0] if errors else 'timed out'}",
                "create the topic (or enable auto-creation) and let the consumer's credentials write to it",
            )
        log.warning(
            "malformed Kafka record sent to the dead-letter topic",
            dlq=self.topic,
            topic=record.topic,
            offset=record.offset,
            reason=record.reason,
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None

    def describe(self) -> str:
        return f"topic {self.topic}"
