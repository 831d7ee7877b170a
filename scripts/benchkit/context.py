"""What every case gets: the stack's addresses, the run's Cleanup, a scratch directory, sizes, output."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit.cleanup import Cleanup
from benchkit.stack import Stack


@dataclass
class Sizes:
    pg_rows: int
    mysql_rows: int
    big_rows: int
    latency_s: float
    latency_rate: int = 2000
    commit_rows: int = 10  # changes per commit of the latency load (200 commits/s at 2,000/s)
    idle_s: float = 3.0
    repeat: int = 1

    @classmethod
    def quick(cls) -> Sizes:
        return cls(pg_rows=100_000, mysql_rows=50_000, big_rows=500_000, latency_s=20)

    @classmethod
    def full(cls) -> Sizes:
        return cls(pg_rows=200_000, mysql_rows=100_000, big_rows=1_000_000, latency_s=60, idle_s=10, repeat=3)


@dataclass
class Context:
    stack: Stack
    cleanup: Cleanup
    workdir: Path
    rid: str
    sizes: Sizes
    otel_params: dict[str, Any] = field(default_factory=dict)
    extras: set[str] = field(default_factory=set)  # optional cases asked for with --with
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def name(self, suffix: str) -> str:
        """A server-side name unique to this run (tables, slots, topics, connectors, pipelines)."""
        return f"bench_{self.rid}_{suffix}"

    def dump(self, what: str, data: Any) -> None:
        if os.environ.get("BENCH_DEBUG"):
            print(f"  {what}: {json.dumps(data, default=str)[:2000]}", flush=True)
