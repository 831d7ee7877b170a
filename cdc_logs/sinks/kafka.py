"""Kafka sink: Debezium-shaped messages through an idempotent producer (confluent-kafka / librdkafka).

Each event becomes one record: the key is the event key as JSON (`{"id": 1}`, Debezium's key with
schemas disabled), the value the Debezium envelope, the topic `{prefix}.{schema}.{table}` as
Debezium names it (a fixed `topic` overrides the template). Headers carry the op and the source
position (`position`: the encoded offset; `lsn` / `gtid` / `scn` ... when the source has them), so a
consumer can route or deduplicate without parsing the value. After a delete a tombstone (same key,
null value) follows by default, as Debezium does, so log compaction can drop the key. After the
`unwrap` transform (transforms/unwrap.py) the value is the flattened row (a null value is a null
record), the tombstone follows only where Debezium's ExtractNewRecordState keeps it, and its
`add_headers` are added to the headers.

With `schemas: true` key and value are written in Kafka Connect's JsonConverter form
(`schemas.enable=true`, Debezium's default): `{"schema": ..., "payload": ...}`, the schema built from
the event's table schema by cdc_logs.connect_schema (names `<prefix>.<schema>.<table>.Key` /
`.Envelope` as Debezium's). Tombstones stay null; a null key stays null. An event without a table
schema (a `debezium` source reading topics written without schemas) stops the pipeline with the fix.

Delivery: `write` produces the whole batch, then flushes once and waits for every delivery report;
with `acks=all` a report means every in-sync replica has the record. Any failed report fails the
batch: retriable librdkafka errors as SINK_TRANSIENT (the pipeline re-writes the batch), refused
data (record too large, not authorised, invalid topic) as SINK_REJECTED. Never a flush per message:
that would cost a round trip per record.

Ordering: records with the same key go to the same partition (librdkafka's murmur2, the Java
client's partitioner, so our partitions match what Debezium would pick), and the idempotent producer
keeps their order across internal retries. A replayed batch is appended again (at-least-once);
consumers deduplicate by the `position` header if they must.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import connect_schema, registry
from cdc_logs.configmodel import TOPIC_TEMPLATE, SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent, Op, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.routing import DEBEZIUM_TOPIC, check_template, position_headers, render, source_label

log = get_logger(__name__)

#: (event, topic) -> (key bytes, value bytes); the Avro encoder plugs in here.
Encoder = Callable[[ChangeEvent, str, bytes | None], tuple[bytes | None, bytes | None]]

_ILLEGAL_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")
_TOPIC_CACHE_SIZE = 4096  # distinct (op, table) pairs remembered; cleared when full
# Settings the sink's guarantees rest on: a passthrough may not weaken them.
_PINNED = {"enable.idempotence": "true", "acks": "all"}


def _rejecting_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    names = (
        "MSG_SIZE_TOO_LARGE",
        "INVALID_MSG_SIZE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_MSG",
        "INVALID_RECORD",
        "TOPIC_EXCEPTION",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "POLICY_VIOLATION",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "_INVALID_ARG",
    )
    return frozenset(getattr(KafkaError, n) for n in names if hasattr(KafkaError, n))


class _Reports:
    """Delivery reports of one batch; a closure per batch so a late report never lands in the next."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: Any = None

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = err


