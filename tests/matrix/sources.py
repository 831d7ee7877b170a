"""The matrix's source side: one case per reader, each running the shared workload in its own SQL.

A case creates its table (unique name) with the snapshot rows, gives the pipeline's `source:` config,
runs transactions, reads the table back as typed Python values, and says how its envelope encodes
each column (kind and unit: a timestamp(3) column is epoch milliseconds in the envelope, and so on).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
from psycopg.types.json import Jsonb

from tests.matrix import workload
from tests.matrix.workload import COLUMNS, Op, Tx

# kind, envelope unit (for integer-encoded times)
PG_KINDS: dict[str, tuple[str, str]] = {
    "n": ("int", "us"), "big": ("int", "us"), "dec": ("dec", "us"), "dbl": ("float", "us"),
    "txt": ("text", "us"), "flag": ("bool", "us"), "d": ("date", "us"), "ts3": ("ts", "ms"),
    "ts6": ("ts", "us"), "tstz": ("ts", "us"), "tm": ("time", "us"), "bin": ("bytes", "us"),
    "js": ("json", "us"), "note": ("text", "us"),
}  # fmt: skip


@dataclass
class Run:
    """One matrix run: unique names and a scratch directory."""

    id: str
    tmp: Path
    table: str = ""
    env: dict[str, str] = field(default_factory=dict)


class SourceCase:
    name = ""
    config_type = ""  # the `type:` a user writes
    log_based = True  # exact per-key change sequences are expected
    deletes = moves = True
    kinds: dict[str, tuple[str, str]] = PG_KINDS
    decimal: Any = None  # decoder for Debezium's precise decimals (None: a string)

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        """(db, schema, table) as the envelopes' `source` block names the captured table."""
        raise NotImplementedError

    def prepare(self, run: Run) -> None:
        raise NotImplementedError

    def config(self, run: Run) -> dict[str, Any]:
        raise NotImplementedError

    def execute(self, run: Run, tx: Tx) -> None:
        raise NotImplementedError

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        raise NotImplementedError

    def cleanup(self, run: Run) -> None:
        pass


# -- Postgres ---------------------------------------------------------------------------------------
PG_DDL = """CREATE TABLE public.{t} (id int PRIMARY KEY, n int, big bigint, dec numeric(12,3),
  dbl double precision, txt varchar(200), flag boolean, d date, ts3 timestamp(3), ts6 timestamp(6),
  tstz timestamptz, tm time(6), bin bytea, js jsonb, note text{extra})"""


def _pg_params(row: dict[str, Any]) -> list[Any]:
    return [Jsonb(v) if k == "js" and v is not None else v for k, v in ((c, row[c]) for c in COLUMNS)]


class PostgresCase(SourceCase):
    name = "postgres"
    config_type = "postgresql"
    extra_ddl = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        return (urlsplit(self.dsn).path.lstrip("/"), "public", run.table)

    def prepare(self, run: Run) -> None:
        run.table = f"mx_{run.id}"
        with self.connect() as conn:
            conn.execute(PG_DDL.format(t=run.table, extra=self.extra_ddl))
            self._write(conn, run, workload.Tx(tuple(Op("insert", i) for i in workload.SNAPSHOT_IDS)))

    def config(self, run: Run) -> dict[str, Any]:
        return {
            "type": "postgresql",
            "dsn": self.dsn,
            "tables": [f"public.{run.table}"],
            "slot": f"mx_{run.id}",
            "publication": f"mx_{run.id}",
            "snapshot": True,
            "heartbeat_interval_ms": 1000,
        }

    def execute(self, run: Run, tx: Tx) -> None:
        with self.connect() as conn:
            self._write(conn, run, tx)

    def _write(self, conn: psycopg.Connection[Any], run: Run, tx: Tx) -> None:
        t = run.table
        cols = ", ".join(COLUMNS)
        marks = ", ".join(["%s"] * len(COLUMNS))
        sets = ", ".join(f"{c} = %s" for c in COLUMNS)
        conn.execute("BEGIN")
        inserts = [[op.row_id, *_pg_params(op.row())] for op in tx.ops if op.kind == "insert"]
        if len(inserts) == len(tx.ops):
            # COPY, as ETL tools and pg_restore write: many rows share one WAL record (and one LSN).
            with conn.cursor() as cur, cur.copy(f"COPY {t} (id, {cols}) FROM STDIN") as copy:
                for row in inserts:
                    copy.write_row(row)
        else:
            for op in tx.ops:
                self._op(conn, t, op, cols, marks, sets)
        conn.execute("ROLLBACK" if tx.rollback else "COMMIT")

    def _op(self, conn: psycopg.Connection[Any], t: str, op: Op, cols: str, marks: str, sets: str) -> None:
        if op.kind == "insert":
            conn.execute(
                f"INSERT INTO {t} (id, {cols}) VALUES (%s, {marks})", [op.row_id, *_pg_params(op.row())]
            )
        elif op.kind == "update":
            conn.execute(f"UPDATE {t} SET {sets} WHERE id = %s", [*_pg_params(op.row()), op.row_id])
        elif op.kind == "delete":
            conn.execute(f"DELETE FROM {t} WHERE id = %s", [op.row_id])
        elif op.kind == "move":
            conn.execute(
                f"UPDATE {t} SET id = %s, {sets} WHERE id = %s", [op.new_id, *_pg_params(op.row()), op.row_id]
            )
        else:
            raise AssertionError(op)

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        with self.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(f"SELECT * FROM {run.table}")
            return {row["id"]: dict(row) for row in cur.fetchall()}

    def cleanup(self, run: Run) -> None:
        with self.connect() as conn:
            for _ in range(50):  # the slot may stay active for a moment after the pipeline exits
                busy = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (f"mx_{run.id}",)
                ).fetchone()
                if not busy or not busy[0]:
                    break
                time.sleep(0.2)
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (f"mx_{run.id}",),
            )
            conn.execute(f"DROP PUBLICATION IF EXISTS mx_{run.id}")
            conn.execute(f"DROP TABLE IF EXISTS {run.table}")


