"""sync.parallelism (cdc_logs/parallel.py): how a batch is split by key, and the partitioned sink's
writes, retries and barriers. The real-pipeline and kill runs are tests/chaos/test_parallel_kill.py."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdc_logs.config import PipelineConfig
from cdc_logs.delivery import Delivery
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.parallel import PartitionedSink, Partitioner
from cdc_logs.pipeline import BatchPolicy, Pipeline, RetryPolicy
from tests.helpers import MemorySink, ScriptedReader, make_event, seqs


def workload(n: int, keys: int, seed: int) -> list[ChangeEvent]:
    rng = random.Random(seed)
    return [make_event(i, op=rng.choice("cud"), key=rng.randrange(keys)) for i in range(1, n + 1)]


def per_key(events: Sequence[ChangeEvent]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for event in events:
        assert event.key is not None
        out.setdefault(event.key["id"], []).append(event.source.extra["seq"])
    return out


def test_hash_keeps_each_key_on_one_worker_in_order() -> None:
    events = workload(2000, 50, seed=1)
    part = Partitioner(4)
    (segment,) = part.split(events)  # partitioned by the key itself: never a barrier
    assert sum(map(len, segment)) == len(events)
    assert all(segment), "every worker got some of 50 keys"
    owners: dict[int, int] = {}
    for index, events_of in enumerate(segment):
        for event in events_of:
            assert owners.setdefault(event.key["id"], index) == index  # type: ignore[index]
    merged = per_key([e for p in segment for e in p])
    assert merged == per_key(events)


def test_hash_is_stable_across_processes() -> None:
    """A replay must reach the worker that may already hold the change: no per-process hash seed."""
    code = (
        "from cdc_logs.parallel import Partitioner; from tests.helpers import make_event; "
        "print([Partitioner(4).part(make_event(i)) for i in range(40)])"
    )
    runs = {subprocess.check_output([sys.executable, "-c", code], text=True) for _ in range(2)}
    here = str([Partitioner(4).part(make_event(i)) for i in range(40)]) + "\n"
    assert runs == {here}
    assert len(set(eval(here))) == 4


def test_range_boundaries() -> None:
    part = Partitioner(3, strategy="range", field="v", boundaries=[10, 20])
    assert [part.part(make_event(n)) for n in (1, 9, 10, 19, 20, 500)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(CdcError, match="range_boundaries"):
        Partitioner(3, strategy="range", field="v", boundaries=[10])


def test_a_row_moving_between_workers_is_a_barrier() -> None:
    """partition_field other than the key: when a row's value changes within a batch, what it had
    before must be durable before its later events start on another worker."""
    part = Partitioner(4, field="v")
    events = [make_event(n, op="u", key=7) for n in range(1, 9)]  # v changes every time
    segments = part.split(events)
    flat = [e for segment in segments for p in segment for e in p]
    assert seqs(flat) == list(range(1, 9))
    for segment in segments:  # within a segment, a row is on one worker
        rows = [(i, e.key["id"]) for i, p in enumerate(segment) for e in p]  # type: ignore[index]
        assert len({i for i, _ in rows}) == 1


def test_truncate_is_a_barrier() -> None:
    part = Partitioner(4)
    events = [make_event(n) for n in range(1, 6)] + [make_event(6, op="t")] + [make_event(n) for n in (7, 8)]
    events[5].key = None
    segments = part.split(events)
    assert len(segments) == 3
    assert [seqs(e for p in s for e in p) for s in segments][1] == [6]


class SlowSink(MemorySink):
    """Takes `delay` seconds per write, as a remote destination does (sleep releases the GIL)."""

    def __init__(self, name: str, delay: float) -> None:
        super().__init__(name)
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.counter = threading.Lock()

    def write(self, batch):  # type: ignore[no-untyped-def]
        with self.counter:
            self.active += 1
        time.sleep(self.delay)
        with self.counter:
            self.active -= 1
        super().write(batch)


def test_parts_are_written_at_once_and_retried_alone() -> None:
    sinks = [SlowSink(f"s#{i}of4", 0.2) for i in range(4)]
    sink = PartitionedSink(sinks, Partitioner(4), "s")
    sink.open()
    batch = workload(400, 40, seed=2)
    started = time.monotonic()
    sink.write(batch)
    assert time.monotonic() - started < 0.6, "four parts of 0.2 s each ran one after the other"
    sinks[2].fail(CdcError(ErrorKind.SINK_TRANSIENT, "connection reset"))
    batch2 = workload(400, 40, seed=3)
    with pytest.raises(CdcError, match="connection reset"):
        sink.write(batch2)
    writes = [s.writes for s in sinks]
    sink.write(batch2)  # the same batch again: only the failed part is written again
    assert [s.writes - w for s, w in zip(sinks, writes, strict=True)] == [0, 0, 1, 0]
    got = per_key([e for s in sinks for e in s.events])
    assert got == per_key(batch + batch2)
    sink.close()


def test_a_stopping_error_wins_over_a_retryable_one() -> None:
    sinks = [MemorySink(f"s#{i}of2") for i in range(2)]
    sink = PartitionedSink(sinks, Partitioner(2), "s")
    sink.open()
    sinks[0].fail(CdcError(ErrorKind.SINK_TRANSIENT, "later"))
    sinks[1].fail(CdcError(ErrorKind.PERMISSION, "denied"))
    with pytest.raises(CdcError) as caught:
        sink.write(workload(50, 10, seed=4))
    assert caught.value.kind is ErrorKind.PERMISSION
    sink.close()


def test_pipeline_acknowledges_only_when_every_part_is_durable() -> None:
    """Through the pipeline: a part failing holds the checkpoint back until it is written."""
    events = workload(300, 30, seed=5)
    sinks = [MemorySink(f"s#{i}of3") for i in range(3)]
    sinks[1].fail(*[CdcError(ErrorKind.SINK_TRANSIENT, "down")] * 3)
    reader = ScriptedReader(events, follow=False)
    offsets = MemoryOffsetStore()
    pipeline = Pipeline(
        "par",
        {"src": reader},
        [PartitionedSink(sinks, Partitioner(3), "s")],
        offsets,
        batch=BatchPolicy(max_events=100, max_wait_s=0.01),
        retry=RetryPolicy(10, 0.01, 0.02),
        stop_when_idle=True,
    )
    pipeline.run()
    assert per_key([e for s in sinks for e in s.events]) == per_key(events)
    assert reader.commits[-1] == events[-1].position
    assert len(sinks[1].events) == len({id(e) for e in sinks[1].events}), "a part was written twice"


def seed_config(**parallelism: object) -> dict[str, object]:
    return {
        "source": {"type": "sqlite", "path": "app.db", "tables": ["users"]},
        "destination": {"type": "postgresql", "url": "postgresql://u@h/db"},
        "sync": {"mode": "continuous", "parallelism": parallelism},
    }


def test_config_seed_shape_and_refusals() -> None:
    cfg = PipelineConfig.model_validate(
        seed_config(enabled=True, worker_count=4, partition_strategy="hash", partition_field="user_id")
    )
    assert cfg.sync.parallelism.worker_count == 4
    with pytest.raises(ValidationError, match="custom is not supported"):
        PipelineConfig.model_validate(seed_config(enabled=True, partition_strategy="custom"))
    with pytest.raises(ValidationError, match="range_boundaries"):
        PipelineConfig.model_validate(
            seed_config(enabled=True, worker_count=3, partition_strategy="range", partition_field="id")
        )
    with pytest.raises(ValidationError, match="ascending"):
        PipelineConfig.model_validate(
            seed_config(
                enabled=True,
                worker_count=3,
                partition_strategy="range",
                partition_field="id",
                range_boundaries=[5, 2],
            )
        )
    data = seed_config(enabled=True, worker_count=2)
    data["destination"] = {"type": "file", "path": "out.jsonl"}
    with pytest.raises(ValidationError, match="interleave"):
        PipelineConfig.model_validate(data)


@pytest.mark.parametrize(
    "parallelism",
    [{}, {"partition_strategy": "range", "partition_field": "id", "range_boundaries": [14, 27]}],
    ids=["hash", "range"],
)
def test_built_destination_routes_in_each_worker_into_a_real_sqlite_target(
    tmp_path: Path, parallelism: dict[str, object]
) -> None:
    """build_destination with parallelism: N real SQL sinks (SQLite file), each applying the route,
    each with its own replay markers; the target ends as the changes say."""
    from cdc_logs.build import build_destination

    target = tmp_path / "target.db"
    cfg = PipelineConfig.model_validate(
        {
            "source": {"type": "sqlite", "path": "app.db", "tables": ["t"]},
            "destination": {
                "type": "sqlite",
                "url": f"sqlite:///{target}",
                "auto_create": True,
                "route": {"ops": ["c", "u"]},
            },
            "sync": {"parallelism": {"enabled": True, "worker_count": 3, **parallelism}},
        }
    )
    sink = build_destination(cfg.all_sinks()[0], cfg)
    assert isinstance(sink, PartitionedSink)
    sink.open()
    rng = random.Random(7)
    events = [make_event(n, key=n) for n in range(1, 41)]  # 40 rows, then updates and deletes of them
    events += [make_event(n, op=rng.choice("ud"), key=rng.randrange(1, 41)) for n in range(41, 400)]
    # As the pipeline writes: through Delivery, whose retry covers two workers racing to create the
    # table (auto_create): the one that lost the race retries its part against the table.
    delivery = Delivery(RetryPolicy(5, 0.01, 0.05), stop=threading.Event())
    for start in range(0, len(events), 50):
        assert delivery.deliver(sink, events[start : start + 50])
    sink.close()
    want: dict[int, int] = {}
    for event in events:
        if event.op.value in "cu":  # the route drops deletes
            want[event.key["id"]] = event.after["v"]  # type: ignore[index]
    with sqlite3.connect(target) as db:
        assert dict(db.execute("SELECT id, v FROM t")) == want
        sinks = {r[0] for r in db.execute("SELECT sink FROM cdc_applied")}
    assert sinks == {f"cdc/sqlite#{i}of3" for i in range(3)}  # <pipeline>/<worker>


def test_a_block_without_enabled_is_on() -> None:
    """`parallelism: {worker_count: 4}` asks for workers: it is never silently off."""
    assert PipelineConfig.model_validate(seed_config(worker_count=4)).sync.parallelism.enabled
    off = PipelineConfig.model_validate(seed_config(enabled=False, worker_count=4))
    assert not off.sync.parallelism.enabled
    assert not PipelineConfig.model_validate(seed_config()).sync.parallelism.enabled
