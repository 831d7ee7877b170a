"""Initial snapshot: every row of the captured tables, consistent with a binlog GTID position.

MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` makes an InnoDB read view, and in the same
session `SHOW STATUS LIKE 'binlog_snapshot_%'` gives the binlog file/position that view corresponds
to (MariaDB keeps them consistent with the commit order); `BINLOG_GTID_POS(file, pos)` turns that into
a GTID position. No lock is taken: writers go on during the whole snapshot. Streaming then resumes at
that GTID position, so every transaction is either in the snapshot or streamed, never both or neither.

MySQL has no such status variables, so the MySQL flavour takes a global read lock only for the instant
it starts the transaction and reads `@@global.gtid_executed` and the binlog file/position (`FLUSH
TABLES WITH READ LOCK`, released at once, as Debezium and mysqldump do); it needs the RELOAD privilege.

What the snapshot does hold: the read view (the undo log grows while it is open) and shared metadata
locks on the tables it has read until it ends, so an ALTER TABLE on a captured table waits for the
snapshot to finish. Only transactional (InnoDB) tables are consistent; MyISAM/Aria tables are read as
they are at that moment.

Rows are read in primary-key order in chunks (keyset pagination: `WHERE (pk) > (last) ORDER BY pk
LIMIT n`), so memory stays bounded and the pipeline's backpressure pauses the read; tables without a
primary key are streamed with an unbuffered cursor.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pymysql
import pymysql.cursors

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql import types
from cdc_logs.readers.mysql.connection import MysqlSettings, classify, connect, query_one
from cdc_logs.readers.mysql.schema import SNAPSHOT_COLUMNS_QUERY, snapshot_schema
from cdc_logs.schema import TableSchema

log = get_logger(__name__)

_GEOMETRY = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon"}
_GEOMETRY |= {"geometrycollection", "geomcollection"}
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(slots=True)
class SnapshotTable:
    schema: str
    table: str
    key: list[str]
    converters: dict[str, types.Converter] = field(default_factory=dict)
    select_list: str = "*"
    table_schema: TableSchema | None = None

    @property
    def sql_name(self) -> str:
        return f"{quote(self.schema)}.{quote(self.table)}"


def select_expression(name: str, data_type: str) -> str:
    """How the snapshot selects a column so that the text protocol carries its exact value.

    FLOAT is printed by the server with 6 significant digits (16777216 reads back as 16777200), so it
    is selected as the DOUBLE holding the same 32-bit value, which is printed exactly; types.py then
    writes the shortest decimal of the float, as for the binlog's 4 bytes.
    """
    if data_type.lower() == "float":
        return f"CAST({quote(name)} AS DOUBLE) AS {quote(name)}"
    return quote(name)


def column_converter(
    data_type: str, column_type: str, precision: int | None, flavor: str, nullable: bool = True
) -> Any:
    """The converter for a value PyMySQL read over the text protocol (see types.py)."""
    kind = data_type.lower()
    fsp = int(precision or 0)
    if kind == "float":
        return types.float32_value
    if kind == "decimal":
        return types.decimal_value
    if kind == "bit":
        match = re.search(r"\((\d+)\)", column_type)
        nbits = int(match.group(1)) if match else 1
        return lambda v: types.bit_from_text(v, nbits)
    if kind == "set":
        definition = [m.replace("''", "'") for m in _QUOTED.findall(column_type)]
        return lambda v: types.set_value(v, definition)
    if kind == "json" and flavor == "mysql":
        # MySQL prints JSON with spaces; the binlog path writes it compactly: normalise.
        return lambda v: orjson.dumps(orjson.loads(v)).decode()
    # Zero dates arrive as text (PyMySQL cannot parse them): null, or the epoch in a NOT NULL column.
    if kind == "date":
        return lambda v: types.date_value(v, nullable)
    if kind == "datetime":
        return lambda v: types.datetime_value(v, fsp, nullable)
    if kind == "timestamp":  # the session runs in UTC (connection.connect)
        return lambda v: types.timestamp_value(v, fsp, nullable)
    if kind == "time":
        return types.time_value
    if kind in _GEOMETRY:
        return types.geometry_value
    return None


def describe_table(
    conn: pymysql.connections.Connection, schema: str, table: str, flavor: str
) -> SnapshotTable:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION, IS_NULLABLE"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s"
            " ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        columns = cur.fetchall()
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
            " AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (schema, table),
        )
        key = [r[0] for r in cur.fetchall()]
    if not columns:
        raise CdcError(
            ErrorKind.NOT_FOUND, f"table {schema}.{table} does not exist", "check the `tables` of the source"
        )
    info = SnapshotTable(schema, table, key)
    for name, data_type, column_type, precision, is_nullable in columns:
        nullable = str(is_nullable).upper() != "NO"
        converter = column_converter(data_type, column_type, precision, flavor, nullable)
        if converter is not None:
            info.converters[name] = converter
    info.select_list = ", ".join(select_expression(row[0], row[1]) for row in columns)
    return info


class Snapshot:
    """`with Snapshot(...) as snap:` then `snap.position` and `snap.rows()`."""

    def __init__(
        self,
        settings: MysqlSettings,
        *,
        flavor: str,
        server: str,
        tables: list[tuple[str, str]],
        chunk_size: int = 2000,
    ) -> None:
        self.settings = settings
        self.flavor = flavor
        self.server = server
        self.tables = tables
        self.chunk_size = chunk_size
        self.position = BinlogPosition(server=server, flavor=flavor)
        self._conn: pymysql.connections.Connection | None = None

    def __enter__(self) -> Snapshot:
        conn = connect(self.settings)
        self._conn = conn
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self.position = self._begin_mariadb(conn) if self.flavor == "mariadb" else self._begin_mysql(conn)
        except pymysql.MySQLError as exc:
            self.__exit__()
            raise classify(exc, "starting the consistent snapshot") from exc
        except BaseException:
            self.__exit__()
            raise
        log.info("snapshot started", position=self.position.describe(), tables=len(self.tables))
        return self

    def _begin_mariadb(self, conn: pymysql.connections.Connection) -> BinlogPosition:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k).lower(): v for k, v in cur.fetchall()}
        file, pos = status.get("binlog_snapshot_file"), status.get("binlog_snapshot_position")
        if not file or pos is None:
            raise CdcError(
                ErrorKind.CONFIG,
                "the server reports no binlog snapshot position",
                "enable log_bin on the server",
            )
        (gtid,) = query_one(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (file, int(pos)))
        if gtid is None:
            raise CdcError(
                ErrorKind.INTERNAL,
                f"BINLOG_GTID_POS({file}, {pos}) returned NULL",
                "retry; if it persists, report it with the server version",
            )
        return BinlogPosition(server=self.server, file=file, pos=int(pos), gtid=gtid, flavor="mariadb")

    def _begin_mysql(self, conn: pymysql.connections.Connection) -> BinlogPosition:
        with conn.cursor() as cur:
            try:
                cur.execute("FLUSH TABLES WITH READ LOCK")
            except pymysql.err.OperationalError as exc:
                raise CdcError(
                    ErrorKind.PERMISSION,
                    f"the MySQL snapshot needs a brief global read lock: {exc.args[-1]}",
                    "GRANT RELOAD ON *.* TO the CDC user, or set `snapshot: false` on the source",
                ) from exc
            try:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SELECT @@global.gtid_executed")
                (gtid,) = cur.fetchone() or ("",)
                try:
                    cur.execute("SHOW BINARY LOG STATUS")
                except pymysql.err.ProgrammingError:
                    cur.execute("SHOW MASTER STATUS")
                status = cur.fetchone()
            finally:
                cur.execute("UNLOCK TABLES")
        file, pos = (status[0], int(status[1])) if status else ("", 0)
        gtid = "".join(str(gtid or "").split())  # MySQL wraps long sets over lines
        return BinlogPosition(server=self.server, file=file, pos=pos, gtid=gtid, flavor="mysql")

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.rollback()  # read-only: ends the read view and releases the metadata locks
        with contextlib.suppress(Exception):
            conn.close()

    def rows(self) -> Iterator[tuple[SnapshotTable, dict[str, Any]]]:
        """(table, converted row) for every row of every table, each table in primary-key order."""
        conn = self._conn
        if conn is None:
            raise CdcError(ErrorKind.USAGE, "Snapshot.rows() outside `with Snapshot(...)`")
        for schema, table in self.tables:
            info = describe_table(conn, schema, table, self.flavor)
            with conn.cursor() as cur:
                cur.execute(SNAPSHOT_COLUMNS_QUERY, (schema, table))
                info.table_schema = snapshot_schema(cur.fetchall(), schema, table, info.key, self.flavor)
            count = 0
            for row in self._table_rows(conn, info):
                count += 1
                yield info, row
            log.info("snapshot table done", table=f"{schema}.{table}", rows=count)

    def _table_rows(
        self, conn: pymysql.connections.Connection, info: SnapshotTable
    ) -> Iterator[dict[str, Any]]:
        if not info.key:
            # No key to page on: stream the whole table once (an unbuffered cursor keeps memory flat).
            with conn.cursor(pymysql.cursors.SSDictCursor) as cur:
                cur.execute(f"SELECT {info.select_list} FROM {info.sql_name}")
                while batch := cur.fetchmany(self.chunk_size):
                    for row in batch:
                        yield _convert(row, info)
            return
        keys = ", ".join(quote(k) for k in info.key)
        select = f"SELECT {info.select_list} FROM {info.sql_name}"
        first = f"{select} ORDER BY {keys} LIMIT %s"
        after = f"{select} WHERE ({keys}) > ({', '.join(['%s'] * len(info.key))}) ORDER BY {keys} LIMIT %s"
        last: list[Any] | None = None
        while True:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                if last is None:
                    cur.execute(first, (self.chunk_size,))
                else:
                    cur.execute(after, (*last, self.chunk_size))
                batch = cur.fetchall()
            for row in batch:
                yield _convert(row, info)
            if len(batch) < self.chunk_size:
                return
            last = [batch[-1][k] for k in info.key]


def _convert(row: dict[str, Any], info: SnapshotTable) -> dict[str, Any]:
    out = dict(row)
    for name, converter in info.converters.items():
        value = out.get(name)
        if value is not None:
            out[name] = converter(value)
    return out
