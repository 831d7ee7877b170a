"""The `debezium` source: its config (Debezium's Kafka topics, optionally provisioning the
connector) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.dsn import check_bootstrap, check_url
from cdc_logs.readers.base import Reader


class DeadLetterConfig(ConfigModel):
    """Where undecodable Debezium records go (with the reason); the pipeline keeps going."""

    type: Literal["file", "kafka", "log"] = "file"
    path: str | None = Field(
        None, description="file: JSON lines (default .cdc-logs/<pipeline>.<source>.dlq.jsonl)"
    )
    topic: str | None = Field(None, description="kafka: dead-letter topic (default <pipeline>.dlq)")


class DebeziumSourceConfig(SourceConfigBase):
    """Debezium change events read from Kafka (a Debezium connector on Kafka Connect writes them).

    `connector_config` (the seed's shape) makes cdc-logs create or update that connector through
    `connect_url` when the source opens; otherwise provision it with `cdc-logs debezium connectors apply`.
    See docs/debezium.md.
    """

    type: Literal["debezium"]
    bootstrap_servers: str = Field(description="Kafka bootstrap servers, host:port[,host:port]")
    topic_prefix: str | None = Field(None, description="the connector's topic.prefix: reads <prefix>.*")
    topics: list[str] | None = Field(None, description="explicit topics (or ^regex) instead of a prefix")
    tables: list[str] = Field(default_factory=list, description="only these schema.table under topic_prefix")
    group_id: str | None = Field(None, description="consumer group (default cdc-logs.<pipeline>.<source>)")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group without committed offsets starts"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    consumer_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra librdkafka consumer settings"
    )
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    message_format: Literal["json"] = Field("json", description="Debezium JSON converter output only")
    connect_url: str | None = Field(None, description="Kafka Connect REST URL, to provision connector_config")
    connect_username: str | None = None
    connect_password: SecretStr | None = None
    connector_config: dict[str, Any] | None = Field(
        None, description="a connector to create/update on start (needs connect_url); includes `name`"
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
                raise ValueError(
                    "connector_config needs connect_url (the Kafka Connect REST URL), or provision the "
                    "connector with `cdc-logs debezium connectors apply -f connectors.yaml` and drop it here"
                )
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
