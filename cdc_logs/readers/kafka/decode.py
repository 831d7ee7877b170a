"""The `kafka` source's record decoder: a Kafka record -> a change event, by `message_format`.

- json / debezium: the shared bus mapping (readers/messages.py `decode_message`): the record value is
  the row (or a whole Debezium envelope), the record key the event key (a JSON object as it is, any
  other key as {"key": ...}), op from `op_field` (default c), the topic the table (default).
- avro: the value is Confluent-framed Avro (readers/kafka/avro.py); a Debezium envelope schema is read
  as the envelope, any other record as the row, then mapped as JSON rows are. A framed key is decoded
  with its own schema; an unframed key is read as for json.

A record with a key and a null value (a tombstone, as compacted topics and Kafka Connect's sinks read
it) is the delete of that key: op d, `before` = the key. A null value without a key is poison.

`source` block: connector "kafka" (debezium envelopes keep their own), db = the Kafka cluster id,
table = `table` or the topic, ts_ms = the record's broker/producer timestamp unless the watermark
column gives the event time, and topic, partition, offset after table.
"""

from __future__ import annotations

from typing import Any

import orjson

from cdc_logs.debezium.decode import Malformed, decode_record
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Undecodable, now_ms
from cdc_logs.position import KafkaOffsets
from cdc_logs.readers.kafka import avro
from cdc_logs.readers.kafka.consumer import Rejected
from cdc_logs.readers.messages import Message, MessageMapping, decode_message, decode_row

_NO_TIMESTAMP = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE


class KafkaMessageDecoder:
    """Decodes the `kafka` source's records (see the module docstring)."""

    connector = "kafka"

    def __init__(
        self, mapping: MessageMapping, pipeline: str, registry: avro.SchemaRegistryClient | None = None
    ) -> None:
        self.mapping = mapping
        self.pipeline = pipeline
        self.registry = registry

    def __call__(self, msg: Any, position: KafkaOffsets, cluster: str) -> ChangeEvent | Rejected | None:
        kind, timestamp = msg.timestamp()
        message = Message(
            body=msg.value(),
            channel=msg.topic(),
            db=cluster,
            position=position,
            key=msg.key(),
            ts_ms=timestamp if kind != _NO_TIMESTAMP else None,
            coordinates={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()},
        )
        decoded: ChangeEvent | Undecodable | Rejected | None
        if message.body is None and message.key is not None and not self.mapping.debezium:
            decoded = self._tombstone(message)
        elif self.registry is not None:
            decoded = self._avro(message)
        else:
            decoded = decode_message(message, self.mapping, connector=self.connector, pipeline=self.pipeline)
        if isinstance(decoded, Undecodable):
            return Rejected(decoded.reason, decoded.hint or "")
        return decoded

    def _tombstone(self, message: Message) -> ChangeEvent | Rejected:
        """A null value with a key: Kafka's tombstone (compacted topics), the delete of that key. The
        event's `before` is the key (all that is known of the row), as SQL apply deletes by it."""
        key: Any
        if self.registry is not None and avro.is_framed(message.key):
            try:
                key = avro.decode(message.key, self.registry)[0]
            except avro.Poison as exc:
                return Rejected(f"the key: {exc}", avro.WIRE_HINT)
        else:
            assert message.key is not None
            try:
                key = orjson.loads(message.key)
            except orjson.JSONDecodeError:
                key = message.key.decode("utf-8", "replace")
        if not isinstance(key, dict):
            key = {"key": key}
        source = SourceInfo(
            connector=self.connector,
            name=self.pipeline,
            db=message.db,
            table=self.mapping.table or message.channel,
            ts_ms=message.ts_ms if message.ts_ms is not None else now_ms(),
            extra=dict(message.coordinates),
        )
        return ChangeEvent(
            op=Op.DELETE, source=source, before=dict(key), key=key, ts_ms=now_ms(), position=message.position
        )

    def _avro(self, message: Message) -> ChangeEvent | Undecodable | Rejected | None:
        assert self.registry is not None
        try:
            value, schema = avro.decode(message.body, self.registry)
            key = avro.decode(message.key, self.registry)[0] if avro.is_framed(message.key) else None
        except avro.Poison as exc:
            return Rejected(str(exc), avro.WIRE_HINT)
        if avro.is_envelope(schema):
            return self._envelope(value, key, message)
        if not isinstance(value, dict):
            return Rejected(
                f"the Avro value is a {type(value).__name__}, not a record",
                "publish one Avro record (the row) per message",
            )
        if key is not None and not isinstance(key, dict):
            key = {"key": key}
        return decode_row(
            message, value, self.mapping, connector=self.connector, pipeline=self.pipeline, key=key
        )

    def _envelope(self, value: Any, key: Any, message: Message) -> ChangeEvent | Rejected | None:
        """Debezium's Avro envelope: read as its JSON form would be (the same checks and mapping)."""
        raw_key: bytes | None
        if key is None and message.key is not None and not avro.is_framed(message.key):
            raw_key = message.key
        else:
            raw_key = orjson.dumps(key) if key is not None else None
        decoded = decode_record(raw_key, orjson.dumps(value))
        if isinstance(decoded, ChangeEvent):
            return decoded
        if isinstance(decoded, Malformed):
            return Rejected(decoded.reason, "publish Debezium envelopes, or rows in another record schema")
        return None
