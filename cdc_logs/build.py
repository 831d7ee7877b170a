"""Composition: validated config -> live objects (readers, sinks, transforms, offset store, pipeline).

The one place that does it, so `run`, `tail`, the tests and the benchmarks build pipelines alike. Which
class a `type:` means is the component registry's business (registry.py): each component module
registers its own build function, and nothing here names a reader or a sink.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cdc_logs import pipeline_options, registry
from cdc_logs.adaptive import AdaptiveBatch
from cdc_logs.compression import takes_compression
from cdc_logs.config import HealthConfig, OffsetsConfig, PipelineConfig
from cdc_logs.configmodel import SinkConfigBase, SourceConfigBase
from cdc_logs.middleware.audit_log import expired_segments
from cdc_logs.middleware.opentelemetry import TracingOption
from cdc_logs.observability.lag import LagGuard, parse_grace, parse_max_lag
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import HealthThresholds, PipelineStatus
from cdc_logs.observability.tracing import for_pipeline as tracer_for
from cdc_logs.offsets.base import OffsetStore
from cdc_logs.offsets.lock import PipelineLock
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline
from cdc_logs.readers.base import Reader
from cdc_logs.retention import Retention
from cdc_logs.retry import RetryPolicy
from cdc_logs.route import routed
from cdc_logs.sinks.base import Sink
from cdc_logs.stages import BatchStage
from cdc_logs.transforms.base import Transform

log = get_logger(__name__)


def build_reader(cfg: SourceConfigBase, pipeline: str, *, temporary: bool = False) -> Reader:
    """The reader for one source config. `temporary`: leave no consumer state behind (tail)."""
    component = registry.for_config(cfg)
    if getattr(cfg, "connection_pool", None) is not None and component.name != "poll":
        from cdc_logs.pool import not_used_warning

        log.warning(not_used_warning(component.name), source=source_name(cfg))
    reader: Reader = component.build(cfg, registry.BuildContext(pipeline, temporary))
    return reader


def build_sink(cfg: SinkConfigBase, pipeline: str = "cdc") -> Sink:
    sink: Sink = registry.for_config(cfg).build(cfg, registry.BuildContext(pipeline))
    return routed(sink, cfg.route)  # a destination's `route:` narrows what it takes (route.py)


def build_destination(cfg: SinkConfigBase, pipeline: PipelineConfig) -> Sink:
    """A destination of a pipeline: one sink, or with sync.parallelism N of them split by key
    (parallel.py), each applying its `route:`; sync.compression given to those that take it."""
    comp = pipeline.sync.compression
    if comp.enabled and takes_compression(cfg) and getattr(cfg, "compression", None) is None:
        cfg = cfg.model_copy(update={"compression": comp.algorithm})  # sync.compression's default
    par = pipeline.sync.parallelism
    if not par.enabled or par.worker_count < 2:
        return build_sink(cfg, pipeline.name)
    from cdc_logs.parallel import build_partitioned

    return build_partitioned(cfg, pipeline.name, par)


def build_transform(cfg: BaseModel) -> Transform | BatchStage:
    built: Transform | BatchStage = registry.for_config(cfg).build(cfg)
    return built


def build_plugins(cfg: PipelineConfig) -> tuple[list[Transform], list[BatchStage]]:
    """The per-event transforms and the batch middleware (stages.py) of a config, each in order; a
    stage is named by its type (`audit_trail`, then `audit_trail-2`, ...)."""
    transforms: list[Transform] = []
    stages: list[BatchStage] = []
    for plugin in cfg.plugins.all():
        built = build_transform(plugin)
        if isinstance(built, BatchStage):
            kind = str(getattr(plugin, "type", type(built).__name__))
            taken = sum(1 for s in stages if s.name.split("-")[0] == kind)
            built.name = kind if not taken else f"{kind}-{taken + 1}"
            stages.append(built)
        else:
            transforms.append(built)
    return transforms, stages


def state_dir(cfg: PipelineConfig) -> str:
    return cfg.sync.state_dir or str(Path(".cdc-logs") / f"{cfg.name}.state")


def source_name(cfg: Any) -> str:
    return str(cfg.name or cfg.type)


# -- offsets ---------------------------------------------------------------------------------------
def default_offsets_path(pipeline: str) -> Path:
    return Path(".cdc-logs") / f"{pipeline}.offsets.db"


def offsets_path(cfg: OffsetsConfig, pipeline: str) -> Path:
    """Where a sqlite or file offset store keeps its data."""
    if cfg.path:
        return Path(cfg.path)
    if cfg.type == "file":
        return Path(".cdc-logs") / f"{pipeline}.offsets.json"
    return default_offsets_path(pipeline)


def build_offsets(cfg: OffsetsConfig, pipeline: str) -> OffsetStore:
    if cfg.type == "sqlite":
        from cdc_logs.offsets.sqlite import SqliteOffsetStore

        return SqliteOffsetStore(offsets_path(cfg, pipeline))
    if cfg.type == "file":
        from cdc_logs.offsets.file import FileOffsetStore

        return FileOffsetStore(offsets_path(cfg, pipeline))
    from cdc_logs.offsets.postgres import PostgresOffsetStore

    assert cfg.dsn is not None
    return PostgresOffsetStore(cfg.dsn, cfg.table)


def lock_pipeline(cfg: OffsetsConfig, pipeline: str) -> PipelineLock:
    """Take the pipeline's lock (one running pipeline per offset store and name), or raise LOCKED
    naming the process that holds it. See offsets/lock.py."""
    from cdc_logs.offsets.lock import FileLock, PostgresLock

    if cfg.type == "postgres":
        assert cfg.dsn is not None
        return PostgresLock(cfg.dsn, cfg.table, pipeline).acquire()
    return FileLock(FileLock.path_for(offsets_path(cfg, pipeline), pipeline), pipeline).acquire()


# -- the pipeline ----------------------------------------------------------------------------------
def health_thresholds(health: HealthConfig) -> HealthThresholds:
    return HealthThresholds(
        sink_stall_s=health.sink_stall_ms / 1000,
        dead_letter_window_s=health.dead_letter_window_ms / 1000,
        source_stall_s=health.source_stall_ms / 1000,
        stuck_s=health.stuck_after_ms / 1000,
    )


def make_pipeline(
    cfg: PipelineConfig,
    *,
    metrics: Metrics,
    stop_when_idle: bool,
    limit: int | None = None,
    status: PipelineStatus | None = None,
) -> Pipeline:
    """The whole pipeline of a config: readers, transforms, sinks, offsets, batching and delivery."""
    sync = cfg.sync
    transforms, stages = build_plugins(cfg)
    status = status or PipelineStatus()  # one object for the pipeline and the retention's reports
    _expose_metrics(transforms, metrics)
    tracing = pipeline_options.option(transforms, TracingOption)
    sink_names = [d.name or d.type for d in cfg.all_sinks()]
    return Pipeline(
        cfg.name,
        {source_name(s): build_reader(s, cfg.name) for s in cfg.all_sources()},
        [build_destination(d, cfg) for d in cfg.all_sinks()],
        build_offsets(cfg.offsets, cfg.name),
        transforms=pipeline_options.transforms(transforms),  # opentelemetry & co.: not per event
        stages=stages,
        state_dir=state_dir(cfg),
        batch=BatchPolicy(sync.batch.max_events, sync.batch.max_bytes, sync.batch.max_wait_ms / 1000),
        retry=RetryPolicy(
            sync.retry.max_attempts, sync.retry.initial_backoff_ms / 1000, sync.retry.max_backoff_ms / 1000
        ),
        queue_size=sync.queue_size,
        limit=limit,
        stop_when_idle=stop_when_idle,
        metrics=metrics,
        fanout=_fanout_policy(cfg),
        dead_letter_dir=_dead_letter_dir(cfg),
        status=status,
        merge_window_s=cfg.merge_window_ms / 1000 if cfg.merge_strategy == "timestamp_based" else None,
        lag_guards=lag_guards(cfg),
        lag_interval_s=cfg.health_checks.lag_interval_ms / 1000,
        tracer=tracer_for(tracing.settings if tracing else None, cfg.name, sink_names),
        retention=retention(cfg, transforms, metrics, status),
        adaptive=AdaptiveBatch.from_config(cfg.sync),
    )


def _expose_metrics(plugins: list[Transform], metrics: Metrics) -> None:
    from cdc_logs.middleware.prometheus_metrics import MetricsOption

    option = pipeline_options.option(plugins, MetricsOption)
    if option is not None:
        option.expose(metrics)


def retention(
    cfg: PipelineConfig, plugins: list[Transform], metrics: Metrics, status: PipelineStatus | None
) -> Retention | None:
    """`retention_period_days` (gdpr_compliance) over what this pipeline keeps (retention.py): its
    dead letters (also a webhook's dead_letter_path and a Kafka/Debezium source's dead-letter file),
    pruned; its fan-out spool, guarded (never deleted).
    Other stores register here: the audit log with `kept.expired("audit", lambda cutoff:
    expired_segments(<its directory>, cutoff))` (cdc_logs/middleware/audit_log.py)."""
    days = [d for d in (getattr(t, "retention_days", None) for t in plugins) if d]
    if not days:
        return None
    kept = Retention(min(days), metrics=metrics, status=status)
    dead = _dead_letter_dir(cfg)
    if dead:
        kept.records(dead, "*.deadletter.jsonl", "dead_letters")
        kept.records(dead, "*.undecodable.jsonl", "dead_letters")
    files = [getattr(sink, "dead_letter_path", None) for sink in cfg.all_sinks()]
    for source in cfg.all_sources():  # kafka and debezium sources: records that could not be read
        dl = getattr(source, "dead_letter", None)
        if dl is not None and getattr(dl, "type", None) == "file":
            files.append(dl.path or str(Path(".cdc-logs") / f"{cfg.name}.{source_name(source)}.dlq.jsonl"))
    for path in filter(None, files):
        kept.records(Path(path).parent, Path(path).name, "dead_letters")
    fan = _fanout_policy(cfg)
    if fan:
        kept.guard(
            fan.spool_dir,
            "*.pickle",
            "spool",
            "a destination has not taken them: fix it (cdc-logs status names it) so the spool drains, "
            "or stop the pipeline (the spool is emptied at start and the source replays from the "
            "checkpoint), see docs/operations.md#retention",
        )
    for directory in audit_directories(cfg):  # whole sealed segments, oldest first (docs/audit.md)
        kept.expired("audit", functools.partial(_expired_audit, directory))
    return kept


def _expired_audit(directory: Path, cutoff: dt.datetime) -> list[Path]:
    return expired_segments(directory, cutoff)


def audit_directories(cfg: PipelineConfig) -> list[Path]:
    """Where each audit_trail stage of a config keeps its log (its `directory`, else its folder in the
    state directory, named as build_plugins names stages)."""
    out: list[Path] = []
    for plugin in cfg.plugins.all():
        if getattr(plugin, "type", None) == "audit_trail":
            name = "audit_trail" if not out else f"audit_trail-{len(out) + 1}"
            directory = getattr(getattr(plugin, "params", None), "directory", None)
            out.append(Path(directory) if directory else Path(state_dir(cfg)) / name)
    return out


def lag_guards(cfg: PipelineConfig) -> dict[str, LagGuard]:
    """The sources' `max_lag` / `on_max_lag`, by source name (observability/lag.py)."""
    return {
        source_name(s): LagGuard(parse_max_lag(s.max_lag), s.on_max_lag, parse_grace(s.max_lag_grace))
        for s in cfg.all_sources()
        if s.max_lag
    }


