"""Smoke tests for the local server stack (scripts/stack) or the docker compose stack.

Each server accepts a real connection and does one real operation; then a Debezium PostgreSQL connector,
created through Kafka Connect's REST API, streams a row into Kafka where confluent-kafka reads it.
Everything a test creates carries a unique name and is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.integration


def _mysql_kwargs(dsn: str) -> dict:
    parts = urlsplit(dsn)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "connect_timeout": 5,
        "autocommit": True,
    }


# --- databases -----------------------------------------------------------------------------------------


def test_postgres_logical_wal_and_replication_login(pg_dsn: str, unique_name: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('wal_level', 'max_replication_slots', 'max_wal_senders')"
            ).fetchall()
        )
        assert settings["wal_level"] == "logical"
        assert int(settings["max_replication_slots"]) >= 10
        assert int(settings["max_wal_senders"]) >= 10
        conn.execute(f"CREATE TABLE {unique_name} (id int PRIMARY KEY, v text)")
        try:
            conn.execute(f"INSERT INTO {unique_name} VALUES (1, 'a')")
            assert conn.execute(f"SELECT v FROM {unique_name} WHERE id = 1").fetchone() == ("a",)
        finally:
            conn.execute(f"DROP TABLE {unique_name}")
    # pg_hba must let the role open a walsender (replication) connection too.
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True, replication="database") as repl:
        system_id, timeline, _xlogpos, dbname = repl.execute("IDENTIFY_SYSTEM").fetchone()
        assert int(system_id) > 0 and int(timeline) >= 1 and dbname


def test_mariadb_binlog_settings_and_write(mariadb_dsn: str, unique_name: str) -> None:
    pymysql = pytest.importorskip("pymysql")
    conn = pymysql.connect(**_mysql_kwargs(mariadb_dsn))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, "
                "@@gtid_strict_mode, @@server_id"
            )
            log_bin, fmt, image, metadata, strict, server_id = cur.fetchone()
            assert (log_bin, fmt, image, metadata, strict) == (1, "ROW", "FULL", "FULL", 1)
            assert server_id >= 1
            cur.execute(f"CREATE TABLE {unique_name} (id INT PRIMARY KEY, v VARCHAR(10))")
            try:
                cur.execute(f"INSERT INTO {unique_name} VALUES (1, 'a')")
                cur.execute(f"SELECT v FROM {unique_name} WHERE id = 1")
                assert cur.fetchone() == ("a",)
            finally:
                cur.execute(f"DROP TABLE {unique_name}")
            # REPLICATION CLIENT (BINLOG MONITOR): the binlog position is visible to the cdc user.
            cur.execute("SHOW MASTER STATUS")
            assert cur.fetchone() is not None
            cur.execute("SELECT @@gtid_binlog_pos")
            assert cur.fetchone()[0]
    finally:
        conn.close()


def test_mongo_change_stream(mongo_uri: str, unique_name: str) -> None:
    pymongo = pytest.importorskip("pymongo")
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        coll = client["cdc_smoke"][unique_name]
        with coll.watch(max_await_time_ms=500) as stream:
            coll.insert_one({"_id": 1, "v": "a"})
            change = None
            deadline = time.monotonic() + 15
            while change is None and time.monotonic() < deadline:
                change = stream.try_next()
            assert change is not None, "no change event within 15 s"
            assert change["operationType"] == "insert"
            assert change["fullDocument"] == {"_id": 1, "v": "a"}
            assert stream.resume_token is not None
        assert coll.find_one({"_id": 1}) == {"_id": 1, "v": "a"}
        coll.drop()
    finally:
        client.close()


# --- messaging -----------------------------------------------------------------------------------------


def test_redis_set_get(redis_url: str, unique_name: str) -> None:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.set(unique_name, "v", ex=60)
        assert client.get(unique_name) == b"v"
        client.delete(unique_name)
    finally:
        client.close()


def test_rabbitmq_publish_get(rabbitmq_url: str, unique_name: str) -> None:
    pika = pytest.importorskip("pika")
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = conn.channel()
        channel.queue_declare(queue=unique_name, exclusive=True)
        channel.confirm_delivery()
        channel.basic_publish(exchange="", routing_key=unique_name, body=b"hello")
        body = None
        deadline = time.monotonic() + 10
        while body is None and time.monotonic() < deadline:
            _method, _props, body = channel.basic_get(queue=unique_name, auto_ack=True)
            if body is None:
                time.sleep(0.1)
        assert body == b"hello"
    finally:
        conn.close()


def test_nats_jetstream_publish(nats_url: str, unique_name: str) -> None:
    nats = pytest.importorskip("nats")

    async def scenario() -> None:
        nc = await nats.connect(nats_url, connect_timeout=5)
        try:
            js = nc.jetstream()
            await js.add_stream(name=unique_name, subjects=[f"{unique_name}.>"])
            try:
                ack = await js.publish(f"{unique_name}.x", b"hello", timeout=5)
                assert ack.stream == unique_name and ack.seq == 1
                msg = await js.get_msg(unique_name, 1)
                assert msg.data == b"hello"
            finally:
                await js.delete_stream(unique_name)
        finally:
            await nc.close()

    asyncio.run(scenario())


def test_mqtt_publish_subscribe(mqtt_url: str, unique_name: str) -> None:
    mqtt = pytest.importorskip("paho.mqtt.client")
    parts = urlsplit(mqtt_url)
    topic = f"cdc/smoke/{unique_name}"
    subscribed, received = threading.Event(), []
    got = threading.Event()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique_name)
    client.on_subscribe = lambda *_args: subscribed.set()

    def on_message(_client, _userdata, message) -> None:
        received.append(message.payload)
        got.set()

    client.on_message = on_message
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "no SUBACK within 10 s"
        client.publish(topic, b"hello", qos=1).wait_for_publish(10)
        assert got.wait(10), "message not delivered within 10 s"
        assert received == [b"hello"]
    finally:
        client.loop_stop()
        client.disconnect()


def test_kafka_produce_consume(kafka_bootstrap: str, unique_name: str) -> None:
    ck = pytest.importorskip("confluent_kafka")
    topic = f"smoke-{unique_name}"
    producer = ck.Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(15) == 0, "message not delivered within 15 s"
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        value = None
        deadline = time.monotonic() + 30
        while value is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                value = msg.value()
        assert value == b"hello"
    finally:
        consumer.close()
        _delete_topics(ck, kafka_bootstrap, [topic])


def _delete_topics(ck, bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    futures = AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics, operation_timeout=10)
    for future in futures.values():
        with contextlib.suppress(ck.KafkaException):  # already gone or never created
            future.result(15)


# --- Kafka Connect + Debezium --------------------------------------------------------------------------


def test_connect_lists_debezium_plugins(connect_url: str) -> None:
    requests = pytest.importorskip("requests")
    assert requests.get(f"{connect_url}/", timeout=10).json()["version"]
    classes = {p["class"] for p in requests.get(f"{connect_url}/connector-plugins", timeout=10).json()}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes
    assert "io.debezium.connector.mysql.MySqlConnector" in classes


@pytest.fixture
def pg_table(pg_dsn: str) -> Iterator[str]:
    """A fresh table in cdc_test; dropped afterwards together with the test's slot and publication."""
    psycopg = pytest.importorskip("psycopg")
    name = "smoke_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, v text)")
    yield name
    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        # The slot stays active for a moment after the connector is deleted.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,)
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                break
            time.sleep(0.5)
        conn.execute(f"DROP PUBLICATION IF EXISTS {name}")
        conn.execute(f"DROP TABLE IF EXISTS public.{name}")


