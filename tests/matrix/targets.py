"""The matrix's sink side: one case per destination type, each able to give its `destination:` config
and to read back what it holds, independently of cdc-logs (the servers' own clients).

A case returns either a *state* (key -> row, for destinations that mirror a table: SQL apply, the Redis
cache, an OpenSearch index) or a *log* (every envelope it received, in order, for the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import requests

from tests.matrix.sources import Run


@dataclass
class Readback:
    state: dict[int, dict[str, Any]] | None = None  # key -> row
    log: list[dict[str, Any]] | None = None  # envelopes in the order the destination keeps them
    envelope: bool = True  # values in the envelope's encodings (else a database's typed values)


class SinkCase:
    name = ""
    config_types: tuple[str, ...] = ()  # the `type:` values this case covers

    def prepare(self, run: Run) -> None:
        pass

    def destination(self, run: Run) -> dict[str, Any]:
        raise NotImplementedError

    def read(self, run: Run, table: str) -> Readback:
        raise NotImplementedError

    def cleanup(self, run: Run) -> None:
        pass


def _rows_by_id(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["id"]): r for r in rows}


# -- SQL apply -----------------------------------------------------------------------------------------
class SqlPostgres(SinkCase):
    name = "sql_postgres"
    config_types = ("postgresql", "postgres", "sql")

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "postgresql",
            "url": self.dsn,
            "table": f"mxt_{run.id}",
            "schema": "public",
            "auto_create": True,
            "applied_table": f"mxt_{run.id}_applied",
        }

    def read(self, run: Run, table: str) -> Readback:
        with psycopg.connect(self.dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            try:
                cur.execute(f"SELECT * FROM mxt_{run.id}")
            except psycopg.errors.UndefinedTable:
                return Readback(state={}, envelope=False)
            return Readback(state=_rows_by_id(cur.fetchall()), envelope=False)

    def cleanup(self, run: Run) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS mxt_{run.id}, mxt_{run.id}_applied")


class SqlMariadb(SinkCase):
    name = "sql_mariadb"
    config_types = ("mariadb", "mysql")

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self.url = f"mysql+pymysql://{parts.netloc}{parts.path}?charset=utf8mb4"
        self.args = {
            "host": parts.hostname,
            "port": parts.port or 3306,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "database": parts.path.lstrip("/"),
            "charset": "utf8mb4",
            "autocommit": True,
        }

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "mariadb",
            "url": self.url,
            "table": f"mxt_{run.id}",
            "schema": self.args["database"],
            "auto_create": True,
            "applied_table": f"mxt_{run.id}_applied",
        }

    def read(self, run: Run, table: str) -> Readback:
        conn = pymysql.connect(**self.args)
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                try:
                    cur.execute(f"SELECT * FROM mxt_{run.id}")
                except pymysql.err.ProgrammingError:
                    return Readback(state={}, envelope=False)
                return Readback(state=_rows_by_id(list(cur.fetchall())), envelope=False)
        finally:
            conn.close()

    def cleanup(self, run: Run) -> None:
        conn = pymysql.connect(**self.args)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS mxt_{run.id}, mxt_{run.id}_applied")


class SqlSqlite(SinkCase):
    name = "sql_sqlite"
    config_types = ("sqlite",)

    def path(self, run: Run) -> Path:
        return run.tmp / "target.db"

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "sqlite",
            "url": f"sqlite:///{self.path(run)}",
            "table": f"mxt_{run.id}",
            "auto_create": True,
        }

    def read(self, run: Run, table: str) -> Readback:
        if not self.path(run).exists():
            return Readback(state={}, envelope=False)
        conn = sqlite3.connect(self.path(run))
        conn.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM mxt_{run.id}")]
        except sqlite3.OperationalError:
            rows = []
        finally:
            conn.close()
        return Readback(state=_rows_by_id(rows), envelope=False)


# -- Redis -----------------------------------------------------------------------------------------------
class RedisStream(SinkCase):
    name = "redis_stream"
    config_types = ("redis_stream",)

    def __init__(self, url: str) -> None:
        self.url = url

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "redis_stream", "url": self.url, "stream_name": f"mx_{run.id}"}

    def read(self, run: Run, table: str) -> Readback:
        import redis

        client = redis.Redis.from_url(self.url)
        entries = client.xrange(f"mx_{run.id}")
        return Readback(log=[json.loads(fields[b"value"]) for _id, fields in entries])

    def cleanup(self, run: Run) -> None:
        import redis

        redis.Redis.from_url(self.url).delete(f"mx_{run.id}")


class RedisCache(SinkCase):
    name = "redis_cache"
    config_types = ("redis",)

    def __init__(self, url: str) -> None:
        self.url = url

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "redis", "url": self.url, "key_pattern": f"mx_{run.id}:{{key}}"}

    def read(self, run: Run, table: str) -> Readback:
        import redis

        client = redis.Redis.from_url(self.url)
        keys = list(client.scan_iter(f"mx_{run.id}:*", count=5000))
        rows = [json.loads(v) for v in client.mget(keys)] if keys else []
        return Readback(state=_rows_by_id(rows))

    def cleanup(self, run: Run) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        keys = list(client.scan_iter(f"mx_{run.id}:*", count=5000))
        if keys:
            client.delete(*keys)


# -- Kafka, file, stdout -----------------------------------------------------------------------------------
class Kafka(SinkCase):
    name = "kafka"
    config_types = ("kafka",)

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "kafka",
            "bootstrap_servers": self.bootstrap,
            "topic": f"mx_{run.id}",
        }

    def read(self, run: Run, table: str) -> Readback:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"mx-read-{run.id}",
                "enable.auto.commit": False,
            }
        )
        try:
            meta = consumer.list_topics(f"mx_{run.id}", timeout=10).topics.get(f"mx_{run.id}")
            if meta is None or not meta.partitions:
                return Readback(log=[])
            out: list[dict[str, Any]] = []
            for partition in meta.partitions:  # per-key order is per partition; keys map to one
                tp = TopicPartition(f"mx_{run.id}", partition)
                _low, high = consumer.get_watermark_offsets(tp, timeout=10)
                consumer.assign([TopicPartition(f"mx_{run.id}", partition, 0)])
                got = 0
                while got < high:
                    msg = consumer.poll(5)
                    if msg is None:
                        break
                    if msg.error():
                        continue
                    got = msg.offset() + 1
                    if msg.value() is not None:
                        out.append(json.loads(msg.value()))
            return Readback(log=out)
        finally:
            consumer.close()

    def cleanup(self, run: Run) -> None:
        from confluent_kafka.admin import AdminClient

        with contextlib.suppress(Exception):
            AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics([f"mx_{run.id}"])


class File(SinkCase):
    name = "file"
    config_types = ("file",)

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "file", "path": str(run.tmp / "out" / "changes.jsonl")}

    def read(self, run: Run, table: str) -> Readback:
        path = run.tmp / "out" / "changes.jsonl"
        if not path.exists():
            return Readback(log=[])
        return Readback(log=[json.loads(line) for line in path.read_bytes().splitlines()])


class Stdout(SinkCase):
    """`type: stdout` with `format: json`: the run's stdout, one envelope per line."""

    name = "stdout"
    config_types = ("stdout",)

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "stdout", "format": "json"}

    def read(self, run: Run, table: str) -> Readback:
        path = run.tmp / "stdout.jsonl"
        if not path.exists():
            return Readback(log=[])
        lines = path.read_bytes().splitlines()
        return Readback(log=[json.loads(line) for line in lines if line.strip()])


