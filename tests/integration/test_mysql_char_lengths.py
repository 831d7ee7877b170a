"""CHAR/VARCHAR lengths: a streamed row's schema says what the snapshot's says, in characters.

The binlog's TABLE_MAP gives a CHAR/VARCHAR column's size in bytes (characters x the most bytes a
character of its charset takes: VARCHAR(40) in utf8mb4 is 160), information_schema its length in
characters. A schema that changes from the snapshot's row to the first streamed one made the SQL
apply sink ask for `ALTER COLUMN ... TYPE VARCHAR(160)` on a VARCHAR(40) target, and auto_create
size a new column 4x too wide. BINARY/VARBINARY stay in bytes on both paths.

The charset comes from the column's collation id; python-mysql-replication does not know MariaDB's
UCA 14.0.0 collations (it took them for UTF-8: a utf16_uca1400_ai_ci 'é' stopped the stream):
binlog_values resolves them, checked here against the server's own collation table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pymysql
import pytest

from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.mysql.binlog_values import mariadb_charset
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader
from cdc_logs.readers.mysql.schema import _MAX_BYTES_PER_CHAR
from tests.integration.test_debezium_equivalence import Collector

# column -> (DDL, its declared length: characters, bytes for the binary ones)
COLUMNS = {
    "u4": ("VARCHAR(40) CHARACTER SET utf8mb4", 40),
    "c4": ("CHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", 10),
    "u3": ("VARCHAR(33) CHARACTER SET utf8mb3", 33),
    "c3": ("CHAR(5) CHARACTER SET utf8mb3", 5),
    "l1": ("VARCHAR(21) CHARACTER SET latin1", 21),
    "cl": ("CHAR(7) CHARACTER SET latin1", 7),
    "w2": ("VARCHAR(9) CHARACTER SET ucs2", 9),
    "w4": ("VARCHAR(11) CHARACTER SET utf32", 11),
    "np": ("VARCHAR(12) CHARACTER SET latin1 COLLATE latin1_swedish_nopad_ci", 12),
    "ua": ("VARCHAR(14) CHARACTER SET utf16 COLLATE utf16_uca1400_ai_ci", 14),
    "ub": ("CHAR(3) CHARACTER SET utf8mb4 COLLATE utf8mb4_uca1400_nopad_as_cs", 3),
    "vb": ("VARBINARY(13)", 13),
    "bn": ("BINARY(6)", 6),
}


@pytest.fixture
def events(mariadb_dsn: str) -> Iterator[list[ChangeEvent]]:
    name = "cl_" + uuid.uuid4().hex[:10]
    settings = parse_dsn(mariadb_dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    columns = ", ".join(f"{column} {ddl}" for column, (ddl, _) in COLUMNS.items())
    values = ", ".join("'é'" if "VARCHAR" in ddl else "'x'" for ddl, _ in COLUMNS.values())
    collector: Collector | None = None
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, {columns})")
            cur.execute(f"INSERT INTO {name} VALUES (1, {values})")
        reader = MysqlReader(
            settings, [name], pipeline_name="char-lengths", heartbeat_s=1.0, temporary=True, snapshot=True
        )
        collector = Collector(reader).start()
        assert len(collector.wait_for(1, 30)) == 1, "no snapshot row"
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {name} VALUES (2, {values})")
        yield collector.wait_for(2, 30)
    finally:
        if collector is not None:
            collector.close()
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


def test_streamed_and_snapshot_rows_give_the_declared_lengths(events: list[ChangeEvent]) -> None:
    assert [e.op.value for e in events] == ["r", "c"]
    snapshot, streamed = (e.schema for e in events)
    assert snapshot is not None and streamed is not None
    declared = {column: length for column, (_, length) in COLUMNS.items()}
    for path, schema in (("snapshot", snapshot), ("streamed", streamed)):
        lengths = {c.name: c.length for c in schema.columns if c.name in COLUMNS}
        assert lengths == declared, path
    kinds = {c.name: (c.type, c.source_type) for c in streamed.columns}
    assert kinds == {c.name: (c.type, c.source_type) for c in snapshot.columns}
    assert kinds["vb"] == ("bytes", "VARBINARY") and kinds["c4"] == ("string", "CHAR")
    assert events[0].after == events[1].after | {"id": 1}  # the same text on both paths


def test_every_collation_id_and_charset_of_the_server_is_known(mariadb_dsn: str) -> None:
    conn = pymysql.connect(**parse_dsn(mariadb_dsn).kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY"
            )
            rows = cur.fetchall()
            cur.execute("SHOW CHARACTER SET")
            maxlen = {row[0]: int(row[3]) for row in cur.fetchall()}
    finally:
        conn.close()
    assert len(rows) > 1000  # MariaDB 10.10+: the NO PAD and UCA 14.0.0 collations too
    named = {collation: (charset, mariadb_charset(collation)) for collation, charset in rows}
    assert {k: v for k, v in named.items() if v[0] != v[1]} == {}
    # and the bytes a character takes at most, by which schema.py divides, are the server's Maxlen
    assert {name: _MAX_BYTES_PER_CHAR.get(name, 1) for name in maxlen} == maxlen
