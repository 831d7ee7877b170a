"""Adaptive batching's controller (cdc_logs/adaptive.py) and its config. The run against a real
pipeline (Postgres -> a webhook fast, then slow) is tests/integration/test_adaptive_batching.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdc_logs.adaptive import AdaptiveBatch
from cdc_logs.config import PipelineConfig
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, FanoutPolicy, Pipeline
from tests.helpers import MemorySink, ScriptedReader, make_event, seqs


def test_grows_while_fast_with_a_backlog_up_to_the_max() -> None:
    ctl = AdaptiveBatch(100, 1000, 1.0)
    sizes = [ctl.observe(ctl.size, 0.1, backlog=True) for _ in range(6)]
    assert sizes == [200, 400, 800, 1000, 1000, 1000]


def test_does_not_grow_without_backlog_or_when_the_batch_was_cut_by_time() -> None:
    ctl = AdaptiveBatch(100, 1000, 1.0)
    assert ctl.observe(100, 0.1, backlog=False) == 100  # nothing waiting
    assert ctl.observe(40, 0.1, backlog=True) == 100  # cut by its wait: traffic limits, not size
    assert ctl.observe(100, 0.7, backlog=True) == 100  # between half the target and the target: keep


def test_shrinks_in_proportion_when_a_write_is_slower_than_the_target() -> None:
    ctl = AdaptiveBatch(10, 10_000, 0.5)
    ctl.size = 8000
    assert ctl.observe(8000, 0.6, backlog=True) == 4000  # at least halved
    assert ctl.observe(4000, 5.0, backlog=True) == 400  # 10x too slow: a tenth
    assert ctl.observe(400, 50.0, backlog=True) == 10  # never below the min
    assert ctl.observe(10, 50.0, backlog=True) == 10


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="min_batch_size"):
        AdaptiveBatch(500, 100, 1.0)


def config(**opt: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "source": {"type": "sqlite", "path": "app.db", "tables": ["users"]},
            "destination": {"type": "stdout"},
            "sync": {"batch_optimization": opt},
        }
    )


def test_seed_shape_builds_the_controller() -> None:
    cfg = config(adaptive_batching=True, min_batch_size=100, max_batch_size=10000, target_latency_ms=1000)
    assert cfg.sync.batch.max_events == 10000 and cfg.sync.batch.max_wait_ms == 1000
    ctl = AdaptiveBatch.from_config(cfg.sync)
    assert ctl is not None and (ctl.min_size, ctl.max_size, ctl.target_s, ctl.size) == (100, 10000, 1.0, 100)
    assert AdaptiveBatch.from_config(config(max_batch_size=500).sync) is None  # fixed batches unless asked


def test_min_batch_size_without_adaptive_batching_is_refused() -> None:
    with pytest.raises(ValidationError, match="adaptive_batching only"):
        config(adaptive_batching=False, min_batch_size=100)
    with pytest.raises(ValidationError, match="larger than max_batch_size"):
        config(adaptive_batching=True, min_batch_size=1000, max_batch_size=100)


class TimedSink(MemorySink):
    """Takes `per_event` seconds per event written (sleep: as a destination doing work per change)."""

    def __init__(self, name: str, per_event: float) -> None:
        super().__init__(name)
        self.per_event = per_event
        self.sizes: list[int] = []

    def write(self, batch):  # type: ignore[no-untyped-def]
        self.sizes.append(len(batch))
        time.sleep(self.per_event * len(batch))
        super().write(batch)


def test_fanout_sizes_each_destination_by_its_own_write_time(tmp_path: Path) -> None:
    """Two destinations through fan-out: the fast one's writes grow to max_batch_size, the slow one's
    (2 ms per change, target 100 ms) stay near 50; every change reaches both, in order."""
    events = [make_event(n) for n in range(1, 1501)]
    fast, slow = TimedSink("fast", 0.0), TimedSink("slow", 0.002)
    pipeline = Pipeline(
        "adaptive",
        {"src": ScriptedReader(events, follow=False)},
        [fast, slow],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=800, max_wait_s=0.05),
        fanout=FanoutPolicy(str(tmp_path / "spool")),
        stop_when_idle=True,
        adaptive=AdaptiveBatch(10, 800, 0.1),
    )
    pipeline.run()
    assert seqs(fast.events) == seqs(slow.events) == list(range(1, 1501))
    assert max(fast.sizes) >= 400, fast.sizes
    assert max(slow.sizes[3:]) <= 100, slow.sizes  # shrunk to what 100 ms allows at 2 ms a change
    assert pipeline.status.details()["batch_size"] <= 100


def test_status_shows_the_current_size() -> None:
    from cdc_logs.cli.status_cmd import render

    body = {"pipeline": "p", "state": "running", "origin": "service", "ready": True, "url": "http://h/status"}
    assert "adaptive batch size" not in str(render(body)[0])
    assert "adaptive batch size: 640 changes" in str(render({**body, "batch_size": 640})[0])
