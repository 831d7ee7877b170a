"""`cdc-logs run -c pipeline.yaml`: the long-running service (or a one-time / cron-scheduled drain).

SIGINT/SIGTERM stop it gracefully: the batch in flight is written, its positions committed, then the
process exits 0. `--http-port` (or `health_checks` in the config) serves /metrics, /health, /ready,
/status; its address (host:port) is recorded in the pipeline lock so that `cdc-logs status -c` finds
it on any port. The pipeline reports to a `PipelineStatus` whose thresholds come from `health_checks`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from cdc_logs.build import health_thresholds, lock_pipeline, make_pipeline
from cdc_logs.cli.stop_signals import stop_signals
from cdc_logs.config import PipelineConfig
from cdc_logs.configfile import load_config
from cdc_logs.observability import health
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.offsets.lock import PipelineLock
from cdc_logs.pipeline import Pipeline
from cdc_logs.schedule import CronSchedule

log = get_logger(__name__)


def run(
    config: Path = typer.Option(..., "-c", "--config", help="Pipeline YAML file."),
    http_port: int | None = typer.Option(
        None, "--http-port", help="Serve /metrics, /health and /ready here."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Stop after delivering N events."),
) -> None:
    """Run a pipeline from a YAML config until stopped (continuous), once (one_time), or on a cron."""
    cfg = load_config(config)
    for warning in cfg.warnings():
        log.warning("config", note=warning)
    stop = threading.Event()
    current: list[Pipeline] = []

    def on_stop(signal_name: str) -> None:
        log.info("stopping", signal=signal_name)
        stop.set()
        for pipeline in current:
            pipeline.stop()

    # Handlers go in before the lock: a signal that comes while it is taken still stops gracefully.
    # One run per pipeline: a second one would deliver every change twice (exit 3 naming the holder).
    with stop_signals(on_stop), lock_pipeline(cfg.offsets, cfg.name) as lock:
        if not stop.is_set():
            _run(cfg, http_port, limit, stop, current, lock)


def _run(
    cfg: PipelineConfig,
    http_port: int | None,
    limit: int | None,
    stop: threading.Event,
    current: list[Pipeline],
    lock: PipelineLock,
) -> None:
    metrics = Metrics(cfg.name)
    status = PipelineStatus(health_thresholds(cfg.health_checks))
    port = http_port or (cfg.health_checks.port if cfg.health_checks.enabled else None)
    server = None
    if port:
        server = health.serve(port, metrics, status, cfg.health_checks.host)
        log.info("http endpoints up", port=port, paths="/metrics /health /ready /status")
        host = cfg.health_checks.host
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        lock.advertise(f"{host}:{server.server_address[1]}")  # for `cdc-logs status -c` (any port)
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
