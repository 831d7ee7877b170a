"""Redis Streams sink: one XADD per event, one MULTI/EXEC round trip per batch, replays skipped.

Each event is appended to the stream named by `stream_template` (default `{prefix}.{schema}.{table}`,
Debezium's topic name; a fixed `stream_name` sends every table to one stream) with the fields
`key` (the event key as JSON; absent for key-less tables), `value` (the Debezium envelope), `op` and
`position` (the encoded source position). Streams are trimmed with `MAXLEN ~ max_length`: the `~`
lets Redis cut whole macro-nodes, which is far cheaper than an exact cut; a stream may hold a few
more entries than the limit.

Replays: entry ids stay Redis's own (time-sequence). Deriving ids from source positions looks like a
free dedup (Redis refuses an id "equal or smaller" than the stream's last), but positions are not
numbers for every source (GTID sets, binlog file/pos, watermarks), events of one transaction share a
position, and a refused id inside MULTI/EXEC fails only that command. Instead the last applied
position per source table is kept in a hash (`marker_key`, default
`cdc-logs:applied:<pipeline>:<sink name>`) and updated in the same MULTI/EXEC as the entries; events
at or below it are skipped (see `dedup.py` for the exact rule). Each field names its owner
(`<pipeline>/<sink name>`) and its stream, so pipelines and streams never share a marker, even in a
hash given by `marker_key`. Fields of the previous format (source table only, in the hash
`cdc-logs:applied:<sink name>` or the configured one) are not used: nothing says which pipeline wrote
them, and another pipeline's would skip changes; the first run re-sends what followed the checkpoint.

Delivery: `write` returns when EXEC has returned. Durability on the Redis side is Redis's own
(appendonly / `appendfsync`): a Redis without AOF can lose the last writes on a crash. Order: a
stream keeps append order, so per-key (indeed per-table) order holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.configmodel import TOPIC_TEMPLATE, SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import Marker, ReplayGuard, marker_key, owner, targeted
from cdc_logs.sinks.routing import DEBEZIUM_TOPIC, check_template, position_text, render

log = get_logger(__name__)


def connect_redis(url: str, password: str | None = None, timeout_s: float = 10.0) -> Any:
    """A redis-py client for `url` (redis://[user:pw@]host:port/db), checked with PING."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, password=password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        client.ping()
    except redis.AuthenticationError as exc:
        raise CdcError(
            ErrorKind.AUTH,
            f"Redis at {redact(url)} refused the credentials",
            "check destination.password (or the password in destination.url)",
        ) from exc
    except redis.RedisError as exc:
        raise CdcError(
            ErrorKind.SINK_TRANSIENT,
            f"cannot reach Redis at {redact(url)}: {exc}",
            "check destination.url / host / port and that Redis is running",
        ) from exc
    return client


def redis_error(exc: Exception, what: str) -> CdcError:
    import redis

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return CdcError(ErrorKind.SINK_TRANSIENT, f"{what}: {exc}", "the batch is retried when Redis is back")
    return CdcError(
        ErrorKind.SINK_REJECTED,
        f"{what}: {exc}",
        "Redis refused the data (a key of another type under the same name, or out of memory)",
    )


class RedisStreamSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        stream_name: str | None = None,
        stream_template: str = DEBEZIUM_TOPIC,
        prefix: str | None = None,
        max_length: int | None = None,
        marker_key: str | None = None,
        name: str = "redis_stream",
        pipeline: str = "cdc",
    ) -> None:
        check_template(stream_name or stream_template, "stream name")
        self.url = url
        self.password = password
        self.template = stream_name or stream_template
        self.prefix = prefix
        self.max_length = max_length
        self.name = name
        self.marker_key = marker_key or f"cdc-logs:applied:{pipeline}:{name}"
        self.owner = owner(pipeline, name)
        # Where the previous format kept this sink's markers: said once if found, never used.
        self._legacy_key = marker_key or f"cdc-logs:applied:{name}"
        self._said_legacy = False
        self._client: Any = None
        self._guard = ReplayGuard(self._marker_key)
        self._loaded: set[str] = set()

    def _marker_key(self, event: ChangeEvent) -> str | None:
        return targeted(f"{self.owner}|{self.stream_for(event)}", event)

    def open(self) -> None:
        self._client = connect_redis(self.url, self.password)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stream_for(self, event: ChangeEvent) -> str:
        return render(self.template, event, self.prefix)

    def _load_markers(self, batch: Sequence[ChangeEvent]) -> None:
        """Read the stored markers of source tables not seen yet (once per table per process)."""
        events = {k: e for e in batch if (k := self._marker_key(e)) is not None and k not in self._loaded}
        if not events:
            return
        wanted = sorted(events)
        values = self._client.hmget(self.marker_key, wanted)
        self._guard.committed({k: Marker.decode(v) for k, v in zip(wanted, values, strict=True) if v})
        self._loaded.update(wanted)
        if not self._said_legacy:
            legacy = sorted({k for e in events.values() if (k := marker_key(e)) is not None})
            found = [
                k for k, v in zip(legacy, self._client.hmget(self._legacy_key, legacy), strict=True) if v
            ]
            if found:
                self._said_legacy = True
                log.info(
                    "replay markers of the previous format found and not used: they do not say which "
                    "pipeline wrote them; the changes since this pipeline's checkpoint are sent again "
                    "(same `position` field: consumers that dedup by it see no difference)",
                    sink=self.name,
                    hash=self._legacy_key,
                    fields=len(found),
                    fix=f"once every pipeline runs this version: HDEL {self._legacy_key} <those fields>",
                )

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._client is None:
            self.open()
        import redis

        try:
            self._load_markers(batch)
            fresh, changed = self._guard.plan(batch)
            if not fresh and not changed:
                return
            pipe = self._client.pipeline(transaction=True)
            for event in fresh:
                fields: dict[str, bytes | str] = {"value": event.to_json(), "op": event.op.value}
                key = event.key_json()
                if key is not None:
                    fields["key"] = key
                position = position_text(event)
                if position is not None:
                    fields["position"] = position
                pipe.xadd(self.stream_for(event), fields, maxlen=self.max_length, approximate=True)
            if changed:
                pipe.hset(self.marker_key, mapping={k: m.encode() for k, m in changed.items()})
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise redis_error(exc, f"XADD of {len(batch)} events failed") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            # EXEC does not roll back: put the markers back so a retry re-sends the whole batch.
            self._restore_markers(changed)
            raise redis_error(failed[0], f"{len(failed)} of {len(replies)} commands failed")
        self._guard.committed(changed)

    def _restore_markers(self, changed: dict[str, Marker]) -> None:
        import redis

        old = {k: self._guard.markers[k].encode() for k in changed if k in self._guard.markers}
        gone = [k for k in changed if k not in self._guard.markers]
        try:
            pipe = self._client.pipeline(transaction=True)
            if old:
                pipe.hset(self.marker_key, mapping=old)
            if gone:
                pipe.hdel(self.marker_key, *gone)
            pipe.execute()
        except redis.RedisError as exc:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"a batch failed in part and its replay markers could not be put back: {exc}",
                f"HDEL {self.marker_key} {' '.join(changed)} so the replay re-sends it, then resume",
            ) from exc


