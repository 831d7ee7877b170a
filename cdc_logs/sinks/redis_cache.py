"""Redis cache sink (the seed's `type: redis`): Redis mirrors each table's current rows.

For every change the row's key is rendered from `key_pattern` (the seed's `event:{user_id}`; the
default `{prefix}.{schema}.{table}:{key}`, where `{key}` is the primary key values joined by `:`).
Inserts, updates and snapshot reads SET the row after the change as JSON (values encoded as in the
envelope); deletes DEL it; an update that changes the rendered key DELs the old key first. A batch
is one MULTI/EXEC, so readers never see half a batch.

Unchanged TOAST columns (listed in the envelope's `unchanged`, absent from `after`) are not
invented: their values are taken from the cached row, read before the transaction. Truncates are not
mirrored: a pattern like `event:{user_id}` does not tell which keys belong to the table, and
scanning by a guessed prefix could delete another table's keys; they are logged instead.

Replays need no marker here: each SET/DEL writes the state the row had at that point of the log, and
a replay walks forward to the same last state. Order: the batch applies in source order, so the last
event of a key wins. Durability is Redis's own (appendonly / appendfsync).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import TOPIC_TEMPLATE, secret
from cdc_logs.envelope import ChangeEvent, Op, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.logging import get_logger
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.redis_stream import RedisConnection, connect_redis, redis_error
from cdc_logs.sinks.routing import DEBEZIUM_TOPIC, EVENT_FIELDS, render, source_label, template_fields

log = get_logger(__name__)

DEFAULT_PATTERN = DEBEZIUM_TOPIC + ":{key}"


class RedisCacheSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        key_pattern: str = DEFAULT_PATTERN,
        prefix: str | None = None,
        ttl_seconds: int | None = None,
        name: str = "redis",
    ) -> None:
        # Column names are allowed, so only the syntax can be checked here.
        self._row_fields = set(template_fields(key_pattern)) - EVENT_FIELDS
        self.url = url
        self.password = password
        self.key_pattern = key_pattern
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.name = name
        self._client: Any = None

    def open(self) -> None:
        self._client = connect_redis(self.url, self.password)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def key_for(self, event: ChangeEvent, row: dict[str, Any] | None) -> str:
        fields = dict(row or {})
        fields.update(event.key or {})
        if event.key:
            fields["key"] = _joined(event.key.values())
        elif "key" in self._row_fields:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{source_label(event)} has no primary key, so `{{key}}` in key_pattern cannot be filled",
                "give the table a primary key, or name columns in destination.key_pattern",
            )
        return render(self.key_pattern, event, self.prefix, fields)

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._client is None:
            self.open()
        import redis

        try:
            current = self._read_partial_rows(batch)
            pipe = self._client.pipeline(transaction=True)
            for event in batch:
                self._apply(pipe, event, current)
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise redis_error(exc, f"applying {len(batch)} changes to the cache failed") from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            # SET/DEL are idempotent: the retry of the whole batch repairs what did apply.
            raise redis_error(failed[0], f"{len(failed)} of {len(replies)} cache commands failed")

    def _read_partial_rows(self, batch: Sequence[ChangeEvent]) -> dict[str, dict[str, Any] | None]:
        """Cached rows of the keys that partial updates (unchanged TOAST columns) need to complete."""
        keys = sorted({self.key_for(e, e.after) for e in batch if e.unchanged and e.after is not None})
        if not keys:
            return {}
        values = self._client.mget(keys)
        return {k: orjson.loads(v) if v else None for k, v in zip(keys, values, strict=True)}

    def _apply(self, pipe: Any, event: ChangeEvent, current: dict[str, dict[str, Any] | None]) -> None:
        if event.op in (Op.CREATE, Op.UPDATE, Op.READ) and event.after is not None:
            key = self.key_for(event, event.after)
            if event.before is not None:
                old_key = self._old_key(event)
                if old_key is not None and old_key != key:
                    pipe.delete(old_key)
                    current[old_key] = None
            row = dict(event.after)
            if event.unchanged:
                cached = current.get(key)
                if cached is None:
                    log.warning(
                        "partial update of an uncached row: unchanged columns stay absent",
                        table=source_label(event),
                        columns=list(event.unchanged),
                    )
                else:
                    row.update({c: cached[c] for c in event.unchanged if c in cached})
            current[key] = row
            pipe.set(key, dumps(row), ex=self.ttl_seconds)
        elif event.op is Op.DELETE:
            key = self.key_for(event, event.before)
            current[key] = None
            pipe.delete(key)
        elif event.op is Op.TRUNCATE:
            log.warning("truncate not mirrored in the Redis cache", table=source_label(event))

    def _old_key(self, event: ChangeEvent) -> str | None:
        """The key the row had before an update; None when `before` lacks the pattern's columns
        (REPLICA IDENTITY DEFAULT sends only the key columns, and only when the key changed)."""
        before = event.before or {}
        fields = dict(before)
        if "key" in self._row_fields:
            if not event.key or not all(k in before for k in event.key):
                return None
            fields["key"] = _joined(before[k] for k in event.key)
        if not (self._row_fields - {"key"}) <= set(before):
            return None
        return render(self.key_pattern, event, self.prefix, fields)


def _joined(values: Iterable[Any]) -> str:
    return ":".join("" if v is None else str(v) for v in values)


# -- config ----------------------------------------------------------------------------------------
class RedisCacheSinkConfig(RedisConnection):
    """Redis as a cache of each table's current rows (the seed's `type: redis`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "redis", "host": "cache.internal", "key_pattern": "user:{id}"}]
        }
    )

    type: Literal["redis"] = Field(description="Selects this destination.")
    key_pattern: str = Field(
        TOPIC_TEMPLATE + ":{key}",
        description="Redis key of each row, from {prefix} {db} {schema} {table} {op} {connector}, the row's "
        "columns, and {key} (the primary key values joined by :). The row is SET there as JSON.",
        examples=["event:{user_id}"],
    )
    ttl_seconds: int | None = Field(
        None,
        ge=1,
        description="Expiry of each written key (SET EX), renewed at every change of the row. Default: keys "
        "never expire.",
        examples=[86_400],
    )


@registry.sink(RedisCacheSinkConfig, capabilities={"state", "ordered"})
def build(cfg: RedisCacheSinkConfig, ctx: registry.BuildContext) -> RedisCacheSink:
    need("redis", "redis", destination_label(cfg.type, cfg.name))
    return RedisCacheSink(
        cfg.redis_url(),
        password=secret(cfg.password),
        key_pattern=cfg.key_pattern,
        prefix=cfg.prefix,
        ttl_seconds=cfg.ttl_seconds,
        name=cfg.name or cfg.type,
    )
