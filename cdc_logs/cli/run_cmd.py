"""`cdc-logs run -c pipeline.yaml`: the long-running service (or a one-time / cron-scheduled drain).

SIGINT/SIGTERM stop it gracefully: the batch in flight is written, its positions committed, then the
process exits 0. `--http-port` (or `health_checks` in the config) serves /metrics, /health, /ready;
the pipeline reports to a `PipelineStatus` whose thresholds come from `health_checks`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from cdc_logs.build import build_offsets, build_pipeline_parts, lock_pipeline
from cdc_logs.config import HealthConfig, PipelineConfig, load_config
from cdc_logs.observability import health
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import HealthThresholds, PipelineStatus
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline
from cdc_logs.retry import RetryPolicy
from cdc_logs.schedule import CronSchedule

log = get_logger(__name__)


def make_pipeline(
    cfg: PipelineConfig,
    *,
    metrics: Metrics,
    stop_when_idle: bool,
    limit: int | None = None,
    status: PipelineStatus | None = None,
) -> Pipeline:
    parts = build_pipeline_parts(cfg)
    sync = cfg.sync
    return Pipeline(
        cfg.name,
        parts["readers"],
        parts["sinks"],
        build_offsets(cfg.offsets, cfg.name),
        transforms=parts["transforms"],
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
    )


def health_thresholds(health: HealthConfig) -> HealthThresholds:
    return HealthThresholds(
        sink_stall_s=health.sink_stall_ms / 1000,
        dead_letter_window_s=health.dead_letter_window_ms / 1000,
        source_stall_s=health.source_stall_ms / 1000,
        stuck_s=health.stuck_after_ms / 1000,
    )


def _fanout_policy(cfg: PipelineConfig) -> FanoutPolicy | None:
    fan = cfg.sync.fanout
    if fan.enabled is False or (fan.enabled == "auto" and len(cfg.all_destinations()) < 2):
        return None
    spool = fan.spool_dir or str(Path(".cdc-logs") / f"{cfg.name}.spool")
    return FanoutPolicy(spool, fan.max_spool_bytes, fan.max_memory_bytes)


def _dead_letter_dir(cfg: PipelineConfig) -> str | None:
    dead = cfg.sync.dead_letters
    if not dead.enabled:
        return None
    return dead.dir or cfg.sync.fanout.dead_letter_dir or str(Path(".cdc-logs") / f"{cfg.name}.deadletter")


def run(
    config: Path = typer.Option(..., "-c", "--config", help="Pipeline YAML file."),
    http_port: int | None = typer.Option(
        None, "--http-port", help="Serve /metrics, /health and /ready here."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Stop after delivering N events."),
) -> None:
    """Run a pipeline from a YAML config until stopped (continuous), once (one_time), or on a cron."""
    cfg = load_config(config)
    # One run per pipeline: a second one would deliver every change twice (exit 3 naming the holder).
    with lock_pipeline(cfg.offsets, cfg.name):
        _run(cfg, http_port, limit)


def _run(cfg: PipelineConfig, http_port: int | None, limit: int | None) -> None:
    metrics = Metrics(cfg.name)
    status = PipelineStatus(health_thresholds(cfg.health_checks))
    stop = threading.Event()
    current: list[Pipeline] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()
        for pipeline in current:
            pipeline.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    port = http_port or (cfg.health_checks.port if cfg.health_checks.enabled else None)
    server = None
    if port:
        server = health.serve(port, metrics, status, cfg.health_checks.host)
        log.info("http endpoints up", port=port, paths="/metrics /health /ready")
    try:
        if cfg.sync.mode == "cron":
            _run_cron(cfg, metrics, status, stop, current)
        else:
            one_time = cfg.sync.mode == "one_time"
            pipeline = make_pipeline(
                cfg, metrics=metrics, stop_when_idle=one_time, limit=limit, status=status
            )
            current.append(pipeline)
            if stop.is_set():  # a signal that came while the pipeline was being built
                pipeline.stop()
            stats = pipeline.run()
            log.info("pipeline ended", events=stats.events, batches=stats.batches, filtered=stats.dropped)
    finally:
        if server is not None:
            server.shutdown()


def _run_cron(
    cfg: PipelineConfig,
    metrics: Metrics,
    status: PipelineStatus,
    stop: threading.Event,
    current: list[Pipeline],
) -> None:
    assert cfg.sync.cron is not None
    schedule = CronSchedule(cfg.sync.cron)
    while not stop.is_set():
        next_run = schedule.next_run()
        log.info("next scheduled run", at=next_run.isoformat(timespec="seconds"))
        status.scheduled(next_run.isoformat(timespec="seconds"))
        if not schedule.wait(next_run, stop):
            return
        pipeline = make_pipeline(cfg, metrics=metrics, stop_when_idle=True, status=status)
        current[:] = [pipeline]
        if stop.is_set():
            return
        stats = pipeline.run()
        log.info("scheduled run ended", events=stats.events)
