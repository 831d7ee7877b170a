"""Pipeline configuration: YAML in the seed proposal's shapes, validated by pydantic.

Shapes accepted (see docs/configuration.md):
  name, source | sources[], destination | destinations[], plugins.{middleware,transformers},
  sync.{mode: one_time|continuous|cron, cron, batch, queue_size, retry}, offsets, health_checks.
Sources and destinations are discriminated unions on `type`. `${VAR}` and `${VAR:-default}` in any
string are replaced from the environment after YAML parsing (so a value cannot inject YAML); secrets
are `SecretStr` and never printed. Every error names the field path and, for `type`, the accepted
values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cdc_logs.dsn import check_bootstrap, check_url
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import register_config
from cdc_logs.sink_configs import SINK_MODELS, SinkModel


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- sources ---------------------------------------------------------------------------------------
class SqliteSourceConfig(_Model):
    """Trigger-based capture of a SQLite database file (the embedded default)."""

    type: Literal["sqlite"]
    name: str | None = None
    path: str = Field(description="SQLite database file, or a sqlite:/// URL")
    tables: list[str] = Field(min_length=1)
    snapshot: bool = Field(False, description="emit existing rows (op r) before streaming")
    consumer: str | None = Field(None, description="consumer id in the change table (default: pipeline name)")
    poll_interval_ms: int = Field(200, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("dsn", "database", "url"):
                if alias in data and "path" not in data:
                    data["path"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
        return data

    @field_validator("path")
    @classmethod
    def _strip_url(cls, value: str) -> str:
        return value.removeprefix("sqlite:///") if value.startswith("sqlite:///") else value


class PolledTableConfig(_Model):
    table: str
    mode: Literal["timestamp", "incrementing", "timestamp+incrementing"] = "timestamp+incrementing"
    timestamp_column: str | None = None
    incrementing_column: str | None = None
    key_columns: list[str] | None = None
    soft_delete_column: str | None = None
    query: str | None = Field(None, description="custom SELECT; use :last_sync / :last_id for the watermark")

    @model_validator(mode="after")
    def _columns_for_mode(self) -> PolledTableConfig:
        if "timestamp" in self.mode and not self.timestamp_column:
            raise ValueError(f"mode {self.mode!r} needs timestamp_column")
        if "incrementing" in self.mode and not self.incrementing_column:
            raise ValueError(f"mode {self.mode!r} needs incrementing_column")
        return self


class PollSourceConfig(_Model):
    """Query polling with a watermark (any SQLAlchemy URL): the fallback without log access."""

    type: Literal["poll", "polling", "query"]
    name: str | None = None
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db")
    tables: list[PolledTableConfig] = Field(min_length=1)
    poll_interval_ms: int = Field(1000, ge=1)
    snapshot: bool = Field(True, description="first run: emit existing rows (True) or start at the newest")
    safety_lag_ms: int = Field(0, ge=0, description="ignore rows newer than now - lag (late commits)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from cdc_logs.readers.polling.connection import url_problem

        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)  # never the value: it holds the password
        return value

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        # The seed's shape: `table:` + `watermark: {column, type}` (+ `query:`) at the top level.
        if isinstance(data, dict):
            data = dict(data)
            if "dsn" in data and "url" not in data:
                data["url"] = data.pop("dsn")
            if "table" in data and "tables" not in data:
                table: dict[str, Any] = {"table": data.pop("table")}
                watermark = data.pop("watermark", None) or {}
                if isinstance(watermark, dict) and watermark.get("column"):
                    if watermark.get("type", "timestamp") in ("timestamp", "datetime"):
                        table.update(mode="timestamp", timestamp_column=watermark["column"])
                    else:
                        table.update(mode="incrementing", incrementing_column=watermark["column"])
                for key in (
                    "query",
                    "mode",
                    "timestamp_column",
                    "incrementing_column",
                    "key_columns",
                    "soft_delete_column",
                ):
                    if key in data:
                        table[key] = data.pop(key)
                data["tables"] = [table]
        return data


_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def default_slot_name(pipeline: str) -> str:
    """`cdc_logs_<pipeline>` as a valid slot name (lowercase letters, digits and _, at most 63)."""
    return ("cdc_logs_" + re.sub(r"[^a-z0-9_]", "_", pipeline.lower()))[:63]


class PostgresSourceConfig(_Model):
    """Postgres logical replication (pgoutput) through a replication slot; see docs/sources/postgres.md."""

    type: Literal["postgresql", "postgres", "pg"]
    name: str | None = None
    dsn: SecretStr = Field(description="postgresql://user:password@host:5432/dbname (never logged)")
    tables: list[str] = Field(default_factory=list, description="schema.table to capture")
    all_tables: bool = Field(False, description="capture every table (publication FOR ALL TABLES)")
    slot: str | None = Field(None, description="replication slot (default cdc_logs_<pipeline>)")
    publication: str | None = Field(None, description="publication (default cdc_logs_<slot>)")
    snapshot: bool = Field(True, description="first run: emit existing rows (op r), then stream")
    snapshot_chunk_rows: int = Field(10_000, ge=1, description="rows per snapshot chunk (resume unit)")
    heartbeat_interval_ms: int = Field(
        10_000, ge=0, description="pg_logical_emit_message heartbeat period; 0 turns heartbeats off"
    )
    status_interval_ms: int = Field(10_000, ge=100, description="standby status update period")
    binary: bool = Field(False, description="pgoutput binary format (same values, less text parsing)")
    messages: bool = Field(True, description="emit pg_logical_emit_message messages as op m events")
    max_tx_memory_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="memory for in-progress streamed transactions before spilling"
    )
    logical_decoding_work_mem: str | None = Field(
        None, description="walsender session setting, e.g. 64MB: when the server streams a transaction"
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("url", "connection_string", "uri"):
                if alias in data and "dsn" not in data:
                    data["dsn"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
            if "slot_name" in data and "slot" not in data:
                data["slot"] = data.pop("slot_name")
            if "publication_name" in data and "publication" not in data:
                data["publication"] = data.pop("publication_name")
            if "dsn" not in data and "host" in data:  # the seed's host/port/database/user/password shape
                from psycopg.conninfo import make_conninfo

                parts = {
                    k: data.pop(k) for k in ("host", "port", "database", "user", "password") if k in data
                }
                if "database" in parts:
                    parts["dbname"] = parts.pop("database")
                data["dsn"] = make_conninfo("", **{k: str(v) for k, v in parts.items()})
        return data

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        from cdc_logs.pg_conninfo import pg_conninfo_problem

        problem = pg_conninfo_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)  # never the value: it holds the password
        return value

    @field_validator("slot")
    @classmethod
    def _slot_name(cls, value: str | None) -> str | None:
        if value is not None and not _SLOT_NAME.fullmatch(value):
            raise ValueError("a slot name has 1-63 lowercase letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _tables(self) -> PostgresSourceConfig:
        if not self.tables and not self.all_tables:
            raise ValueError("give `tables: [schema.table, ...]` or `all_tables: true`")
        if self.tables and self.all_tables:
            raise ValueError("give either `tables` or `all_tables: true`, not both")
        return self


class MysqlBinlogConfig(_Model):
    """The seed's `binlog_config` block: where a first run starts (a stored offset always wins)."""

    server_id: int | None = Field(None, ge=1, le=4294967295)
    binlog_filename: str | None = Field(None, description="MariaDB: start at this file (converted to a GTID)")
    binlog_position: int | None = Field(None, ge=4)
    gtid_set: str = Field("auto", description="auto (current end, or snapshot) | a GTID set / position")


