"""Fan-out against real servers: file + Kafka + Redis Streams, with Redis down for 30 seconds.

The other two sinks keep delivering while Redis is down; Redis catches up when it returns; nothing is
lost and per-key order holds in every sink. Redis here is a private redis-server (append-only file,
fsync always) started by the test, so stopping it does not disturb the shared stack.
"""

from __future__ import annotations

import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, TopicPartition

OUTAGE_S = 30
CHANGES = 1500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("private redis-server did not start")


def _writer(db: Path, done: threading.Event) -> None:
    rng = random.Random(11)
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    for n in range(CHANGES):
        row = rng.randint(1, 40)
        conn.execute(
            "INSERT INTO t (id, v) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v", (row, n)
        )
        time.sleep(0.025)  # ~40 s of changes: the outage falls in the middle
    conn.close()
    done.set()


def _file_ids(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        e = orjson.loads(line)
        out.append((e["after"]["id"], e["source"]["change_id"]))
    return out


def _redis_ids(port: int, stream: str) -> list[tuple[int, int]]:
    entries = redis.Redis(port=port).xrange(stream)
    out = []
    for _, fields in entries:
        e = orjson.loads(fields[b"value"])
        out.append((e["after"]["id"], e["source"]["change_id"]))
    return out


def _kafka_ids(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, p) for p in consumer.list_topics(topic).topics[topic].partitions]
        )
        out, idle = [], 0
        while idle < 3:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
                continue
            assert msg.error() is None, msg.error()
            if msg.value():
                e = orjson.loads(msg.value())
                out.append((e["after"]["id"], e["source"]["change_id"]))
        return out
    finally:
        consumer.close()


def _check(name: str, pairs: list[tuple[int, int]], total: int) -> None:
    ids = [c for _, c in pairs]
    assert set(ids) == set(range(1, total + 1)), f"{name}: changes lost"
    per_key: dict[int, list[int]] = {}
    for key, change in pairs:
        per_key.setdefault(key, []).append(change)
    for key, changes in per_key.items():
        assert changes == sorted(changes), f"{name}: key {key} out of order"


def test_one_sink_down_for_30s_others_keep_delivering(tmp_path: Path, kafka_bootstrap: str) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    redis_port = _free_port()
    redis_proc = _start_redis(redis_port, tmp_path / "redis")
    topic = f"fanout-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: fanout
source: {{type: sqlite, path: {db}, tables: [t], poll_interval_ms: 20}}
destinations:
  - {{name: archive, type: file, path: {out}}}
  - {{name: bus, type: kafka, bootstrap_servers: "{kafka_bootstrap}", topic: {topic}}}
  - {{name: cache, type: redis_stream, port: {redis_port}, stream_name: changes}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync:
  batch: {{max_events: 50, max_wait_ms: 50}}
  retry: {{max_attempts: 100, initial_backoff_ms: 200, max_backoff_ms: 1000}}
  fanout: {{spool_dir: {tmp_path / "spool"}}}
""")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed in finally
    run = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log
    )
    done = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger'").fetchone()[0] >= 3:
                    break
            time.sleep(0.05)
        time.sleep(0.5)
        threading.Thread(target=_writer, args=(db, done), daemon=True).start()
        time.sleep(5)
        redis_proc.send_signal(signal.SIGTERM)  # Redis goes away mid-stream
        redis_proc.wait(20)
        in_file_at_outage = len(_file_ids(out))
        time.sleep(OUTAGE_S)
        in_file_after = len(_file_ids(out))
        assert in_file_after > in_file_at_outage + 300, "the file sink stalled while Redis was down"
        assert run.poll() is None, "the pipeline died while one sink was down"
        redis_proc = _start_redis(redis_port, tmp_path / "redis")  # back, with its append-only file
        assert done.wait(120), "workload did not finish"
        with sqlite3.connect(db) as conn:
            total = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = '_cdc_changes'").fetchone()[0]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (
                len({c for _, c in _redis_ids(redis_port, "changes")}) >= total
                and len(_file_ids(out)) >= total
            ):
                break
            time.sleep(0.5)
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        assert run.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
        _check("file", _file_ids(out), total)
        _check("redis", _redis_ids(redis_port, "changes"), total)
        _check("kafka", _kafka_ids(kafka_bootstrap, topic), total)
    finally:
        if run.poll() is None:
            run.kill()
        redis_proc.kill()
        log.close()
