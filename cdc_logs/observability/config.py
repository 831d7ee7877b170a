"""`health_checks:` in a pipeline file: the HTTP endpoints and when /ready and /health fail."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cdc_logs.configmodel import ConfigModel


class HealthConfig(ConfigModel):
    """/metrics, /health, /ready and /status over HTTP, and when /ready and /health fail
    (docs/configuration.md, docs/operations.md)."""

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
    lag_interval_ms: int = Field(
        5_000,
        ge=100,
        description="Milliseconds between measurements of each source's lag (slot or binlog lag, on a "
        "connection of its own): how often `max_lag` is checked and the lag metrics move.",
        examples=[10_000],
    )