def test_debezium_postgres_connector_streams_insert_to_kafka(
    pg_dsn: str, connect_pg_dsn: str, connect_url: str, kafka_bootstrap: str, pg_table: str
) -> None:
    requests = pytest.importorskip("requests")
    ck = pytest.importorskip("confluent_kafka")
    psycopg = pytest.importorskip("psycopg")

    worker_view = urlsplit(connect_pg_dsn)
    name = pg_table  # connector, slot, publication and topic prefix share the unique name
    topic = f"{name}.public.{pg_table}"
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": worker_view.hostname,
        "database.port": str(worker_view.port or 5432),
        "database.user": unquote(worker_view.username or ""),
        "database.password": unquote(worker_view.password or ""),
        "database.dbname": worker_view.path.lstrip("/"),
        "topic.prefix": name,
        "plugin.name": "pgoutput",
        "slot.name": name,
        "publication.name": name,
        "publication.autocreate.mode": "filtered",
        "table.include.list": f"public.{pg_table}",
        "snapshot.mode": "initial",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    }

    with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"INSERT INTO public.{pg_table} VALUES (1, 'snapshot')")

    resp = requests.put(f"{connect_url}/connectors/{name}/config", json=config, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        # The snapshot row proves the connector runs; the slot exists from before the snapshot, so the
        # insert that follows must then arrive as a streamed change (op "c").
        first = _next_event(consumer, connect_url, name, timeout=60)
        assert first["op"] == "r" and first["after"] == {"id": 1, "v": "snapshot"}
        with psycopg.connect(pg_dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"INSERT INTO public.{pg_table} VALUES (2, 'streamed')")
        second = _next_event(consumer, connect_url, name, timeout=60)
        assert second["op"] == "c"
        assert second["after"] == {"id": 2, "v": "streamed"}
        assert second["source"]["connector"] == "postgresql"
        assert second["source"]["table"] == pg_table
        assert second["source"]["lsn"] > 0
    finally:
        consumer.close()
        requests.delete(f"{connect_url}/connectors/{name}", timeout=30)
        _delete_topics(ck, kafka_bootstrap, [topic])


def _next_event(consumer, connect_url: str, connector: str, timeout: float) -> dict:
    """The next Debezium change event on the subscribed topic; fails early if the connector fails."""
    import requests

    deadline = time.monotonic() + timeout
    next_status_check = 0.0
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None and msg.value() is not None:
            return json.loads(msg.value())
        if time.monotonic() >= next_status_check:
            next_status_check = time.monotonic() + 5
            status = requests.get(f"{connect_url}/connectors/{connector}/status", timeout=10)
            if status.ok:
                body = status.json()
                states = [body["connector"]["state"]] + [t["state"] for t in body.get("tasks", [])]
                if "FAILED" in states:
                    traces = [t.get("trace", "") for t in body.get("tasks", [])]
                    pytest.fail(f"connector {connector} failed: {states}\n" + "\n".join(traces)[:3000])
    pytest.fail(f"no event from connector {connector} within {timeout:.0f} s")
