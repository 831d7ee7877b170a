"""The rabbitmq source against the stack's RabbitMQ: `cdc-logs run` delivers a queue's messages to a
file sink and the SQL apply sink, acks them only once both hold them, survives SIGKILLs (the broker
redelivers what was not acked), and parks poison messages in the dead-letter file, nacking them to the
queue's dead-letter exchange when it has one.

Every test declares its own exchange and queues and deletes them at the end.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pika
import pytest
import requests

from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.messages import MessageFormatConfig
from cdc_logs.readers.rabbitmq.reader import RabbitMQReader, Topology
from tests.chaos.killkit import Runs, SqlTarget
from tests.integration.bus_source_runs import (
    BATCH,
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

PREFETCH = 200  # the source's prefetch: deliveries the broker lets this consumer hold unacked


class Broker:
    """The test's side of the broker: its own connection, names, publishing and cleanup."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = "cdc_src_" + uuid.uuid4().hex[:10]
        self.exchange = f"{self.name}.events"
        self.queue = f"{self.name}.q"
        self.dlx = f"{self.name}.dlx"
        self.dlq = f"{self.name}.dlq"
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.conn.channel()
        self.channel.confirm_delivery()

    def declare(self, arguments: dict[str, Any] | None = None) -> None:
        """What the source's config declares too (declaring again is idempotent)."""
        ch = self.channel
        ch.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        ch.queue_declare(self.queue, durable=True, arguments=arguments)
        ch.queue_bind(self.queue, self.exchange, routing_key="user.#")

    def publish(self, body: bytes, key: str = "user.created") -> None:
        self.channel.basic_publish(
            self.exchange, key, body, pika.BasicProperties(delivery_mode=2, timestamp=int(time.time()))
        )

    def depth(self, queue: str | None = None) -> int:
        """Messages ready in the queue (0 while it does not exist); on a channel of its own, since a
        passive declare of a missing queue closes the channel."""
        ch = self.conn.channel()
        try:
            return int(ch.queue_declare(queue or self.queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
        finally:
            if ch.is_open:
                ch.close()

    def source(self, **extra: Any) -> dict[str, Any]:
        return {
            "type": "rabbitmq",
            "url": self.url,
            "queue": self.queue,
            "exchange": self.exchange,
            "routing_key": "user.#",
            "key_fields": ["id"],
            "prefetch": PREFETCH,
            **extra,
        }

    def close(self) -> None:
        ch = self.channel
        for queue in (self.queue, self.dlq):
            ch.queue_delete(queue)
        for exchange in (self.exchange, self.dlx):
            ch.exchange_delete(exchange)
        self.conn.close()


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[Broker]:
    b = Broker(rabbitmq_url)
    try:
        yield b
    finally:
        b.close()


def test_messages_reach_file_and_sql_poison_is_dead_lettered(broker: Broker, tmp_path: Path) -> None:
    broker.declare()
    n = 400
    for i in range(1, n + 1):
        broker.publish(row(i))
        if i == 100:
            broker.publish(b"{not json")  # poison: not JSON
        if i == 200:
            broker.publish(b'{"v": 7}')  # poison: no key field
        if i % 100 == 0:
            broker.publish(row(10_000 + i), key="order.created")  # not bound to the queue
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "rabbit-" + broker.name, broker.source(), sql, one_time=True)
    try:
        run_once(runs)
    finally:
        close_quietly(runs)
    assert file_ids(tmp_path) == list(range(1, n + 1))
    assert sql.state() == {i: i for i in range(1, n + 1)}
    dead = dead_letters(tmp_path, "rabbitmq")
    assert [d["raw"]["data"] for d in dead] == ["{not json", '{"v": 7}']
    assert "not JSON" in dead[0]["reason"] and "key field" in dead[1]["reason"]
    assert dead[0]["origin"]["routing_key"] == "user.created" and dead[0]["origin"]["channel"] == broker.queue
    assert broker.depth() == 0, "every message, the poison ones too, was acked"
    # Run again: nothing is left, nothing is delivered twice.
    run_once(pipeline(tmp_path, "rabbit-" + broker.name, broker.source(), sql, one_time=True))
    assert file_ids(tmp_path) == list(range(1, n + 1))


def test_poison_is_nacked_to_the_dead_letter_exchange(broker: Broker, tmp_path: Path) -> None:
    ch = broker.channel
    ch.exchange_declare(broker.dlx, exchange_type="fanout", durable=True)
    ch.queue_declare(broker.dlq, durable=True)
    ch.queue_bind(broker.dlq, broker.dlx)
    arguments = {"x-dead-letter-exchange": broker.dlx}
    broker.declare(arguments)
    for i in range(1, 51):
        broker.publish(row(i))
        if i == 25:
            broker.publish(b"[1, 2, 3]")  # poison: a JSON list
    sql = SqlTarget(tmp_path / "target.db")
    source = broker.source(queue_arguments=arguments)
    runs = pipeline(tmp_path, "rabbit-" + broker.name, source, sql, one_time=True)
    try:
        run_once(runs)
    finally:
        close_quietly(runs)
    assert file_ids(tmp_path) == list(range(1, 51))
    dead = dead_letters(tmp_path, "rabbitmq")
    assert len(dead) == 1 and "JSON list" in dead[0]["reason"]
    assert "dead-letter exchange" in dead[0]["hint"]
    _method, props, body = ch.basic_get(broker.dlq, auto_ack=True)
    assert body == b"[1, 2, 3]", "the broker routed the nacked message to the dead-letter exchange"
    assert props.headers["x-death"][0]["reason"] == "rejected"
    assert broker.depth() == 0 and broker.depth(broker.dlq) == 0


def test_sigkill_and_restart_deliver_every_message(broker: Broker, tmp_path: Path) -> None:
    broker.declare()
    n = 4000
    rng = random.Random()
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "rabbit-" + broker.name, broker.source(), sql)
    errors: list[BaseException] = []

    def publish() -> None:  # the application: on its own connection, messages keep coming
        try:
            conn = pika.BlockingConnection(pika.URLParameters(broker.url))
            ch = conn.channel()
            ch.confirm_delivery()
            for i in range(1, n + 1):
                ch.basic_publish(
                    broker.exchange, "user.created", row(i), pika.BasicProperties(delivery_mode=2)
                )
                if i % 20 == 0:
                    time.sleep(0.01)
            conn.close()
        except BaseException as exc:
            errors.append(exc)

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        runs.start()
        publisher.start()
        kill_at = sorted(rng.sample(range(300, n - 300), 3))
        held = kill_and_restart(runs, tmp_path, kill_at)
        wait_for(
            "every message is in the file sink", lambda: set(file_ids(tmp_path)) >= set(range(1, n + 1)), runs
        )
        runs.stop()
    finally:
        publisher.join(60)
        close_quietly(runs)
    assert not errors, errors
    ids = file_ids(tmp_path)
    # An AMQP ack is not confirmed: a kill can come after a batch was committed here and before the
    # broker took its ack, so it comes again too. The broker keeps at most `prefetch` unacked.
    repeats = judge_kills(ids, n, held, max_repeat=PREFETCH)
    assert sql.state() == {i: i for i in range(1, n + 1)}
    applied_twice = len(sql.audit()) - n
    print(
        f"kills at file lines {held}: repeated in the file {repeats}; applied twice by SQL: {applied_twice}"
    )
    # The broker redelivers what was not acked; positions are per channel, so SQL applies again what it
    # had applied of the batch in flight (an upsert by id: the rows stay right).
    assert applied_twice <= BATCH * len(held)
    assert broker.depth() == 0, "every message was acked once the run stopped"


