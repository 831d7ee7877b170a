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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cdc_logs.errors import CdcError, ErrorKind


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


_SOURCE_MODELS = (SqliteSourceConfig, PollSourceConfig)
SourceConfig = Annotated[SqliteSourceConfig | PollSourceConfig, Field(discriminator="type")]


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


_DESTINATION_MODELS = (StdoutSinkConfig, FileSinkConfig)
DestinationConfig = Annotated[StdoutSinkConfig | FileSinkConfig, Field(discriminator="type")]


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
    """Several destinations: each reads a shared on-disk spool at its own pace (docs/configuration.md)."""

    enabled: bool | Literal["auto"] = Field("auto", description="auto: on when there are 2+ destinations")
    spool_dir: str | None = Field(None, description="default .cdc-logs/<pipeline>.spool")
    max_spool_bytes: int = Field(1 << 30, ge=1 << 20, description="the slowest sink may lag this far")
    dead_letter_dir: str | None = Field(None, description="rejected batches go here per sink; unset = stop")


class SyncConfig(_Model):
    mode: Literal["one_time", "continuous", "cron"] = "continuous"
    cron: str | None = Field(None, description="cron expression for mode: cron (each run drains, then waits)")
    batch: BatchConfig = Field(default_factory=BatchConfig)
    queue_size: int = Field(10_000, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)

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

    @model_validator(mode="after")
    def _needs(self) -> OffsetsConfig:
        if self.type == "postgres" and not self.dsn:
            raise ValueError("offsets type postgres needs `dsn`")
        return self


class HealthConfig(_Model):
    enabled: bool = False
    port: int = Field(8080, ge=1, le=65535)
    host: str = "127.0.0.1"
    endpoints: list[dict[str, Any]] | None = None  # seed shape; the paths are fixed: /health /ready /metrics


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

    def all_sources(self) -> list[SqliteSourceConfig | PollSourceConfig]:
        return list(self.sources or ([self.source] if self.source else []))

    def all_destinations(self) -> list[StdoutSinkConfig | FileSinkConfig]:
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
    try:
        return PipelineConfig.model_validate(interpolate(data, env))
    except ValidationError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"invalid config: {format_validation_error(exc)}",
            "fix the field named above; `cdc-logs config schema` prints every accepted field",
        ) from exc


def load_config(path: str | Path, env: dict[str, str] | None = None) -> PipelineConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CdcError(
            ErrorKind.CONFIG, f"cannot read config {path}: {exc.strerror}", "check the -c path"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and opened:  # e.g. an unclosed quote: say where it opened, not only where the file ends
            where += f" ({context} at line {opened.line + 1}, column {opened.column + 1})"
        raise CdcError(
            ErrorKind.CONFIG,
            f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            "fix the YAML syntax (indentation, quotes, colons)",
        ) from exc
    return parse_config(data, env)


def json_schema() -> dict[str, Any]:
    return PipelineConfig.model_json_schema()