# -- polling (Postgres through SQLAlchemy) -----------------------------------------------------------
class PollCase(PostgresCase):
    """The same Postgres table polled by watermark: it sees states, not changes. Hard deletes and
    primary-key changes are invisible to polling (docs/sources/polling.md), so its workload soft-deletes
    and keeps keys, and only the final state is judged."""

    name = "poll"
    config_type = "poll"
    log_based = False
    deletes = moves = False
    extra_ddl = (
        ", updated_at timestamp(6) NOT NULL DEFAULT clock_timestamp(), deleted boolean NOT NULL DEFAULT false"
    )
    kinds = {**PG_KINDS, "ts3": ("ts", "us")}  # a polled datetime is a Python datetime: microseconds

    def config(self, run: Run) -> dict[str, Any]:
        parts = urlsplit(self.dsn)
        return {
            "type": "poll",
            "url": f"postgresql+psycopg://{parts.netloc}{parts.path}",
            "tables": [
                {
                    "table": f"public.{run.table}",
                    "mode": "timestamp+incrementing",
                    "timestamp_column": "updated_at",
                    "incrementing_column": "id",
                    "soft_delete_column": "deleted",
                }
            ],
            "snapshot": True,
            "poll_interval_ms": 100,
        }

    def _op(self, conn: psycopg.Connection[Any], t: str, op: Op, cols: str, marks: str, sets: str) -> None:
        if op.kind == "update":
            conn.execute(
                f"UPDATE {t} SET {sets}, updated_at = clock_timestamp() WHERE id = %s",
                [*_pg_params(op.row()), op.row_id],
            )
        elif op.kind == "soft_delete":
            conn.execute(
                f"UPDATE {t} SET deleted = true, updated_at = clock_timestamp() WHERE id = %s", [op.row_id]
            )
        else:
            super()._op(conn, t, op, cols, marks, sets)

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        return {k: v for k, v in super().state(run).items() if not v["deleted"]}


# -- Debezium topics (a Debezium Postgres connector on the stack's Kafka Connect) ----------------------
def _precise_decimal(value: Any) -> Any:
    """Debezium's default decimal.handling.mode=precise: base64 of the unscaled value, scale 3 here."""
    import base64
    from decimal import Decimal

    if not isinstance(value, str):
        return value
    return Decimal(int.from_bytes(base64.b64decode(value), "big", signed=True)).scaleb(-3)