def test_a_missing_queue_with_declare_false_stops_naming_it(broker: Broker, tmp_path: Path) -> None:
    sql = SqlTarget(tmp_path / "target.db")
    runs = pipeline(tmp_path, "rabbit-" + broker.name, broker.source(declare=False), sql, one_time=True)
    runs.start()
    assert runs.proc is not None
    assert runs.proc.wait(60) == 3, runs.log_text()[-2000:]
    log = runs.log_text()
    assert "NOT_FOUND" in log and broker.queue in log and "declare: true" in log


SEED = """
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


def test_the_seed_example_runs(broker: Broker, tmp_path: Path) -> None:
    """The seed's RabbitMQ example as written, with the stack's address and names of this test."""
    params = pika.URLParameters(broker.url)
    processed, processed_exchange = f"{broker.name}.processed", f"{broker.name}.processed_exchange"
    text = (
        SEED.replace('"localhost"', f'"{params.host}"')
        .replace("5672", str(params.port))
        .replace('"source_events"', f'"{broker.queue}"')
        .replace('"events_exchange"', f'"{broker.exchange}"')
        .replace('"processed_events"', f'"{processed}"')
        .replace('"processed_exchange"', f'"{processed_exchange}"')
    )
    (tmp_path / "pipeline.yaml").write_text(text)
    broker.declare()
    for i in range(1, 101):
        broker.publish(row(i))
    runs = Runs(tmp_path, tmp_path / "pipeline.yaml", "cdc")
    try:
        runs.start()
        wait_for("the processed queue has every message", lambda: broker.depth(processed) >= 100, runs)
        runs.stop()
        got = []
        while (message := broker.channel.basic_get(processed, auto_ack=True))[0] is not None:
            got.append(orjson.loads(message[2])["after"]["id"])
        assert got == list(range(1, 101))
        assert broker.depth() == 0
    finally:
        close_quietly(runs)
        broker.channel.queue_delete(processed)
        broker.channel.exchange_delete(processed_exchange)


def _management(broker: Broker) -> str:
    """The management API of the broker under test (the stack and docker/compose.yaml expose 15672)."""
    params = pika.URLParameters(broker.url)
    api = f"http://{params.host}:15672/api"
    try:
        requests.get(
            f"{api}/overview", auth=(params.credentials.username, params.credentials.password), timeout=5
        )
    except requests.RequestException as exc:
        pytest.skip(f"no RabbitMQ management API at {api}: {exc}")
    return api


def test_a_connection_closed_under_the_source_is_reopened(broker: Broker, tmp_path: Path) -> None:
    """The broker closes the pipeline's connection mid-stream (as on a node restart or a network cut):
    the source reconnects, and what it had not acked comes again; nothing is lost."""
    api = _management(broker)
    params = pika.URLParameters(broker.url)
    auth = (params.credentials.username, params.credentials.password)
    broker.declare()
    n = 1000
    for i in range(1, n // 2 + 1):
        broker.publish(row(i))
    sql = SqlTarget(tmp_path / "target.db")
    name = "rabbit-" + broker.name
    runs = pipeline(tmp_path, name, broker.source(), sql)
    try:
        runs.start()
        wait_for("the file sink holds 200 lines", lambda: len(file_ids(tmp_path)) >= 200, runs)
        wanted = f"cdc-logs {name}/rabbitmq"
        ours: list[str] = []

        def listed() -> bool:  # the management API lists a connection once its stats are in (~5 s)
            connections = requests.get(f"{api}/connections", auth=auth, timeout=10).json()
            ours[:] = [c["name"] for c in connections if c.get("user_provided_name") == wanted]
            return bool(ours)

        wait_for("the management API lists the pipeline's connection", listed, runs, timeout=30)
        assert len(ours) == 1
        requests.delete(
            f"{api}/connections/{quote(ours[0], safe='')}", auth=auth, timeout=10
        ).raise_for_status()
        for i in range(n // 2 + 1, n + 1):
            broker.publish(row(i))
        wait_for(
            "every message is in the file sink", lambda: set(file_ids(tmp_path)) >= set(range(1, n + 1)), runs
        )
        runs.stop()
    finally:
        close_quietly(runs)
    ids = file_ids(tmp_path)
    assert "source failed, reconnecting" in runs.log_text()
    assert set(ids) == set(range(1, n + 1)) and len(ids) - n <= 200, "at most the prefetch comes again"
    assert sql.state() == {i: i for i in range(1, n + 1)}
    assert broker.depth() == 0


def _reader(broker: Broker) -> RabbitMQReader:
    return RabbitMQReader(
        pika.URLParameters(broker.url),
        "test",
        Topology(broker.queue, exchange=broker.exchange, routing_keys=("user.#",)),
        mapping=MessageFormatConfig(key_fields=["id"]).mapping(),
        pipeline="p",
        prefetch=100,
        idle_tick_s=0.1,
    )


def _drain(reader: RabbitMQReader, want: int) -> list[Any]:
    items: list[Any] = []
    gen = reader.stream(None)
    deadline = time.monotonic() + 10
    for item in gen:
        if isinstance(item, ChangeEvent):
            items.append(item)
        if len(items) >= want or time.monotonic() > deadline:
            break
    gen.close()
    return items


def test_only_commit_acks_and_exactly_up_to_the_committed_message(broker: Broker) -> None:
    broker.declare()
    for i in range(1, 11):
        broker.publish(row(i))
    first = _reader(broker)
    first.open()
    got = _drain(first, 10)
    assert [e.after["id"] for e in got] == list(range(1, 11))
    assert ContractChecker(transactions=False).check_all(got) == []
    first.close()  # killed before any commit: nothing was acked
    assert broker.depth() == 10
    second = _reader(broker)
    second.open()
    again = _drain(second, 10)
    assert [e.after["id"] for e in again] == list(range(1, 11))
    assert all(e.source.extra["redelivered"] for e in again)
    assert again[0].position.lane() != got[0].position.lane(), "each channel is a lane of its own"
    second.commit(again[4].position)
    second.commit(got[-1].position)  # a position of the earlier channel: ignored, never acked here
    second.close()  # applies the commit: messages 1-5 acked, 6-10 back in the queue
    assert broker.depth() == 5
