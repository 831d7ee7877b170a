"""`health_checks:` in a pipeline file: the HTTP endpoints and when /ready and /health fail."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cdc_logs.configmodel import ConfigModel

SERVED = {"/health": "json", "/ready": "json", "/status": "json", "/metrics": "prometheus"}


class HealthEndpoint(ConfigModel):
    """One entry of the seed's `health_checks.endpoints`: a path that is served, and its format."""

    path: Literal["/health", "/ready", "/status", "/metrics"] = Field(
        description="A served path: /health (alive), /ready (delivering), /status (state), /metrics.",
        examples=["/health"],
    )
    format: Literal["json", "prometheus"] | None = Field(
        None,
        description="What the path answers: prometheus for /metrics, json for the others; another value "
        "is refused.",
        examples=["prometheus"],
    )
    checks: list[str] | None = Field(
        None,
        description="The seed's list of checks (database, kafka, memory, ...): accepted with a warning, "
        "since /health and /ready always judge every source and destination of the pipeline and its "
        "progress (docs/operations.md), and check nothing else (no memory check).",
        examples=[["database", "kafka"]],
    )

    @model_validator(mode="after")
    def _format(self) -> HealthEndpoint:
        if self.format is not None and self.format != SERVED[self.path]:
            raise ValueError(f"{self.path} answers {SERVED[self.path]}, not {self.format}")
        return self


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
    endpoints: list[HealthEndpoint] | None = Field(
        None,
        description="The seed's list of endpoints, checked against what is served: the paths are fixed "
        "(/health, /ready, /metrics, /status, all served whatever this lists), an unknown path or format "
        "is refused, and `checks` (which /health cannot select) gives a warning (`config validate` and "
        "`run` print it).",
        examples=[[{"path": "/health"}, {"path": "/metrics", "format": "prometheus"}]],
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

    def warnings(self) -> list[str]:
        """What of the seed's shape is accepted but cannot act as written."""
        return [
            f"health_checks.endpoints[{i}].checks {e.checks} is not selectable: {e.path} judges every "
            "source and destination and the pipeline's progress, and nothing else (no memory check)"
            for i, e in enumerate(self.endpoints or [])
            if e.checks
        ]
