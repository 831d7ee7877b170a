"""`cdc-logs doctor -c` for the event-bus sources against the stack's NATS JetStream, RabbitMQ, Redis
and Mosquitto, as a user runs it: a good config passes with its checks listed, a missing
stream/queue or a wrong password fails naming the fix (the password never printed), and doctor
changes nothing on the server (no consumer, queue, group or session of its own left behind, the
pipeline's MQTT session not taken over).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cdc_logs.position import NatsSequence


def doctor(tmp: Path, source: dict[str, Any], name: str = "bd") -> subprocess.CompletedProcess[str]:
    config = {"name": name, "sources": [source], "destinations": [{"type": "file", "path": "out.jsonl"}]}
    (tmp / "p.yaml").write_text(json.dumps(config))  # JSON is YAML
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", "-c", "p.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=60,
    )


def marks(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The check lines, `<mark> <name>` each (details vary with the server's state)."""
    return [
        line.split(":")[0].strip()
        for line in result.stdout.splitlines()
        if line.startswith(("ok ", "warn ", "FAIL "))
    ]


# -- NATS JetStream ---------------------------------------------------------------------------------
def _nats(url: str, what: str, *args: Any, **kw: Any) -> Any:
    import nats

    async def go() -> Any:
        nc = await nats.connect(url)
        try:
            return await getattr(nc.jetstream(), what)(*args, **kw)
        finally:
            await nc.close()

    return asyncio.run(go())


@pytest.fixture
def nats_stream(nats_url: str, unique_name: str) -> Iterator[str]:
    name = unique_name.upper()
    _nats(nats_url, "add_stream", name=name, subjects=[f"{unique_name}.>"], max_msgs=3)
    try:
        yield name
    finally:
        _nats(nats_url, "delete_stream", name)


def test_nats(tmp_path: Path, nats_url: str, nats_stream: str, unique_name: str) -> None:
    source = {"type": "nats", "url": nats_url, "stream": nats_stream, "subject": f"{unique_name}.a"}
    good = doctor(tmp_path, source)
    assert good.returncode == 0, good.stdout + good.stderr
    assert marks(good) == [
        "ok   server",
        f"ok   stream {nats_stream}",
        f"ok   subject {unique_name}.a",
        "warn consumer cdc-logs-bd-nats",  # the first run creates it
    ], good.stdout
    assert _nats(nats_url, "consumers_info", nats_stream) == []  # read-only: no consumer made

    wrong_subject = doctor(tmp_path, {**source, "subject": "elsewhere.>"})
    assert wrong_subject.returncode == 1
    assert "FAIL subject elsewhere.>: matches none of the stream's subjects" in wrong_subject.stdout

    missing = doctor(tmp_path, {**source, "stream": nats_stream + "_NOPE"})
    assert missing.returncode == 1, missing.stdout
    assert f"FAIL stream {nats_stream}_NOPE: does not exist" in missing.stdout
    assert "fix: create it (nats stream add)" in missing.stdout

    # A stored position whose next messages the stream's limits (max_msgs 3) already dropped.
    from cdc_logs.configfile import load_config
    from cdc_logs.readers.nats.doctor import check_source

    for _i in range(5):
        _nats(nats_url, "publish", f"{unique_name}.a", b"{}")
    cfg = load_config(tmp_path / "p.yaml").all_sources()[0]
    cfg = cfg.model_copy(update={"stream": nats_stream, "subject": f"{unique_name}.a"})
    lost = check_source(cfg, NatsSequence("", stream=nats_stream, seq=1), pipeline="bd")[-1]
    assert (lost.name, lost.ok) == ("stored position", False) and "2..2" in lost.detail, lost
    kept = check_source(cfg, NatsSequence("", stream=nats_stream, seq=3), pipeline="bd")[-1]
    assert kept.ok and not kept.warning, kept


# -- RabbitMQ -------------------------------------------------------------------------------------
@pytest.fixture
def rabbit_queue(rabbitmq_url: str, unique_name: str) -> Iterator[str]:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    channel.queue_declare(unique_name, durable=False)
    channel.basic_publish("", unique_name, b"{}")
    try:
        yield unique_name
    finally:
        channel.queue_delete(unique_name)
        connection.close()


