"""Adaptive batching's controller (cdc_logs/adaptive.py) and its config. The run against a real
pipeline (Postgres -> a webhook fast, then slow) is tests/integration/test_adaptive_batching.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdc_logs.adaptive import AdaptiveBatch
from cdc_logs.build import adaptive_batch
from cdc_logs.config import PipelineConfig


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
    ctl = adaptive_batch(cfg)
    assert ctl is not None and (ctl.min_size, ctl.max_size, ctl.target_s, ctl.size) == (100, 10000, 1.0, 100)
    assert adaptive_batch(config(max_batch_size=500)) is None  # fixed batches unless asked


def test_min_batch_size_without_adaptive_batching_is_refused() -> None:
    with pytest.raises(ValidationError, match="adaptive_batching only"):
        config(adaptive_batching=False, min_batch_size=100)
    with pytest.raises(ValidationError, match="larger than max_batch_size"):
        config(adaptive_batching=True, min_batch_size=1000, max_batch_size=100)
