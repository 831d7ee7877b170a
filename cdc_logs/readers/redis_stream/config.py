"""The `redis_stream` source: its config (the seed's shape: host, port, stream_name, consumer_group,
consumer_name, plus what a redis-py user expects: url, db, username/password, TLS) and its build."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase, secret
from cdc_logs.dsn import check_url
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import need, source_label
from cdc_logs.observability.redact import redact
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig


class RedisStreamSourceConfig(MessageFormatConfig, SourceConfigBase):
    """Redis Streams: a consumer group read with XREADGROUP, XACK once the sinks hold the entries.

    See docs/sources/redis_stream.md.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "redis_stream",
                    "host": "localhost",
                    "port": 6379,
                    "stream_name": "events",
                    "consumer_group": "cdc_group",
                    "consumer_name": "cdc_worker_1",
                }
            ]
        }
    )

    type: Literal["redis_stream"] = Field(description="Selects this source.")
    url: str | None = Field(
        None,
        description="redis://[user:password@]host:port/db (rediss:// for TLS); when set, host, port, db "
        "and ssl are ignored, and a password in it wins over `password`. Write the password as ${VAR}.",
        examples=["rediss://cdc:${REDIS_PASSWORD}@cache.internal:6380/0"],
    )
    host: str = Field("127.0.0.1", description="Redis host, when `url` is not set.", examples=["localhost"])
    port: int = Field(6379, ge=1, le=65535, description="Redis port, when `url` is not set.", examples=[6379])
    db: int = Field(0, ge=0, description="Database number, when `url` is not set.", examples=[2])
    username: str | None = Field(
        None, description="ACL user (Redis 6+), unless `url` carries one. Default: none.", examples=["cdc"]
    )
    password: SecretStr | None = Field(
        None,
        description="Password (AUTH), unless `url` carries one. A secret: never logged. Default: none.",
        examples=["${REDIS_PASSWORD}"],
    )
    ssl: bool = Field(False, description="TLS to Redis, when `url` is not set (rediss:// does the same).")
    ssl_ca_certs: str | None = Field(
        None,
        description="CA certificates file (PEM) to verify the server with. Default: the system's CAs.",
        examples=["/etc/ssl/certs/redis-ca.pem"],
    )
    ssl_certfile: str | None = Field(
        None,
        description="Client certificate file (PEM) for TLS client authentication.",
        examples=["/etc/cdc/redis.pem"],
    )
    ssl_keyfile: str | None = Field(
        None, description="Private key file (PEM) of the client certificate.", examples=["/etc/cdc/redis.key"]
    )
    stream_name: str = Field(description="The stream's key.", examples=["events"])
    consumer_group: str | None = Field(
        None,
        description="Consumer group to read in; created (XGROUP CREATE ... MKSTREAM) when missing, never "
        "deleted. Default: cdc-logs.<pipeline>.<source name>.",
        examples=["cdc_group"],
    )
    consumer_name: str | None = Field(
        None,
        description="This reader's consumer name in the group. Keep it stable: a restart re-reads the "
        "entries pending under it. Give every process its own. Default: the pipeline name.",
        examples=["cdc_worker_1"],
    )
    start_id: str = Field(
        "0",
        description="Where a consumer group created by cdc-logs starts: 0 = the stream's first entry "
        "(everything already in it), $ = only entries added from then on, or an entry id. An existing "
        "group keeps its own last-delivered id.",
        examples=["$"],
    )
    entry_format: Literal["auto", "field", "fields"] = Field(
        "auto",
        description="How an entry (a field map) becomes a message: field = the `data_field` holds the body "
        "(a JSON object or Debezium envelope); fields = the whole field map is the row (values as text); "
        "auto = the `data_field` when the entry has it (by default `data`, else `payload`), else the field "
        "map.",
        examples=["fields"],
    )
    data_field: str | None = Field(
        None,
        description="The field holding the message body, for entry_format auto and field. Default: data "
        "(auto also takes payload).",
        examples=["value"],
    )
    key_field: str | None = Field(
        None,
        description="A field holding the message key (JSON object or text), used when `key_fields` is not "
        "set; with entry_format fields it is left out of the row. Default: none.",
        examples=["key"],
    )
    block_ms: int = Field(
        1000,
        ge=10,
        le=60_000,
        description="How long one XREADGROUP waits for new entries (BLOCK); also the longest an "
        "acknowledgement waits while the stream is idle.",
        examples=[500],
    )
    count: int = Field(
        100, ge=1, le=100_000, description="Entries per XREADGROUP / XAUTOCLAIM call (COUNT).", examples=[500]
    )
    max_pending: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Entries read and not yet acknowledged at most (like RabbitMQ's prefetch): new entries "
        "are read only below it. Keep it above sync.batch.max_events; entries waiting in the pipeline grow "
        "idle in the group, where `claim_min_idle_ms` lets other consumers claim them.",
        examples=[5000],
    )
    claim_min_idle_ms: int | None = Field(
        60_000,
        ge=0,
        description="Claim (XAUTOCLAIM) entries pending in other consumers of the group for at least this "
        "long: the work of a consumer that died. Set it above the longest a batch can take to reach the "
        "sinks, or a slow consumer's entries are read twice. null: never claim.",
        examples=[300_000],
    )
    claim_interval_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between passes through the group's pending entries looking for ones to claim "
        "(the first pass runs at start).",
        examples=[10.0],
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value, "Redis URL", ("redis", "rediss", "unix"))

    @model_validator(mode="after")
    def _formats(self) -> RedisStreamSourceConfig:
        if self.message_format == "avro":
            raise ValueError("message_format avro needs a schema registry: Kafka sources only; use json")
        if self.message_format == "debezium" and self.entry_format == "fields":
            raise ValueError("a Debezium envelope is one field: set entry_format field (and data_field)")
        return self

    def redis_url(self) -> str:
        return self.url or f"{'rediss' if self.ssl else 'redis'}://{self.host}:{self.port}/{self.db}"