class MysqlSourceConfig(_Model):
    """MySQL / MariaDB row-based binlog, resumed by GTID; see docs/sources/mysql.md."""

    type: Literal["mysql", "mariadb"]
    name: str | None = None
    dsn: SecretStr | None = Field(None, description="mysql://user:password@host:3306/db (never logged)")
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    database: str | None = Field(None, description="default database for unqualified table names")
    tables: list[str] = Field(default_factory=list, description="db.table to capture")
    schemas: list[str] = Field(default_factory=list, description="capture every table of these databases")
    snapshot: bool = Field(True, description="first run: emit existing rows (op r), then stream")
    snapshot_chunk_rows: int = Field(2000, ge=1, description="rows per primary-key chunk of the snapshot")
    server_id: int | None = Field(
        None, ge=1, le=4294967295, description="replication client id (default: from the pipeline name)"
    )
    heartbeat_interval_ms: int = Field(5000, ge=100, description="server heartbeat / idle position report")
    binlog_config: MysqlBinlogConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("url", "uri", "connection_string"):
                if alias in data and "dsn" not in data:
                    data["dsn"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
            if "monitored_tables" in data and "tables" not in data:
                data["tables"] = data.pop("monitored_tables")
            if data.pop("cdc_mode", "binlog") != "binlog":
                raise ValueError("cdc_mode: only `binlog` is supported for mysql/mariadb (or use type: poll)")
            # The seed states the server settings it expects; they are checked at open, not set.
            for key, want in (("binlog_format", "ROW"), ("binlog_row_image", "FULL")):
                value = data.pop(key, want)
                if str(value).upper() != want:
                    raise ValueError(f"{key}: only {want} is supported (it is a server setting)")
        return data

    @model_validator(mode="after")
    def _needs(self) -> MysqlSourceConfig:
        if not self.tables and not self.schemas:
            raise ValueError("give `tables: [db.table, ...]` or `schemas: [db, ...]`")
        if self.dsn is None and self.user is None:
            raise ValueError("give `dsn: mysql://user:password@host:3306/db` or host/port/user/password")
        if self.binlog_config and self.binlog_config.server_id and self.server_id is None:
            self.server_id = self.binlog_config.server_id
        return self


class DeadLetterConfig(_Model):
    """Where undecodable Debezium records go (with the reason); the pipeline keeps going."""

    type: Literal["file", "kafka", "log"] = "file"
    path: str | None = Field(
        None, description="file: JSON lines (default .cdc-logs/<pipeline>.<source>.dlq.jsonl)"
    )
    topic: str | None = Field(None, description="kafka: dead-letter topic (default <pipeline>.dlq)")


class DebeziumSourceConfig(_Model):
    """Debezium change events read from Kafka (a Debezium connector on Kafka Connect writes them).

    `connector_config` (the seed's shape) makes cdc-logs create or update that connector through
    `connect_url` when the source opens; otherwise provision it with `cdc-logs debezium connectors apply`.
    See docs/debezium.md.
    """

    type: Literal["debezium"]
    name: str | None = None
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


_SOURCE_MODELS = (
    SqliteSourceConfig,
    PollSourceConfig,
    PostgresSourceConfig,
    MysqlSourceConfig,
    DebeziumSourceConfig,
)
SourceConfig = Annotated[
    SqliteSourceConfig | PollSourceConfig | PostgresSourceConfig | MysqlSourceConfig | DebeziumSourceConfig,
    Field(discriminator="type"),
]


# -- destinations ----------------------------------------------------------------------------------
class StdoutSinkConfig(_Model):
    type: Literal["stdout"]
    name: str | None = None
    format: Literal["json", "pretty"] = "json"


class FileSinkConfig(_Model):
    type: Literal["file"]
    name: str | None = None
    path: str
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="rotate when the file would exceed this")
    max_files: int | None = Field(None, ge=0, description="rotated segments to keep (default: all)")
    fsync: bool = True