# -- OpenSearch ---------------------------------------------------------------------------------------------
class OpenSearch(SinkCase):
    name = "opensearch"
    config_types = ("opensearch", "elasticsearch")

    def __init__(self, url: str) -> None:
        self.url = url

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "opensearch",
            "url": self.url,
            "index": f"mx_{run.id}",
            "mode": "mirror",
        }

    def read(self, run: Run, table: str) -> Readback:
        index = f"{self.url}/mx_{run.id}"
        if requests.post(f"{index}/_refresh", timeout=30).status_code == 404:
            return Readback(state={})
        rows: list[dict[str, Any]] = []
        resp = requests.post(
            f"{index}/_search?scroll=1m", json={"size": 5000, "query": {"match_all": {}}}, timeout=60
        ).json()
        while resp["hits"]["hits"]:
            rows += [hit["_source"] for hit in resp["hits"]["hits"]]
            resp = requests.post(
                f"{self.url}/_search/scroll",
                json={"scroll": "1m", "scroll_id": resp["_scroll_id"]},
                timeout=60,
            ).json()
        return Readback(state=_rows_by_id(rows))

    def cleanup(self, run: Run) -> None:
        with contextlib.suppress(Exception):
            requests.delete(f"{self.url}/mx_{run.id}", timeout=30)


