"""Destination configs of the message-bus, database and webhook sinks, in the seed proposal's shapes.

Kept beside config.py (which adds them to the `destination` union) so that module stays readable.
Connection settings accept the seed's split form (`host`, `port`, `username`, `password`) or one
`url`; secrets are `SecretStr`. Name templates (`{prefix}`, `{schema}`, `{table}`, `{op}`, ...) are
documented in cdc_logs/sinks/routing.py and docs/sinks.md; they are checked when the sink is built.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs.dsn import check_bootstrap, check_url

_TOPIC = "{prefix}.{schema}.{table}"
# Fields holding a client URL: checked when the config is read, because the clients' own errors about
# a malformed URL quote it, or the piece they choke on (often the password).
_URL_FIELDS = ("url", "service_url", "schema_registry_url")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _urls(self) -> _Model:
        for name in _URL_FIELDS:
            value = getattr(self, name, None)
            if isinstance(value, str):  # not the SQL sink's SecretStr: SQLAlchemy parses it (dsn.py)
                try:
                    check_url(value, "URL")
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        bootstrap = getattr(self, "bootstrap_servers", None)
        if isinstance(bootstrap, str):
            check_bootstrap(bootstrap)
        return self


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class KafkaSinkConfig(_Model):
    """Kafka producer: Debezium-shaped JSON (or Avro with a schema registry)."""

    type: Literal["kafka"]
    name: str | None = None
    bootstrap_servers: str
    topic: str | None = Field(None, description="one fixed topic for every table (overrides topic_template)")
    topic_template: str = Field(_TOPIC, description="topic per table; Debezium's naming by default")
    prefix: str | None = Field(None, description="{prefix} in templates (default: the pipeline name)")
    key_field: str | None = Field(None, description="key by this column instead of the primary key")
    partition_strategy: str = Field("hash", description="hash (by key): the only order-preserving choice")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    tombstones_on_delete: bool = True
    headers: bool = Field(True, description="op and source position as record headers")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    delivery_timeout_ms: int = Field(30_000, ge=1000)
    linger_ms: int = Field(5, ge=0)
    producer_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra librdkafka settings (enable.idempotence and acks are fixed)"
    )
    message_format: Literal["json", "avro"] | None = Field(
        None, alias="format", description="json, or avro (default when schema_registry_url is set)"
    )
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    value_schema: str | None = Field(None, description="registry subject for values (default <topic>-value)")

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


class _RedisConnection(_Model):
    url: str | None = Field(None, description="redis://[user@]host:port/db (default from host/port/db)")
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    password: SecretStr | None = None
    prefix: str | None = Field(None, description="{prefix} in templates (default: the pipeline name)")

    def redis_url(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/{self.db}"


class RedisStreamSinkConfig(_RedisConnection):
    """Redis Streams: XADD per event, MAXLEN ~ trimming, replays skipped."""

    type: Literal["redis_stream"]
    name: str | None = None
    stream_name: str | None = Field(None, description="one fixed stream for every table")
    stream_template: str = _TOPIC
    max_length: int | None = Field(None, ge=1, description="MAXLEN ~ n: approximate trimming")
    marker_key: str | None = Field(
        None, description="hash of replay markers (default cdc-logs:applied:<name>)"
    )


class RedisCacheSinkConfig(_RedisConnection):
    """Redis as a cache of each table's current rows (the seed's `type: redis`)."""

    type: Literal["redis"]
    name: str | None = None
    key_pattern: str = Field(
        _TOPIC + ":{key}", description="e.g. event:{user_id}; {key} = primary key values"
    )
    ttl_seconds: int | None = Field(None, ge=1)


class RabbitMQSinkConfig(_Model):
    """RabbitMQ: persistent messages with publisher confirms."""

    type: Literal["rabbitmq"]
    name: str | None = None
    url: str | None = Field(
        None, description="amqp://user:password@host:5672/vhost (default from the fields)"
    )
    host: str = "127.0.0.1"
    port: int = Field(5672, ge=1, le=65535)
    username: str = "guest"
    password: SecretStr = SecretStr("guest")
    virtual_host: str = "/"
    exchange: str | None = None
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    queue: str | None = None
    routing_key: str = Field("{prefix}.{schema}.{table}.{op}", description="routing key template")
    binding_key: str = Field("#", description="binds `queue` to `exchange` when declaring")
    declare: bool = Field(True, description="declare the durable exchange / queue / binding")
    prefix: str | None = None
    confirm_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _target(self) -> RabbitMQSinkConfig:
        if not self.exchange and not self.queue:
            raise ValueError("rabbitmq destination needs `exchange` or `queue`")
        return self

    def amqp_url(self) -> str:
        if self.url:
            return self.url
        user, pw = quote(self.username, safe=""), quote(self.password.get_secret_value(), safe="")
        return f"amqp://{user}:{pw}@{self.host}:{self.port}/{quote(self.virtual_host, safe='')}"


_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


class SqlSinkConfig(_Model):
    """Apply changes to SQL tables (upsert / delete / truncate) through SQLAlchemy."""

    type: Literal["sql", "postgresql", "postgres", "mysql", "mariadb", "sqlite"]
    name: str | None = None
    url: SecretStr | None = Field(None, description="SQLAlchemy URL (never logged); or the fields below")
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    table: str = Field("{table}", description="target table name template, or one fixed table")
    target_schema: str | None = Field(
        "{schema}", alias="schema", description="target schema template; null = the connection's default"
    )
    auto_create: bool = Field(False, description="create missing target tables / columns from the rows")
    apply_truncate: bool = True
    applied_table: str = Field("cdc_applied", description="table of replay markers, in the target database")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dsn" in data and "url" not in data:
            data = dict(data)
            data["url"] = data.pop("dsn")
        return data

    @model_validator(mode="after")
    def _connection(self) -> SqlSinkConfig:
        if self.url is None and (self.type == "sql" or not self.database):
            raise ValueError("give `url` (a SQLAlchemy URL), or `database` with host/port/username/password")
        if "target_schema" not in self.model_fields_set and self.sqlalchemy_url().startswith("sqlite"):
            self.target_schema = None  # SQLite has no schemas to mirror
        return self

    def sqlalchemy_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        if self.type == "sqlite":
            return f"sqlite:///{self.database}"
        auth = quote(self.username or "", safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        port = f":{self.port}" if self.port else ""
        return f"{_DRIVERS[self.type]}://{auth + '@' if auth else ''}{self.host}{port}/{self.database}"


class HttpSinkConfig(_Model):
    """Webhook: batched, signed POSTs with retries and a dead-letter file."""

    type: Literal["http", "webhook"]
    name: str | None = None
    url: str
    method: Literal["POST", "PUT"] = "POST"
    body_format: Literal["json", "ndjson"] = Field("json", alias="format")
    headers: dict[str, str] = Field(default_factory=dict)
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for the signature header")
    signature_header: str = "X-CDC-Signature"
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1, description="tries per request on 5xx/408/429/timeouts")
    initial_backoff_ms: int = Field(500, ge=1)
    max_backoff_ms: int = Field(10_000, ge=1)
    max_events_per_request: int | None = Field(None, ge=1)
    rejected_attempts: int = Field(1, ge=1, description="tries on another 4xx before dead-lettering")
    dead_letter_path: str | None = Field(None, description="JSON lines of refused events; unset = stop")


class NatsSinkConfig(_Model):
    """NATS JetStream with server-side dedup (Nats-Msg-Id)."""

    type: Literal["nats"]
    name: str | None = None
    url: str = "nats://127.0.0.1:4222"
    subject: str = _TOPIC
    prefix: str | None = None
    stream: str | None = None
    stream_subjects: list[str] | None = None
    create_stream: bool = True
    duplicate_window_s: float = Field(120.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None


class MqttSinkConfig(_Model):
    """MQTT, QoS 1 (or 2), every PUBACK awaited."""

    type: Literal["mqtt"]
    name: str | None = None
    url: str = Field("mqtt://127.0.0.1:1883", alias="broker", description="mqtt://host:port or mqtts://")
    topic: str = "{prefix}/{schema}/{table}"
    prefix: str | None = None
    qos: Literal[1, 2] = 1
    retain: bool = False
    protocol_version: Literal[5, 311] = 5
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    max_inflight: int = Field(1000, ge=1)
    timeout_s: float = Field(30.0, gt=0)


class PulsarSinkConfig(_Model):
    """Apache Pulsar producer (not tested against a live server here: see docs/sinks.md)."""

    type: Literal["pulsar"]
    name: str | None = None
    service_url: str = "pulsar://127.0.0.1:6650"
    topic: str = Field("persistent://public/default/{prefix}.{schema}.{table}", description="topic template")
    prefix: str | None = None
    producer_name: str | None = Field(None, description="stable name: the broker deduplicates per producer")
    compression_type: Literal["none", "lz4", "zlib", "zstd", "snappy"] = "none"
    send_timeout_ms: int = Field(30_000, ge=1000)
    auth_token: SecretStr | None = None


class SearchSinkConfig(_Model):
    """OpenSearch / Elasticsearch bulk indexing, `_id` = the primary key."""

    type: Literal["opensearch", "elasticsearch"]
    name: str | None = None
    url: str | None = Field(None, description="http(s)://host:9200 (default from host/port)")
    host: str = "127.0.0.1"
    port: int = Field(9200, ge=1, le=65535)
    index: str = Field("{prefix}.{schema}.{table}", description="index name template (lowercased)")
    prefix: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    mode: Literal["mirror", "append"] = Field(
        "mirror", description="mirror: document per row (delete removes it); append: one document per event"
    )
    refresh: bool = Field(False, description="refresh after each batch (tests; slows indexing)")
    timeout_s: float = Field(30.0, gt=0)

    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


SINK_MODELS = (
    KafkaSinkConfig,
    RedisStreamSinkConfig,
    RedisCacheSinkConfig,
    RabbitMQSinkConfig,
    SqlSinkConfig,
    HttpSinkConfig,
    NatsSinkConfig,
    MqttSinkConfig,
    PulsarSinkConfig,
    SearchSinkConfig,
)
SinkModel = (
    KafkaSinkConfig
    | RedisStreamSinkConfig
    | RedisCacheSinkConfig
    | RabbitMQSinkConfig
    | SqlSinkConfig
    | HttpSinkConfig
    | NatsSinkConfig
    | MqttSinkConfig
    | PulsarSinkConfig
    | SearchSinkConfig
)