class DebeziumCase(PostgresCase):
    """The same Postgres table captured by Debezium's own connector (provisioned by cdc-logs from the
    source's `connector_config`, with Debezium's defaults: schemas in the records, precise decimals),
    read from Kafka by cdc-logs' debezium source."""

    name = "debezium"
    config_type = "debezium"
    decimal = staticmethod(_precise_decimal)

    def __init__(self, dsn: str, bootstrap: str, connect_url: str) -> None:
        super().__init__(dsn)
        self.bootstrap, self.connect_url = bootstrap, connect_url

    def config(self, run: Run) -> dict[str, Any]:
        parts = urlsplit(self.dsn)
        return {
            "type": "debezium",
            "bootstrap_servers": self.bootstrap,
            "topic_prefix": f"mx{run.id}",
            "tables": [f"public.{run.table}"],
            "auto_offset_reset": "earliest",
            "connect_url": self.connect_url,
            "connector_config": {
                "name": f"mx{run.id}",
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname": parts.hostname,
                "database.port": str(parts.port or 5432),
                "database.user": unquote(parts.username or ""),
                "database.password": unquote(parts.password or ""),
                "database.dbname": parts.path.lstrip("/"),
                "topic.prefix": f"mx{run.id}",
                "plugin.name": "pgoutput",
                "slot.name": f"mx_{run.id}",
                "publication.name": f"mx_{run.id}",
                "publication.autocreate.mode": "filtered",
                "table.include.list": f"public.{run.table}",
                "snapshot.mode": "initial",
                "provide.transaction.metadata": "true",
            },
        }

    def cleanup(self, run: Run) -> None:
        from cdc_logs.debezium.connect import ConnectClient

        with contextlib.suppress(Exception):
            ConnectClient(self.connect_url).delete(f"mx{run.id}")
        time.sleep(1)
        super().cleanup(run)


