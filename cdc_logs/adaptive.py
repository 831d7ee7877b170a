"""Adaptive batching (`sync.batch_optimization.adaptive_batching`): the batch size follows the sinks.

The pipeline cuts a batch at `size` events (or at sync.batch.max_bytes, or when it has waited
max_wait_ms). After each batch is durable in every sink, `observe` gets how many events it held, how
long the write took, and whether more changes were already waiting (a backlog). Then:

- the write took longer than `target_s` (target_latency_ms): the size is scaled down in proportion
  (size * target / took, at least halved), never below `min_size`. A slow destination gets small
  batches, so each change waits at most about the target once it is cut into a batch;
- the write took less than half the target, the batch was full (cut by its size, not by time) and
  a backlog waits: the size doubles, up to `max_size`. Fewer, larger writes then carry the backlog
  (each write's fixed cost: a round trip, a commit, an fsync, is paid per batch);
- otherwise it stays: without a backlog there is nothing to gain from a larger batch, and a batch
  cut by time says the traffic, not the size, limits it.

The size starts at `min_size`. It is a target for cutting, not a promise: a batch can be smaller (the
wait ran out) and the pipeline's max_bytes still applies. The current size is in the status (`GET
/status`, `cdc-logs status`: batch_size) and the metric cdc_logs_batch_size_target.

On the direct path the pipeline times each batch's write (durable in every sink before the next
batch is cut). With fan-out, each destination's worker (fanout.py) has a controller of its own: it
reads `size` changes from the spool, times their write, and observes with "more waiting in the
spool" as the backlog; the pipeline cuts batches at the smallest of the workers' sizes, since a
worker takes whole batches from the spool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class AdaptiveBatch:
    """The batch size controller (module docstring). Thread-safe: the status reads `size`."""

    min_size: int
    max_size: int
    target_s: float

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(
                f"need 1 <= min_batch_size ({self.min_size}) <= max_batch_size ({self.max_size})"
            )
        if self.target_s <= 0:
            raise ValueError("target_latency_ms must be positive")
        self.size = self.min_size
        self._lock = threading.Lock()

    def observe(self, events: int, write_s: float, *, backlog: bool) -> int:
        """One batch of `events` took `write_s` to be durable; returns the size for the next one."""
        with self._lock:
            if write_s > self.target_s:
                scaled = int(self.size * self.target_s / write_s)
                self.size = max(self.min_size, min(scaled, self.size // 2))
            elif write_s < self.target_s / 2 and events >= self.size and backlog:
                self.size = min(self.max_size, self.size * 2)
            return self.size

    @classmethod
    def from_config(cls, sync: Any) -> AdaptiveBatch | None:
        """sync.batch_optimization with adaptive_batching (a SyncConfig), else None: fixed batches."""
        opt = sync.batch_optimization
        if opt is None or not opt.adaptive_batching:
            return None
        top = sync.batch.max_events
        low = opt.min_batch_size if opt.min_batch_size is not None else min(100, top)
        return cls(low, top, (opt.target_latency_ms or sync.batch.max_wait_ms or 1000) / 1000)