def tail_pipeline(
    source: SourceConfigBase, sink: Sink, *, limit: int | None, dead_letter_dir: str | None
) -> Pipeline:
    """`cdc-logs tail`: one source with a temporary consumer, one sink, positions kept in memory only."""
    from cdc_logs.offsets.memory import MemoryOffsetStore

    return Pipeline(
        "tail",
        {source_name(source): build_reader(source, "tail", temporary=True)},
        [sink],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=500, max_wait_s=0.05),
        retry_start=False,  # interactive: an unreachable source fails at once; a drop mid-stream is retried
        limit=limit,
        dead_letter_dir=dead_letter_dir,
    )


def _fanout_policy(cfg: PipelineConfig) -> FanoutPolicy | None:
    fan = cfg.sync.fanout
    if fan.enabled is False or (fan.enabled == "auto" and len(cfg.all_sinks()) < 2):
        return None
    # The pipeline's own directory under spool_dir: the spool empties it at start, and the directory
    # a user names may hold other files (or other pipelines' spools).
    spool = str(Path(fan.spool_dir or ".cdc-logs") / f"{cfg.name}.spool")
    return FanoutPolicy(spool, fan.max_spool_bytes, fan.max_memory_bytes)


def _dead_letter_dir(cfg: PipelineConfig) -> str | None:
    dead = cfg.sync.dead_letters
    if not dead.enabled:
        return None
    return dead.dir or cfg.sync.fanout.dead_letter_dir or str(Path(".cdc-logs") / f"{cfg.name}.deadletter")
