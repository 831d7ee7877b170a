"""connection_pool (cdc_logs/pool.py): the mapping to SQLAlchemy's pool, and the clear refusals. The
live runs (Postgres poll source, SQL apply into Postgres) are in
tests/integration/test_sync_options_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from cdc_logs.config import PipelineConfig
from cdc_logs.envelope import ChangeEvent
from cdc_logs.pool import ConnectionPoolConfig, engine_options
from cdc_logs.sinks.sql_apply.apply import SqlSink
from tests.helpers import make_event


def test_mapping_to_sqlalchemy() -> None:
    pool = ConnectionPoolConfig(
        min_connections=5, max_connections=20, connection_timeout=30, idle_timeout=300
    )
    assert engine_options(pool, sa.make_url("postgresql+psycopg://u@h/db")) == {
        "pool_size": 5, "max_overflow": 15, "pool_timeout": 30, "pool_recycle": 300,
        "connect_args": {"connect_timeout": 30},
    }  # fmt: skip
    assert engine_options(ConnectionPoolConfig(max_connections=3), sa.make_url("mysql+pymysql://u@h/d")) == {
        "pool_size": 3, "max_overflow": 0,
    }  # fmt: skip
    memory = engine_options(pool, sa.make_url("sqlite://"))
    assert memory == {"pool_recycle": 300}  # one in-memory connection: nothing to size
    assert engine_options(None, sa.make_url("sqlite://")) == {}
    with pytest.raises(ValidationError, match="larger than max_connections"):
        ConnectionPoolConfig(min_connections=5, max_connections=2)


def base(**destination: object) -> dict[str, object]:
    return {"source": {"type": "sqlite", "path": "a.db", "tables": ["t"]}, "destination": destination}


def test_refused_where_there_is_no_pool() -> None:
    with pytest.raises(ValidationError, match="kafka destination has no connection pool"):
        PipelineConfig.model_validate(
            base(type="kafka", bootstrap_servers="h:9092", connection_pool={"min_connections": 5})
        )
    data = base(type="stdout")
    data["source"] = {
        "type": "sqlite",
        "path": "a.db",
        "tables": ["t"],
        "connection_pool": {"batch_insert_size": 9},
    }
    with pytest.raises(ValidationError, match="batch_insert_size is a destination's setting"):
        PipelineConfig.model_validate(data)


def test_a_number_for_the_pool_names_the_block_not_a_class() -> None:
    data = base(type="postgresql", url="postgresql://u@h/db", connection_pool=5)
    with pytest.raises(ValidationError) as caught:
        PipelineConfig.model_validate(data)
    assert "connection_pool is a block of settings, not int 5" in str(caught.value)
    assert "max_connections" in str(caught.value) and "ConnectionPoolConfig" not in str(caught.value)


def test_sqlite_sink_pool_and_batch_insert_size(tmp_path: Path) -> None:
    """A real SQLite target: the engine gets the pool, and no upsert statement carries more rows than
    batch_insert_size, while every row arrives."""
    target = tmp_path / "t.db"
    pool = ConnectionPoolConfig(
        min_connections=1, max_connections=2, connection_timeout=3, batch_insert_size=4
    )
    sink = SqlSink(f"sqlite:///{target}", target_schema=None, auto_create=True, connection_pool=pool)
    sink.open()
    assert sink._engine is not None
    assert (sink._engine.pool.size(), sink._engine.pool._max_overflow) == (1, 1)  # type: ignore[attr-defined]
    sizes: list[int] = []

    @sa.event.listens_for(sink._engine, "before_cursor_execute")
    def count(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        if (statement.startswith("INSERT INTO") and '"t"' in statement) or statement.startswith(
            "INSERT INTO t"
        ):
            sizes.append(len(params) if many else 1)

    events: list[ChangeEvent] = [make_event(n) for n in range(1, 31)]
    sink.write(events)
    sink.close()
    assert sizes and max(sizes) <= 4 and sum(sizes) == 30, sizes
    with sa.create_engine(f"sqlite:///{target}").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 30


def test_the_seeds_performance_section_validates() -> None:
    """The seed's "Performance & Scalability" shapes together, on destinations they apply to."""
    import yaml

    text = """
    name: perf
    source:
      type: postgresql
      dsn: postgresql://cdc@db/app
      tables: [public.users]
      connection_pool: {min_connections: 2, max_connections: 10, connection_timeout: 30, idle_timeout: 300}
    destinations:
      - type: postgresql
        url: postgresql://cdc@analytics/analytics
        connection_pool: {min_connections: 5, max_connections: 20, batch_insert_size: 1000}
      - type: webhook
        url: https://hooks.example.com/cdc
    sync:
      mode: continuous
      parallelism: {enabled: true, worker_count: 4, partition_strategy: hash, partition_field: user_id}
      batch_optimization:
        adaptive_batching: true
        min_batch_size: 100
        max_batch_size: 10000
        target_latency_ms: 1000
      compression: {enabled: true, algorithm: gzip}
    """
    cfg = PipelineConfig.model_validate(yaml.safe_load(text))
    assert cfg.sync.parallelism.partition_field == "user_id"
    assert cfg.sync.batch.max_events == 10000 and cfg.sync.batch_optimization is not None
    assert cfg.sync.compression.algorithm == "gzip"
