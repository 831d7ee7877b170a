"""Turn validated config into live objects: readers, sinks, transforms, offset stores.

The one place that maps a config `type` to a class, so the CLI, `run` and tests build pipelines the
same way. Driver imports happen here, lazily, so a missing extra is a clear config error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc_logs.config import (
    FileSinkConfig,
    OffsetsConfig,
    PipelineConfig,
    PollSourceConfig,
    SqliteSourceConfig,
    StdoutSinkConfig,
    TransformConfig,
)
from cdc_logs.offsets.base import OffsetStore
from cdc_logs.readers.base import Reader
from cdc_logs.sinks.base import Sink
from cdc_logs.transforms.base import Transform

_MASK_ALIASES = {
    "mask_fields": "fields",
    "pii_fields": "fields",
    "anonymization_strategy": "strategy",
    "mask_pattern": "pattern",
}


def build_transform(cfg: TransformConfig) -> Transform:
    params = dict(cfg.params)
    try:
        if cfg.type == "filter":
            from cdc_logs.transforms.filter import FilterTransform

            return FilterTransform(**params)
        if cfg.type in ("mask", "data_masking", "gdpr_compliance"):
            from cdc_logs.transforms.mask import MaskTransform

            if "retention_period_days" in params:
                raise ValueError(
                    "retention_period_days is not supported: cdc-logs keeps no data of its own; "
                    "set retention on the destination"
                )
            merged: dict[str, Any] = {}
            for key, value in params.items():
                name = _MASK_ALIASES.get(key, key)
                if name == "fields" and "fields" in merged:
                    merged["fields"] = [*merged["fields"], *value]  # pii_fields + mask_fields: mask both
                elif name in merged:
                    raise ValueError(f"{cfg.type} params: {key!r} repeats {name!r}; give it once")
                else:
                    merged[name] = value
            return MaskTransform(**merged)
        from cdc_logs.transforms.rename import RenameTransform

        return RenameTransform(**params)
    except TypeError as exc:
        raise ValueError(f"{cfg.type} params: {exc}".replace(".__init__() ", ": ")) from exc


def build_sink(cfg: StdoutSinkConfig | FileSinkConfig) -> Sink:
    name = cfg.name or cfg.type
    if isinstance(cfg, StdoutSinkConfig):
        from cdc_logs.sinks.stdout import StdoutSink

        return StdoutSink(cfg.format, name=name)
    from cdc_logs.sinks.file import FileSink

    return FileSink(cfg.path, max_bytes=cfg.max_bytes, max_files=cfg.max_files, fsync=cfg.fsync, name=name)


def default_offsets_path(pipeline: str) -> Path:
    return Path(".cdc-logs") / f"{pipeline}.offsets.db"


def build_offsets(cfg: OffsetsConfig, pipeline: str) -> OffsetStore:
    if cfg.type == "sqlite":
        from cdc_logs.offsets.sqlite import SqliteOffsetStore

        return SqliteOffsetStore(cfg.path or default_offsets_path(pipeline))
    if cfg.type == "file":
        from cdc_logs.offsets.file import FileOffsetStore

        return FileOffsetStore(cfg.path or Path(".cdc-logs") / f"{pipeline}.offsets.json")
    from cdc_logs.offsets.postgres import PostgresOffsetStore

    assert cfg.dsn is not None
    return PostgresOffsetStore(cfg.dsn, cfg.table)


def build_reader(
    cfg: SqliteSourceConfig | PollSourceConfig, pipeline: str, *, temporary: bool = False
) -> Reader:
    """Build the reader for one source config. `temporary`: leave no consumer state behind (tail)."""
    if isinstance(cfg, SqliteSourceConfig):
        from cdc_logs.readers.sqlite import SqliteReader

        return SqliteReader(
            cfg.path,
            cfg.tables,
            pipeline_name=pipeline,
            consumer=cfg.consumer or pipeline,
            temporary=temporary,
            snapshot=cfg.snapshot,
            poll_interval_s=cfg.poll_interval_ms / 1000,
        )
    from cdc_logs.readers.polling import PolledTable, PollingReader

    tables = [
        PolledTable(
            name=t.table,
            mode=t.mode,
            timestamp_column=t.timestamp_column,
            incrementing_column=t.incrementing_column,
            key_columns=tuple(t.key_columns) if t.key_columns else None,
            soft_delete_column=t.soft_delete_column,
            query=t.query,
        )
        for t in cfg.tables
    ]
    return PollingReader(
        cfg.url,
        tables,
        pipeline_name=pipeline,
        snapshot=cfg.snapshot,
        safety_lag_s=cfg.safety_lag_ms / 1000,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )


def source_name(cfg: Any) -> str:
    return str(cfg.name or cfg.type)


def build_pipeline_parts(cfg: PipelineConfig) -> dict[str, Any]:
    """Readers (by source name), sinks and transforms for `cfg`."""
    return {
        "readers": {source_name(s): build_reader(s, cfg.name) for s in cfg.all_sources()},
        "sinks": [build_sink(d) for d in cfg.all_destinations()],
        "transforms": [build_transform(t) for t in cfg.plugins.all()],
    }