# -- config ----------------------------------------------------------------------------------------
class RedisConnection(SinkConfigBase):
    """Where a Redis destination connects, and `{prefix}` of its names (shared by the Redis sinks)."""

    url: str | None = Field(
        None,
        description="redis://[user:password@]host:port/db (rediss:// for TLS); when set, host, port and db "
        "are ignored, and a password in it wins over `password`. Write the password as ${VAR}.",
        examples=["redis://:${REDIS_PASSWORD}@cache.internal:6379/0"],
    )
    host: str = Field(
        "127.0.0.1", description="Redis host, when `url` is not set.", examples=["cache.internal"]
    )
    port: int = Field(6379, ge=1, le=65535, description="Redis port, when `url` is not set.", examples=[6380])
    db: int = Field(0, ge=0, description="Database number, when `url` is not set.", examples=[2])
    password: SecretStr | None = Field(
        None,
        description="Password (AUTH), unless `url` carries one. A secret: never logged. Default: none.",
        examples=["${REDIS_PASSWORD}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in the name templates. Default: the event's source.name: the pipeline name "
        "(native readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )

    def redis_url(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/{self.db}"


class RedisStreamSinkConfig(RedisConnection):
    """Redis Streams: XADD per event, MAXLEN ~ trimming, replays skipped."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "redis_stream", "host": "cache.internal"}]}
    )

    type: Literal["redis_stream"] = Field(description="Selects this destination.")
    stream_name: str | None = Field(
        None,
        description="One stream for every table (a template like `stream_template`); overrides "
        "`stream_template`.",
        examples=["processed_events"],
    )
    stream_template: str = Field(
        TOPIC_TEMPLATE,
        description="Stream per event, from {prefix} {db} {schema} {table} {op} {connector}; the default is "
        "Debezium's topic name.",
        examples=["cdc:{schema}:{table}"],
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="Trim each stream with XADD MAXLEN ~ n (approximate: cheap, a few more entries may "
        "stay). Default: no trimming.",
        examples=[100_000],
    )
    marker_key: str | None = Field(
        None,
        description="Hash holding the last applied position per pipeline, destination, stream and source "
        "table, written in the same MULTI/EXEC as the entries, so a replay is skipped. Default: "
        "cdc-logs:applied:<pipeline>:<sink name>.",
        examples=["cdc-logs:applied:shop-events"],
    )


@registry.sink(RedisStreamSinkConfig, capabilities={"log", "ordered", "replay_guard"})
def build(cfg: RedisStreamSinkConfig, ctx: registry.BuildContext) -> RedisStreamSink:
    need("redis", "redis", destination_label(cfg.type, cfg.name))
    return RedisStreamSink(
        cfg.redis_url(),
        password=secret(cfg.password),
        stream_name=cfg.stream_name,
        stream_template=cfg.stream_template,
        prefix=cfg.prefix,
        max_length=cfg.max_length,
        marker_key=cfg.marker_key,
        name=cfg.name or cfg.type,
        pipeline=ctx.pipeline,
    )
