"""SQL apply sink on the stack's Postgres and MariaDB and on SQLite: the target table mirrors the source.

The contract suite checks this sink on the rows (tests/contract/sinks/sql.py): durable when `write`
returns (read by a separate connection), a replay changes nothing, per-key order (the last change of
each key wins). Here, more of the same on hand-made tables, and what only a table has: a batch
applies whole or not at all, partial updates, key changes, typed columns, `auto_create`.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark
from cdc_logs.sinks.sql import SqlSinkConfig, normalize_url
from cdc_logs.sinks.sql_apply.apply import SqlSink
from tests.helpers import SERVER, make_event

pytestmark = pytest.mark.integration


class Target:
    """The target database, read through its own engine (not the sink's)."""

    def __init__(self, url: str, schema: str | None, sink_name: str, table: str = "t") -> None:
        self.url, self.schema, self.sink_name, self.table = url, schema, sink_name, table
        self.engine = sa.create_engine(normalize_url(url))
        self.dialect = self.engine.dialect.name

    def create(self, ddl: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(ddl.format(t=self.qualified())))

    def qualified(self) -> str:
        quote = self.engine.dialect.identifier_preparer.quote
        return f"{quote(self.schema)}.{quote(self.table)}" if self.schema else quote(self.table)

    def rows(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {self.qualified()} ORDER BY 1"))]

    def sink(self, **kw: Any) -> SqlSink:
        return SqlSink(self.url, target_schema=self.schema, table=self.table, name=self.sink_name, **kw)


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target(f"sqlite:///{tmp_path / 'target.db'}", None, unique_name)
        return
    if request.param == "mariadb":
        # The stack's user may not create databases: a table named per test in the `test` database.
        dsn = request.getfixturevalue("mariadb_dsn").replace("mysql://", "mysql+pymysql://", 1)
        target = Target(dsn, None, unique_name, table=unique_name)
        yield target
        with target.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {target.qualified()}"))
            conn.execute(sa.text("DELETE FROM cdc_applied WHERE sink = :s"), {"s": f"cdc/{unique_name}"})
        target.engine.dispose()
        return
    pg_dsn = request.getfixturevalue("pg_dsn")
    target = Target(pg_dsn, unique_name, unique_name)
    with target.engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{unique_name}"'))
    yield target
    with target.engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{unique_name}" CASCADE'))  # with its cdc_applied
    target.engine.dispose()


def test_mirrors_inserts_updates_deletes(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
    sink = target.sink()
    sink.open()
    ops = ["c", "u", "u", "d"]
    for start in range(0, 40, 10):
        sink.write([make_event(n, op=ops[(n // 7) % 4], key=n % 7) for n in range(start, start + 10)])
        # Durable on return: a separate connection sees the batch.
        assert target.rows() == expected_rows(start + 10)
    sink.close()


def expected_rows(upto: int) -> list[tuple[int, int]]:
    ops = ["c", "u", "u", "d"]
    state: dict[int, int] = {}
    for n in range(upto):
        key = n % 7
        if ops[(n // 7) % 4] == "d":
            state.pop(key, None)
        else:
            state[key] = n
    return sorted(state.items())


def test_replay_is_skipped_even_by_a_new_process(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
    first, second = [make_event(1, key=1)], [make_event(2, op="u", key=1)]
    sink = target.sink()
    sink.open()
    sink.write(first)
    sink.write(second)
    sink.close()
    assert target.rows() == [(1, 2)]
    again = target.sink()
    again.open()
    again.write(first)  # without the applied marker this would set v back to 1
    assert target.rows() == [(1, 2)]
    again.write([make_event(3, op="u", key=1)])
    assert target.rows() == [(1, 3)]
    again.close()


def test_partial_update_keeps_unchanged_toast_column(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER, bio TEXT)")
    sink = target.sink()
    sink.open()
    sink.write([event(1, "c", after={"id": 1, "v": 1, "bio": "a long text"})])
    sink.write([event(2, "u", after={"id": 1, "v": 2}, unchanged=("bio",))])
    assert target.rows() == [(1, 2, "a long text")]
    sink.close()


def test_key_change_moves_the_row(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
    sink = target.sink()
    sink.open()
    sink.write([event(1, "c", after={"id": 1, "v": 1})])
    sink.write([event(2, "u", before={"id": 1, "v": 1}, after={"id": 5, "v": 1}, key={"id": 5})])
    assert target.rows() == [(5, 1)]
    sink.close()


def test_a_failing_batch_applies_nothing(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    sink = target.sink()
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([event(1, "c", after={"id": 1, "v": 1}), event(2, "c", after={"id": 2, "v": None})])
    assert err.value.kind is ErrorKind.SINK_REJECTED
    assert target.rows() == []
    sink.write([event(1, "c", after={"id": 1, "v": 1})])  # not marked applied by the failed batch
    assert target.rows() == [(1, 1)]
    sink.close()


def test_truncate(target: Target) -> None:
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
    sink = target.sink()
    sink.open()
    sink.write([make_event(1), make_event(2), event(3, "t")])
    assert target.rows() == []
    sink.close()


def test_debezium_encodings_are_converted_for_typed_columns(target: Target) -> None:
    ts, raw = {"postgresql": ("TIMESTAMP", "BYTEA"), "mysql": ("DATETIME(6)", "BLOB")}.get(
        target.dialect, ("TIMESTAMP", "BLOB")
    )
    target.create(
        f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, d DATE, ts {ts}, amount NUMERIC(10,2), raw {raw})"
    )
    sink = target.sink()
    sink.open()
    micros = 1_700_000_000_123_456
    after = {"id": 1, "d": 19_000, "ts": micros, "amount": "12.50", "raw": "AAEC"}
    sink.write([event(1, "c", after=after)])
    ((_id, d, ts, amount, raw),) = target.rows()
    assert str(d)[:10] == "2022-01-08"
    assert str(ts).startswith("2023-11-14 22:13:20.123456")
    assert Decimal(str(amount)) == Decimal("12.50")
    assert bytes(raw) == b"\x00\x01\x02"
    sink.close()


def test_missing_target_table_is_rejected_unless_auto_create(target: Target) -> None:
    sink = target.sink()
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_REJECTED and "auto_create" in (err.value.hint or "")
    sink.close()
    sink = target.sink(auto_create=True)
    sink.open()
    sink.write([make_event(1)])
    sink.write([event(2, "u", after={"id": 1, "v": 2, "extra": "new column"})])
    assert target.rows() == [(1, 2, "new column")]
    sink.close()


def test_auto_create_keeps_a_key_of_zero(target: Target) -> None:
    """Found by the contract suite: the key of an auto-created table was AUTO_INCREMENT on MariaDB,
    so a row with key 0 was stored under the next free number (and its updates and deletes missed)."""
    sink = target.sink(auto_create=True)
    sink.open()
    sink.write([make_event(1, key=5), make_event(2, key=0)])
    sink.write([make_event(3, op="u", key=0)])
    assert target.rows() == [(0, 3), (5, 1)]
    sink.write([make_event(4, op="d", key=0)])
    assert target.rows() == [(5, 1)]
    sink.close()


def event(
    n: int, op: str, *, before: Any = None, after: Any = None, key: Any = None, **kw: Any
) -> ChangeEvent:
    row = after or before or {}
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("test", "p", "db", "t", schema="main", ts_ms=n, extra={"seq": n}),
        before=before,
        after=after,
        key=key or ({"id": row["id"]} if "id" in row else None),
        ts_ms=n,
        position=Watermark(SERVER, (n,)),
        **kw,
    )


def test_values_fit_the_target_type_without_a_schema() -> None:
    from cdc_logs.sinks.sql_apply.sql_types import adapt

    assert adapt(sa.DateTime(timezone=True), "2024-01-02T03:04:05Z", "sqlite") == dt.datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC
    )
    assert adapt(sa.DateTime(), "2024-01-02T03:04:05Z", "sqlite") == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert adapt(sa.Time(), 3_600_000_001, "sqlite") == dt.time(1, 0, 0, 1)
    assert adapt(sa.JSON(), '{"a": 1.10}', "sqlite") == '{"a": 1.10}'  # JSON text kept as sent


def test_the_schema_says_the_unit_of_a_timestamp() -> None:
    """timestamp(0..3)/DATETIME(0..3) come as epoch milliseconds, (4..6) as microseconds: 2024-01-02
    must not be read as microseconds (1970-01-20)."""
    from cdc_logs.schema import Column, Semantic
    from cdc_logs.sinks.sql_apply.sql_types import Binder

    table = sa.Table("t", sa.MetaData(), sa.Column("ms", sa.DateTime()), sa.Column("us", sa.DateTime()))
    columns = {
        "ms": Column("ms", "int64", Semantic.TIMESTAMP, "DATETIME", 3),
        "us": Column("us", "int64", Semantic.MICRO_TIMESTAMP, "DATETIME", 6),
    }
    binder = Binder(table, columns, "sqlite")
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 678000)
    ms = int((when - dt.datetime(1970, 1, 1)).total_seconds() * 1000)
    assert binder.row({"ms": ms, "us": ms * 1000}) == {"ms": when, "us": when}


def test_a_value_the_target_cannot_hold_is_refused_naming_the_column() -> None:
    from cdc_logs.schema import Column, Semantic
    from cdc_logs.sinks.sql_apply.sql_types import Binder

    table = sa.Table("t", sa.MetaData(), sa.Column("d", sa.Date()))
    binder = Binder(table, {"d": Column("d", "int32", Semantic.DATE, "DATE")}, "postgresql")
    with pytest.raises(CdcError) as err:
        binder.row({"d": 2**31 - 1})  # Postgres 'infinity'
    assert err.value.kind is ErrorKind.SINK_REJECTED and "'d'" in err.value.message


def _typed_event(n: int, value: Any, column: Any, table: str = "tv") -> ChangeEvent:
    from cdc_logs.schema import Column, TableSchema

    schema = TableSchema("db", "main", table, (Column("id", "int32", key=True), column))
    return ChangeEvent(
        Op.CREATE,
        SourceInfo("test", "p", "db", table, schema="main"),
        after={"id": n, column.name: value},
        key={"id": n},
        position=Watermark(SERVER, (n,)),
        schema=schema,
    )


def _rows(path: Path, table: str = "tv") -> list[Any]:
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        return list(conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")))


def test_auto_create_of_a_keyless_event_names_the_missing_key(tmp_path: Path) -> None:
    sink = SqlSink(f"sqlite:///{tmp_path / 't.db'}", auto_create=True, target_schema=None)
    sink.open()
    keyless = event(1, "c", after={"temperature": 21.5})
    assert keyless.key is None
    with pytest.raises(CdcError) as err:
        sink.write([keyless])
    assert "has no key" in err.value.message and "key_fields" in (err.value.hint or "")
    assert "auto_create: true" not in (err.value.hint or "")
    sink.close()


def test_created_target_table_is_logged_once(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused batch is retried in halves (delivery.py); on Postgres each retry's transaction
    creates the table again (the rollback undid it): said once, not per retry."""
    import cdc_logs.sinks.sql_apply.apply as sql_module

    said: list[str] = []
    monkeypatch.setattr(sql_module.log, "info", lambda event, **kw: said.append(event))
    sink = target.sink(auto_create=True)
    sink.open()
    for _ in range(3):
        with pytest.raises(CdcError):
            sink.write([make_event(1), event(2, "c", after={"id": 2, "v": 2**70})])  # v: beyond BIGINT
    sink.write([make_event(1)])
    assert said.count("created target table") == 1
    assert target.rows() == [(1, 1)]
    sink.close()


def test_a_refused_batch_logs_no_psycopg_pipeline_noise(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg warns "error ignored terminating <psycopg.Pipeline ...>" on leaving a pipeline after
    the error it raises anyway (and the sink reports): noise on stderr, filtered out."""
    sink = target.sink(auto_create=True)
    sink.open()
    sink.write([make_event(1)])
    rows = [event(n, "c", after={"id": n, "v": 2**63 if n == 5 else n}) for n in range(2, 9)]
    with caplog.at_level(logging.WARNING), pytest.raises(CdcError):
        sink.write(rows)  # v: beyond BIGINT, refused by the server
    assert not [r for r in caplog.records if "error ignored terminating" in r.getMessage()]
    sink.close()


def test_a_changed_schema_never_reuses_the_old_decoders(tmp_path: Path) -> None:
    """Found in review: decoders were cached by the schema object's address, which a new schema can
    reuse after the old one is freed (here microseconds become milliseconds, as after an ALTER)."""
    from cdc_logs.schema import Column, Semantic

    sink = SqlSink(f"sqlite:///{tmp_path / 't.db'}", auto_create=True, target_schema=None)
    sink.open()
    sink.write([_typed_event(1, 1_700_000_000_000_000, Column("t", "int64", Semantic.MICRO_TIMESTAMP))])
    sink.write([_typed_event(2, 1_700_000_000_000, Column("t", "int64", Semantic.TIMESTAMP))])
    sink.close()
    assert [str(r[1])[:10] for r in _rows(tmp_path / "t.db")] == ["2023-11-14", "2023-11-14"]


def test_precise_decimals_keep_every_digit_and_unsigned_bigints_fit(tmp_path: Path) -> None:
    import base64

    from cdc_logs.schema import Column, Semantic

    unscaled = 12345678901234567890123456789012345678
    raw = base64.b64encode(unscaled.to_bytes(17, "big", signed=True)).decode()
    dec = Column("d", "bytes", Semantic.DECIMAL, "NUMERIC", 38, 4)
    sink = SqlSink(f"sqlite:///{tmp_path / 't.db'}", auto_create=True, target_schema=None)
    sink.open()
    sink.write([_typed_event(1, raw, dec)])
    sink.write([_typed_event(1, 2**64 - 1, Column("u", "int64", None, "BIGINT UNSIGNED"), table="tu")])
    sink.close()
    assert _rows(tmp_path / "t.db")[0][1] == "1234567890123456789012345678901234.5678"
    assert _rows(tmp_path / "t.db", "tu")[0][1] == str(2**64 - 1)


def test_a_time_outside_a_day_is_refused_not_wrapped(tmp_path: Path) -> None:
    """A MySQL TIME of -01:00:00 or 25:00:00 fits only a MySQL target; elsewhere it is refused (and
    dead-lettered by the pipeline), never written as 23:00 or 01:00."""
    from cdc_logs.schema import Column, Semantic

    column = Column("t", "int64", Semantic.MICRO_TIME, "TIME", 6)
    sink = SqlSink(f"sqlite:///{tmp_path / 't.db'}", auto_create=True, target_schema=None)
    sink.open()
    sink.write([_typed_event(1, 3_600_000_000, column)])
    for n, micros in ((2, -3_600_000_000), (3, 25 * 3_600_000_000)):
        with pytest.raises(CdcError) as err:
            sink.write([_typed_event(n, micros, column)])
        assert err.value.kind is ErrorKind.SINK_REJECTED and "not a time of day" in err.value.message
    sink.close()
    assert [r[0] for r in _rows(tmp_path / "t.db")] == [1]


def test_an_integer_column_for_a_timestamp_keeps_the_envelope_integer(tmp_path: Path) -> None:
    """A target made by hand (or by an older auto_create, issue 12) with BIGINT for a DATETIME(3):
    it keeps getting epoch milliseconds, as the schema's unit says, not a datetime it would refuse."""
    from cdc_logs.schema import Column, Semantic

    path = tmp_path / "t.db"
    with sa.create_engine(f"sqlite:///{path}").begin() as conn:
        conn.execute(sa.text("CREATE TABLE tv (id INTEGER PRIMARY KEY, t BIGINT)"))
    sink = SqlSink(f"sqlite:///{path}", target_schema=None)
    sink.open()
    sink.write([_typed_event(1, 1_700_000_000_123, Column("t", "int64", Semantic.TIMESTAMP, "DATETIME", 3))])
    sink.close()
    assert [tuple(r) for r in _rows(path)] == [(1, 1_700_000_000_123)]


def test_json_text_is_stored_as_sent_and_none_is_sql_null(tmp_path: Path) -> None:
    """Parsing the source's JSON text would round big numbers through floats and reorder a json
    column's keys; a JSON NULL column must not become the JSON text null."""
    from cdc_logs.schema import Column, Semantic

    column = Column("j", "string", Semantic.JSON, "JSON")
    text = '{"b": 12345678901234567890.123456789, "a" : [1,2]}'
    sink = SqlSink(f"sqlite:///{tmp_path / 't.db'}", auto_create=True, target_schema=None)
    sink.open()
    sink.write([_typed_event(1, text, column), _typed_event(2, None, column)])
    sink.close()
    with sa.create_engine(f"sqlite:///{tmp_path / 't.db'}").connect() as conn:
        rows = list(conn.execute(sa.text("SELECT id, j, j IS NULL FROM tv ORDER BY id")))
    assert [tuple(r) for r in rows] == [(1, text, 0), (2, None, 1)]


def test_logical_decoding_messages_are_skipped_without_a_marker(target: Target) -> None:
    """Op m belongs to no table: nothing is applied for it, and no replay marker names a table
    `<db>..` (one was written before); the row events beside it are applied as usual."""
    target.create("CREATE TABLE {t} (id INTEGER PRIMARY KEY, v INTEGER)")
    message = ChangeEvent(
        op=Op.MESSAGE,
        source=SourceInfo("test", "p", "db", "", schema=""),
        key={"prefix": "audit"},
        ts_ms=2000,
        content={"prefix": "audit", "content": "aGk="},
        position=Watermark(SERVER, (1,)),
    )
    sink = target.sink()
    sink.open()
    sink.write([message, make_event(2), message])
    sink.write([message])
    sink.close()
    assert target.rows() == [(2, 2)]
    with target.engine.connect() as conn:
        applied = f'"{target.schema}".cdc_applied' if target.schema else "cdc_applied"
        markers = conn.execute(
            sa.text(f"SELECT source_table FROM {applied} WHERE sink = :s"), {"s": f"cdc/{target.sink_name}"}
        ).all()
    assert [m[0].split("|")[3] for m in markers] == ["db.main.t"]  # the row event's table only


def test_plain_mysql_url_uses_pymysql(mariadb_dsn: str, unique_name: str) -> None:
    """`mysql://` exactly as `scripts/stack env` gives it (and as the MariaDB source takes it) opens
    with PyMySQL: SQLAlchemy's default for it, MySQLdb, is not installed."""
    assert mariadb_dsn.startswith("mysql://")
    sink = SqlSink(mariadb_dsn, target_schema=None, table=unique_name, auto_create=True, name=unique_name)
    sink.open()
    try:
        sink.write([make_event(1)])
        with sink._engine.connect() as conn:  # type: ignore[union-attr]
            assert conn.execute(sa.text(f"SELECT id, v FROM `{unique_name}`")).all() == [(1, 1)]
    finally:
        with sink._engine.begin() as conn:  # type: ignore[union-attr]
            conn.execute(sa.text(f"DROP TABLE IF EXISTS `{unique_name}`"))
            conn.execute(sa.text("DELETE FROM cdc_applied WHERE sink = :s"), {"s": f"cdc/{unique_name}"})
        sink.close()


def test_a_driver_that_is_not_installed_is_a_config_error(mariadb_dsn: str) -> None:
    """Not a transient 'sink unavailable' retried forever: retrying cannot install a module."""
    url = mariadb_dsn.replace("mysql://", "mysql+mysqldb://", 1)
    with pytest.raises(CdcError) as err:
        SqlSink(url).open()
    assert err.value.kind is ErrorKind.CONFIG
    assert "'mysqldb'" in err.value.message and "pip install 'mysqlclient'" in err.value.message
    assert "mysql+pymysql://" in err.value.message
    with pytest.raises(ValueError, match="mysqlclient"):  # `config validate` says it too
        SqlSinkConfig(type="mysql", url=url)
    assert SqlSinkConfig(type="mysql", url=mariadb_dsn).url is not None


def test_a_missing_target_schema_is_an_operator_error_naming_create_schema(
    pg_dsn: str, unique_name: str
) -> None:
    """cdc-logs creates tables, never schemas: a schema that is not there stops the pipeline with
    the statement that creates it, instead of dead-lettering every event with the database's word."""
    fixed = SqlSink(pg_dsn, target_schema=unique_name, auto_create=True, name=unique_name)
    with pytest.raises(CdcError) as err:
        fixed.open()  # one fixed schema: said at open
    assert err.value.kind is ErrorKind.NOT_FOUND and f'CREATE SCHEMA "{unique_name}"' not in err.value.message
    assert f"CREATE SCHEMA {unique_name}" in (err.value.hint or ""), err.value.hint
    templated = SqlSink(pg_dsn, target_schema=unique_name + "{table}", auto_create=True, name=unique_name)
    templated.open()
    try:
        with pytest.raises(CdcError) as err:
            templated.write([make_event(1)])  # a template: said at first use
        assert err.value.kind is ErrorKind.NOT_FOUND
        assert f"CREATE SCHEMA {unique_name}t" in (err.value.hint or ""), err.value.hint
    finally:
        templated.close()


def test_sigterm_during_a_sink_open_backoff_ends_the_run_promptly(tmp_path: Path) -> None:
    """A target that is down: `run` waits for it with the retry backoff (here 30 s), and SIGTERM
    cuts that wait short instead of sitting it out. With a second destination (fan-out), the stop
    used to wait 30 s more for the closed sink to deliver what was spooled for it."""
    source = tmp_path / "source.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1, 1)")  # spooled for the closed sink
    config = {
        "name": "sigterm_open",
        "source": {"type": "sqlite", "path": str(source), "tables": ["t"]},
        "destinations": [
            {"type": "file", "path": str(tmp_path / "out.jsonl")},
            {"type": "postgresql", "url": "postgresql://cdc@127.0.0.1:1/none"},
        ],
        "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
        "sync": {
            "mode": "continuous",
            "retry": {"max_attempts": 100, "initial_backoff_ms": 30000, "max_backoff_ms": 30000},
            "fanout": {"spool_dir": str(tmp_path / "spool")},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "run.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while "sink unavailable, retrying" not in log.read_text() or not (tmp_path / "out.jsonl").exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(20)
        assert time.monotonic() - started < 10, log.read_text()
        assert proc.returncode == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
