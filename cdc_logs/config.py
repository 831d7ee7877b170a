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

from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_validator

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
class BatchConfig(ConfigModel):
    max_events: int = Field(1000, ge=1)
    max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_wait_ms: int = Field(200, ge=0)


class RetryConfig(ConfigModel):
    max_attempts: int = Field(10, ge=0, description="0 retries forever")
    initial_backoff_ms: int = Field(500, ge=1)
    max_backoff_ms: int = Field(30_000, ge=1)


class FanoutConfig(ConfigModel):
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


class DeadLettersConfig(ConfigModel):
    """Events a destination refuses (a value it cannot hold, a missing column) go to a dead-letter
    file per destination, with the reason and the whole envelope; the pipeline keeps going."""

    enabled: bool = Field(True, description="false: stop the pipeline at the first refused event instead")
    dir: str | None = Field(None, description="default .cdc-logs/<pipeline>.deadletter")


class SyncConfig(ConfigModel):
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


class OffsetsConfig(ConfigModel):
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


class HealthConfig(ConfigModel):
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


class PipelineConfig(ConfigModel):
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
        dnames = [d.name or d.type for d in self.all_sinks()]
        if len(set(dnames)) != len(dnames):
            raise ValueError(f"destination names must be unique (got {dnames}); set `name:` on each")
        return self

    def all_sources(self) -> list[SourceConfigBase]:
        return list(self.sources or ([self.source] if self.source else []))

    def all_sinks(self) -> list[SinkConfigBase]:
        return list(self.destinations or ([self.destination] if self.destination else []))