class KafkaSink(Sink):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str | None = None,
        topic_template: str = DEBEZIUM_TOPIC,
        prefix: str | None = None,
        key_field: str | None = None,
        compression_type: str = "none",
        tombstones_on_delete: bool = True,
        headers: bool = True,
        delivery_timeout_ms: int = 30_000,
        linger_ms: int = 5,
        open_timeout_s: float = 10.0,
        config: Mapping[str, Any] | None = None,
        encoder: Encoder | None = None,
        schemas: bool = False,
        name: str = "kafka",
    ) -> None:
        check_template(topic or topic_template, "topic")
        if schemas and encoder is not None:
            raise CdcError(
                ErrorKind.CONFIG,
                "schemas: true is the JSON converter's form; Avro records always carry their schema",
                "drop schemas, or use format: json",
            )
        bad = {k for k in config or {} if k in _PINNED and str((config or {})[k]).lower() != _PINNED[k]}
        if bad:
            raise CdcError(
                ErrorKind.CONFIG,
                f"kafka producer settings {sorted(bad)} cannot be changed: the sink's delivery guarantee "
                "rests on enable.idempotence=true and acks=all",
                "remove them from producer_config",
            )
        self.bootstrap_servers = bootstrap_servers
        self.topic_template = topic or topic_template
        self.prefix = prefix
        self.key_field = key_field
        self.tombstones_on_delete = tombstones_on_delete
        self.headers = headers
        self.delivery_timeout_ms = delivery_timeout_ms
        self.encoder = encoder
        self.schemas = schemas
        self.open_timeout_s = open_timeout_s
        self.name = name
        self._conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "compression.type": compression_type,
            "linger.ms": linger_ms,
            "delivery.timeout.ms": delivery_timeout_ms,
            # murmur2 is the Java client's hash: same key -> same partition as Debezium's producer.
            # (murmur2_random spreads key-less records; key-less records have no order to keep.)
            "partitioner": "murmur2_random",
            **(config or {}),
            **_PINNED,
        }
        self._producer: Any = None
        self._rejecting = _rejecting_codes()
        self._topics: dict[tuple[Any, ...], str] = {}
        from confluent_kafka import KafkaException

        self._kafka_exception = KafkaException  # imported once: an import statement per record cost ~0.3 us

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        from confluent_kafka import KafkaException, Producer

        try:
            from cdc_logs.kafka_logging import with_logger

            self._producer = Producer(with_logger(self._conf))
            # Fails fast on a wrong address or credentials instead of at the first batch's timeout.
            self._producer.list_topics(timeout=self.open_timeout_s)
        except KafkaException as exc:
            self._producer = None
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"cannot reach Kafka at {redact(self.bootstrap_servers)}: {exc.args[0]}",
                "check destination.bootstrap_servers, security_protocol and the sasl_* settings",
            ) from exc

    def close(self) -> None:
        if self._producer is not None:
            # Anything still queued belongs to a batch whose write() did not return: not acknowledged,
            # so it will be replayed; a short flush just avoids needless duplicates.
            self._producer.flush(5)
            self._producer = None

    # -- writing -----------------------------------------------------------------------------------
    def topic_for(self, event: ChangeEvent) -> str:
        # Per table (and op), not per record: rendering and sanitizing was ~10% of the sink's time.
        # The key holds every field a template can name (routing.EVENT_FIELDS; the prefix is fixed).
        source = event.source
        key = (event.op, source.name, source.db, source.schema, source.table, source.connector)
        topic = self._topics.get(key)
        if topic is None:
            topic = _ILLEGAL_TOPIC_CHARS.sub("_", render(self.topic_template, event, self.prefix))[:249]
            if len(self._topics) >= _TOPIC_CACHE_SIZE:
                self._topics.clear()
            self._topics[key] = topic
        return topic

    def key_for(self, event: ChangeEvent) -> bytes | None:
        if self.key_field is None:
            if self.schemas:
                return connect_schema.key_record(event, self.prefix, event.key)
            return event.key_json()
        row = event.row or {}
        if self.key_field not in row:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{source_label(event)}: the row has no column {self.key_field!r} for the Kafka key",
                "set destination.key_field to a column every row carries, or drop it to key by primary key",
            )
        key = {self.key_field: row[self.key_field]}
        if self.schemas:
            return connect_schema.key_record(event, self.prefix, key, (self.key_field,))
        return dumps(key)

    def value_for(self, event: ChangeEvent) -> bytes | None:
        if event.flat is not None:  # unwrapped (transforms/unwrap.py): None is a null record value
            if self.schemas:
                return connect_schema.flat_record(event, self.prefix)
            value = event.to_json()
            return None if value == b"null" else value
        if self.schemas:
            return connect_schema.envelope_record(event, self.prefix)
        return event.to_json()

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._producer is None:
            self.open()
        reports = _Reports()
        sent = 0
        for event in batch:
            topic = self.topic_for(event)
            key = self.key_for(event)
            value: bytes | None
            if self.encoder is not None:
                key, value = self.encoder(event, topic, key)
            else:
                value = self.value_for(event)
            headers = position_headers(event) if self.headers else None
            if event.flat is not None and event.flat.headers:  # unwrap's add_headers
                headers = [*(headers or []), *event.flat.header_values(event)]
            self._produce(topic, key, value, headers, reports)
            sent += 1
            if (
                event.op is Op.DELETE
                and self.tombstones_on_delete
                and key is not None
                and (event.flat is None or event.flat.keeps_tombstone())
            ):
                # Debezium's SMT gives the tombstone it keeps the delete's add_headers too
                extra = (
                    event.flat.header_values(event) if event.flat is not None and event.flat.headers else None
                )
                self._produce(topic, key, None, extra, reports)
                sent += 1
        # One flush per batch: waits for every delivery report (acks=all), serving the callbacks.
        remaining = self._producer.flush(self.delivery_timeout_ms / 1000 + 5)
        if remaining or reports.delivered + reports.failed < sent:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"Kafka did not confirm {sent - reports.delivered} of {sent} records in time",
                "check the brokers' health; the batch is retried",
            )
        if reports.first_error is not None:
            raise self._error(reports.first_error, reports.failed, sent)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str]] | None,
        reports: _Reports,
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=reports)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then try again.
                self._producer.poll(0.5)
            except self._kafka_exception as exc:
                raise self._error(exc.args[0], 1, 1) from exc

    def _error(self, err: Any, failed: int, sent: int) -> CdcError:
        text = f"{failed} of {sent} Kafka records failed: {err.str()} ({err.name()})"
        if err.fatal():
            # A fatal error poisons the idempotent producer: start a fresh one for the retry.
            self._producer = None
        if err.code() in self._rejecting:
            return CdcError(
                ErrorKind.SINK_REJECTED,
                text,
                "the brokers refuse this data: raise the topic's max.message.bytes, fix ACLs or the "
                "topic name template",
            )
        return CdcError(
            ErrorKind.SINK_TRANSIENT, text, "the batch is retried; check the brokers if it persists"
        )


