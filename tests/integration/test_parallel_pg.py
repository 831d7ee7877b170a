"""sync.parallelism's workers creating a missing Postgres table at once (auto_create): the workers
that lose the race retry their part against the table the winner created; nothing is refused or
dead-lettered, and the table ends as the changes say."""

from __future__ import annotations

import random
import threading
import uuid

import psycopg
import pytest

from cdc_logs.build import build_destination
from cdc_logs.config import PipelineConfig
from cdc_logs.delivery import Delivery
from cdc_logs.parallel import PartitionedSink
from cdc_logs.retry import RetryPolicy
from tests.helpers import make_event

pytestmark = pytest.mark.integration


def test_workers_racing_to_create_the_table(pg_dsn: str) -> None:
    uid = uuid.uuid4().hex[:10]
    table, applied = f"par_race_{uid}", f"cdc_applied_{uid}"
    cfg = PipelineConfig.model_validate(
        {
            "source": {"type": "sqlite", "path": "app.db", "tables": ["t"]},
            "destination": {
                "type": "postgresql",
                "url": pg_dsn,
                "schema": "public",
                "table": table,
                "auto_create": True,
                "applied_table": applied,
            },
            "sync": {"parallelism": {"enabled": True, "worker_count": 4}},
        }
    )
    sink = build_destination(cfg.all_sinks()[0], cfg)
    assert isinstance(sink, PartitionedSink)
    rng = random.Random(3)
    events = [make_event(n, key=n) for n in range(1, 81)]
    events += [make_event(n, op="u", key=rng.randrange(1, 81)) for n in range(81, 400)]
    delivery = Delivery(RetryPolicy(10, 0.01, 0.05), stop=threading.Event())  # no dead letters
    try:
        sink.open()
        for start in range(0, len(events), 100):
            assert delivery.deliver(sink, events[start : start + 100])
        sink.close()
        want: dict[int, int] = {}
        for event in events:
            want[event.key["id"]] = event.after["v"]  # type: ignore[index]
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            assert dict(db.execute(f"SELECT id, v FROM {table}").fetchall()) == want
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute(f"DROP TABLE IF EXISTS {applied}")
