"""The pipeline configuration model, in the seed proposal's shapes (docs/configuration.md).

  name, source | sources[], destination | destinations[], plugins.{middleware, transformers},
  sync.{mode: one_time|continuous|cron, cron, batch, queue_size, retry, fanout, dead_letters},
  offsets, health_checks.

`source`, `destination` and the plugin lists are discriminated unions on `type`, built from the
component registry (registry.py): each reader, sink and transform declares its own config model in
its own module, so adding one edits nothing here. Reading files (size and alias limits, `${VAR}`
interpolation, error messages) is configfile.py's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SinkConfigBase, SourceConfigBase


def _union(kind: registry.Kind) -> Any:
    models = tuple(c.config for c in registry.components(kind))
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at runtime


if TYPE_CHECKING:  # mypy sees the bases; pydantic validates against every registered model
    SourceConfig = SourceConfigBase
    DestinationConfig = SinkConfigBase
    TransformConfig = ConfigModel
else:
    SourceConfig = _union("source")
    DestinationConfig = _union("sink")
    TransformConfig = _union("transform")


def _adapter(kind: registry.Kind) -> TypeAdapter[Any]:
    return TypeAdapter(_union(kind))


def transform_config(data: Any) -> ConfigModel:
    """One transform's config from its mapping ({type, params})."""
    config: ConfigModel = _adapter("transform").validate_python(data)
    return config


# -- plugins ---------------------------------------------------------------------------------------
class PluginsConfig(ConfigModel):
    """`middleware` runs first, then `transformers`; each a list (or the seed's nested form)."""

    middleware: list[TransformConfig] = Field(
        default_factory=list,
        description="Transforms applied first, in order (docs/reference/transforms.md); the seed's nested "
        "`middleware: {middleware: [...]}` is accepted too. Default: none.",
    )
    transformers: list[TransformConfig] = Field(
        default_factory=list,
        description="Transforms applied after `middleware`, in order; the seed's nested "
        "`transformers: {transformers: [...]}` is accepted too. Default: none.",
    )

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
class BatchConfig(ConfigModel):
    """When a batch is written to the destinations: whichever limit is reached first."""

    max_events: int = Field(
        1000,
        ge=1,
        description="Events per batch at most (the seed's batch_optimization.max_batch_size).",
        examples=[5000],
    )
    max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Bytes per batch at most, counted as the events' JSON envelopes.",
        examples=[16_777_216],
    )
    max_wait_ms: int = Field(
        200,
        ge=0,
        description="Milliseconds a batch may wait for more events after its first one arrived; the latency "
        "added at low traffic (the seed's batch_optimization.target_latency_ms).",
        examples=[1000],
    )


class RetryConfig(ConfigModel):
    """Exponential backoff for retryable failures: a destination's write, a source's start or reconnect."""

    max_attempts: int = Field(
        10,
        ge=0,
        description="Tries per failure streak before the pipeline stops with the error; 0 retries forever.",
        examples=[0, 20],
    )
    initial_backoff_ms: int = Field(
        500, ge=1, description="Milliseconds before the second try; doubled per try.", examples=[1000]
    )
    max_backoff_ms: int = Field(
        30_000, ge=1, description="Milliseconds: the cap of the backoff.", examples=[60_000]
    )


class FanoutConfig(ConfigModel):
    """Several destinations: each reads a shared spool at its own pace (docs/configuration.md)."""

    enabled: bool | Literal["auto"] = Field(
        "auto",
        description="true: each destination reads a shared spool at its own pace, with its own retries; "
        "false: every batch is written to each destination in turn; auto: on with 2 or more destinations.",
        examples=[True],
    )
    spool_dir: str | None = Field(
        None,
        description="Directory where batches spill when a destination falls far behind (emptied on each "
        "start: the source replays from the checkpoint). Default: .cdc-logs/<pipeline>.spool.",
        examples=["/var/lib/cdc/spool"],
    )
    max_spool_bytes: int = Field(
        1 << 30,
        ge=1 << 20,
        description="Bytes spilled to disk the slowest destination may lag behind; when reached, the "
        "sources wait (nothing is dropped).",
        examples=[10_737_418_240],
    )
    max_memory_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        description="Bytes of batches kept in memory for the destinations before new ones spill to disk.",
        examples=[268_435_456],
    )
    dead_letter_dir: str | None = Field(
        None,
        description="Older name of sync.dead_letters.dir, used when that is not set (kept so existing "
        "configs still work).",
        examples=["/var/lib/cdc/dead"],
    )