# -- config ----------------------------------------------------------------------------------------
class KafkaSinkConfig(SinkConfigBase):
    """Kafka producer: Debezium-shaped JSON (or Avro with a schema registry)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "kafka", "bootstrap_servers": "kafka-1:9092"}]}
    )

    type: Literal["kafka"] = Field(description="Selects this destination.")
    bootstrap_servers: str = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, host:port[,host:port]; never with credentials in them (use "
        "the sasl_* fields). Default: localhost:9092, as the Kafka source's (the seed's multi-destination "
        "example gives only `topic`).",
        examples=["kafka-1:9092,kafka-2:9092"],
    )
    topic: str | None = Field(
        None,
        description="One fixed topic for every table (a template like `topic_template`); overrides "
        "`topic_template`.",
        examples=["processed_events"],
    )
    topic_template: str = Field(
        TOPIC_TEMPLATE,
        description="Topic per event, from {prefix} {db} {schema} {table} {op} {connector}; the default is "
        "Debezium's naming. Characters Kafka forbids become _.",
        examples=["cdc.{db}.{table}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `topic_template`. Default: the event's source.name: the pipeline name "
        "(native readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )
    key_field: str | None = Field(
        None,
        description='Key records by this one column ({"column": value}) instead of the event key (the '
        "primary key); every row must carry it. Same key, same partition, in order.",
        examples=["customer_id"],
    )
    partition_strategy: str = Field(
        "hash",
        description="Only hash (records partitioned by key, murmur2 as the Java client) is accepted: it is "
        "what keeps each key's changes in one partition, in order.",
        examples=["hash"],
    )
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", description="librdkafka compression.type of the produced batches.", examples=["zstd"]
    )
    tombstones_on_delete: bool = Field(
        True,
        description="After each delete, a record with the same key and a null value, as Debezium sends, "
        "so log compaction can drop the key.",
    )
    headers: bool = Field(
        True,
        description="Record headers op, position (the encoded source position) and the source's own "
        "coordinates (lsn, gtid, ...), so consumers can route or dedup without parsing the value.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None,
        description="librdkafka security.protocol. Default: librdkafka's (PLAINTEXT).",
        examples=["SASL_SSL"],
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = (
        Field(
            None, description="librdkafka sasl.mechanism, with a SASL_* protocol.", examples=["SCRAM-SHA-512"]
        )
    )
    sasl_username: str | None = Field(None, description="librdkafka sasl.username.", examples=["cdc-writer"])
    sasl_password: SecretStr | None = Field(
        None, description="librdkafka sasl.password. A secret: never logged.", examples=["${KAFKA_PASSWORD}"]
    )
    ssl_ca_location: str | None = Field(
        None,
        description="CA certificate file (PEM) to verify the brokers with. Default: the system's CAs.",
        examples=["/etc/ssl/certs/kafka-ca.pem"],
    )
    delivery_timeout_ms: int = Field(
        30_000,
        ge=1000,
        description="librdkafka delivery.timeout.ms: how long a record may take to be acknowledged, "
        "retries included; a batch waits at most this plus 5 s, then fails and is retried whole.",
        examples=[120_000],
    )
    linger_ms: int = Field(
        5,
        ge=0,
        description="librdkafka linger.ms: milliseconds records wait to fill a produce request.",
        examples=[20],
    )
    producer_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka producer settings, applied over the ones above; enable.idempotence "
        "and acks are fixed (true, all) and refused if set otherwise.",
        examples=[{"batch.size": 1048576, "message.max.bytes": 2000000}],
    )
    message_format: Literal["json", "avro"] | None = Field(
        None,
        alias="format",
        description="json: the envelope as JSON (Debezium's JsonConverter; schemas off unless `schemas`); "
        "avro: Confluent wire format through the schema registry. Default: avro when "
        "schema_registry_url is set, else json.",
        examples=["avro"],
    )
    schemas: bool = Field(
        False,
        description="Write key and value in Kafka Connect's JsonConverter form with schemas "
        '(`{"schema": ..., "payload": ...}`, Debezium\'s default `schemas.enable=true`), the schema '
        "built from the source's catalog (docs/schemas.md). Needs events with a table schema (every "
        "native reader; a `debezium` source only from topics written with schemas). JSON format only.",
        examples=[True],
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent-API schema registry (Apicurio: its /apis/ccompat/v7 path) for Avro.",
        examples=["http://registry.internal:8081"],
    )
    schema_registry_username: str | None = Field(
        None, description="Basic-auth user for the schema registry.", examples=["cdc"]
    )
    schema_registry_password: SecretStr | None = Field(
        None,
        description="Basic-auth password for the schema registry. A secret: never logged.",
        examples=["${REGISTRY_PASSWORD}"],
    )
    value_schema: str | None = Field(
        None,
        description="Registry subject for every record value, whatever the topic. Default: <topic>-value "
        "(TopicNameStrategy); keys always use <topic>-key.",
        examples=["user_event_v2"],
    )

    @field_validator("partition_strategy")
    @classmethod
    def _hash_only(cls, value: str) -> str:
        if value != "hash":
            raise ValueError(
                f"partition_strategy {value!r} is not supported: only `hash` keeps each key's changes in "
                "one partition, in order (round_robin would let a consumer see an update before its insert); "
                "use key_field to choose what is hashed"
            )
        return value

    @model_validator(mode="after")
    def _avro_needs_registry(self) -> KafkaSinkConfig:
        if self.message_format == "avro" and not self.schema_registry_url:
            raise ValueError("format avro needs schema_registry_url")
        if self.schemas and self.avro:
            raise ValueError(
                "schemas: true is the JSON converter's form (Avro records carry their schema already); "
                "drop schemas or use format: json"
            )
        return self

    @property
    def avro(self) -> bool:
        return self.message_format == "avro" or (
            self.message_format is None and bool(self.schema_registry_url)
        )

    def librdkafka(self) -> dict[str, Any]:
        conf: dict[str, Any] = {}
        for key, value in (
            ("security.protocol", self.security_protocol),
            ("sasl.mechanism", self.sasl_mechanism),
            ("sasl.username", self.sasl_username),
            ("sasl.password", secret(self.sasl_password)),
            ("ssl.ca.location", self.ssl_ca_location),
        ):
            if value is not None:
                conf[key] = value
        return {**conf, **self.producer_config}


@registry.sink(KafkaSinkConfig, capabilities={"log", "ordered"})
def build(cfg: KafkaSinkConfig, ctx: registry.BuildContext) -> KafkaSink:
    need("confluent_kafka", "kafka", destination_label(cfg.type, cfg.name))
    encoder = None
    if cfg.avro:
        need("fastavro", "kafka", destination_label(cfg.type, cfg.name))
        from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry

        assert cfg.schema_registry_url is not None
        schemas = SchemaRegistry(
            cfg.schema_registry_url,
            username=cfg.schema_registry_username,
            password=secret(cfg.schema_registry_password),
        )
        encoder = AvroEncoder(schemas, value_subject=cfg.value_schema, prefix=cfg.prefix)
    return KafkaSink(
        cfg.bootstrap_servers,
        topic=cfg.topic,
        topic_template=cfg.topic_template,
        prefix=cfg.prefix,
        key_field=cfg.key_field,
        compression_type=cfg.compression_type,
        tombstones_on_delete=cfg.tombstones_on_delete,
        headers=cfg.headers,
        delivery_timeout_ms=cfg.delivery_timeout_ms,
        linger_ms=cfg.linger_ms,
        config=cfg.librdkafka(),
        encoder=encoder,
        schemas=cfg.schemas,
        name=cfg.name or cfg.type,
    )
