"""Batch middleware (cdc_logs/stages.py): stages see whole batches, and a stateful stage's state is
saved with exactly the committed positions, so a restart neither counts a change twice nor misses
one, including after a crash between the state write and the offset save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc_logs.envelope import ChangeEvent
from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from cdc_logs.stages import BatchStage, StageContext, StageRunner
from tests.helpers import MemorySink, ScriptedReader, make_event, seqs


class CountingStage(BatchStage):
    """Counts the changes it saw (its state) and tags each event with the running count."""

    stateful = True

    def __init__(self) -> None:
        self.name = "counter"
        self.count = 0
        self.restored: Any = "not opened"

    def open(self, context: StageContext) -> None:
        self.restored = context.state
        self.count = int(context.state["count"]) if context.state else 0

    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        for event in batch:
            self.count += 1
            event.source.extra["count"] = self.count
        return batch

    def snapshot(self) -> Any:
        return {"count": self.count}


def _run(tmp: Path, upto: int, stage: CountingStage, sink: MemorySink) -> Pipeline:
    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader([make_event(n) for n in range(1, upto + 1)], follow=False)},
        [sink],
        SqliteOffsetStore(tmp / "offsets.db"),
        stages=[stage],
        state_dir=str(tmp / "state"),
        batch=BatchPolicy(max_events=7, max_wait_s=0.01),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01),
        stop_when_idle=True,
    )
    pipeline.run()
    return pipeline


def test_state_is_restored_with_the_committed_positions(tmp_path: Path) -> None:
    first, sink = CountingStage(), MemorySink()
    _run(tmp_path, 30, first, sink)
    assert first.restored is None and first.count == 30
    assert [e.source.extra["count"] for e in sink.events] == list(range(1, 31))

    second, sink2 = CountingStage(), MemorySink()
    _run(tmp_path, 50, second, sink2)
    assert second.restored == {"count": 30}
    assert seqs(sink2.events) == list(range(31, 51))
    assert second.count == 50  # neither counted twice nor missed


def test_a_crash_between_state_and_offsets_restores_the_previous_generation(tmp_path: Path) -> None:
    runner = StageRunner([CountingStage()], tmp_path / "state", "p")
    runner.open({"src": None}, None)
    runner.process([make_event(1), make_event(2)], seq=2)
    runner.before_commit(2, {"src": "P2"})
    runner.process([make_event(3)], seq=3)
    runner.before_commit(3, {"src": "P3"})  # ... and the offset save of P3 never happened

    again = CountingStage()
    StageRunner([again], tmp_path / "state", "p").open({"src": "P2"}, None)
    assert again.restored == {"count": 2}
    newest = CountingStage()
    StageRunner([newest], tmp_path / "state", "p").open({"src": "P3"}, None)
    assert newest.restored == {"count": 3}


def test_state_that_matches_no_committed_position_starts_empty(tmp_path: Path) -> None:
    runner = StageRunner([CountingStage()], tmp_path / "state", "p")
    runner.open({"src": None}, None)
    runner.process([make_event(1)], seq=1)
    runner.before_commit(1, {"src": "P1"})
    reset = CountingStage()
    StageRunner([reset], tmp_path / "state", "p").open({"src": "elsewhere"}, None)
    assert reset.restored is None and reset.count == 0


def test_commits_wait_for_the_snapshot_of_the_batch(tmp_path: Path) -> None:
    runner = StageRunner([CountingStage()], tmp_path / "state", "p")
    runner.open({"src": None}, None)
    assert runner.commit_limit(10) == 0  # nothing processed: nothing may be committed
    runner.process([make_event(1)], seq=4)
    runner.process([make_event(2)], seq=9)
    # A sink that acknowledged seq 7 (mid-batch) may commit only up to the snapshot at 4.
    assert runner.commit_limit(7) == 4
    assert runner.commit_limit(9) == 9


def test_a_snapshot_inside_a_source_transaction_is_never_a_commit_limit(tmp_path: Path) -> None:
    """Positions commit only at transaction ends: state that already counts the first half of a
    transaction would count it twice when the restart replays the transaction from its start."""
    runner = StageRunner([CountingStage()], tmp_path / "state", "p")
    runner.open({"src": None}, None)
    runner.process([make_event(1), make_event(2, boundary=False)], seq=2, resumable=False)
    assert runner.commit_limit(2) == 0
    runner.process([make_event(3)], seq=3)
    assert runner.commit_limit(3) == 3


def test_with_stateful_middleware_a_full_batch_closes_at_a_transaction_end(tmp_path: Path) -> None:
    # Transactions of 3 changes, batches of 7: cut at 7 the state could be saved only every 21st change.
    items = [make_event(n, boundary=n % 3 == 0) for n in range(1, 61)]
    ends: list[bool] = []

    class Recording(CountingStage):
        def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
            ends.append(batch[-1].boundary)
            return super().process(batch)

    pipeline = Pipeline(
        "p",
        {"src": ScriptedReader(items, follow=False)},
        [MemorySink()],
        SqliteOffsetStore(tmp_path / "offsets.db"),
        stages=[Recording()],
        state_dir=str(tmp_path / "state"),
        batch=BatchPolicy(max_events=7, max_wait_s=5),
        stop_when_idle=True,
    )
    pipeline.run()
    assert ends and all(ends), ends
