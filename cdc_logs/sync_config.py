"""`sync:` in a pipeline file: how it runs (once, continuously, on a cron) and delivers (batches,
retries, fan-out, dead letters). docs/configuration.md explains each; docs/reference/pipeline.md lists
every field.
"""

from __future__ import annotations

import itertools
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
        description="Directory under which batches spill when a destination falls far behind, in the "
        "pipeline's own subdirectory <spool_dir>/<pipeline>.spool (emptied on each start: the source replays "
        "from the checkpoint; nothing else in spool_dir is touched). Default: .cdc-logs.",
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


class BatchOptimizationConfig(ConfigModel):
    """Adaptive batching (cdc_logs/adaptive.py): the batch size grows while writes stay well under the
    target and changes wait, and shrinks when a write takes longer than the target."""

    adaptive_batching: bool = Field(
        False,
        description="true: batches start at min_batch_size and adapt between it and max_batch_size to the "
        "measured write time; false: every batch is cut at max_batch_size (or its wait).",
        examples=[True],
    )
    min_batch_size: int | None = Field(
        None,
        ge=1,
        description="adaptive_batching: the smallest batch size it shrinks to, and where it starts. "
        "Default: 100, or max_batch_size when smaller.",
        examples=[100],
    )
    max_batch_size: int | None = Field(
        None,
        description="The largest batch (sets sync.batch.max_events, where its range is checked).",
        examples=[10000],
    )
    target_latency_ms: int | None = Field(
        None,
        description="Milliseconds: a batch waits at most this long for more changes (sets "
        "sync.batch.max_wait_ms); with adaptive_batching also the write time the size is steered to "
        "(shrunk when a write takes longer, grown while writes take under half of it and changes wait).",
        examples=[1000],
    )

    @model_validator(mode="after")
    def _check(self) -> BatchOptimizationConfig:
        if not self.adaptive_batching and self.min_batch_size is not None:
            raise ValueError(
                "batch_optimization: min_batch_size applies to adaptive_batching only (a fixed batch is "
                "cut at max_batch_size or when target_latency_ms has passed); set adaptive_batching: true "
                "or remove min_batch_size"
            )
        low, high = self.min_batch_size, self.max_batch_size
        if low is not None and high is not None and low > high:
            raise ValueError("batch_optimization: min_batch_size is larger than max_batch_size")
        return self


class ParallelismConfig(ConfigModel):
    """Several workers per destination, each batch split by key (cdc_logs/parallel.py,
    docs/configuration.md#parallel-delivery)."""

    enabled: bool = Field(
        False,
        description="true: each destination is written by `worker_count` workers at once, each batch split "
        "by key so that each key's changes stay in order; the checkpoint moves once every worker holds "
        "its part. Default: false, or true when the block sets any other field.",
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
        if "enabled" not in self.model_fields_set and self.model_fields_set:
            self.enabled = True  # a block that sets workers means them: never silently off
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
            if any(a >= b for a, b in itertools.pairwise(bounds)):  # type: ignore[operator]
                raise ValueError("parallelism: range_boundaries must be strictly ascending")
        elif self.range_boundaries is not None:
            raise ValueError("parallelism: range_boundaries is for partition_strategy range only")
        return self


class CompressionConfig(ConfigModel):
    """Compression for the file and HTTP destinations (cdc_logs/compression.py); a destination's own
    `compression` wins."""

    enabled: bool = Field(
        False,
        description="true: the file and http destinations compress what they write with `algorithm` "
        "(unless they set their own `compression`); other destinations are not affected. Default: false, "
        "or true when the block sets `algorithm`.",
        examples=[True],
    )
    algorithm: Literal["gzip", "zstd", "lz4", "snappy"] = Field(
        "gzip",
        description="gzip (built in); zstd, lz4, snappy need pip install 'cdc-logs[compression]'. HTTP takes "
        "gzip and zstd only (the content codings receivers know).",
        examples=["zstd"],
    )

    @model_validator(mode="after")
    def _enabled(self) -> CompressionConfig:
        if "enabled" not in self.model_fields_set and "algorithm" in self.model_fields_set:
            self.enabled = True  # `compression: {algorithm: zstd}` means it: never silently off
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
    batch_optimization: BatchOptimizationConfig | None = Field(
        None,
        description="The seed's batching block: max_batch_size and target_latency_ms set sync.batch's "
        "max_events and max_wait_ms; adaptive_batching makes the batch size follow the write time "
        "(docs/configuration.md#adaptive-batching). Default: fixed batches.",
        examples=[
            {
                "adaptive_batching": True,
                "min_batch_size": 100,
                "max_batch_size": 10000,
                "target_latency_ms": 1000,
            }
        ],
    )
    compression: CompressionConfig = Field(
        default_factory=CompressionConfig,
        description="Compression for the file and http destinations (off by default).",
    )
    parallelism: ParallelismConfig = Field(
        default_factory=ParallelismConfig,
        description="Several workers per destination, each batch split by key (off by default).",
    )
    state_dir: str | None = Field(
        None,
        description="Where batch middleware (audit trail, financial validation, IoT windows, anomaly "
        "detection) keeps its files and the state saved with each checkpoint. "
        "Default: .cdc-logs/<pipeline>.state.",
        examples=["/var/lib/cdc/state"],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "cron_expression" in data:
                data["cron"] = data.pop("cron_expression")
            opt = data.get("batch_optimization")
            if opt is not None:
                known = {"adaptive_batching", "min_batch_size", "max_batch_size", "target_latency_ms"}
                if not isinstance(opt, dict) or not set(opt) <= known:
                    raise ValueError(f"batch_optimization accepts only {sorted(known)}")
                # The cap and the wait are the plain batch's (so errors name sync.batch.*); the
                # adaptive part stays in batch_optimization (adaptive.py).
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
