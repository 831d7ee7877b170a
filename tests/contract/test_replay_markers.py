"""Replay markers of two pipelines never meet: the reviewer's repro (docs/sinks.md, replay guard).

Two pipelines with default destination names (`postgresql`, `redis_stream`) copy the same source
table into one target database (two schemas) or one Redis; their runs interleave. Markers keyed
only by sink name and source table made one pipeline skip the other's changes as "already applied".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from cdc_logs.build import build_sink
from cdc_logs.sinks.redis_stream import RedisStreamSinkConfig
from cdc_logs.sinks.sql import SqlSinkConfig, normalize_url
from tests.helpers import make_event

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_targets(pg_dsn: str, unique_name: str) -> Iterator[tuple[sa.Engine, list[str]]]:
    engine = sa.create_engine(normalize_url(pg_dsn))
    schemas = [f"{unique_name}_a", f"{unique_name}_b"]
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield engine, schemas
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        if conn.execute(sa.text("SELECT to_regclass('public.cdc_applied')")).scalar() is not None:
            conn.execute(
                sa.text("DELETE FROM public.cdc_applied WHERE source_table LIKE :t"),
                {"t": f"%{unique_name}%"},
            )
    engine.dispose()


def _run(cfg: Any, pipeline: str, events: list[Any]) -> None:
    """One run of a pipeline's destination: a new process opens the sink, writes, closes."""
    sink = build_sink(cfg, pipeline)
    sink.open()
    try:
        sink.write(events)
    finally:
        sink.close()


def test_two_pipelines_into_two_schemas_each_get_every_change(
    pg_dsn: str, unique_name: str, pg_targets: tuple[sa.Engine, list[str]]
) -> None:
    engine, schemas = pg_targets
    cfgs = {
        f"{unique_name}_{x}": SqlSinkConfig.model_validate(
            {"type": "postgresql", "url": pg_dsn, "schema": schema, "table": "src", "auto_create": True}
        )
        for x, schema in zip("ab", schemas, strict=True)
    }
    (pa, ca), (pb, cb) = cfgs.items()
    # The same source table (one slot each, same LSNs): make_event n has position n.
    ev = [make_event(n, table=unique_name) for n in range(4)]
    _run(ca, pa, ev[:2])  # A runs briefly: rows 0, 1
    _run(cb, pb, ev[:4])  # B catches up to row 3
    _run(ca, pa, ev[2:])  # A resumes after its checkpoint: rows 2, 3 must reach A's target
    for schema in schemas:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f'SELECT id, v FROM "{schema}".src ORDER BY id')).all()
        assert [tuple(r) for r in rows] == [(n, n) for n in range(4)], schema


def test_a_replay_is_still_skipped_per_pipeline(
    pg_dsn: str, unique_name: str, pg_targets: tuple[sa.Engine, list[str]]
) -> None:
    """The guard still works within one pipeline: a replayed older change does not undo a newer one."""
    engine, schemas = pg_targets
    cfg = SqlSinkConfig.model_validate(
        {"type": "postgresql", "url": pg_dsn, "schema": schemas[0], "table": "src", "auto_create": True}
    )
    first, second = make_event(1, table=unique_name, key=1), make_event(2, op="u", table=unique_name, key=1)
    _run(cfg, unique_name, [first, second])
    _run(cfg, unique_name, [first])  # replayed: must not set v back to 1
    with engine.connect() as conn:
        assert conn.execute(sa.text(f'SELECT v FROM "{schemas[0]}".src')).scalar() == 2
        # The marker table lives in the configured schema, not in public.
        assert (
            conn.execute(sa.text(f"SELECT to_regclass('\"{schemas[0]}\".cdc_applied')")).scalar() is not None
        )


def test_two_pipelines_into_one_redis_each_get_every_change(redis_url: str, unique_name: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    streams = {x: f"{unique_name}_{x}" for x in "ab"}
    try:
        cfg = {
            x: RedisStreamSinkConfig.model_validate(
                {"type": "redis_stream", "url": redis_url, "stream_name": s}
            )
            for x, s in streams.items()
        }
        ev = [make_event(n, table=unique_name) for n in range(4)]
        _run(cfg["a"], f"{unique_name}_a", ev[:2])
        _run(cfg["b"], f"{unique_name}_b", ev[:4])
        _run(cfg["a"], f"{unique_name}_a", ev[2:])
        for stream in streams.values():
            assert client.xlen(stream) == 4, stream
    finally:
        for stream in streams.values():
            client.delete(stream)
        for key in client.scan_iter(f"cdc-logs:applied:{unique_name}*"):
            client.delete(key)
        client.close()


def test_a_marker_of_the_previous_format_is_reported_and_not_used(
    pg_dsn: str, unique_name: str, pg_targets: tuple[sa.Engine, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrade: a public.cdc_applied row keyed by destination name and source table only cannot say
    which pipeline wrote it (here: another one, further on). Trusting it would skip rows 2 and 3;
    instead they are applied (at-least-once), and the old row is reported once."""
    import cdc_logs.sinks.sql_apply.apply as sql_module
    from cdc_logs.sinks.dedup import marker_key

    said: list[str] = []
    monkeypatch.setattr(sql_module.log, "info", lambda event, **kw: said.append(event))
    engine, schemas = pg_targets
    ev = [make_event(n, table=unique_name) for n in range(4)]
    legacy = sql_module._marker_table("cdc_applied", None)
    with engine.begin() as conn:
        legacy.create(conn, checkfirst=True)
        conn.execute(
            legacy.insert().values(
                sink=unique_name,
                source_table=marker_key(ev[3]),
                position=ev[3].position.encode(),  # type: ignore[union-attr]
                complete=True,
                updated_at=sa.func.now(),
            )
        )
    cfg = SqlSinkConfig.model_validate(
        {"type": "postgresql", "name": unique_name, "url": pg_dsn, "schema": schemas[0], "table": "src",
         "auto_create": True}
    )  # fmt: skip
    _run(cfg, unique_name, ev[:2])
    _run(cfg, unique_name, ev[2:])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f'SELECT id, v FROM "{schemas[0]}".src ORDER BY id')).all()
    assert [tuple(r) for r in rows] == [(n, n) for n in range(4)]
    assert said.count("replay markers of the previous format found and not used: they do not say which "
                      "pipeline wrote them; the changes since this pipeline's checkpoint are applied again "
                      "(the target ends the same)") == 2  # fmt: skip  # once per open


def test_a_redis_marker_of_the_previous_format_is_not_used(
    redis_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    import cdc_logs.sinks.redis_stream as module
    from cdc_logs.sinks.dedup import Marker, marker_key

    said: list[str] = []
    monkeypatch.setattr(module.log, "info", lambda event, **kw: said.append(event))
    client = redis.Redis.from_url(redis_url)
    old_hash = f"cdc-logs:applied:{unique_name}"  # the previous default: cdc-logs:applied:<sink name>
    ev = [make_event(n, table=unique_name) for n in range(4)]
    try:
        client.hset(old_hash, marker_key(ev[3]), Marker(ev[3].position, True).encode())  # type: ignore[arg-type]
        cfg = RedisStreamSinkConfig.model_validate(
            {"type": "redis_stream", "name": unique_name, "url": redis_url, "stream_name": unique_name}
        )
        _run(cfg, unique_name, ev)
        assert client.xlen(unique_name) == 4
        assert len(said) == 1 and said[0].startswith(
            "replay markers of the previous format found and not used"
        )
    finally:
        client.delete(unique_name, old_hash, f"cdc-logs:applied:{unique_name}:{unique_name}")
        client.close()