class DeadLettersConfig(ConfigModel):
    """Events a destination refuses (a value it cannot hold, a missing column) and changes a source
    cannot decode go to dead-letter files, with the reason and the data; the pipeline keeps going
    (docs/configuration.md#dead-letters)."""

    enabled: bool = Field(
        True,
        description="false: stop the pipeline at the first event a destination refuses (or a source cannot "
        "decode) instead.",
    )
    dir: str | None = Field(
        None,
        description="Directory of the dead-letter files: <destination>.deadletter.jsonl per destination, "
        "<source>.undecodable.jsonl per source. Default: .cdc-logs/<pipeline>.deadletter.",
        examples=["/var/lib/cdc/dead"],
    )


class SyncConfig(ConfigModel):
    """How the pipeline runs and delivers: mode, batching, retries, fan-out, dead letters."""

    mode: Literal["one_time", "continuous", "cron"] = Field(
        "continuous",
        description="continuous: run until stopped; one_time: deliver everything there is, then exit 0; "
        "cron: such a one-time run at every `cron` slot.",
        examples=["one_time"],
    )
    cron: str | None = Field(
        None,
        description="Five-field cron expression in the machine's local time, for mode cron (then required); "
        "slots missed while a run was going are skipped. The seed's `cron_expression` is accepted too.",
        examples=["*/5 * * * *"],
    )
    batch: BatchConfig = Field(
        default_factory=BatchConfig,
        description="When a batch is written; the seed's batch_optimization maps here.",
    )
    queue_size: int = Field(
        10_000,
        ge=1,
        description="Changes (and heartbeats) read ahead of the batch being written; when full the sources "
        "wait, so a slow destination slows the sources and memory stays bounded.",
        examples=[50_000],
    )
    retry: RetryConfig = Field(
        default_factory=RetryConfig,
        description="Backoff for destinations' writes and for sources' starts and reconnects.",
    )
    fanout: FanoutConfig = Field(
        default_factory=FanoutConfig, description="Several destinations, each at its own pace."
    )
    dead_letters: DeadLettersConfig = Field(
        default_factory=DeadLettersConfig,
        description="Where refused and undecodable changes go, so the pipeline keeps going.",
    )

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


class OffsetsConfig(ConfigModel):
    """Where each source's committed position is kept (and the one-run-per-pipeline lock)."""

    type: Literal["sqlite", "file", "postgres"] = Field(
        "sqlite",
        description="sqlite: a local SQLite file; file: a local JSON file replaced atomically; postgres: a "
        "table in a Postgres database (for stateless deployments).",
        examples=["postgres"],
    )
    path: str | None = Field(
        None,
        description="File of a sqlite or file store. Default: .cdc-logs/<pipeline>.offsets.db (sqlite), "
        ".cdc-logs/<pipeline>.offsets.json (file), relative to the working directory.",
        examples=["/var/lib/cdc/offsets.db"],
    )
    dsn: str | None = Field(
        None,
        description="libpq connection string or URL of the postgres store's database (then required). A "
        "password in it is masked in output; write it as ${VAR}.",
        examples=["postgresql://cdc:${OFFSETS_PASSWORD}@db.internal:5432/cdc"],
    )
    table: str = Field(
        "cdc_offsets",
        description="Table of the postgres store (created when missing); unused by the other types.",
        examples=["cdc_offsets_shop"],
    )

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


