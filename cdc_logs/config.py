"""The pipeline configuration model, in the seed proposal's shapes (docs/configuration.md).

  name, source | sources[], destination | destinations[], plugins.{middleware, transformers},
  sync.{mode: one_time|continuous|cron, cron, batch, queue_size, retry, fanout, dead_letters},
  offsets, health_checks.

`source`, `destination` and the plugin lists are discriminated unions on `type`, built from the
component registry (registry.py): each reader, sink and transform declares its own config model in
its own module, so adding one edits nothing here. Reading files (size and alias limits, `${VAR}`
interpolation, error messages) is configfile.py's job; `sync:`, `offsets:` and `health_checks:` are
modelled beside what they configure (sync_config.py, offsets/config.py, observability/config.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SinkConfigBase, SourceConfigBase
from cdc_logs.observability.config import HealthConfig
from cdc_logs.offsets.config import OffsetsConfig
from cdc_logs.sync_config import SyncConfig

__all__ = [
    "HealthConfig",
    "OffsetsConfig",
    "PipelineConfig",
    "PluginsConfig",
    "SyncConfig",
    "transform_config",
]


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
    merge_strategy: Literal["timestamp_based", "key_based", "custom"] = Field(
        "key_based",
        description='How the events of several sources are merged (docs/configuration.md, "Merging several '
        "sources\"): key_based delivers in arrival order (each key's events in the order they were read, "
        "no buffering); timestamp_based orders across sources by source.ts_ms within `merge_window_ms`, "
        "never reordering one source. `custom` is refused (no plugin mechanism).",
        examples=["timestamp_based"],
    )
    merge_window_ms: int = Field(
        1000,
        ge=0,
        le=600_000,
        description="timestamp_based: the longest an event waits for earlier events of other sources; "
        "an event arriving later than that is delivered at once and counted as late.",
        examples=[2000],
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
        if self.merge_strategy == "custom":
            raise ValueError(
                "merge_strategy: custom is not supported (cdc-logs has no plugin mechanism for merge "
                "strategies); use timestamp_based or key_based"
            )
        dnames = [d.name or d.type for d in self.all_sinks()]
        if len(set(dnames)) != len(dnames):
            raise ValueError(f"destination names must be unique (got {dnames}); set `name:` on each")
        from cdc_logs import pipeline_options  # opentelemetry / prometheus_metrics across entries

        pipeline_options.check(self)
        return self

    @model_validator(mode="after")
    def _parallel(self) -> PipelineConfig:
        from cdc_logs.parallel import check_destinations

        par = self.sync.parallelism
        check_destinations(par.enabled, par.worker_count, [d.type for d in self.all_sinks()])
        from cdc_logs.compression import check_sync_compression

        comp = self.sync.compression
        check_sync_compression(comp.enabled, comp.algorithm, self.all_sinks())
        return self

    def all_sources(self) -> list[SourceConfigBase]:
        return list(self.sources or ([self.source] if self.source else []))

    def all_sinks(self) -> list[SinkConfigBase]:
        return list(self.destinations or ([self.destination] if self.destination else []))

    def warnings(self) -> list[str]:
        """Settings accepted in the seed's shape that cannot act as written: `config validate` prints
        them, `run` logs them at start."""
        from cdc_logs import pipeline_options

        return [*self.health_checks.warnings(), *pipeline_options.warnings(self)]