# -- NATS, RabbitMQ, MQTT, HTTP ----------------------------------------------------------------------------
class Nats(SinkCase):
    name = "nats"
    config_types = ("nats",)

    def __init__(self, url: str) -> None:
        self.url = url

    def destination(self, run: Run) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "nats",
            "url": self.url,
            "subject": f"mx.{run.id}",
            "stream": f"MX_{run.id.upper()}",
        }

    def read(self, run: Run, table: str) -> Readback:
        return Readback(log=asyncio.run(self._read(run)))

    async def _read(self, run: Run) -> list[dict[str, Any]]:
        import nats

        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(f"MX_{run.id.upper()}")
            except nats.js.errors.NotFoundError:
                return []
            first, last = info.state.first_seq, info.state.last_seq
            if not info.state.messages:
                return []
            out: list[dict[str, Any]] = []
            stream = f"MX_{run.id.upper()}"
            for start in range(first, last + 1, 500):  # stream order, 500 lookups at a time
                seqs = range(start, min(start + 500, last + 1))
                msgs = await asyncio.gather(*(js.get_msg(stream, seq) for seq in seqs))
                out += [json.loads(m.data) for m in msgs if m.data]
            return out
        finally:
            await nc.close()

    def cleanup(self, run: Run) -> None:
        async def drop() -> None:
            import nats

            nc = await nats.connect(self.url)
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(f"MX_{run.id.upper()}")
            await nc.close()

        asyncio.run(drop())


class RabbitMQ(SinkCase):
    name = "rabbitmq"
    config_types = ("rabbitmq",)

    def __init__(self, url: str) -> None:
        self.url = url
        self._seen: dict[str, list[dict[str, Any]]] = {}

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "rabbitmq", "url": self.url, "queue": f"mx_{run.id}"}

    def read(self, run: Run, table: str) -> Readback:
        import pika

        seen = self._seen.setdefault(run.id, [])  # basic_get consumes: keep what earlier reads took
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = conn.channel()
            with contextlib.suppress(Exception):
                while True:
                    method, _props, body = channel.basic_get(f"mx_{run.id}", auto_ack=True)
                    if method is None:
                        break
                    seen.append(json.loads(body))
        finally:
            conn.close()
        return Readback(log=list(seen))

    def cleanup(self, run: Run) -> None:
        import pika

        with contextlib.suppress(Exception):
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            conn.channel().queue_delete(f"mx_{run.id}")
            conn.close()


class Mqtt(SinkCase):
    """Mosquitto: a QoS 1 subscriber that subscribed before the run keeps every message."""

    name = "mqtt"
    config_types = ("mqtt",)

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._client: Any = None

    def prepare(self, run: Run) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(self.url)
        ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_subscribe = lambda *_a: ready.set()
        client.on_message = lambda _c, _u, msg: self._got(msg.payload)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()
        client.subscribe(f"mx/{run.id}", qos=1)
        assert ready.wait(10), "MQTT subscription not acknowledged"
        self._client = client

    def _got(self, payload: bytes) -> None:
        with self._lock:
            self.messages.append(json.loads(payload))

    def destination(self, run: Run) -> dict[str, Any]:
        return {"name": self.name, "type": "mqtt", "broker": self.url, "topic": f"mx/{run.id}"}

    def read(self, run: Run, table: str) -> Readback:
        with self._lock:
            return Readback(log=list(self.messages))

    def cleanup(self, run: Run) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


class Http(SinkCase):
    """A webhook receiver on loopback: keeps every POSTed envelope in arrival order."""

    name = "http"
    config_types = ("http", "webhook")

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def prepare(self, run: Run) -> None:
        case = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with case._lock:
                    case.received.extend(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def destination(self, run: Run) -> dict[str, Any]:
        assert self._server is not None
        return {"name": self.name, "type": "http", "url": f"http://127.0.0.1:{self._server.server_port}/hook"}

    def read(self, run: Run, table: str) -> Readback:
        with self._lock:
            return Readback(log=list(self.received))

    def cleanup(self, run: Run) -> None:
        if self._server is not None:
            self._server.shutdown()
