"""sync.compression and connection_pool through a real pipeline: Postgres (pgoutput) -> a gzip file
(read back with gzip -t and zcat), a webhook receiving zstd bodies (decoded by their
Content-Encoding), and SQL apply into Postgres through a sized pool with batch_insert_size (the
engine's pool checked, every upsert statement at most that many rows). Plus: a poll source's pool,
and the warning a log reader gives for a pool it cannot use."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import structlog

from cdc_logs.build import build_reader, make_pipeline
from cdc_logs.compression import codec
from cdc_logs.config import PipelineConfig
from cdc_logs.observability.metrics import Metrics
from cdc_logs.sinks.file import FileSink
from cdc_logs.sinks.sql_apply.apply import SqlSink
from tests.chaos.killkit import Postgres

pytestmark = pytest.mark.integration

ROWS = 300


def receiver() -> tuple[ThreadingHTTPServer, list[tuple[str | None, bytes]]]:
    got: list[tuple[str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(
                (self.headers.get("Content-Encoding"), self.rfile.read(int(self.headers["Content-Length"])))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def test_compressed_file_and_webhook_and_pooled_sql(pg_dsn: str, tmp_path: Path) -> None:
    db = Postgres(pg_dsn, uuid.uuid4().hex[:10])
    db.create({})
    target, applied = f"{db.table}_t", f"cdc_applied_{db.table}"
    server, got = receiver()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {target} (id INTEGER PRIMARY KEY, v BIGINT)")
        cfg = PipelineConfig.model_validate(
            {
                "name": f"opts-{db.slot}",
                "source": db.source(snapshot=False, chunk=1000),
                "destinations": [
                    {"name": "archive", "type": "file", "path": str(tmp_path / "changes.jsonl")},
                    {
                        "name": "hook",
                        "type": "webhook",
                        "url": f"http://127.0.0.1:{server.server_address[1]}/h",
                        "compression": "zstd",
                    },
                    {
                        "name": "apply",
                        "type": "postgresql",
                        "url": pg_dsn,
                        "schema": "public",
                        "table": target,
                        "applied_table": applied,
                        "connection_pool": {
                            "min_connections": 2,
                            "max_connections": 3,
                            "connection_timeout": 5,
                            "idle_timeout": 300,
                            "batch_insert_size": 7,
                        },
                    },
                ],
                "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
                "sync": {
                    "compression": {"enabled": True, "algorithm": "gzip"},
                    "fanout": {"spool_dir": str(tmp_path / "spool")},
                },
            }
        )
        pipeline = make_pipeline(cfg, metrics=Metrics.disabled(), stop_when_idle=False)
        archive, _, apply = pipeline.sinks
        assert isinstance(archive, FileSink) and isinstance(apply, SqlSink)
        statements: list[int] = []
        runner = threading.Thread(target=pipeline.run, daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while apply._engine is None or not pipeline.ready.is_set():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            engine = apply._engine
            assert (
                engine.pool.size(),
                engine.pool._max_overflow,
                engine.pool._timeout,
                engine.pool._recycle,
            ) == (  # type: ignore[attr-defined]
                2,
                1,
                5,
                300,
            )

            @sa.event.listens_for(engine, "before_cursor_execute")
            def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
                if statement.startswith("INSERT INTO") and target in statement:
                    statements.append(len(params) if many else 1)

            time.sleep(0.5)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(f"INSERT INTO {db.table} SELECT g, g * 10 FROM generate_series(1, {ROWS}) g")
                conn.execute(f"UPDATE {db.table} SET v = v + 1 WHERE id % 3 = 0")
            want = ROWS + ROWS // 3

            def hook_count() -> int:
                return sum(len(json.loads(codec("zstd").decompress(body))) for _, body in list(got))

            while hook_count() < want or len(apply_state(pg_dsn, target)) < ROWS:
                assert time.monotonic() < deadline + 30, "the destinations did not get every change"
                time.sleep(0.05)
        finally:
            pipeline.stop()
            runner.join(30)
        assert {encoding for encoding, _ in got} == {"zstd"}
        assert archive.path.name == "changes.jsonl.gz"
        subprocess.run(["gzip", "-t", str(archive.path)], check=True)
        lines = subprocess.run(
            ["zcat", str(archive.path)], check=True, capture_output=True
        ).stdout.splitlines()
        assert len(lines) == want
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            source_rows = dict(conn.execute(f"SELECT id, v FROM {db.table}").fetchall())
        assert apply_state(pg_dsn, target) == source_rows
        assert statements and max(statements) <= 7, statements
        assert sum(statements) >= want
    finally:
        server.shutdown()
        server.server_close()
        db.cleanup()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {target}")
            conn.execute(f"DROP TABLE IF EXISTS {applied}")


def apply_state(dsn: str, table: str) -> dict[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return dict(conn.execute(f"SELECT id, v FROM {table}").fetchall())


def test_poll_source_pool_and_log_reader_warning(pg_dsn: str) -> None:
    pool = {"min_connections": 2, "max_connections": 4, "connection_timeout": 7, "idle_timeout": 60}
    url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    cfg = PipelineConfig.model_validate(
        {
            "source": {
                "type": "poll",
                "url": url,
                "tables": [{"table": "t", "incrementing_column": "id", "mode": "incrementing"}],
                "connection_pool": pool,
            },
            "destination": {"type": "stdout"},
        }
    )
    reader = build_reader(cfg.all_sources()[0], "p")
    assert reader.pool_options == {  # type: ignore[attr-defined]
        "pool_size": 2, "max_overflow": 2, "pool_timeout": 7, "pool_recycle": 60,
        "connect_args": {"connect_timeout": 7},
    }  # fmt: skip
    from cdc_logs.readers.polling.connection import create_engine, parse_url

    engine = create_engine(parse_url(url), reader.pool_options)  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        assert engine.pool.size() == 2
    finally:
        engine.dispose()

    log_cfg = PipelineConfig.model_validate(
        {
            "source": {"type": "postgresql", "dsn": pg_dsn, "tables": ["public.t"], "connection_pool": pool},
            "destination": {"type": "stdout"},
        }
    )
    with structlog.testing.capture_logs() as logs:
        build_reader(log_cfg.all_sources()[0], "p")
    assert any("connection_pool is not used by a postgresql source" in e["event"] for e in logs), logs
    with pytest.raises(Exception, match="batch_insert_size is a destination's setting"):
        PipelineConfig.model_validate(
            {
                "source": {
                    "type": "postgresql",
                    "dsn": pg_dsn,
                    "tables": ["public.t"],
                    "connection_pool": {"batch_insert_size": 5},
                },
                "destination": {"type": "stdout"},
            }
        )
