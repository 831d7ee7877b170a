"""Redis Streams and Redis cache sinks against the stack's Redis, read back with a plain redis client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark
from cdc_logs.sinks.redis_cache import RedisCacheSink
from cdc_logs.sinks.redis_stream import RedisStreamSink
from tests.helpers import SERVER, make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str, unique_name: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    for key in conn.scan_iter(f"*{unique_name}*"):
        conn.delete(key)
    conn.close()


def entries(client: redis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in client.xrange(stream)]


def test_fields_and_stream_per_table(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_url, prefix=unique_name, marker_key=f"{unique_name}:applied")
    sink.open()
    sink.write([make_event(1, table="a"), make_event(2, table="b", op="d")])
    sink.close()
    (a,) = entries(client, f"{unique_name}.main.a")
    (b,) = entries(client, f"{unique_name}.main.b")
    assert json.loads(a[b"key"]) == {"id": 1} and a[b"op"] == b"c"
    assert json.loads(a[b"position"])["values"] == [1]
    assert json.loads(b[b"value"])["op"] == "d"


def test_trimming_keeps_about_max_length(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_url, stream_name=unique_name, max_length=100, marker_key=f"{unique_name}:m")
    sink.open()
    for start in range(0, 1000, 100):
        sink.write([make_event(n) for n in range(start, start + 100)])
    sink.close()
    length = client.xlen(unique_name)
    assert 100 <= length < 300, length  # `~`: whole macro-nodes are cut
    last = json.loads(client.xrevrange(unique_name, count=1)[0][1][b"value"])
    assert last["source"]["seq"] == 999


def test_replay_after_restart_adds_nothing(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    batch = [make_event(n) for n in range(1, 11)]
    first = RedisStreamSink(redis_url, stream_name=unique_name, marker_key=f"{unique_name}:m")
    first.open()
    first.write(batch)
    first.close()
    # A new process (fresh memory) replays the batch: the markers in Redis make it a no-op.
    second = RedisStreamSink(redis_url, stream_name=unique_name, marker_key=f"{unique_name}:m")
    second.open()
    second.write(batch[5:])
    second.write([*batch, make_event(11)])
    second.close()
    assert [json.loads(f[b"value"])["source"]["seq"] for f in entries(client, unique_name)] == list(
        range(1, 12)
    )


def test_a_transaction_cut_by_a_batch_is_not_lost(
    redis_url: str, unique_name: str, client: redis.Redis
) -> None:
    # Three events of one transaction (two past position 99, then its end at 100); the batch ends
    # after the first.
    def ev(n: int, boundary: bool) -> ChangeEvent:
        e = make_event(n, boundary=boundary)
        e.position = Watermark(SERVER, (100,)) if boundary else Watermark(SERVER, (99,), event=n)
        return e

    sink = RedisStreamSink(redis_url, stream_name=unique_name, marker_key=f"{unique_name}:m")
    sink.open()
    sink.write([ev(1, False)])
    sink.write([ev(2, False), ev(3, True)])
    sink.write([ev(1, False), ev(2, False), ev(3, True)])  # replay of the whole transaction: skipped
    sink.close()
    assert [json.loads(f[b"value"])["source"]["seq"] for f in entries(client, unique_name)] == [1, 2, 3]


def test_wrong_key_type_is_rejected_and_markers_stay(
    redis_url: str, unique_name: str, client: redis.Redis
) -> None:
    client.set(unique_name, "not a stream")
    sink = RedisStreamSink(redis_url, stream_name=unique_name, marker_key=f"{unique_name}:m")
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    assert client.hlen(f"{unique_name}:m") == 0, "a failed batch must not be marked applied"
    sink.close()


def test_unreachable_redis_is_transient() -> None:
    with pytest.raises(CdcError) as err:
        RedisStreamSink("redis://127.0.0.1:1/0").open()
    assert err.value.kind is ErrorKind.SINK_TRANSIENT


# -- cache ---------------------------------------------------------------------------------------------
def change(n: int, op: str, user_id: int, before: Any = None, after: Any = None, **kw: Any) -> ChangeEvent:
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("test", "p", "db", "users", schema="public", extra={"seq": n}),
        before=before,
        after=after,
        key={"user_id": user_id},
        position=Watermark(SERVER, (n,)),
        **kw,
    )


def cached(client: redis.Redis, pattern: str) -> dict[str, Any]:
    return {k.decode(): json.loads(client.get(k) or b"null") for k in client.scan_iter(pattern)}


def test_cache_mirrors_the_table(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    sink = RedisCacheSink(redis_url, key_pattern=unique_name + ":event:{user_id}")
    sink.open()
    sink.write(
        [
            change(1, "r", 1, after={"user_id": 1, "name": "ann"}),
            change(2, "c", 2, after={"user_id": 2, "name": "bob"}),
            change(3, "c", 3, after={"user_id": 3, "name": "cy"}),
        ]
    )
    sink.write(
        [
            change(4, "u", 1, before={"user_id": 1, "name": "ann"}, after={"user_id": 1, "name": "anne"}),
            change(5, "d", 2, before={"user_id": 2}),
        ]
    )
    expected = {
        f"{unique_name}:event:1": {"user_id": 1, "name": "anne"},
        f"{unique_name}:event:3": {"user_id": 3, "name": "cy"},
    }
    assert cached(client, f"{unique_name}:*") == expected
    # A replay of both batches ends in the same state.
    sink.write([change(2, "c", 2, after={"user_id": 2, "name": "bob"})])
    sink.write([change(5, "d", 2, before={"user_id": 2})])
    assert cached(client, f"{unique_name}:*") == expected
    sink.close()


def test_cache_partial_update_keeps_unchanged_columns(
    redis_url: str, unique_name: str, client: redis.Redis
) -> None:
    sink = RedisCacheSink(redis_url, key_pattern=unique_name + ":{key}")
    sink.open()
    sink.write([change(1, "c", 1, after={"user_id": 1, "bio": "long text", "n": 1})])
    # The source did not send the unchanged TOASTed `bio`: it must survive, not become null.
    sink.write([change(2, "u", 1, after={"user_id": 1, "n": 2}, unchanged=("bio",))])
    assert cached(client, f"{unique_name}:*") == {
        f"{unique_name}:1": {"user_id": 1, "bio": "long text", "n": 2}
    }
    sink.close()


def test_cache_key_change_moves_the_row(redis_url: str, unique_name: str, client: redis.Redis) -> None:
    sink = RedisCacheSink(redis_url, key_pattern=unique_name + ":email:{email}", ttl_seconds=600)
    sink.open()
    sink.write([change(1, "c", 1, after={"user_id": 1, "email": "a@x"})])
    sink.write(
        [change(2, "u", 1, before={"user_id": 1, "email": "a@x"}, after={"user_id": 1, "email": "b@x"})]
    )
    assert cached(client, f"{unique_name}:*") == {f"{unique_name}:email:b@x": {"user_id": 1, "email": "b@x"}}
    assert 0 < client.ttl(f"{unique_name}:email:b@x") <= 600
    sink.close()


def test_cache_pattern_naming_a_missing_column_is_rejected(redis_url: str, unique_name: str) -> None:
    sink = RedisCacheSink(redis_url, key_pattern=unique_name + ":{nope}")
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([change(1, "c", 1, after={"user_id": 1})])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    sink.close()
