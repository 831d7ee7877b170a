"""`sync:` in a pipeline file: how it runs (once, continuously, on a cron) and delivers (batches,
retries, fan-out, dead letters). docs/configuration.md explains each; docs/reference/pipeline.md lists
every field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from cdc_logs.configmodel import ConfigModel


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


class ParallelismConfig(ConfigModel):
    """Several workers per destination, each batch split by key (cdc_logs/parallel.py,
    docs/configuration.md#parallel-delivery)."""

    enabled: bool = Field(
        False,
        description="true: each destination is written by `worker_count` workers at once, each batch split "
        "by key so that each key's changes stay in order; the checkpoint moves once every worker holds "
        "its part.",
        examples=[True],
    )
    worker_count: int = Field(
        4,
        ge=1,
        le=64,
        description="Workers (sink instances, each with its own connection) per destination.",
        examples=[4],
    )
    partition_strategy: Literal["hash", "range", "custom"] = Field(
        "hash",
        description="hash: crc32 of the table and the `partition_field` value, modulo worker_count; range: "
        "`range_boundaries` cut the values of `partition_field` into worker_count ranges; custom is "
        "refused (no plugin mechanism).",
        examples=["range"],
    )
    partition_field: str | None = Field(
        None,
        description="The column whose value picks the worker (read from the row after the change, or "
        "before it for a delete). Default: the event's primary key. Events without it go by their key.",
        examples=["user_id"],
    )
    range_boundaries: list[int | float | str] | None = Field(
        None,
        description="partition_strategy range: worker_count - 1 ascending values; worker i takes "
        "boundaries[i-1] <= value < boundaries[i]. Fixed in the config (never computed from the data), so "
        "a replayed change goes to the worker that may already hold it.",
        examples=[[100000, 200000, 300000]],
    )

    @model_validator(mode="after")
    def _check(self) -> ParallelismConfig:
        if self.partition_strategy == "custom":
            raise ValueError(
                "parallelism: partition_strategy custom is not supported (cdc-logs has no plugin mechanism "
                "for partitioners); use hash or range"
            )
        if self.partition_strategy == "range":
            bounds = self.range_boundaries
            if not self.partition_field:
                raise ValueError("parallelism: partition_strategy range needs partition_field")
            if bounds is None or len(bounds) != self.worker_count - 1:
                raise ValueError(
                    f"parallelism: partition_strategy range needs worker_count - 1 = {self.worker_count - 1} "
                    "range_boundaries (ascending)"
                )
            kinds = {isinstance(b, str) for b in bounds}
            if len(kinds) > 1:
                raise ValueError("parallelism: range_boundaries must be all numbers or all strings")
            if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):  # type: ignore[operator]
                raise ValueError("parallelism: range_boundaries must be strictly ascending")
        elif self.range_boundaries is not None:
            raise ValueError("parallelism: range_boundaries is for partition_strategy range only")
        return self


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
    parallelism: ParallelismConfig = Field(
        default_factory=ParallelismConfig,
        description="Several workers per destination, each batch split by key (off by default).",
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