# The message-bus, database and webhook sinks' configs live in sink_configs.py.
_DESTINATION_MODELS = (StdoutSinkConfig, FileSinkConfig, *SINK_MODELS)
AnyDestinationConfig = StdoutSinkConfig | FileSinkConfig | SinkModel
DestinationConfig = Annotated[AnyDestinationConfig, Field(discriminator="type")]


# -- plugins ---------------------------------------------------------------------------------------
class TransformConfig(_Model):
    type: Literal["filter", "mask", "data_masking", "gdpr_compliance", "rename"]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params(self) -> TransformConfig:
        from cdc_logs.build import build_transform  # validates params by building the transform

        build_transform(self)
        return self


class PluginsConfig(_Model):
    """`middleware` runs first, then `transformers`; each a list (or the seed's nested form)."""

    middleware: list[TransformConfig] = Field(default_factory=list)
    transformers: list[TransformConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _nested(cls, data: Any) -> Any:
        # Seed shape: plugins: {transformers: {transformers: [...]}, middleware: {middleware: [...]}}
        if isinstance(data, dict):
            data = dict(data)
            for key in ("middleware", "transformers"):
                inner = data.get(key)
                if isinstance(inner, dict):
                    if set(inner) != {key}:
                        # Silently dropping a list here could drop PII masking: refuse instead.
                        raise ValueError(
                            f"plugins.{key} as a mapping must hold exactly `{key}: [...]`, "
                            f"got keys {sorted(inner)}"
                        )
                    data[key] = inner[key]
        return data

    def all(self) -> list[TransformConfig]:
        return [*self.middleware, *self.transformers]


# -- sync, offsets, health -------------------------------------------------------------------------
class BatchConfig(_Model):
    max_events: int = Field(1000, ge=1)
    max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_wait_ms: int = Field(200, ge=0)


class RetryConfig(_Model):
    max_attempts: int = Field(10, ge=0, description="0 retries forever")
    initial_backoff_ms: int = Field(500, ge=1)
    max_backoff_ms: int = Field(30_000, ge=1)


class FanoutConfig(_Model):
    """Several destinations: each reads a shared spool at its own pace (docs/configuration.md)."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on when there are 2+ destinations")
    spool_dir: str | None = Field(
        None,
        description="where chunks spill when a sink falls far behind; default .cdc-logs/<pipeline>.spool",
    )
    max_spool_bytes: int = Field(
        1 << 30,
        ge=1 << 20,
        description="spilled bytes the slowest sink may lag behind before the source waits",
    )
    max_memory_bytes: int = Field(
        64 << 20, ge=1 << 20, description="bytes of batches kept in memory for the sinks before spilling"
    )
    dead_letter_dir: str | None = Field(
        None, description="older name of sync.dead_letters.dir (kept so existing configs still work)"
    )


class DeadLettersConfig(_Model):
    """Events a destination refuses (a value it cannot hold, a missing column) go to a dead-letter
    file per destination, with the reason and the whole envelope; the pipeline keeps going."""

    enabled: bool = Field(True, description="false: stop the pipeline at the first refused event instead")
    dir: str | None = Field(None, description="default .cdc-logs/<pipeline>.deadletter")


class SyncConfig(_Model):
    mode: Literal["one_time", "continuous", "cron"] = "continuous"
    cron: str | None = Field(None, description="cron expression for mode: cron (each run drains, then waits)")
    batch: BatchConfig = Field(default_factory=BatchConfig)
    queue_size: int = Field(10_000, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)
    dead_letters: DeadLettersConfig = Field(default_factory=DeadLettersConfig)

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "cron_expression" in data:
                data["cron"] = data.pop("cron_expression")
            opt = data.pop("batch_optimization", None)
            if opt is not None:
                known = {"adaptive_batching", "min_batch_size", "max_batch_size", "target_latency_ms"}
                if not isinstance(opt, dict) or not set(opt) <= known:
                    raise ValueError(f"batch_optimization accepts only {sorted(known)}")
                # Batching is adaptive already: a batch closes at max_batch_size or target_latency_ms,
                # whichever comes first, so it grows with load. A floor would only add latency.
                # min_batch_size is accepted for the seed's shape but cannot hold a batch back past
                # target_latency_ms (docs/configuration.md says so).
                if opt.get("adaptive_batching") is False:
                    raise ValueError(
                        "batch_optimization: adaptive_batching: false is not supported; batches close at "
                        "max_batch_size or target_latency_ms, whichever comes first"
                    )
                batch = dict(data.get("batch") or {})
                if "max_batch_size" in opt:
                    batch["max_events"] = opt["max_batch_size"]
                if "target_latency_ms" in opt:
                    batch["max_wait_ms"] = opt["target_latency_ms"]
                data["batch"] = batch
        return data

    @model_validator(mode="after")
    def _cron(self) -> SyncConfig:
        if self.mode == "cron":
            if not self.cron:
                raise ValueError('mode cron needs `cron: "*/5 * * * *"`')
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"invalid cron expression {self.cron!r}")
        return self


class OffsetsConfig(_Model):
    type: Literal["sqlite", "file", "postgres"] = "sqlite"
    path: str | None = Field(
        None, description="sqlite/file store path (default .cdc-logs/<pipeline>.offsets.db)"
    )
    dsn: str | None = Field(None, description="postgres store DSN")
    table: str = "cdc_offsets"

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") == "postgres":
            from cdc_logs.pg_conninfo import pg_conninfo_problem

            problem = pg_conninfo_problem(value)
            if problem is not None:
                raise ValueError(problem)  # never the value: it holds the password
        return value

    @model_validator(mode="after")
    def _needs(self) -> OffsetsConfig:
        if self.type == "postgres" and not self.dsn:
            raise ValueError("offsets type postgres needs `dsn`")
        return self


class HealthConfig(_Model):
    """/metrics, /health and /ready over HTTP, and when /ready and /health fail (docs/configuration.md)."""

    enabled: bool = False
    port: int = Field(8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    endpoints: list[dict[str, Any]] | None = None  # seed shape; the paths are fixed: /health /ready /metrics
    sink_stall_ms: int = Field(
        60_000,
        ge=0,
        description="/ready fails when a sink has data waiting and accepted no write for this long (0: off)",
    )
    dead_letter_window_ms: int = Field(
        300_000,
        ge=0,
        description="/ready fails for this long after a sink dead-lettered an event (0: off)",
    )
    source_stall_ms: int = Field(
        60_000,
        ge=0,
        description="/ready fails when a source sent no event and no heartbeat for this long; at least "
        "3 heartbeat intervals for sources with heartbeats; polls count for those without (0: off)",
    )
    stuck_after_ms: int = Field(
        300_000,
        ge=0,
        description="/health fails when data waits and nothing reached every sink for this long, so "
        "nothing can be committed (0: off)",
    )


class PipelineConfig(_Model):
    name: str = Field("cdc", pattern=r"^[A-Za-z0-9_.-]+$")
    source: SourceConfig | None = None
    sources: list[SourceConfig] | None = None
    destination: DestinationConfig | None = None
    destinations: list[DestinationConfig] | None = None
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    offsets: OffsetsConfig = Field(default_factory=OffsetsConfig)
    health_checks: HealthConfig = Field(default_factory=HealthConfig)

    @model_validator(mode="after")
    def _one_of(self) -> PipelineConfig:
        if (self.source is None) == (self.sources is None):
            raise ValueError("give exactly one of `source` or `sources`")
        if (self.destination is None) == (self.destinations is None):
            raise ValueError("give exactly one of `destination` or `destinations`")
        names = [s.name or s.type for s in self.all_sources()]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique (got {names}); set `name:` on each")
        dnames = [d.name or d.type for d in self.all_destinations()]
        if len(set(dnames)) != len(dnames):
            raise ValueError(f"destination names must be unique (got {dnames}); set `name:` on each")
        return self

    def all_sources(
        self,
    ) -> list[
        SqliteSourceConfig
        | PollSourceConfig
        | PostgresSourceConfig
        | MysqlSourceConfig
        | DebeziumSourceConfig
    ]:
        return list(self.sources or ([self.source] if self.source else []))

    def all_destinations(self) -> list[AnyDestinationConfig]:
        return list(self.destinations or ([self.destination] if self.destination else []))


# -- loading ---------------------------------------------------------------------------------------
_ENV = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def interpolate(value: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string; `$$` is a literal `$`."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name, default = match.group(2), match.group(3)
        value = environ.get(name)
        if default is not None and not value:
            return default  # as in the shell: ${VAR:-x} also applies when VAR is set but empty
        if value is not None:
            return value
        raise CdcError(
            ErrorKind.CONFIG,
            f"{path or 'config'}: environment variable {name} is not set",
            f"export {name}=... or write ${{{name}:-default}}",
        )

    return _ENV.sub(repl, value)


def _tags() -> set[str]:
    tags: set[str] = set()
    for model in (*_SOURCE_MODELS, *_DESTINATION_MODELS):
        tags.update(model.model_fields["type"].annotation.__args__)  # type: ignore[union-attr]
    return tags


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    tags = _tags()
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        # pydantic puts the union member's tag in the path (source.sqlite.tables): drop it.
        loc = ".".join(
            p
            for i, p in enumerate(parts)
            if not (p in tags and i < len(parts) - 1) and not p.startswith("function-")
        )
        if err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            accepted = str(ctx.get("expected_tags", "")).replace("'", "")
            msg = f"unknown type {ctx.get('tag')!r}; accepted: {accepted}"
            loc = f"{loc}.type" if loc else "type"
        elif err["type"] == "union_tag_not_found":
            msg = "missing `type`"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `cdc-logs config schema`)"
        elif err["type"] == "literal_error":
            msg = f"{err['msg'].replace('Input should be', 'must be')}, got {err.get('input')!r}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def parse_config(data: Any, env: dict[str, str] | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise CdcError(
            ErrorKind.CONFIG,
            "the config must be a YAML mapping (source:, destination:, ...)",
            "see docs/configuration.md for a complete example",
        )
    data = interpolate(data, env)
    # Before validation, so an error message that quotes a value cannot show a secret of this config.
    register_config(data)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"invalid config: {format_validation_error(exc)}",
            "fix the field named above; `cdc-logs config schema` prints every accepted field",
        ) from None  # pydantic's own message (in a --debug traceback) quotes every rejected value


MAX_CONFIG_BYTES = 10 * 1024 * 1024  # a pipeline config is kilobytes; this refuses a runaway file at once
MAX_CONFIG_VALUES = 1_000_000  # values after expanding YAML aliases (a billion laughs is 10**9)

try:  # libyaml: the same YAML, several times faster on a large file
    _YAML_LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YAML_LOADER = yaml.SafeLoader


def _read_text(path: Path, option: str) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8 (a BOM is allowed), else a CONFIG error."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                size = os.fstat(fh.fileno()).st_size
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"config {path} is too large ({max(size, len(data)):,} bytes; "
                    f"the limit is {MAX_CONFIG_BYTES:,})",
                    f"check the {option} path: a pipeline config is a few kilobytes of YAML",
                )
    except OSError as exc:
        raise CdcError(
            ErrorKind.CONFIG, f"cannot read config {path}: {exc.strerror}", f"check the {option} path"
        ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise CdcError(
            ErrorKind.CONFIG,
            f"config {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column}",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from exc


def _check_size(data: Any, path: Path) -> None:
    """Refuse a document that expands (through YAML aliases) to more than MAX_CONFIG_VALUES values,
    or refers to itself; linear in the parsed graph, so a billion laughs is refused in milliseconds."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise CdcError(
                ErrorKind.CONFIG,
                f"config {path} refers to itself: a YAML alias (*name) inside the block it names (&name)",
                "replace the recursive alias by the values it should hold",
            )
        open_ids.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_VALUES:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"config {path} expands to more than {MAX_CONFIG_VALUES:,} values "
                    "(YAML aliases *name repeat the block anchored as &name, each time in full)",
                    "write the values out, or use fewer nested aliases",
                )
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(data)


