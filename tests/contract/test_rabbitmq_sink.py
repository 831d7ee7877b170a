"""RabbitMQ sink against the stack's broker: confirms, persistence, routing (the contract suite runs it
through tests/contract/sinks/rabbitmq.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.rabbitmq import RabbitMQSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def channel(rabbitmq_url: str, unique_name: str) -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    ch = conn.channel()
    yield ch
    for name in (unique_name, unique_name + ".q"):
        ch.queue_delete(name)
    ch.exchange_delete(unique_name)
    conn.close()


def drain(channel: Any, queue: str) -> list[tuple[Any, Any, bytes]]:
    """Every message in `queue`, in queue order, acknowledged (an independent consumer)."""
    messages = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((method, props, body))


def test_persistent_messages_with_headers_through_an_exchange(
    rabbitmq_url: str, unique_name: str, channel: Any
) -> None:
    sink = RabbitMQSink(rabbitmq_url, exchange=unique_name, queue=unique_name + ".q", prefix="app")
    sink.open()
    sink.write([make_event(1), make_event(2, op="d")])
    sink.close()
    messages = drain(channel, unique_name + ".q")
    assert [m.routing_key for m, _p, _b in messages] == ["app.main.t.c", "app.main.t.d"]
    _method, props, body = messages[0]
    assert props.delivery_mode == 2 and props.content_type == "application/json"
    assert props.headers["op"] == "c" and json.loads(props.headers["key"]) == {"id": 1}
    assert json.loads(props.headers["position"])["values"] == [1]
    assert json.loads(body)["after"] == {"id": 1, "v": 1}
    assert props.message_id and props.message_id != messages[1][1].message_id


def test_replayed_batch_keeps_its_message_ids(rabbitmq_url: str, unique_name: str, channel: Any) -> None:
    batch = [make_event(n) for n in range(5)]
    for _ in range(2):
        sink = RabbitMQSink(rabbitmq_url, queue=unique_name)
        sink.open()
        sink.write(batch)
        sink.close()
    ids = [p.message_id for _m, p, _b in drain(channel, unique_name)]
    assert len(ids) == 10 and ids[:5] == ids[5:] and len(set(ids)) == 5


def test_bound_selectively_routing_keys_filter(rabbitmq_url: str, unique_name: str, channel: Any) -> None:
    sink = RabbitMQSink(rabbitmq_url, exchange=unique_name, queue=unique_name + ".q", binding_key="*.*.*.d")
    sink.open()
    # Creates are unroutable (no queue bound for them): mandatory publishing turns that into an error.
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1, op="c"), make_event(2, op="d")])
    assert err.value.kind is ErrorKind.SINK_REJECTED and "unroutable" in err.value.message
    sink.write([make_event(3, op="d")])
    sink.close()
    seqs = [json.loads(b)["source"]["seq"] for _m, _p, b in drain(channel, unique_name + ".q")]
    assert seqs == [2, 3]


def test_missing_exchange_without_declare_is_rejected(rabbitmq_url: str, unique_name: str) -> None:
    sink = RabbitMQSink(rabbitmq_url, exchange=unique_name, declare=False)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    sink.close()


def test_many_messages_are_confirmed(rabbitmq_url: str, unique_name: str, channel: Any) -> None:
    sink = RabbitMQSink(rabbitmq_url, queue=unique_name)
    sink.open()
    for start in range(0, 3000, 1000):
        sink.write([make_event(n) for n in range(start, start + 1000)])
    sink.close()
    assert channel.queue_declare(unique_name, durable=True).method.message_count == 3000


def test_bad_login_is_an_auth_error(rabbitmq_url: str) -> None:
    bad = rabbitmq_url.replace("guest:guest", "guest:wrong")
    with pytest.raises(CdcError) as err:
        RabbitMQSink(bad, queue="x").open()
    assert err.value.kind is ErrorKind.AUTH
