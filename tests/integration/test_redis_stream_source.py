"""The redis_stream source against the stack's Redis: `cdc-logs run` delivers a stream's entries to a
file sink and the SQL apply sink, acknowledges them only once both hold them, survives SIGKILLs,
parks poison entries in the dead-letter file, and claims the entries of a dead consumer.

Every test uses its own stream (and group) and deletes the stream at the end.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.messages import MessageFormatConfig
from cdc_logs.readers.redis_stream.entries import EntryReading
from cdc_logs.readers.redis_stream.reader import RedisStreamReader
from tests.chaos.killkit import PrivateRedis, Runs, SqlTarget
from tests.integration.bus_source_runs import (
    close_quietly,
    dead_letters,
    file_ids,
    judge_kills,
    kill_and_restart,
    pipeline,
    row,
    run_once,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    name = "cdc_src_" + uuid.uuid4().hex[:10]
    try:
        yield client, name
    finally:
        client.delete(name)
        client.close()


def source(redis_url: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "redis_stream",
        "url": redis_url,
        "stream_name": name,
        "consumer_group": f"{name}_group",
        "consumer_name": "worker_1",
        "key_fields": ["id"],
        "block_ms": 200,
        **extra,
    }


def pending(client: redis.Redis, name: str) -> int:
    return int(client.xpending(name, f"{name}_group")["pending"])


def test_entries_reach_file_and_sql_poison_is_dead_lettered(
    redis_url: str, stream: tuple[redis.Redis, str], tmp_path: Path
) -> None:
    client, name = stream
    n = 400
    pipe = client.pipeline()
    for i in range(1, n + 1):
        pipe.xadd(name, {"data": row(i)})
        if i == 100:
            pipe.xadd(name, {"data": b"{not json"})  # poison: not JSON
        if i == 200:
            pipe.xadd(name, {"data": b'{"v": 7}'})  # poison: no key field
    pipe.execute()
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "redis-" + name, source(redis_url, name), sql, one_time=True)
    try:
        run_once(runs)
    finally:
        close_quietly(runs)
    ids = file_ids(tmp_path)
    assert ids == list(range(1, n + 1))
    assert sql.state() == {i: i for i in range(1, n + 1)}
    dead = dead_letters(tmp_path, "redis_stream")
    assert [d["raw"]["data"] for d in dead] == ["{not json", '{"v": 7}']
    assert "not JSON" in dead[0]["reason"] and "key field" in dead[1]["reason"]
    assert dead[0]["origin"]["channel"] == name and dead[0]["origin"]["entry_id"]
    assert pending(client, name) == 0, "every entry, the poison ones too, is acknowledged"
    # Run again: the group has consumed everything, nothing is delivered twice.
    runs2 = pipeline(tmp_path, "redis-" + name, source(redis_url, name), sql, one_time=True)
    run_once(runs2)
    assert file_ids(tmp_path) == ids


def test_sigkill_and_restart_deliver_every_entry(
    redis_url: str, stream: tuple[redis.Redis, str], tmp_path: Path
) -> None:
    client, name = stream
    n = 4000
    rng = random.Random()
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "redis-" + name, source(redis_url, name), sql)
    done = threading.Event()

    def publish() -> None:  # the application: entries keep coming while the pipeline is killed
        for start in range(1, n + 1, 20):
            pipe = client.pipeline()
            for i in range(start, min(start + 20, n + 1)):
                pipe.xadd(name, {"data": row(i)})
            pipe.execute()
            time.sleep(0.01)
        done.set()

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        runs.start()
        publisher.start()
        kill_at = sorted(rng.sample(range(300, n - 300), 3))
        held = kill_and_restart(runs, tmp_path, kill_at)
        wait_for(
            "every entry is in the file sink", lambda: set(file_ids(tmp_path)) >= set(range(1, n + 1)), runs
        )
        wait_for("every entry is acknowledged", lambda: pending(client, name) == 0, runs)
        runs.stop()
    finally:
        publisher.join(30)
        close_quietly(runs)
    ids = file_ids(tmp_path)
    repeats = judge_kills(ids, n, held)
    assert sql.state() == {i: i for i in range(1, n + 1)}
    applied_twice = len(sql.audit()) - n
    print(
        f"kills at file lines {held}: repeated in the file {repeats}; applied twice by SQL: {applied_twice}"
    )
    # Entries delivered once are re-read in the stream's lane: the SQL sink's replay guard skips
    # exactly what it applied before the kill.
    assert applied_twice == 0


def test_entries_of_a_dead_consumer_are_claimed(
    redis_url: str, stream: tuple[redis.Redis, str], tmp_path: Path
) -> None:
    client, name = stream
    group = f"{name}_group"
    client.xgroup_create(name, group, id="0", mkstream=True)
    for i in range(1, 101):
        client.xadd(name, {"data": row(i)})
    # A consumer that read 60 entries and died without acknowledging them.
    client.xreadgroup(group, "dead_worker", {name: ">"}, count=60)
    assert pending(client, name) == 60
    time.sleep(0.3)
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(
        tmp_path, "redis-" + name, source(redis_url, name, claim_min_idle_ms=200), sql, one_time=True
    )
    try:
        run_once(runs)
    finally:
        close_quietly(runs)
    assert sorted(file_ids(tmp_path)) == list(range(1, 101))
    assert sql.state() == {i: i for i in range(1, 101)}
    assert pending(client, name) == 0
    consumers = {c["name"]: c["pending"] for c in client.xinfo_consumers(name, group)}
    assert consumers == {b"dead_worker": 0, b"worker_1": 0}, "the dead consumer is left in place, emptied"


def reader(redis_url: str, name: str, **extra: Any) -> RedisStreamReader:
    def connect() -> redis.Redis:
        return redis.Redis.from_url(redis_url, socket_timeout=10)

    return RedisStreamReader(
        connect,
        "redis://test",
        name,
        f"{name}_group",
        "worker_1",
        mapping=MessageFormatConfig(key_fields=["id"]).mapping(),
        reading=EntryReading(),
        pipeline="p",
        block_ms=100,
        **extra,
    )


def drain(r: RedisStreamReader, want: int) -> list[Any]:
    items: list[Any] = []
    gen = r.stream(None)
    deadline = time.monotonic() + 10
    for item in gen:
        if item is not None and type(item).__name__ != "Heartbeat":
            items.append(item)
        if len(items) >= want or time.monotonic() > deadline:
            break
    gen.close()
    return items


def test_pending_entries_come_first_and_keep_or_leave_the_stream_lane(
    redis_url: str, stream: tuple[redis.Redis, str]
) -> None:
    """A restart reads its pending entries before new ones. Delivered once, they keep the stream's
    lane (their id orders them); delivered twice already, they get this run's own lane."""
    client, name = stream
    first = reader(redis_url, name, claim_min_idle_ms=None)
    first.open()
    for i in range(1, 11):
        client.xadd(name, {"data": row(i)})
    got = drain(first, 10)
    first.close()  # killed: nothing was committed
    assert pending(client, name) == 10
    # The entries 1-4 were read again once more (a run killed twice): delivered twice so far.
    client.xreadgroup(f"{name}_group", "worker_1", {name: "0"}, count=4)
    for i in range(11, 14):
        client.xadd(name, {"data": row(i)})
    second = reader(redis_url, name, claim_min_idle_ms=None)
    second.open()
    again = drain(second, 13)
    ids = [e.after["id"] for e in again]
    assert ids == list(range(1, 14))
    lanes = [e.position.lane() for e in again]
    assert lanes[4:] == [name] * 9, "delivered once: the stream's lane, positions = entry ids"
    assert len(set(lanes[:4])) == 1 and lanes[0] != name
    assert [e.position for e in again[4:10]] == [e.position for e in got[4:10]], "same ids on a replay"
    for run in (got, again):  # the event contract (positions increase within each lane, row shapes)
        assert ContractChecker(transactions=False).check_all(run) == []
    second.commit(again[-1].position)
    second.close()  # applies the commit
    assert pending(client, name) == 0