# -- MariaDB ------------------------------------------------------------------------------------------
MARIADB_DDL = """CREATE TABLE {t} (id INT PRIMARY KEY, n INT, big BIGINT, `dec` DECIMAL(12,3), dbl DOUBLE,
  txt VARCHAR(200), flag BOOLEAN, d DATE, ts3 DATETIME(3), ts6 DATETIME(6), tstz TIMESTAMP(6) NULL,
  tm TIME(6), bin VARBINARY(64), js JSON, note TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def _my_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "js":
        return json.dumps(value, ensure_ascii=False)
    if name == "tstz":
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # the session runs in UTC
    return value


class MariadbCase(SourceCase):
    name = "mariadb"
    config_type = "mariadb"
    kinds = {**PG_KINDS, "flag": ("bool", "us")}  # BOOLEAN is TINYINT(1): 0/1 in the envelope

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        parts = urlsplit(dsn)
        self.db = parts.path.lstrip("/") or "test"
        self.args = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "database": self.db,
            "charset": "utf8mb4",
            "autocommit": True,
            "init_command": "SET time_zone = '+00:00'",
        }

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        conn = pymysql.connect(**self.args)
        try:
            yield conn
        finally:
            conn.close()

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        return (self.db, None, run.table)

    def prepare(self, run: Run) -> None:
        run.table = f"mx_{run.id}"
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(MARIADB_DDL.format(t=run.table))
        self.execute(run, workload.Tx(tuple(Op("insert", i) for i in workload.SNAPSHOT_IDS)))

    def config(self, run: Run) -> dict[str, Any]:
        return {
            "type": "mariadb",
            "dsn": self.dsn,
            "tables": [f"{self.db}.{run.table}"],
            "snapshot": True,
            "heartbeat_interval_ms": 1000,
        }

    def execute(self, run: Run, tx: Tx) -> None:
        t = run.table
        cols = ", ".join(f"`{c}`" for c in COLUMNS)
        marks = ", ".join(["%s"] * len(COLUMNS))
        sets = ", ".join(f"`{c}` = %s" for c in COLUMNS)

        def params(op: Op) -> list[Any]:
            row = op.row()
            return [_my_value(c, row[c]) for c in COLUMNS]

        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("BEGIN")
            if all(op.kind == "insert" for op in tx.ops):
                cur.executemany(
                    f"INSERT INTO {t} (id, {cols}) VALUES (%s, {marks})",
                    [[op.row_id, *params(op)] for op in tx.ops],
                )
            else:
                for op in tx.ops:
                    if op.kind == "insert":
                        cur.execute(
                            f"INSERT INTO {t} (id, {cols}) VALUES (%s, {marks})", [op.row_id, *params(op)]
                        )
                    elif op.kind == "update":
                        cur.execute(f"UPDATE {t} SET {sets} WHERE id = %s", [*params(op), op.row_id])
                    elif op.kind == "delete":
                        cur.execute(f"DELETE FROM {t} WHERE id = %s", [op.row_id])
                    else:
                        cur.execute(
                            f"UPDATE {t} SET id = %s, {sets} WHERE id = %s",
                            [op.new_id, *params(op), op.row_id],
                        )
            cur.execute("ROLLBACK" if tx.rollback else "COMMIT")

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        with self.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SELECT * FROM {run.table}")
            return {row["id"]: dict(row) for row in cur.fetchall()}

    def cleanup(self, run: Run) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {run.table}")


# -- SQLite (triggers) ---------------------------------------------------------------------------------
SQLITE_DDL = """CREATE TABLE {t} (id INTEGER PRIMARY KEY, n INTEGER, big INTEGER, dec TEXT, dbl REAL,
  txt TEXT, flag INTEGER, d TEXT, ts3 TEXT, ts6 TEXT, tstz TEXT, tm TEXT, bin BLOB, js TEXT, note TEXT)"""


def _lite_value(name: str, value: Any) -> Any:
    """SQLite stores what it is given: the way an application keeps these types in SQLite."""
    if value is None:
        return None
    if name == "dec":
        return str(value)
    if name == "flag":
        return int(value)
    if name == "ts3":
        return value.isoformat(sep=" ", timespec="milliseconds")
    if name in ("d", "ts6", "tstz", "tm"):
        return value.isoformat()
    if name == "js":
        return json.dumps(value, ensure_ascii=False)
    return value


class SqliteCase(SourceCase):
    name = "sqlite"
    config_type = "sqlite"
    kinds = {
        **PG_KINDS,
        "ts3": ("ts", "us"),  # stored as ISO text: no unit involved
    }

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "source.db"

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        return (self.path.name, "main", run.table)

    def prepare(self, run: Run) -> None:
        run.table = f"mx_{run.id}"
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SQLITE_DDL.format(t=run.table))
        self.execute(run, workload.Tx(tuple(Op("insert", i) for i in workload.SNAPSHOT_IDS)))

    def config(self, run: Run) -> dict[str, Any]:
        return {
            "type": "sqlite",
            "path": str(self.path),
            "tables": [run.table],
            "snapshot": True,
            "poll_interval_ms": 50,
        }

    def execute(self, run: Run, tx: Tx) -> None:
        t = run.table
        cols = ", ".join(COLUMNS)
        marks = ", ".join(["?"] * len(COLUMNS))
        sets = ", ".join(f"{c} = ?" for c in COLUMNS)

        def params(op: Op) -> list[Any]:
            row = op.row()
            return [_lite_value(c, row[c]) for c in COLUMNS]

        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in tx.ops:
                if op.kind == "insert":
                    conn.execute(
                        f"INSERT INTO {t} (id, {cols}) VALUES (?, {marks})", [op.row_id, *params(op)]
                    )
                elif op.kind == "update":
                    conn.execute(f"UPDATE {t} SET {sets} WHERE id = ?", [*params(op), op.row_id])
                elif op.kind == "delete":
                    conn.execute(f"DELETE FROM {t} WHERE id = ?", [op.row_id])
                else:
                    conn.execute(
                        f"UPDATE {t} SET id = ?, {sets} WHERE id = ?", [op.new_id, *params(op), op.row_id]
                    )
            conn.execute("ROLLBACK" if tx.rollback else "COMMIT")
        finally:
            conn.close()

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        conn = sqlite3.connect(self.path)
        conn.row_factory = sqlite3.Row
        try:
            return {row["id"]: dict(row) for row in conn.execute(f"SELECT * FROM {run.table}")}
        finally:
            conn.close()


class PostgresDecodeCase(PostgresCase):
    """The Postgres reader with its decode process from the start (`decode_process: on`): the snapshot
    rows from the reader, the stream through the second process (readers/postgres/decode_process.py)."""

    name = "postgres_decode"
    log_marker = "postgres decoding in a second process"  # the run's log proves the process served

    def config(self, run: Run) -> dict[str, Any]:
        return {**super().config(run), "decode_process": "on"}


class MariadbDecodeCase(MariadbCase):
    """The MariaDB reader with the binlog stream in its decode process (`decode_process: on`)."""

    name = "mariadb_decode"
    log_marker = "binlog decoding in a second process"

    def config(self, run: Run) -> dict[str, Any]:
        return {**super().config(run), "decode_process": "on"}


def make_source(name: str, servers: dict[str, str], run: Run) -> SourceCase:
    if name == "oracle":  # no server: the workload as LogMiner rows, replayed (oracle_redo.py)
        from tests.matrix.oracle_redo import OracleReplayCase

        return OracleReplayCase(run.tmp)
    if name == "sqlite":
        return SqliteCase(run.tmp)
    if name == "poll":
        return PollCase(servers["pg"])
    if name == "postgres":
        return PostgresCase(servers["pg"])
    if name == "postgres_decode":
        return PostgresDecodeCase(servers["pg"])
    if name == "mariadb":
        return MariadbCase(servers["mariadb"])
    if name == "mariadb_decode":
        return MariadbDecodeCase(servers["mariadb"])
    if name == "mongo":
        return MongoCase(servers["mongo"])
    return DebeziumCase(servers["pg"], servers["kafka"], servers["connect"])


# -- MongoDB (change streams, the stack's mongo-java-server) ---------------------------------------------
def _mongo_value(name: str, value: Any) -> Any:
    """The matrix's values as an application keeps them in MongoDB: BSON has no date, time or
    microsecond timestamp, so those are dates at midnight and ISO text; decimals are Decimal128."""
    from bson.decimal128 import Decimal128
    from bson.int64 import Int64

    if value is None:
        return None
    if name == "dec":
        return Decimal128(value)
    if name == "big":
        return Int64(value)
    if name == "d":
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if name == "ts3":
        return value.replace(tzinfo=dt.UTC)  # milliseconds: a BSON date
    if name in ("ts6", "tstz", "tm"):
        return value.isoformat()
    return value


class MongoCase(SourceCase):
    """A collection of documents `{_id: id, id: id, <columns>}` read through a change stream in the
    `json` document format (plain JSON objects, key `_id`), the one for row sinks.

    The workload's transactions cannot be transactions here: mongo-java-server has no sessions, so each
    operation is its own change (a rolled-back transaction is simply not run), and `_id` cannot change,
    so a primary-key change is a delete and an insert (the changes the model expects anyway). The
    contract's transaction grouping is tested on recorded mongod documents (tests/unit/test_mongo_convert.py).
    A delete's `before` is the document key (no pre-images here): the replay finds the row by `_id`.
    mongo-java-server's update events carry no `_id` and the update specification as documentKey unless
    its lookup finds the document: updates `$set` the `_id` too (a no-op on a real server).
    """

    name = "mongo"
    config_type = "mongodb"
    kinds = {**PG_KINDS}

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.db = "cdc_matrix"

    def client(self) -> Any:
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10_000, tz_aware=True)

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        return (self.db, None, run.table)

    def prepare(self, run: Run) -> None:
        run.table = f"mx_{run.id}"
        self.execute(run, workload.Tx(tuple(Op("insert", i) for i in workload.SNAPSHOT_IDS)))
        time.sleep(1.02 - time.time() % 1)  # the stream's start point has second resolution here

    def config(self, run: Run) -> dict[str, Any]:
        return {
            "type": "mongodb",
            "uri": self.uri,
            "collections": [f"{self.db}.{run.table}"],
            "document_format": "json",
            "snapshot": True,
            "max_await_ms": 100,
            "heartbeat_interval_ms": 1000,
        }

    def _document(self, row_id: int, row: dict[str, Any]) -> dict[str, Any]:
        return {"_id": row_id, "id": row_id, **{c: _mongo_value(c, row[c]) for c in COLUMNS}}

    def execute(self, run: Run, tx: Tx) -> None:
        if tx.rollback:
            return
        client = self.client()
        try:
            coll = client[self.db][run.table]
            inserts = [self._document(op.row_id, op.row()) for op in tx.ops if op.kind == "insert"]
            if len(inserts) == len(tx.ops):
                coll.insert_many(inserts, ordered=True)
                return
            for op in tx.ops:
                if op.kind == "insert":
                    coll.insert_one(self._document(op.row_id, op.row()))
                elif op.kind == "update":
                    coll.update_one({"_id": op.row_id}, {"$set": self._document(op.row_id, op.row())})
                elif op.kind == "delete":
                    coll.delete_one({"_id": op.row_id})
                elif op.kind == "move":
                    assert op.new_id is not None
                    coll.delete_one({"_id": op.row_id})
                    coll.insert_one(self._document(op.new_id, op.row()))
                else:
                    raise AssertionError(op)
        finally:
            client.close()

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        client = self.client()
        try:
            rows = {}
            for doc in client[self.db][run.table].find():
                row = {k: v for k, v in doc.items() if k != "_id"}
                if row.get("dec") is not None:
                    row["dec"] = row["dec"].to_decimal()
                rows[int(doc["_id"])] = row
            return rows
        finally:
            client.close()

    def cleanup(self, run: Run) -> None:
        client = self.client()
        try:
            from tests.integration.mongo_support import drop_and_trim

            drop_and_trim(client, self.db, run.table)
        finally:
            client.close()