class HealthConfig(ConfigModel):
    """/metrics, /health and /ready over HTTP, and when /ready and /health fail (docs/configuration.md)."""

    enabled: bool = Field(
        False,
        description="Serve /metrics, /health and /ready while `cdc-logs run` runs (`--http-port` serves "
        "them too, on its port).",
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP endpoints.", examples=[9000])
    host: str = Field(
        "127.0.0.1",
        description="Address the HTTP endpoints listen on; 0.0.0.0 for every interface (e.g. in a "
        "container).",
        examples=["0.0.0.0"],
    )
    endpoints: list[dict[str, Any]] | None = Field(
        None,
        description="Accepted for the seed's shape and ignored: the paths are fixed (/health, /ready, "
        "/metrics).",
        examples=[[{"path": "/health"}]],
    )
    sink_stall_ms: int = Field(
        60_000,
        ge=0,
        description="Milliseconds: /ready fails when a destination has data waiting and accepted no write "
        "for this long. 0 turns the check off.",
        examples=[120_000],
    )
    dead_letter_window_ms: int = Field(
        300_000,
        ge=0,
        description="Milliseconds: /ready fails for this long after a destination dead-lettered an event. "
        "0 turns the check off.",
        examples=[60_000],
    )
    source_stall_ms: int = Field(
        60_000,
        ge=0,
        description="Milliseconds: /ready fails when a source sent no event and no heartbeat for this long "
        "(Postgres: at least 3 heartbeat intervals; sources without heartbeats count a completed poll). "
        "0 turns the check off.",
        examples=[300_000],
    )
    stuck_after_ms: int = Field(
        300_000,
        ge=0,
        description="Milliseconds: /health fails when data waits and nothing reached every destination for "
        "this long, so nothing can be committed. Keep it above sink_stall_ms and sync.retry.max_backoff_ms. "
        "0 turns the check off.",
        examples=[600_000],
    )


class PipelineConfig(ConfigModel):
    """A cdc-logs pipeline: sources, transforms and destinations, run by `cdc-logs run -c FILE`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "shop",
                    "source": {"type": "sqlite", "path": "app.db", "tables": ["users"]},
                    "destination": {"type": "stdout"},
                }
            ]
        }
    )

    name: str = Field(
        "cdc",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The pipeline's name (letters, digits, _ . -): offsets, the run lock, default slot, "
        "consumer group and file names, and metrics are kept per name.",
        examples=["shop"],
    )
    source: SourceConfig | None = Field(
        None,
        description="The one source (docs/reference/sources.md); give `source` or `sources`.",
    )
    sources: list[SourceConfig] | None = Field(
        None, description="Several sources, each with a unique `name`, merged into one pipeline."
    )
    destination: DestinationConfig | None = Field(
        None,
        description="The one destination (docs/reference/sinks.md); give `destination` or `destinations`.",
    )
    destinations: list[DestinationConfig] | None = Field(
        None,
        description="Several destinations, each with a unique `name`; every change goes to each of them.",
    )
    plugins: PluginsConfig = Field(
        default_factory=PluginsConfig, description="Transforms applied between the sources and destinations."
    )
    sync: SyncConfig = Field(default_factory=SyncConfig, description="How the pipeline runs and delivers.")
    offsets: OffsetsConfig = Field(
        default_factory=OffsetsConfig,
        description="Where committed positions are kept. Default: a SQLite file under .cdc-logs/.",
    )
    health_checks: HealthConfig = Field(
        default_factory=HealthConfig, description="The HTTP endpoints and their thresholds."
    )

    @model_validator(mode="after")
    def _one_of(self) -> PipelineConfig:
        if (self.source is None) == (self.sources is None):
            raise ValueError("give exactly one of `source` or `sources`")
        if (self.destination is None) == (self.destinations is None):
            raise ValueError("give exactly one of `destination` or `destinations`")
        names = [s.name or s.type for s in self.all_sources()]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique (got {names}); set `name:` on each")
        dnames = [d.name or d.type for d in self.all_sinks()]
        if len(set(dnames)) != len(dnames):
            raise ValueError(f"destination names must be unique (got {dnames}); set `name:` on each")
        return self

    def all_sources(self) -> list[SourceConfigBase]:
        return list(self.sources or ([self.source] if self.source else []))

    def all_sinks(self) -> list[SinkConfigBase]:
        return list(self.destinations or ([self.destination] if self.destination else []))