def read_yaml(path: str | Path, option: str = "-c") -> Any:
    """A YAML file as data, within the limits above (size, UTF-8, alias expansion); every failure is
    a CONFIG error naming the file (`option`: the flag that named it, for the hint)."""
    path = Path(path)
    text = _read_text(path, option)
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            yaml_error_message(path, exc),
            "fix the YAML syntax (indentation, quotes, colons)",
        ) from None  # PyYAML's message quotes the offending line (a password, maybe)
    except RecursionError:  # the pure-Python loader: nesting deeper than the interpreter's stack
        raise CdcError(
            ErrorKind.CONFIG, f"{path} is nested too deeply", "a pipeline config has a few levels"
        ) from None
    try:
        _check_size(data, path)
    except RecursionError:
        raise CdcError(
            ErrorKind.CONFIG, f"{path} is nested too deeply", "a pipeline config has a few levels"
        ) from None
    return data


def load_config(path: str | Path, env: dict[str, str] | None = None) -> PipelineConfig:
    return parse_config(read_yaml(path), env)


def yaml_error_message(path: str | Path, exc: yaml.YAMLError) -> str:
    """Where the YAML is broken and what is wrong, but not the text there: PyYAML's own message quotes
    the offending line, which may hold a password."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened:  # e.g. an unclosed quote: say where it opened, not only where the file ends
        where += f" ({context} at line {opened.line + 1}, column {opened.column + 1})"
    return f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or 'cannot be parsed'}"


def json_schema() -> dict[str, Any]:
    return PipelineConfig.model_json_schema()
