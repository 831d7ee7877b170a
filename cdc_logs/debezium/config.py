"""The `debezium` source: its config (Debezium's Kafka topics, optionally provisioning the
connector) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.dsn import check_bootstrap, check_url
from cdc_logs.readers.base import Reader

DEFAULT_CONNECT_URL = "http://localhost:8083"


class DeadLetterConfig(ConfigModel):
    """Where undecodable Debezium records go (with the reason); the pipeline keeps going."""

    type: Literal["file", "kafka", "log"] = Field(
        "file",
        description="file: cdc-logs dead-letter records (docs/configuration.md#dead-letters), one JSON line "
        "each, at `path`; kafka: the original key and value to a topic on the same cluster, the reason and "
        "origin in cdc-logs.dlq.* headers; log: a warning line on stderr only (the record is not kept).",
        examples=["kafka"],
    )
    path: str | None = Field(
        None,
        description="For type file: the JSON-lines file (its directory is created). Default: "
        ".cdc-logs/<pipeline>.<source>.dlq.jsonl. `cdc-logs tail` keeps no file: it stops at such a "
        "record, or parks it with --dead-letter-dir.",
        examples=["/var/lib/cdc/orders.dlq.jsonl"],
    )
    topic: str | None = Field(
        None,
        description="For type kafka: the dead-letter topic. Default: <pipeline>.dlq.",
        examples=["shop.dlq"],
    )


class DebeziumSourceConfig(SourceConfigBase):
    """Debezium change events read from Kafka (a Debezium connector on Kafka Connect writes them).

    `connector_config` (the seed's shape) makes cdc-logs create or update that connector through
    `connect_url` when the source opens; otherwise provision it with `cdc-logs debezium connectors apply`.
    See docs/debezium.md.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "debezium", "bootstrap_servers": "kafka-1:9092", "topic_prefix": "shop"}]
        }
    )

    type: Literal["debezium"] = Field(description="Selects this source.")
    bootstrap_servers: str = Field(
        "localhost:9092",
        description="Kafka bootstrap servers, host:port[,host:port]; never with credentials in them (use "
        "the sasl_* fields). Default: localhost:9092, as the Kafka source's.",
        examples=["kafka-1:9092,kafka-2:9092"],
    )
    topic_prefix: str | None = Field(
        None,
        description="The connector's topic.prefix: every table topic <prefix>.* is read (or only those of "
        "`tables`). Give this or `topics`; default: connector_config's topic.prefix.",
        examples=["shop"],
    )
    topics: list[str] | None = Field(
        None,
        description="Explicit topics to read instead of a prefix; a name starting with ^ is a regex. "
        "Excludes `topic_prefix` and `tables`; the seed's `topic:` is accepted too.",
        examples=[["shop.public.orders", "^shop\\.inventory\\..*"]],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Only these tables under `topic_prefix`: reads topics <prefix>.<table>, so schema.table "
        "for Postgres connectors, db.table for MySQL. Default: every topic under the prefix.",
        examples=[["public.orders", "public.customers"]],
    )
    group_id: str | None = Field(
        None,
        description="Kafka consumer group the source reads in and commits its offsets to (the offset store "
        "keeps them too, and wins on start). Default: cdc-logs.<pipeline>.<source name> (tail: a "
        "throwaway group).",
        examples=["cdc-logs.shop.orders"],
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a consumer group without committed offsets starts: earliest reads the topics "
        "from their beginning (the connector's snapshot included), latest only new records.",
        examples=["latest"],
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
    dead_letter: DeadLetterConfig = Field(
        default_factory=DeadLetterConfig,
        description="Where records that are not Debezium envelopes (or cannot be decoded) go. Default: a "
        "JSON-lines file.",
    )
    message_format: Literal["json"] = Field(
        "json",
        description="The records' format: Debezium's JsonConverter output, with or without schemas (the "
        "only one supported).",
        examples=["json"],
    )
    connect_url: str | None = Field(
        None,
        description="Kafka Connect REST URL, to create or update `connector_config` when the source opens. "
        "Default with `connector_config`: http://localhost:8083 (Kafka Connect's default REST listener; the "
        "seed's Debezium example gives none); an unreachable Connect stops the start naming this URL.",
        examples=["http://connect.internal:8083"],
    )
    connect_username: str | None = Field(
        None, description="Basic-auth user for the Kafka Connect REST API.", examples=["cdc-admin"]
    )
    connect_password: SecretStr | None = Field(
        None,
        description="Basic-auth password for the Kafka Connect REST API. A secret: never logged.",
        examples=["${CONNECT_PASSWORD}"],
    )
    connector_config: dict[str, Any] | None = Field(
        None,
        description="A Debezium connector's config (with `name`, `connector.class`, `topic.prefix`) to "
        "create or update through `connect_url` when the source opens. Needs connect_url; the seed's "
        "`database.server.name` is read as topic.prefix. Secrets in it: ${VAR}, or Connect's ${file:...}.",
        examples=[
            {
                "name": "shop-pg",
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "topic.prefix": "shop",
                "database.hostname": "db.internal",
                "database.user": "debezium",
                "database.password": "${DBZ_PASSWORD}",
                "database.dbname": "shop",
                "table.include.list": "public.orders",
            }
        ],
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        return check_bootstrap(value)

    @field_validator("connect_url")
    @classmethod
    def _connect_url(cls, value: str | None) -> str | None:
        return check_url(value, "Kafka Connect URL", ("http", "https"))

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "topic" in data and "topics" not in data:
                data["topics"] = [data.pop("topic")]
            if data.pop("capture_mode", "wal") != "wal":
                raise ValueError(
                    "capture_mode: Debezium reads the database log (`wal`); for polling use type: poll"
                )
            slot = data.pop("slot_name", None)
            connector = data.get("connector_config")
            if isinstance(connector, dict):
                connector = dict(connector)
                # Debezium 2.0 renamed database.server.name to topic.prefix; the seed uses the old name.
                if "database.server.name" in connector and "topic.prefix" not in connector:
                    connector["topic.prefix"] = connector.pop("database.server.name")
                if slot is not None:
                    connector.setdefault("slot.name", slot)
                data["connector_config"] = connector
            elif slot is not None:
                raise ValueError("slot_name belongs to the connector: set it with connector_config")
        return data

    @model_validator(mode="after")
    def _needs(self) -> DebeziumSourceConfig:
        if self.connector_config is not None:
            if not self.connect_url:
                self.connect_url = DEFAULT_CONNECT_URL  # Kafka Connect's default listener
            for key in ("name", "connector.class", "topic.prefix"):
                if not self.connector_config.get(key):
                    raise ValueError(f"connector_config needs `{key}`")
            if self.topic_prefix is None and not self.topics:
                self.topic_prefix = str(self.connector_config["topic.prefix"])
        if not self.topics and not self.topic_prefix:
            raise ValueError("give `topic_prefix` (the connector's topic.prefix) or `topics`")
        if self.topics and (self.topic_prefix or self.tables):
            raise ValueError("give either `topics`, or `topic_prefix` (with optional `tables`), not both")
        if self.dead_letter.type == "file" and self.dead_letter.topic:
            raise ValueError("dead_letter.topic is for type: kafka")
        return self


@registry.source(DebeziumSourceConfig)
def build(cfg: DebeziumSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.debezium.source import build_debezium_reader

    return build_debezium_reader(cfg, ctx.pipeline, temporary=ctx.temporary)
