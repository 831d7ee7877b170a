"""DebeziumReader: Debezium's Kafka topics as a cdc-logs source.

The consumer itself (groups, per-partition lanes, commit-after-durable, rebalances, broker-down
limits, dead letters) is the one every Kafka source shares, readers/kafka/consumer.py; this module
adds what is Debezium's: the subscription and decoding records as Debezium envelopes.

Subscription: explicit `topics`, or `<prefix>.<table>` per table, or every table topic of a connector
with the regex `^<prefix>\\..*` (which leaves out Debezium's schema-change topic `<prefix>` and heartbeat
topic `__debezium-heartbeat.<prefix>`; the `<prefix>.transaction` metadata records it does match are
skipped; `<prefix>.message`, Debezium's topic for `pg_logical_emit_message` messages of the whole
database, is read as op "m" events). Debezium creates a topic with its first record, and a
subscription sees it at the next metadata refresh (5 s, set by the shared consumer).

Tombstones and transaction-metadata records carry no change (the position moves past them); records
that are not Debezium envelopes go to the dead-letter destination (readers/kafka/consumer.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdc_logs.debezium.deadletter import MALFORMED_HINT
from cdc_logs.debezium.decode import Malformed, decode_record
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import KafkaOffsets
from cdc_logs.readers.kafka.consumer import KafkaReader, Rejected

_REGEX_SPECIAL = set(".^$*+?()[]{}|\\")


def prefix_regex(prefix: str) -> str:
    """librdkafka subscription regex for every topic under `prefix.` (only regex metacharacters escaped:
    librdkafka's regex engine does not know escapes like `\\-`)."""
    escaped = "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in prefix)
    return f"^{escaped}\\..*"


def subscription(topics: Sequence[str], topic_prefix: str | None, tables: Sequence[str]) -> list[str]:
    if topics:
        return list(topics)
    if not topic_prefix:
        raise CdcError(ErrorKind.CONFIG, "a debezium source needs `topics` or `topic_prefix`", None)
    if tables:
        return [f"{topic_prefix}.{t}" for t in tables]
    return [prefix_regex(topic_prefix)]


class DebeziumDecoder:
    """A record is a Debezium envelope (JSON converter, schemas on or off), taken as it is."""

    connector = "debezium"

    def __call__(self, msg: Any, position: KafkaOffsets, cluster: str) -> ChangeEvent | Rejected | None:
        decoded = decode_record(msg.key(), msg.value())
        if isinstance(decoded, ChangeEvent):
            # Debezium marks the halves of a primary-key change with these headers (routes keep them
            # together: route.py)
            headers = getattr(msg, "headers", None)  # stand-in messages in tests have none
            names = {name for name, _ in (headers() if headers is not None else None) or ()}
            decoded.key_change = bool(names & {"__debezium.oldkey", "__debezium.newkey"})
            return decoded
        if isinstance(decoded, Malformed):
            return Rejected(decoded.reason, MALFORMED_HINT)
        return None  # Skip: a tombstone or a transaction marker


class DebeziumReader(KafkaReader):
    """Read Debezium change events from Kafka: the shared consumer with the Debezium decoder (see
    `KafkaReader` for the arguments)."""

    def __init__(self, consumer_config: dict[str, Any], topics: Sequence[str], **kw: Any) -> None:
        super().__init__(consumer_config, topics, decoder=DebeziumDecoder(), **kw)
