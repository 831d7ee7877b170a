"""The `kafka` source: its config (Kafka topics of JSON, Avro or Debezium messages, in the seed's shape)
and how it is built. docs/sources/kafka.md."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase, secret
from cdc_logs.debezium.config import DeadLetterConfig
from cdc_logs.dsn import check_bootstrap, check_url
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig


class KafkaSourceConfig(SourceConfigBase, MessageFormatConfig):
    """Messages on Kafka topics as change events: each record a row (JSON or Avro) or a Debezium envelope.

    Offsets are committed to the consumer group only once every sink holds the events (and kept in the
    offset store too). Records that cannot be read go to `dead_letter`. See docs/sources/kafka.md.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "kafka",
                    "bootstrap_servers": "localhost:9092",
                    "topic": "user_events",
                    "group_id": "cdc_consumer",
                    "watermark": {"column": "event_timestamp", "type": "timestamp"},
                }
            ]
        }
    )

    type: Literal["kafka"] = Field(description="Selects this source.")
    bootstrap_servers: str = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, host:port[,host:port]; never with credentials in them (use "
        "the sasl_* fields). Default: localhost:9092.",
        examples=["kafka-1:9092,kafka-2:9092"],
    )
    topics: list[str] = Field(
        min_length=1,
        description="The topics to read; a name starting with ^ is a regex (librdkafka's), matching topics "
        "created later too. The seed's `topic:` (one name) is accepted.",
        examples=[["user_events"], ["^events\\..*"]],
    )
    group_id: str | None = Field(
        None,
        description="Kafka consumer group the source reads in and commits its offsets to (the offset store "
        "keeps them too, and wins on start). Default: cdc-logs.<pipeline>.<source name> (tail: a "
        "throwaway group).",
        examples=["cdc_consumer"],
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts: earliest reads the topics "
        "from their beginning, latest only records produced after the source first starts.",
        examples=["latest"],
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None,
        description="librdkafka security.protocol. Default: librdkafka's (PLAINTEXT).",
        examples=["SASL_SSL"],
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = (
        Field(None, description="librdkafka sasl.mechanism, with a SASL_* protocol.", examples=["PLAIN"])
    )
    sasl_username: str | None = Field(None, description="librdkafka sasl.username.", examples=["cdc-reader"])
    sasl_password: SecretStr | None = Field(
        None, description="librdkafka sasl.password. A secret: never logged.", examples=["${KAFKA_PASSWORD}"]
    )
    ssl_ca_location: str | None = Field(
        None,
        description="CA certificate file (PEM) to verify the brokers with. Default: the system's CAs.",
        examples=["/etc/ssl/certs/kafka-ca.pem"],
    )
    ssl_certificate_location: str | None = Field(
        None,
        description="Client certificate file (PEM) for TLS client authentication.",
        examples=["/etc/cdc/kafka-client.pem"],
    )
    ssl_key_location: str | None = Field(
        None,
        description="Private key file (PEM) of the client certificate.",
        examples=["/etc/cdc/kafka-client.key"],
    )
    ssl_key_password: SecretStr | None = Field(
        None,
        description="Password of the private key file. A secret: never logged.",
        examples=["${KAFKA_KEY_PASSWORD}"],
    )
    consumer_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka consumer settings, applied over the ones above (group.id included); "
        "enable.auto.commit=true is refused (offsets are committed only once every sink holds the events).",
        examples=[{"fetch.max.bytes": 104857600, "session.timeout.ms": 45000}],
    )
    schema_registry_url: str | None = Field(
        None,
        description="Schema registry (Confluent REST API; Apicurio: its /apis/ccompat/v7 path) the Avro "
        "writer schemas are fetched from by id. Needed by message_format avro; unused otherwise.",
        examples=["http://localhost:8081"],
    )
    schema_registry_username: str | None = Field(
        None, description="Basic-auth user for the schema registry.", examples=["cdc-reader"]
    )
    schema_registry_password: SecretStr | None = Field(
        None,
        description="Basic-auth password for the schema registry. A secret: never logged.",
        examples=["${SCHEMA_REGISTRY_PASSWORD}"],
    )
    dead_letter: DeadLetterConfig = Field(
        default_factory=DeadLetterConfig,
        description="Where records that cannot be read go (not JSON, not an object, an unknown schema id, "
        "a missing key field...), with the reason and the topic, partition and offset. Default: a "
        "JSON-lines file.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        return check_bootstrap(value)

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        return check_url(value, "schema registry URL", ("http", "https"))

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "topic" in data and "topics" not in data:
                data["topics"] = [data.pop("topic")]
            if str(data.get("message_format", "")).lower() == "protobuf":
                raise ValueError(
                    "message_format protobuf is not supported: cdc-logs reads json, avro (with "
                    "schema_registry_url) and debezium messages; convert the topic (e.g. with a Kafka "
                    "Streams job or Connect's ProtobufConverter -> JsonConverter) or publish JSON/Avro"
                )
        return data

    @model_validator(mode="after")
    def _needs(self) -> KafkaSourceConfig:
        if self.message_format == "avro" and not self.schema_registry_url:
            raise ValueError("message_format avro needs schema_registry_url (the writer schemas are there)")
        if self.dead_letter.type == "file" and self.dead_letter.topic:
            raise ValueError("dead_letter.topic is for type: kafka")
        return self


@registry.source(KafkaSourceConfig)
def build(cfg: KafkaSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.kafka.avro import SchemaRegistryClient
    from cdc_logs.readers.kafka.consumer import KafkaReader
    from cdc_logs.readers.kafka.decode import KafkaMessageDecoder
    from cdc_logs.readers.kafka.settings import consumer_settings, dead_letter

    source = cfg.name or cfg.type
    group = cfg.group_id or (
        f"cdc-logs-tail-{uuid.uuid4().hex[:12]}" if ctx.temporary else f"cdc-logs.{ctx.pipeline}.{source}"
    )
    registry_client = None
    if cfg.message_format == "avro":
        assert cfg.schema_registry_url is not None
        registry_client = SchemaRegistryClient(
            cfg.schema_registry_url,
            username=cfg.schema_registry_username,
            password=secret(cfg.schema_registry_password),
        )
    return KafkaReader(
        consumer_settings(cfg, ctx.pipeline, source, group=group),
        cfg.topics,
        decoder=KafkaMessageDecoder(cfg.mapping(), ctx.pipeline, registry_client),
        dead_letter=dead_letter(cfg, ctx.pipeline, source, ctx.temporary),
        commit_offsets=not ctx.temporary,
    )
