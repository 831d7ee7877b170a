"""row_images.py against python-mysql-replication's own row parser, on a real MariaDB binlog.

Every column type of the type torture test (test_mysql_types.CASES: each at its extremes, zero dates,
every charset, NULL) plus a wide table with all of them side by side is written in multi-row
statements, updated (a key change, a value set to NULL and back) and deleted, under the row images
FULL, MINIMAL and NOBLOB. Every rows event of it is then parsed both ways: `RowImages.rows(event)`
first (it reads the bytes without consuming them), then the library's `event.rows`. The two must be
equal value by value and type by type (a `Decimal` is not a float, a `str` not `bytes`), including
the reasons the library gives for a None.

A table the parser does not cover (a JSON or GEOMETRY column) must be left to the library, and every
other table must be parsed here: the test fails if the parser quietly fell back where it should not.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

import cdc_logs.readers.mysql.convert  # noqa: F401 - installs binlog_values' corrections, as the reader does
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.row_images import RowImages
from tests.integration.test_mysql_types import CASES, WIDE

pytestmark = pytest.mark.integration

LIBRARY_ONLY = {FIELD_TYPE.JSON, FIELD_TYPE.GEOMETRY}


def _connect_admin(dsn: str) -> pymysql.connections.Connection:
    """The workload's connection: choosing a session's binlog_row_image needs BINLOG ADMIN, which the
    reader's user does not have. scripts/stack's MariaDB has root on loopback without a password;
    another server names its admin in CDC_MARIADB_ADMIN_DSN."""
    admin = os.environ.get("CDC_MARIADB_ADMIN_DSN", "").strip()
    kwargs = parse_dsn(admin or dsn).kwargs()
    if not admin:
        kwargs.update(user="root", password="")
    try:
        return pymysql.connect(
            **kwargs, autocommit=True, init_command="SET time_zone = '+00:00', sql_mode = ''"
        )
    except pymysql.MySQLError as exc:
        raise AssertionError(
            f"no admin connection to MariaDB ({exc}): set CDC_MARIADB_ADMIN_DSN to a user with BINLOG ADMIN"
        ) from None


def strictly_equal(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down (1 == 1.0 == Decimal(1) is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(strictly_equal(a[k], b[k]) for k in a)  # key order too
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return str(a) == str(b)  # the same digits and exponent, not only the same number
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)


def _workload(db: pymysql.connections.Connection, tables: dict[str, str]) -> None:
    with db.cursor() as cur:
        for image in ("FULL", "MINIMAL", "NOBLOB"):
            cur.execute(f"SET SESSION binlog_row_image = '{image}'")
            for case in CASES:
                table = tables[case.name]
                cur.execute(f"DELETE FROM {table}")
                # One statement: one rows event with many rows (the parser walks them back to back).
                rows = ", ".join(f"({i}, {literal})" for i, literal in enumerate(case.rows, 1))
                cur.execute(f"INSERT INTO {table} VALUES {rows}")
                cur.execute(f"UPDATE {table} SET id = id + 1000")  # every row, a key change
                cur.execute(f"UPDATE {table} SET v = NULL WHERE id = 1001")
                cur.execute(f"UPDATE {table} SET v = {case.rows[0]} WHERE id = 1001")
                cur.execute(f"DELETE FROM {table} WHERE id > 1001")
            wide = tables["wide"]
            cur.execute(f"DELETE FROM {wide}")
            values = [
                ["NULL"] * len(WIDE),
                [c.values[0] for c in WIDE],
                [c.values[-1] for c in WIDE],
            ]
            cur.execute(
                f"INSERT INTO {wide} VALUES "
                + ", ".join(f"({i}, {', '.join(row)})" for i, row in enumerate(values, 1))
            )
            cur.execute(f"UPDATE {wide} SET id = id + 10, c_{WIDE[1].name} = NULL")
            cur.execute(f"DELETE FROM {wide}")


@pytest.fixture(scope="module")
def events(mariadb_dsn: str) -> Iterator[list[tuple[str, Any, Any, bool]]]:
    """(table, parsed here, parsed by the library, table has a library-only column) per rows event."""
    db = _connect_admin(mariadb_dsn)
    prefix = "ri_" + uuid.uuid4().hex[:8] + "_"
    tables = {c.name: prefix + c.name for c in CASES} | {"wide": prefix + "wide", "end": prefix + "end"}
    try:
        with db.cursor() as cur:
            for case in CASES:
                cur.execute(f"CREATE TABLE {tables[case.name]} (id INT PRIMARY KEY, v {case.ddl})")
            columns = ", ".join(f"c_{c.name} {c.ddl}" for c in WIDE)
            cur.execute(f"CREATE TABLE {tables['wide']} (id INT PRIMARY KEY, {columns})")
            cur.execute(f"CREATE TABLE {tables['end']} (id INT PRIMARY KEY)")
            cur.execute("SELECT @@gtid_binlog_pos")
            (start,) = cur.fetchone()  # type: ignore[misc]
        _workload(db, tables)
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {tables['end']} VALUES (1)")
        stream = BinLogStreamReader(
            parse_dsn(mariadb_dsn).kwargs(database=False),
            server_id=3_998_000_000 + int(time.time()) % 100_000,
            blocking=True,
            auto_position=str(start),
            is_mariadb=True,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
            only_tables=list(tables.values()),
            enable_logging=False,
        )
        out: list[tuple[str, Any, Any, bool]] = []
        deadline = time.monotonic() + 120
        try:
            for event in stream:
                if event.table == tables["end"]:
                    break
                parser = RowImages.for_columns(
                    event.columns, ignore_decode_errors=bool(event._ignore_decode_errors)
                )
                ours = parser.rows(event) if parser is not None else None
                library_only = any(c.type in LIBRARY_ONLY for c in event.columns)
                out.append((event.table, ours, event.rows, library_only))
                assert time.monotonic() < deadline, "the binlog did not reach the end marker"
        finally:
            stream.close()
        yield out
    finally:
        with db.cursor() as cur:
            for table in tables.values():
                cur.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()


def test_every_case_wrote_rows_events(events: list[tuple[str, Any, Any, bool]]) -> None:
    seen = {table for table, *_ in events}
    assert len(seen) == len(CASES) + 1
    # Three row images x (insert, key change, NULL, value, delete) per case, and more for the wide table.
    assert len(events) >= 3 * 5 * len(CASES)


def test_tables_with_only_covered_types_are_parsed_here(events: list[tuple[str, Any, Any, bool]]) -> None:
    fell_back = sorted({table for table, ours, _, only in events if ours is None and not only})
    assert fell_back == [], f"left to the library without a reason: {fell_back}"
    taken = sorted({table for table, ours, _, only in events if ours is not None and only})
    assert taken == [], f"parsed here despite a library-only column: {taken}"


def test_each_event_parses_to_exactly_what_the_library_returns(
    events: list[tuple[str, Any, Any, bool]],
) -> None:
    compared = 0
    for table, ours, library, _ in events:
        if ours is None:
            continue
        assert len(ours) == len(library), table
        for mine, theirs in zip(ours, library, strict=True):
            assert strictly_equal(mine, theirs), f"{table}:\n here:    {mine!r}\n library: {theirs!r}"
        compared += len(ours)
    assert compared > 500  # the comparison ran on the real volume, not on a handful of rows


def test_partial_images_mark_absent_columns_as_the_library_does(
    events: list[tuple[str, Any, Any, bool]],
) -> None:
    absent = [
        row
        for _, ours, _, _ in events
        if ours is not None
        for row in ours
        if "cols bitmap" in (row.get("none_sources") or row.get("before_none_sources") or {}).values()
    ]
    assert absent, "MINIMAL row images should leave columns out of the before image"


def test_the_reader_itself_never_calls_the_library_row_parser_for_covered_tables(
    mariadb_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's own path (its connection wrapper, its TABLE_MAP handling) reaches the parser: were
    the packet in another state, it would quietly fall back to the library, and this fails."""
    from pymysqlreplication.row_event import RowsEvent

    from cdc_logs.envelope import ChangeEvent
    from cdc_logs.readers.mysql.reader import MysqlReader

    def refuse(self: Any) -> None:
        raise AssertionError(f"the library parsed the rows of {self.schema}.{self.table}")

    monkeypatch.setattr(RowsEvent, "_fetch_rows", refuse)
    db = _connect_admin(mariadb_dsn)
    table = "ri_" + uuid.uuid4().hex[:8] + "_reader"
    try:
        with db.cursor() as cur:
            cur.execute(
                f"CREATE TABLE test.{table} (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))"
            )
        reader = MysqlReader(
            parse_dsn(mariadb_dsn),
            [f"test.{table}"],
            pipeline_name="row-images",
            heartbeat_s=1.0,
            temporary=True,
            decode_process="off",  # in this process, where the library's parser is refused
        )
        reader.open()
        seen: list[dict[str, Any]] = []
        acted = False
        deadline = time.monotonic() + 60
        try:
            for item in reader.stream(None):
                if not acted:
                    acted = True
                    with db.cursor() as cur:
                        cur.execute(f"INSERT INTO test.{table} VALUES (1, 'a', 1.50), (2, NULL, -2.25)")
                        cur.execute(f"UPDATE test.{table} SET price = 3 WHERE id = 1")
                        cur.execute(f"DELETE FROM test.{table} WHERE id = 2")
                if isinstance(item, ChangeEvent):
                    seen.append({"op": item.op._value_, "before": item.before, "after": item.after})
                    if len(seen) == 4:
                        break
                assert time.monotonic() < deadline, f"timed out after {len(seen)} events"
        finally:
            reader.stop()
            reader.close()
        assert seen == [
            {"op": "c", "before": None, "after": {"id": 1, "name": "a", "price": "1.50"}},
            {"op": "c", "before": None, "after": {"id": 2, "name": None, "price": "-2.25"}},
            {
                "op": "u",
                "before": {"id": 1, "name": "a", "price": "1.50"},
                "after": {"id": 1, "name": "a", "price": "3.00"},
            },
            {"op": "d", "before": {"id": 2, "name": None, "price": "-2.25"}, "after": None},
        ]
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS test.{table}")
        db.close()