def connector(cfg: RedisStreamSourceConfig, timeout_s: float) -> tuple[Any, str]:
    """A function connecting a redis-py client (checked with PING), and the server's identity."""
    url = cfg.redis_url()
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": 10.0,
        "health_check_interval": 30,
    }
    if cfg.username and "@" not in url:
        options["username"] = cfg.username
    if cfg.password is not None:
        options["password"] = secret(cfg.password)
    if url.startswith("rediss://"):
        tls = {
            "ssl_ca_certs": cfg.ssl_ca_certs,
            "ssl_certfile": cfg.ssl_certfile,
            "ssl_keyfile": cfg.ssl_keyfile,
        }
        options.update({k: v for k, v in tls.items() if v is not None})

    def connect() -> Any:
        import redis

        try:
            client = redis.Redis.from_url(url, **options)
            client.ping()
        except redis.AuthenticationError as exc:
            raise CdcError(
                ErrorKind.AUTH, f"Redis at {redact(url)} refused the credentials", "check username/password"
            ) from exc
        except redis.RedisError as exc:
            raise CdcError(
                ErrorKind.CONNECTION,
                f"cannot reach Redis at {redact(url)}: {exc}",
                "check url / host / port and that Redis is running",
            ) from exc
        return client

    import redis

    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', cfg.host)}:{kwargs.get('port', cfg.port)}"
    return connect, f"redis://{where}/{kwargs.get('db', 0)}"


@registry.source(RedisStreamSourceConfig)
def build(cfg: RedisStreamSourceConfig, ctx: registry.BuildContext) -> Reader:
    need("redis", "redis", source_label(cfg.type, cfg.name))
    import uuid

    from cdc_logs.readers.redis_stream.entries import EntryReading
    from cdc_logs.readers.redis_stream.reader import RedisStreamReader

    source = cfg.name or cfg.type
    group = cfg.consumer_group or f"cdc-logs.{ctx.pipeline}.{source}"
    if ctx.temporary:
        group = f"cdc-logs-tail-{uuid.uuid4().hex[:12]}"  # destroyed when tail ends
    connect, identity = connector(cfg, timeout_s=cfg.block_ms / 1000 + 10)
    return RedisStreamReader(
        connect,
        identity,
        cfg.stream_name,
        group,
        cfg.consumer_name or ctx.pipeline,
        mapping=cfg.mapping(),
        reading=EntryReading(cfg.entry_format, cfg.data_field, cfg.key_field),
        pipeline=ctx.pipeline,
        start_id=cfg.start_id,
        block_ms=cfg.block_ms,
        count=cfg.count,
        max_pending=cfg.max_pending,
        claim_min_idle_ms=cfg.claim_min_idle_ms,
        claim_interval_s=cfg.claim_interval_s,
        temporary=ctx.temporary,
    )