SEED = """
source:
  type: redis_stream
  host: "localhost"
  port: 6379
  stream_name: "events"
  consumer_group: "cdc_group"
  consumer_name: "cdc_worker_1"

destination:
  type: redis_stream
  host: "localhost"
  port: 6379
  stream_name: "processed_events"
  max_length: 10000  # Stream trimming
"""


def test_the_seed_example_runs(redis_url: str, stream: tuple[redis.Redis, str], tmp_path: Path) -> None:
    """The seed's Redis Streams example as written, with the stack's address and names of this test."""
    client, name = stream
    kwargs = client.connection_pool.connection_kwargs
    processed = f"{name}_processed"
    text = (
        SEED.replace('"localhost"', f'"{kwargs["host"]}"')
        .replace("6379", str(kwargs["port"]))
        .replace('"events"', f'"{name}"')
        .replace('"processed_events"', f'"{processed}"')
        .replace('"cdc_group"', f'"{name}_group"')
    )
    (tmp_path / "pipeline.yaml").write_text(text)
    for i in range(1, 101):
        client.xadd(name, {"data": row(i)})
    runs = Runs(tmp_path, tmp_path / "pipeline.yaml", "cdc")
    try:
        runs.start()
        wait_for("the processed stream has every entry", lambda: client.xlen(processed) >= 100, runs)
        runs.stop()
        entries = client.xrange(processed)
        assert [orjson.loads(f[b"value"])["after"]["id"] for _, f in entries] == list(range(1, 101))
        assert pending(client, name) == 0
    finally:
        close_quietly(runs)
        client.delete(processed)
        markers = "cdc-logs:applied:cdc:redis_stream"  # the sink's default marker hash: our fields only
        mine = [k for k in client.hkeys(markers) if name.encode() in k]
        if mine:
            client.hdel(markers, *mine)


def test_redis_going_away_and_back_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """A redis-server of this test (append-only, fsync always) stopped mid-stream and started again:
    the source reconnects, re-reads its pending entries, skips those the pipeline still holds, and
    acknowledges the rest: every entry once, in order."""
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    client = private.client()
    name = "events"
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "redis-outage", source(private.url, name), sql)
    try:
        for i in range(1, 301):
            client.xadd(name, {"data": row(i)})
        runs.start()
        wait_for("the file sink holds 300 lines", lambda: len(file_ids(tmp_path)) >= 300, runs)
        private.stop()
        time.sleep(2)
        private.start()
        client = private.client()
        for i in range(301, 601):
            client.xadd(name, {"data": row(i)})
        wait_for("every entry is in the file sink", lambda: len(file_ids(tmp_path)) >= 600, runs)
        wait_for("every entry is acknowledged", lambda: pending(client, name) == 0, runs)
        runs.stop()
    finally:
        close_quietly(runs)
        private.close()
    assert "source failed, reconnecting" in runs.log_text()
    assert file_ids(tmp_path) == list(range(1, 601))
    assert sql.state() == {i: i for i in range(1, 601)} and len(sql.audit()) == 600
