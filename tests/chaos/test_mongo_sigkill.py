"""Chaos: SIGKILL `cdc-logs run` (MongoDB change stream -> file sink) at random points, snapshot included.

The collection starts with documents (the initial snapshot), then a writer inserts, updates and
deletes documents while the run is killed again and again. Every change the writer made must reach
the file, and the state rebuilt from the file must equal the collection: the stored resume token is
committed only after the file holds the events before it, a run killed in the snapshot takes it again
and streams from the first attempt's resume point. Duplicates are allowed (at-least-once).

mongo-java-server (the stack's server) sends update events without `_id` in `fullDocument` and with
the update specification as `documentKey`: the writer's updates `$set` the `_id` too (a no-op on a real
server), so the event carries the whole document. The collection is unique and dropped afterwards.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.chaos.killkit import Runs
from tests.integration.conftest import mongo_uri, unique_name  # noqa: F401 - fixtures, used by name
from tests.integration.mongo_support import drop_and_trim

pymongo = pytest.importorskip("pymongo")

pytestmark = pytest.mark.chaos

INITIAL = 300
CHANGES = 1200
KILLS = int(os.environ.get("MG_KILLS", "6"))
DB = "cdc_chaos"


def _writer(
    coll: Any, expected: set[tuple[Any, ...]], killing: threading.Event, done: threading.Event, seed: int
) -> None:
    """At least CHANGES changes, and on until the kills are over, so every kill lands mid-stream."""
    rng = random.Random(seed)
    live = list(range(1, INITIAL + 1))
    next_id, made = INITIAL + 1, 0
    while made < CHANGES or killing.is_set():
        made += 1
        pick = rng.random()
        if not live or pick < 0.5:
            coll.insert_one({"_id": next_id, "v": 100_000 + made})
            expected.add(("c", next_id, 100_000 + made))
            live.append(next_id)
            next_id += 1
        elif pick < 0.8:
            key = rng.choice(live)
            coll.update_one({"_id": key}, {"$set": {"_id": key, "v": 100_000 + made}})
            expected.add(("u", key, made))  # updateLookup may show a later state: counted per key
        else:
            key = live.pop(rng.randrange(len(live)))
            coll.delete_one({"_id": key})
            expected.add(("d", key))
        time.sleep(rng.uniform(0, 0.002))
    done.set()


def _log(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    data = out.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def _ident(event: dict[str, Any]) -> tuple[Any, ...]:
    if event["op"] == "d":
        return ("d", event["before"]["_id"])
    return (event["op"], event["after"]["_id"], event["after"]["v"])


def _missing(expected: set[tuple[Any, ...]], log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Changes of `expected` the log lacks. An update's `after` is the document when the change was
    read (fullDocument: updateLookup), possibly a later state: updates are counted per key instead."""
    seen = {_ident(e) for e in log}
    updates_seen: dict[int, int] = {}
    for event in log:
        if event["op"] == "u":
            updates_seen[event["after"]["_id"]] = updates_seen.get(event["after"]["_id"], 0) + 1
    updates_made: dict[int, int] = {}
    for op, key, *_ in expected:
        if op == "u":
            updates_made[key] = updates_made.get(key, 0) + 1
    lost = [e for e in expected if e[0] != "u" and e not in seen]
    lost += [("u", k, n) for k, n in updates_made.items() if updates_seen.get(k, 0) < n]
    return lost


@pytest.fixture
def collection(mongo_uri: str, unique_name: str) -> Iterator[Any]:  # noqa: F811
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    coll = client[DB][unique_name]
    try:
        yield coll
    finally:
        drop_and_trim(client, DB, coll.name)
        client.close()


def test_sigkill_at_random_points_loses_nothing(mongo_uri: str, collection: Any, tmp_path: Path) -> None:  # noqa: F811
    rng = random.Random(int(os.environ.get("CDC_CHAOS_SEED", "20261206")))
    collection.insert_many([{"_id": i, "v": i} for i in range(1, INITIAL + 1)])
    out = tmp_path / "out" / "changes.jsonl"
    name = f"mg_{collection.name}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: {name}
source:
  type: mongodb
  uri: "{mongo_uri}"
  collections: [{DB}.{collection.name}]
  document_format: json
  snapshot: true
  batch_size: 50
  max_await_ms: 100
  heartbeat_interval_ms: 500
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 50, max_wait_ms: 20}}
  retry: {{max_attempts: 30, initial_backoff_ms: 100, max_backoff_ms: 1000}}
"""
    )
    runs = Runs(tmp_path, config, name)
    runs.start()
    # The first kill lands in the snapshot: its restart must take it again from the same point.
    runs.wait("the snapshot has started", lambda: len(_log(out)) > 0, 60)
    runs.kill()
    runs.start()
    runs.wait("the stream has started", lambda: "mongodb streaming" in runs.log_text(), 60)
    expected: set[tuple[Any, ...]] = set()
    done, killing = threading.Event(), threading.Event()
    killing.set()
    args = (collection, expected, killing, done, rng.random())
    writer = threading.Thread(target=_writer, args=args, daemon=True)
    writer.start()
    try:
        for _ in range(KILLS - 1):
            # Kill a run that streams (not one still starting), at a random point of its stream.
            runs.wait("the run streams", lambda: "mongodb streaming" in runs.log_text(), 60)
            time.sleep(rng.uniform(0.05, 0.5))
            runs.kill()
            runs.start()
        killing.clear()
        writer.join(120)
        assert done.is_set(), "the workload did not finish"
        runs.wait("every change is in the file", lambda: not _missing(expected, _log(out)), 90)
        runs.wait("the run streams", lambda: "mongodb streaming" in runs.log_text(), 60)
        time.sleep(0.3)
        runs.stop()
    finally:
        runs.close()
    log = _log(out)
    missing = _missing(expected, log)
    assert not missing, f"{len(missing)} changes lost, e.g. {sorted(missing, key=str)[:10]}"
    # The file, replayed in order, is the collection: nothing lost, nothing applied out of order.
    state: dict[int, int] = {}
    for event in log:
        if event["op"] == "d":
            state.pop(event["before"]["_id"], None)
        else:
            state[event["after"]["_id"]] = event["after"]["v"]
    assert state == {d["_id"]: d["v"] for d in collection.find()}
    snapshot_ids = {e["after"]["_id"] for e in log if e["op"] == "r"}
    assert set(range(1, INITIAL + 1)) <= snapshot_ids | {k for (op, k, *_) in expected if op == "d"}
    assert runs.runs == KILLS + 1
