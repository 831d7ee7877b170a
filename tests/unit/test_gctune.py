"""gctune: the young-generation threshold is raised for a pipeline, never lowered, never re-enabled."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cdc_logs.gctune import YOUNG_THRESHOLD, tune_for_streaming


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_raises_the_default_and_keeps_the_older_generations() -> None:
    gc.set_threshold(700, 10, 10)
    tune_for_streaming()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


def test_keeps_a_higher_threshold_and_a_disabled_collector() -> None:
    gc.set_threshold(YOUNG_THRESHOLD * 2, 5, 5)
    tune_for_streaming()
    assert gc.get_threshold() == (YOUNG_THRESHOLD * 2, 5, 5)
    gc.set_threshold(0, 10, 10)
    tune_for_streaming()
    assert gc.get_threshold() == (0, 10, 10)