def test_rabbitmq(tmp_path: Path, rabbitmq_url: str, rabbit_queue: str) -> None:
    import pika

    url = urlsplit(rabbitmq_url)
    source = {
        "type": "rabbitmq",
        "host": url.hostname,
        "port": url.port,
        "username": url.username,
        "password": url.password,
        "queue": rabbit_queue,
        "declare": False,
    }
    good = doctor(tmp_path, source)
    assert good.returncode == 0, good.stdout + good.stderr
    assert marks(good) == ["ok   broker", f"ok   queue {rabbit_queue}"], good.stdout
    assert "1 message(s) ready" in good.stdout  # read-only: nothing consumed

    missing = doctor(tmp_path, {**source, "queue": rabbit_queue + "_nope"})
    assert missing.returncode == 1
    assert f"FAIL queue {rabbit_queue}_nope: does not exist" in missing.stdout
    assert "fix: create the queue" in missing.stdout
    declared = doctor(tmp_path, {**source, "queue": rabbit_queue + "_nope", "declare": True})
    assert declared.returncode == 0 and f"warn queue {rabbit_queue}_nope" in declared.stdout, declared.stdout
    dlx = doctor(tmp_path, {**source, "queue_arguments": {"x-dead-letter-exchange": rabbit_queue + "_dlx"}})
    assert dlx.returncode == 1 and f"FAIL dead-letter exchange {rabbit_queue}_dlx" in dlx.stdout, dlx.stdout
    probe = pika.BlockingConnection(pika.URLParameters(rabbitmq_url)).channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):  # doctor declared nothing
        probe.queue_declare(rabbit_queue + "_nope", passive=True)

    password = "Wr0ng-pw-for-doctor"
    refused = doctor(tmp_path, {**source, "password": password})
    assert refused.returncode == 1
    assert "FAIL broker: RabbitMQ at" in refused.stdout and "refused the login" in refused.stdout
    assert "fix: check username/password" in refused.stdout
    assert password not in refused.stdout + refused.stderr
    in_url = f"amqp://{url.username}:{password}@{url.hostname}:{url.port}/"
    refused = doctor(tmp_path, {"type": "rabbitmq", "url": in_url, "queue": rabbit_queue, "declare": False})
    assert "refused the login" in refused.stdout and password not in refused.stdout + refused.stderr


# -- Redis ----------------------------------------------------------------------------------------
@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_redis_stream(tmp_path: Path, redis_url: str, redis_client: Any, unique_name: str) -> None:
    key, other = f"{unique_name}_events", f"{unique_name}_string"
    try:
        source = {"type": "redis_stream", "url": redis_url, "stream_name": key, "claim_min_idle_ms": 0}
        missing = doctor(tmp_path, source)
        assert missing.returncode == 0, missing.stdout + missing.stderr
        assert marks(missing) == ["ok   server", f"warn stream {key}"], missing.stdout
        assert not redis_client.exists(key)  # read-only: no MKSTREAM

        redis_client.xadd(key, {"data": "{}"})
        redis_client.xadd(key, {"data": "{}"})
        no_group = doctor(tmp_path, source)
        assert marks(no_group) == [
            "ok   server",
            f"ok   stream {key}",
            "warn consumer group cdc-logs.bd.redis_stream",
        ]
        assert "the run creates it at start_id 0" in no_group.stdout
        assert redis_client.xinfo_groups(key) == []

        redis_client.xgroup_create(key, "g", id="0")
        redis_client.xreadgroup("g", "crashed-worker", {key: ">"}, count=1)  # one entry left pending
        grouped = doctor(tmp_path, {**source, "consumer_group": "g"})
        assert grouped.returncode == 0, grouped.stdout
        assert marks(grouped)[2:] == ["ok   consumer group g", "ok   pending entries of other consumers"]
        assert (
            "1 pending, 1 not yet delivered" in grouped.stdout
            and "crashed-worker (1 pending" in grouped.stdout
        )

        redis_client.set(other, "x")
        wrong = doctor(tmp_path, {**source, "stream_name": other})
        assert wrong.returncode == 1 and f"FAIL stream {other}: the key holds a string" in wrong.stdout

        # The stack's Redis has no password (its default user takes any): only the printing is checked.
        password = "Wr0ng-redis-pw"
        url = urlsplit(redis_url)
        with_pw = doctor(tmp_path, {**source, "url": f"redis://:{password}@{url.netloc}{url.path}"})
        assert "ok   server" in with_pw.stdout and password not in with_pw.stdout + with_pw.stderr
    finally:
        redis_client.delete(key, other)


# -- MQTT (Mosquitto) -----------------------------------------------------------------------------
def test_mqtt_connects_apart_from_the_pipelines_session(
    tmp_path: Path, mqtt_url: str, unique_name: str
) -> None:
    import paho.mqtt.client as mqtt

    # The pipeline's own persistent session, connected: doctor must not take it over.
    disconnected = threading.Event()
    url = urlsplit(mqtt_url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"cdc-logs.bd.{unique_name}", protocol=mqtt.MQTTv5
    )
    client.on_disconnect = lambda *_a: disconnected.set()
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, clean_start=False)
    client.loop_start()
    try:
        source = {"type": "mqtt", "name": unique_name, "broker": mqtt_url, "topics": [f"{unique_name}/#"]}
        good = doctor(tmp_path, source)
        assert good.returncode == 0, good.stdout + good.stderr
        assert marks(good) == ["ok   broker"] and "accepted an MQTT 5 connection" in good.stdout, good.stdout
        assert not disconnected.wait(0.5)  # the session's own client is still connected
        old = doctor(tmp_path, {**source, "protocol_version": 311})
        assert old.returncode == 0 and "MQTT 3.1.1" in old.stdout, old.stdout
    finally:
        client.loop_stop()
        client.disconnect()

    closed = doctor(tmp_path, {**source, "broker": f"mqtt://{url.hostname}:1"})
    assert closed.returncode == 1
    assert (
        "FAIL broker: cannot reach the MQTT broker" in closed.stdout
        and "fix: check the source's broker URL" in closed.stdout
    )
