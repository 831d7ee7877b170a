"""The redis_stream and rabbitmq sources without a server: the seed's examples validate, stream entries
become message bodies as `entry_format` says, and their positions order and encode as documented."""

from __future__ import annotations

import textwrap
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from cdc_logs.configfile import load_config
from cdc_logs.position import AmqpDelivery, StreamEntry, decode
from cdc_logs.readers.rabbitmq.config import RabbitMQSourceConfig
from cdc_logs.readers.redis_stream.config import RedisStreamSourceConfig
from cdc_logs.readers.redis_stream.entries import EntryReading, body_of

SEED_REDIS = """
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

SEED_RABBITMQ = """
source:
  type: rabbitmq
  host: "localhost"
  port: 5672
  username: "guest"
  password: "guest"
  queue: "source_events"
  exchange: "events_exchange"
  routing_key: "user.#"

destination:
  type: rabbitmq
  host: "localhost"
  port: 5672
  queue: "processed_events"
  exchange: "processed_exchange"
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def test_seed_redis_streams_example_validates(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SEED_REDIS)
    source = cfg.source  # type: ignore[attr-defined]
    assert isinstance(source, RedisStreamSourceConfig)
    assert (source.host, source.port, source.stream_name) == ("localhost", 6379, "events")
    assert (source.consumer_group, source.consumer_name, source.start_id) == (
        "cdc_group",
        "cdc_worker_1",
        "0",
    )
    assert source.redis_url() == "redis://localhost:6379/0"


def test_redis_source_refuses_what_it_cannot_read() -> None:
    base = {"type": "redis_stream", "stream_name": "s"}
    with pytest.raises(ValidationError, match="Kafka sources only"):
        RedisStreamSourceConfig(**base, message_format="avro")
    with pytest.raises(ValidationError, match="entry_format field"):
        RedisStreamSourceConfig(**base, message_format="debezium", entry_format="fields")
    with pytest.raises(ValidationError, match="stream_name"):
        RedisStreamSourceConfig(type="redis_stream")
    with pytest.raises(ValidationError):
        RedisStreamSourceConfig(**base, url="http://x")


def test_entry_formats() -> None:
    auto = EntryReading()
    assert body_of({b"data": b'{"a": 1}', b"other": b"x"}, auto).body == b'{"a": 1}'
    assert body_of({b"payload": b'{"a": 2}'}, auto).body == b'{"a": 2}'
    flat = body_of({b"user_id": b"42", b"action": b"login"}, auto)
    assert orjson.loads(flat.body or b"") == {"user_id": "42", "action": "login"}
    field = body_of({b"other": b"x"}, EntryReading("field", "value"))
    assert field.body is None and field.problem and "'value'" in field.problem
    whole = body_of({b"data": b"1", b"key": b"7"}, EntryReading("fields", key_field="key"))
    assert orjson.loads(whole.body or b"") == {"data": "1"} and whole.key == b"7"
    assert (
        body_of({b"v": b"\xff"}, EntryReading("fields")).problem == "a field name or value is not UTF-8 text"
    )


def test_stream_entry_positions() -> None:
    a = StreamEntry("redis://h:6379/0", stream="s", ms=5, seq=1)
    b = StreamEntry("redis://h:6379/0", stream="s", ms=5, seq=2)
    assert a < b and a.lane() == "s" and a.entry_id == "5-1"
    assert decode(a.encode()) == a and "run" not in a.to_dict()
    claimed = StreamEntry("redis://h:6379/0", stream="s", ms=1, seq=0, run="r1", order=3)
    assert claimed.lane() == "s|r1" and decode(claimed.encode()) == claimed
    assert "out of order" in claimed.describe()


def test_amqp_delivery_positions() -> None:
    a = AmqpDelivery("amqp://h/%2F", queue="q", run="r1", tag=1)
    b = AmqpDelivery("amqp://h/%2F", queue="q", run="r1", tag=2)
    other_run = AmqpDelivery("amqp://h/%2F", queue="q", run="r2", tag=1)
    assert a < b and a.lane() != other_run.lane()
    assert decode(b.encode()) == b


def test_seed_rabbitmq_example_validates(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SEED_RABBITMQ)
    source = cfg.source  # type: ignore[attr-defined]
    assert isinstance(source, RabbitMQSourceConfig)
    assert (source.queue, source.exchange, source.routing_keys()) == (
        "source_events",
        "events_exchange",
        ("user.#",),
    )
    assert source.amqp_url() == "amqp://guest:guest@localhost:5672/%2F"
    assert source.declare and source.prefetch == 500 and not source.nacks_poison()
    assert "guest" not in repr(source.password)


def test_rabbitmq_poison_goes_to_the_dlx_when_the_queue_has_one() -> None:
    base = {"type": "rabbitmq", "queue": "q"}
    assert RabbitMQSourceConfig(**base, queue_arguments={"x-dead-letter-exchange": "dlx"}).nacks_poison()
    assert RabbitMQSourceConfig(**base, dead_letter_exchange=True).nacks_poison()  # a policy's DLX
    assert not RabbitMQSourceConfig(
        **base, queue_arguments={"x-dead-letter-exchange": "dlx"}, dead_letter_exchange=False
    ).nacks_poison()
    assert RabbitMQSourceConfig(**base, routing_key=["a", "b"]).routing_keys() == ("a", "b")
    with pytest.raises(ValidationError, match="Kafka sources only"):
        RabbitMQSourceConfig(**base, message_format="avro")
    with pytest.raises(ValidationError):
        RabbitMQSourceConfig(**base, url="redis://x")
