#!/usr/bin/env python3
"""Capture raw pgoutput replication traffic from a real Postgres for the decoder's unit tests.

Runs a scripted workload once (every type the converters know, TOAST, each replica identity,
truncate, logical messages, a replication origin, savepoint rollbacks, streamed transactions that
commit and abort, two-phase commit) while one logical slot per capture holds the WAL, then replays
each slot with a different pgoutput configuration and writes every CopyData message the walsender
sent (XLogData and keepalives) to `<out>/<name>.frames` as length-prefixed frames:

    repeat: uint32 big-endian length, then that many bytes (one CopyData message, 'w' or 'k')

`<out>/manifest.json` describes the captures and the expected committed changes, with column values
already converted as docs/postgres-types.md says (written by hand here, independently of the
converters), so the tests check the decoder and the converters against the server.

Needs a throwaway superuser cluster with wal_level=logical, logical_decoding_work_mem=64kB and
max_prepared_transactions > 0, e.g. (as the postgres OS user):

    initdb -D /tmp/pgcap/data --locale=C -E UTF8 -A trust
    # postgresql.conf: port=5499, unix_socket_directories='/tmp', wal_level=logical,
    #                  max_prepared_transactions=10, logical_decoding_work_mem=64kB
    pg_ctl -D /tmp/pgcap/data start
    python scripts/capture_pgoutput.py --dsn "host=/tmp port=5499 user=postgres dbname=postgres"

The database named in the DSN gets a `cap` schema, dropped and re-created on every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import select
import struct
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

EPOCH = dt.date(1970, 1, 1)
EPOCH_DT = dt.datetime(1970, 1, 1)
DAYS_400Y = 146_097  # the proleptic Gregorian calendar repeats every 400 years
MONTH_US = 2_629_800_000_000  # 365.25 / 12 days, Debezium's MicroDuration month
DAY_US = 86_400_000_000


def days(d: dt.date, shift_400y: int = 0) -> int:
    """Days since 1970-01-01; shift_400y moves a date 400*n years back (for BC dates)."""
    return (d - EPOCH).days - DAYS_400Y * shift_400y


def micros(t: dt.datetime, shift_400y: int = 0) -> int:
    delta = t - EPOCH_DT
    return (delta.days - DAYS_400Y * shift_400y) * DAY_US + delta.seconds * 1_000_000 + delta.microseconds


BIG_TOAST = "".join(f"{i:05d}" for i in range(700))  # 3500 chars, stored out of line (EXTERNAL)
BIG_TOAST2 = "".join(f"{i:05d}" for i in range(700, 1400))

SETUP = """
DROP PUBLICATION IF EXISTS cap_pub, cap_pub_ins;
DROP SCHEMA IF EXISTS cap CASCADE;
CREATE SCHEMA cap;
SET search_path = cap;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
  id int PRIMARY KEY,
  c_bool bool, c_int2 int2, c_int4 int4, c_int8 int8,
  c_numeric numeric, c_numeric_s numeric(10,2), c_float4 float4, c_float8 float8,
  c_text text, c_varchar varchar(20), c_bpchar char(5), c_name name, c_char "char",
  c_bytea bytea, c_uuid uuid, c_json json, c_jsonb jsonb,
  c_date date, c_time time, c_time3 time(3), c_timetz timetz,
  c_ts timestamp, c_ts3 timestamp(3), c_tstz timestamptz, c_tstz0 timestamptz(0),
  c_interval interval,
  c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
  c_money money, c_bit1 bit(1), c_bit bit(10), c_varbit varbit,
  c_mood mood, c_posint posint,
  c_int_arr int4[], c_text_arr text[], c_nested int4[][], c_mood_arr mood[],
  c_tstz_arr timestamptz[], c_num_arr numeric[],
  c_point point, c_xml xml, c_oid oid
);
CREATE TABLE toast_default (id int PRIMARY KEY, big text, note text);
ALTER TABLE toast_default ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE toast_full (id int PRIMARY KEY, big text, note text);
ALTER TABLE toast_full ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE toast_full REPLICA IDENTITY FULL;
CREATE TABLE ri_default (id int PRIMARY KEY, val text);
CREATE TABLE ri_full (id int, val text);
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_index (id int PRIMARY KEY, code text NOT NULL, val text);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
CREATE TABLE ri_nothing (id int, val text);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE big (id int PRIMARY KEY, payload text);
CREATE PUBLICATION cap_pub FOR TABLE all_types, toast_default, toast_full, ri_default, ri_full, ri_index, big;
CREATE PUBLICATION cap_pub_ins FOR TABLE ri_nothing WITH (publish = 'insert, truncate');
"""

ALL_TYPES_COLUMNS = [
    "id", "c_bool", "c_int2", "c_int4", "c_int8", "c_numeric", "c_numeric_s", "c_float4", "c_float8",
    "c_text", "c_varchar", "c_bpchar", "c_name", "c_char", "c_bytea", "c_uuid", "c_json", "c_jsonb",
    "c_date", "c_time", "c_time3", "c_timetz", "c_ts", "c_ts3", "c_tstz", "c_tstz0", "c_interval",
    "c_inet", "c_cidr", "c_macaddr", "c_macaddr8", "c_money", "c_bit1", "c_bit", "c_varbit",
    "c_mood", "c_posint", "c_int_arr", "c_text_arr", "c_nested", "c_mood_arr", "c_tstz_arr",
    "c_num_arr", "c_point", "c_xml", "c_oid",
]  # fmt: skip

# Each row: column -> (SQL literal, expected converted JSON value). bytes are written as {"$hex": ...}.
ROW1: dict[str, tuple[str, Any]] = {
    "id": ("1", 1),
    "c_bool": ("true", True),
    "c_int2": ("-32768", -32768),
    "c_int4": ("2147483647", 2147483647),
    "c_int8": ("-9223372036854775808", -9223372036854775808),
    "c_numeric": ("12345678901234567890.123456789", "12345678901234567890.123456789"),
    "c_numeric_s": ("12.5", "12.50"),
    "c_float4": ("3.14", 3.14),
    "c_float8": ("-1.5e300", -1.5e300),
    "c_text": (
        "E'h\\u00e9llo \"quoted\", back\\\\slash\\nnewline'",
        'h\u00e9llo "quoted", back\\slash\nnewline',
    ),
    "c_varchar": ("'varchar'", "varchar"),
    "c_bpchar": ("'ab'", "ab   "),
    "c_name": ("'a_name'", "a_name"),
    "c_char": ("'x'", "x"),
    "c_bytea": ("'\\x00ff10'::bytea", {"$hex": "00ff10"}),
    "c_uuid": ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "c_json": ('\'{"b": 1,  "a": [1, 2]}\'', '{"b": 1,  "a": [1, 2]}'),
    "c_jsonb": ('\'{"b": 1, "a": [1, 2]}\'', '{"a": [1, 2], "b": 1}'),
    "c_date": ("'2024-02-29'", days(dt.date(2024, 2, 29))),
    "c_time": ("'13:45:10.123456'", ((13 * 60 + 45) * 60 + 10) * 1_000_000 + 123456),
    "c_time3": ("'13:45:10.123456'", ((13 * 60 + 45) * 60 + 10) * 1000 + 123),  # io.debezium.time.Time
    "c_timetz": ("'13:45:10.5+05:30'", "08:15:10.5Z"),
    "c_ts": ("'2024-02-29 13:45:10.123456'", micros(dt.datetime(2024, 2, 29, 13, 45, 10, 123456))),
    "c_ts3": ("'2024-02-29 13:45:10.123456'", micros(dt.datetime(2024, 2, 29, 13, 45, 10, 123000)) // 1000),
    "c_tstz": ("'2024-02-29 13:45:10.123456+02'", "2024-02-29T11:45:10.123456Z"),
    "c_tstz0": ("'2024-02-29 13:45:10.6+02'", "2024-02-29T11:45:11Z"),
    "c_interval": (
        "'1 year 2 months 3 days 04:05:06.789'",
        14 * MONTH_US + 3 * DAY_US + (4 * 3600 + 5 * 60 + 6) * 1_000_000 + 789_000,
    ),
    "c_inet": ("'192.168.1.5/24'", "192.168.1.5/24"),
    "c_cidr": ("'10.0.0.0/8'", "10.0.0.0/8"),
    "c_macaddr": ("'08:00:2b:01:02:03'", "08:00:2b:01:02:03"),
    "c_macaddr8": ("'08:00:2b:01:02:03:04:05'", "08:00:2b:01:02:03:04:05"),
    "c_money": ("1234.56", "1234.56"),
    "c_bit1": ("B'1'", True),
    "c_bit": ("B'1010000001'", {"$hex": "8102"}),  # 0b1010000001 = 641, little-endian
    "c_varbit": ("B'101'", {"$hex": "05"}),
    "c_mood": ("'happy'", "happy"),
    "c_posint": ("42", 42),
    "c_int_arr": ("'{1,2,NULL,4}'", [1, 2, None, 4]),
    "c_text_arr": (
        "ARRAY['a', 'b,c', 'd\"e', '', NULL, 'NULL', E'back\\\\slash', ' sp ', '{x}']",
        ["a", "b,c", 'd"e', "", None, "NULL", "back\\slash", " sp ", "{x}"],
    ),
    "c_nested": ("'{{1,2},{3,4}}'", [[1, 2], [3, 4]]),
    "c_mood_arr": ("'{sad,happy}'", ["sad", "happy"]),
    "c_tstz_arr": (
        "ARRAY['2024-01-01 00:00:00+00', 'infinity']::timestamptz[]",
        ["2024-01-01T00:00:00.000000Z", "infinity"],
    ),
    "c_num_arr": ("'{1.5,NaN,-0.001}'", ["1.5", "NaN", "-0.001"]),
    "c_point": ("'(1.5,2)'", "(1.5,2)"),
    "c_xml": ("'<a>1</a>'", "<a>1</a>"),
    "c_oid": ("4294967295", 4294967295),
}

ROW2: dict[str, tuple[str, Any]] = {
    "id": ("2", 2),
    "c_bool": ("false", False),
    "c_numeric": ("'NaN'", "NaN"),
    "c_numeric_s": ("-0.01", "-0.01"),
    "c_float4": ("'Infinity'", "Infinity"),
    "c_float8": ("'NaN'", "NaN"),
    "c_text": ("''", ""),
    "c_bytea": ("''::bytea", {"$hex": ""}),
    "c_json": ("'null'", "null"),
    "c_jsonb": ("'\"just a string\"'", '"just a string"'),
    "c_date": ("'0044-03-15 BC'", days(dt.date(357, 3, 15), shift_400y=1)),  # year -43 = 357 - 400
    "c_time": ("'24:00:00'", 86_400_000_000),
    "c_timetz": ("'23:00:00.25-03'", "02:00:00.25Z"),
    "c_ts": ("'-infinity'", -9223372036832400000),
    "c_ts3": ("'infinity'", 9223372036825200000),
    "c_tstz": ("'infinity'", "infinity"),
    "c_tstz0": ("'1999-12-31 23:59:59.4-05'", "2000-01-01T04:59:59Z"),
    "c_interval": (
        "'-1 year -2 months +3 days -04:05:06.5'",
        -14 * MONTH_US + 3 * DAY_US - ((4 * 3600 + 5 * 60 + 6) * 1_000_000 + 500_000),
    ),
    "c_money": ("-1234.5", "-1234.50"),
    "c_bit1": ("B'0'", False),
    "c_bit": ("B'0000000000'", {"$hex": ""}),
    "c_varbit": ("B''", {"$hex": ""}),
    "c_int_arr": ("'{}'", []),
    "c_text_arr": ("ARRAY[E'tab\\there', 'x y', '\u00e9']", ["tab\there", "x y", "\u00e9"]),
    "c_nested": ("'[0:1]={7,8}'", [7, 8]),
    "c_mood_arr": ("'{}'", []),
    "c_tstz_arr": ("'{-infinity,NULL}'", ["-infinity", None]),
    "c_num_arr": ("'{Infinity,-Infinity}'", ["Infinity", "-Infinity"]),
}

ROW3: dict[str, tuple[str, Any]] = {"id": ("3", 3)}

# UPDATE all_types SET ... WHERE id = 2
ROW2_UPDATE: dict[str, tuple[str, Any]] = {
    "c_int4": ("7", 7),
    "c_date": ("'infinity'", 2147483647),
    "c_ts": ("'0001-12-31 23:59:59.999999 BC'", micros(dt.datetime(1, 1, 1)) - 1),
    "c_interval": ("'-1 days +02:03:00'", -DAY_US + (2 * 3600 + 3 * 60) * 1_000_000),
    "c_time3": ("'00:00:00.0005'", 1),  # rounds to 00:00:00.001 -> 1 ms
}

# name -> (proto_version, binary, two_phase, walsender TimeZone, IntervalStyle)
CAPTURES: dict[str, tuple[int, bool, bool, str, str]] = {
    "v1": (1, False, False, "UTC", "postgres"),
    "v2": (2, False, False, "Asia/Kolkata", "postgres"),
    "v3": (3, False, True, "UTC", "iso_8601"),
    "v2-binary": (2, True, False, "America/St_Johns", "postgres"),
    "v4": (4, False, True, "UTC", "postgres"),  # Postgres 16+: streaming 'parallel' (Stream Abort with LSN)
}


def full_row(spec: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    return {c: spec[c][1] if c in spec else None for c in ALL_TYPES_COLUMNS}


def insert_sql(table: str, spec: dict[str, tuple[str, Any]]) -> str:
    cols = list(spec)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(spec[c][0] for c in cols)})"


def change(op: str, table: str, new: dict | None = None, old: dict | None = None, **extra: Any) -> dict:
    out: dict[str, Any] = {"op": op, "table": f"cap.{table}"}
    if new is not None:
        out["new"] = new
    if old is not None:
        out["old"] = old
    out.update(extra)
    return out


class Workload:
    """Runs the workload on an autocommit connection and records the expected committed events."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    def sql(self, text: str) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(text)
        return cur.fetchall() if cur.description else []

    def tx(self, label: str, statements: list[str], changes: list[dict], **extra: Any) -> int:
        self.sql("BEGIN")
        xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
        for stmt in statements:
            self.sql(stmt)
        self.sql("COMMIT")
        if changes or extra.get("messages"):
            self.events.append({"kind": "tx", "label": label, "xid": xid, "changes": changes, **extra})
        return xid

    def my_xids(self) -> list[int]:
        rows = self.sql(
            "SELECT transactionid::text FROM pg_locks"
            " WHERE pid = pg_backend_pid() AND locktype = 'transactionid'"
        )
        return sorted(int(r[0]) for r in rows)

    def run(self) -> None:
        t = "all_types"
        self.tx(
            "all types insert",
            [insert_sql(t, ROW1), insert_sql(t, ROW2), insert_sql(t, ROW3)],
            [change("c", t, full_row(r)) for r in (ROW1, ROW2, ROW3)],
        )
        sets = ", ".join(f"{c} = {v[0]}" for c, v in ROW2_UPDATE.items())
        updated = full_row({**ROW2, **ROW2_UPDATE})
        self.tx("all types update", [f"UPDATE {t} SET {sets} WHERE id = 2"], [change("u", t, updated)])
        key_only = {c: None for c in ALL_TYPES_COLUMNS} | {"id": 3}
        self.tx(
            "all types delete",
            [f"DELETE FROM {t} WHERE id = 3"],
            [change("d", t, old=key_only, old_kind="K")],
        )

        for table, full in (("toast_default", False), ("toast_full", True)):
            r1 = {"id": 1, "big": BIG_TOAST, "note": "n1"}
            r2 = {"id": 1, "big": BIG_TOAST, "note": "n2"}
            r3 = {"id": 1, "big": BIG_TOAST2, "note": "n2"}
            self.tx(
                f"{table} insert",
                [f"INSERT INTO {table} VALUES (1, '{BIG_TOAST}', 'n1')"],
                [change("c", table, r1)],
            )
            old1: dict[str, Any] = {"old": r1, "old_kind": "O"} if full else {}
            self.tx(
                f"{table} update, big unchanged",
                [f"UPDATE {table} SET note = 'n2' WHERE id = 1"],
                [change("u", table, {"id": 1, "note": "n2"}, unchanged=["big"], **old1)],
            )
            old2: dict[str, Any] = {"old": r2, "old_kind": "O"} if full else {}
            self.tx(
                f"{table} update big",
                [f"UPDATE {table} SET big = '{BIG_TOAST2}' WHERE id = 1"],
                [change("u", table, r3, **old2)],
            )
            old = r3 if full else {"id": 1, "big": None, "note": None}
            self.tx(
                f"{table} delete",
                [f"DELETE FROM {table} WHERE id = 1"],
                [change("d", table, old=old, old_kind="O" if full else "K")],
            )

        t = "ri_default"
        self.tx(
            "ri_default insert",
            [f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')"],
            [change("c", t, {"id": 1, "val": "a"}), change("c", t, {"id": 2, "val": "b"})],
        )
        self.tx(
            "ri_default update",
            [f"UPDATE {t} SET val = 'a2' WHERE id = 1"],
            [change("u", t, {"id": 1, "val": "a2"})],
        )
        self.tx(
            "ri_default key update",
            [f"UPDATE {t} SET id = 10 WHERE id = 2"],
            [change("u", t, {"id": 10, "val": "b"}, old={"id": 2, "val": None}, old_kind="K")],
        )
        self.tx(
            "ri_default delete",
            [f"DELETE FROM {t} WHERE id = 1"],
            [change("d", t, old={"id": 1, "val": None}, old_kind="K")],
        )

        t = "ri_full"
        self.tx(
            "ri_full insert", [f"INSERT INTO {t} VALUES (1, 'a')"], [change("c", t, {"id": 1, "val": "a"})]
        )
        self.tx(
            "ri_full update",
            [f"UPDATE {t} SET val = 'b' WHERE id = 1"],
            [change("u", t, {"id": 1, "val": "b"}, old={"id": 1, "val": "a"}, old_kind="O")],
        )
        self.tx(
            "ri_full delete",
            [f"DELETE FROM {t} WHERE id = 1"],
            [change("d", t, old={"id": 1, "val": "b"}, old_kind="O")],
        )
        self.tx(
            "ri_full insert again",
            [f"INSERT INTO {t} VALUES (2, 'c')"],
            [change("c", t, {"id": 2, "val": "c"})],
        )

        t = "ri_index"
        self.tx(
            "ri_index insert",
            [f"INSERT INTO {t} VALUES (1, 'c1', 'a')"],
            [change("c", t, {"id": 1, "code": "c1", "val": "a"})],
        )
        self.tx(
            "ri_index update",
            [f"UPDATE {t} SET val = 'b' WHERE id = 1"],
            [change("u", t, {"id": 1, "code": "c1", "val": "b"})],
        )
        self.tx(
            "ri_index key update",
            [f"UPDATE {t} SET code = 'c2' WHERE id = 1"],
            [
                change(
                    "u",
                    t,
                    {"id": 1, "code": "c2", "val": "b"},
                    old={"id": None, "code": "c1", "val": None},
                    old_kind="K",
                )
            ],
        )
        self.tx(
            "ri_index delete",
            [f"DELETE FROM {t} WHERE id = 1"],
            [change("d", t, old={"id": None, "code": "c2", "val": None}, old_kind="K")],
        )
        self.tx(
            "ri_index insert again",
            [f"INSERT INTO {t} VALUES (2, 'c3', 'z')"],
            [change("c", t, {"id": 2, "code": "c3", "val": "z"})],
        )

        t = "ri_nothing"  # its publication publishes inserts and truncates only: updates/deletes never arrive
        self.tx(
            "ri_nothing insert", [f"INSERT INTO {t} VALUES (1, 'a')"], [change("c", t, {"id": 1, "val": "a"})]
        )
        self.tx("ri_nothing update (not published)", [f"UPDATE {t} SET val = 'b'"], [])
        self.tx("ri_nothing delete (not published)", [f"DELETE FROM {t}"], [])

        self.tx(
            "truncate restart identity",
            ["TRUNCATE ri_default, ri_full RESTART IDENTITY"],
            [
                {
                    "op": "t",
                    "tables": ["cap.ri_default", "cap.ri_full"],
                    "cascade": False,
                    "restart_identity": True,
                }
            ],
        )
        self.tx(
            "truncate cascade",
            ["TRUNCATE ri_index CASCADE"],
            [{"op": "t", "tables": ["cap.ri_index"], "cascade": True, "restart_identity": False}],
        )
        self.tx(
            "add column then insert",
            [
                "ALTER TABLE ri_default ADD COLUMN extra int DEFAULT 5",
                "INSERT INTO ri_default VALUES (20, 'z', 6)",
            ],
            [change("c", "ri_default", {"id": 20, "val": "z", "extra": 6})],
        )
        self.tx(
            "transactional message",
            [
                "SELECT pg_logical_emit_message(true, 'cap-tx', 'hello tx')",
                "INSERT INTO ri_default VALUES (30, 'm', 1)",
            ],
            [change("c", "ri_default", {"id": 30, "val": "m", "extra": 1})],
            messages=[{"transactional": True, "prefix": "cap-tx", "content_hex": b"hello tx".hex()}],
        )
        self.sql("SELECT pg_logical_emit_message(false, 'cap-nontx', '\\x00ff01'::bytea)")
        self.events.append(
            {"kind": "message", "transactional": False, "prefix": "cap-nontx", "content_hex": "00ff01"}
        )

        self.sql("SELECT pg_replication_origin_create('cap_origin')")
        self.sql("SELECT pg_replication_origin_session_setup('cap_origin')")
        self.sql("BEGIN")
        self.sql("SELECT pg_replication_origin_xact_setup('0/12345678', now())")
        xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
        self.sql("INSERT INTO ri_default VALUES (40, 'origin', 2)")
        self.sql("COMMIT")
        self.sql("SELECT pg_replication_origin_session_reset()")
        self.events.append(
            {
                "kind": "tx",
                "label": "from a replication origin",
                "xid": xid,
                "origin": {"name": "cap_origin", "lsn": 0x12345678},
                "changes": [change("c", "ri_default", {"id": 40, "val": "origin", "extra": 2})],
            }
        )

        self.tx(
            "savepoint rolled back (small transaction)",
            [
                "INSERT INTO ri_default VALUES (50, 'keep', 0)",
                "SAVEPOINT s1",
                "INSERT INTO ri_default VALUES (51, 'drop', 0)",
                "ROLLBACK TO SAVEPOINT s1",
                "INSERT INTO ri_default VALUES (52, 'keep2', 0)",
            ],
            [
                change("c", "ri_default", {"id": 50, "val": "keep", "extra": 0}),
                change("c", "ri_default", {"id": 52, "val": "keep2", "extra": 0}),
            ],
        )

        def big_rows(lo: int, hi: int) -> tuple[str, list[dict]]:
            stmt = f"INSERT INTO big SELECT g, 'b' || g || repeat('x', 20) FROM generate_series({lo}, {hi}) g"
            return stmt, [
                change("c", "big", {"id": i, "payload": f"b{i}" + "x" * 20}) for i in range(lo, hi + 1)
            ]

        stmt, rows = big_rows(1, 500)
        self.tx("large transaction (streamed on v2+)", [stmt], rows, streamed=True)

        stmt, _ = big_rows(1001, 1500)
        self.sql("BEGIN")
        xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
        self.sql(stmt)
        self.sql("ROLLBACK")
        self.events.append({"kind": "aborted", "label": "large transaction rolled back", "xid": xid})

        self.sql("BEGIN")
        xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
        keep1, rows1 = big_rows(2001, 2010)
        self.sql(keep1)
        self.sql("SAVEPOINT s1")
        drop, _ = big_rows(2101, 2600)
        self.sql(drop)
        subxids = [x for x in self.my_xids() if x != xid]
        self.sql("ROLLBACK TO SAVEPOINT s1")
        keep2, rows2 = big_rows(2011, 2015)
        self.sql(keep2)
        self.sql("COMMIT")
        self.events.append(
            {
                "kind": "tx",
                "label": "large subtransaction rolled back (streamed on v2+)",
                "xid": xid,
                "aborted_subxids": subxids,
                "streamed": True,
                "changes": rows1 + rows2,
            }
        )

        two_pc = [
            ("cap-commit", "INSERT INTO ri_default VALUES (60, '2pc', 0)", "COMMIT PREPARED"),
            ("cap-rollback", "INSERT INTO ri_default VALUES (61, '2pc-rb', 0)", "ROLLBACK PREPARED"),
        ]
        for gid, stmt, finish in two_pc:
            self.sql("BEGIN")
            xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
            self.sql(stmt)
            self.sql(f"PREPARE TRANSACTION '{gid}'")
            self.sql(f"{finish} '{gid}'")
            if finish == "COMMIT PREPARED":
                ev = change("c", "ri_default", {"id": 60, "val": "2pc", "extra": 0})
                self.events.append(
                    {"kind": "tx", "label": "two-phase commit", "xid": xid, "gid": gid, "changes": [ev]}
                )
            else:
                self.events.append({"kind": "aborted", "label": "two-phase rollback", "xid": xid, "gid": gid})
        stmt, rows = big_rows(3001, 3500)
        self.sql("BEGIN")
        xid = int(self.sql("SELECT pg_current_xact_id()::text")[0][0])
        self.sql(stmt)
        self.sql("PREPARE TRANSACTION 'cap-stream'")
        self.sql("COMMIT PREPARED 'cap-stream'")
        self.events.append(
            {
                "kind": "tx",
                "label": "large two-phase commit",
                "xid": xid,
                "gid": "cap-stream",
                "streamed": True,
                "changes": rows,
            }
        )
        self.sql("SELECT pg_logical_emit_message(false, 'capture', 'end')")


def capture(
    dsn: str, slot: str, options: str, tz: str, interval_style: str, deadline_s: float
) -> list[bytes]:
    """Replay `slot` and return every CopyData message up to the 'capture'/'end' logical message."""
    conn = psycopg.connect(
        dsn,
        replication="database",
        autocommit=True,
        options=f"-c TimeZone={tz} -c DateStyle=ISO -c IntervalStyle={interval_style}"
        " -c client_encoding=UTF8",
    )
    frames: list[bytes] = []
    try:
        conn.execute(f"START_REPLICATION SLOT {slot} LOGICAL 0/0 ({options})")
        pg = conn.pgconn
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            nbytes, data = pg.get_copy_data(1)
            if nbytes == 0:
                select.select([pg.socket], [], [], 1.0)
                pg.consume_input()
                continue
            if nbytes < 0:
                raise RuntimeError(f"replication stream ended ({nbytes}): {pg.get_error_message()}")
            frame = bytes(data)
            frames.append(frame)
            if (
                frame[:1] == b"w"
                and frame[25:26] == b"M"
                and b"capture\x00" in frame
                and frame.endswith(b"end")
            ):
                return frames
        raise RuntimeError(f"slot {slot}: end marker not seen within {deadline_s}s")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default="host=/tmp port=5499 user=postgres dbname=postgres")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/pgoutput"
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    conn = psycopg.connect(args.dsn, autocommit=True, options="-c TimeZone=UTC -c DateStyle=ISO")
    server_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    max_proto = 4 if conn.info.server_version >= 160000 else 3 if conn.info.server_version >= 150000 else 2
    for row in conn.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'cap\\_%'"
    ).fetchall():
        conn.execute("SELECT pg_drop_replication_slot(%s)", (row[0],))
    for (name,) in conn.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'cap-%'").fetchall():
        conn.execute(f"ROLLBACK PREPARED '{name}'")
    conn.execute(
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname = 'cap_origin'"
    )
    for stmt in SETUP.split(";\n"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("SET search_path = cap")
    captures = {k: v for k, v in CAPTURES.items() if v[0] <= max_proto}
    slots = {}
    for name, (_proto, _binary, two_phase, _tz, _style) in captures.items():
        slot = "cap_" + name.replace("-", "_")
        conn.execute(
            "SELECT pg_create_logical_replication_slot(%s, 'pgoutput', false, %s)", (slot, two_phase)
        )
        slots[name] = slot

    workload = Workload(conn)
    workload.run()
    types = conn.execute(
        "SELECT oid, typname, typtype, typcategory, typbasetype, typtypmod, typelem, typdelim FROM pg_type "
        "WHERE typnamespace = 'cap'::regnamespace AND typname IN ('mood', '_mood', 'posint', '_posint')"
        " ORDER BY oid"
    ).fetchall()

    args.out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "server_version": server_version,
        "generated_by": "scripts/capture_pgoutput.py",
        "frame_format": "repeat(uint32 big-endian length, CopyData bytes)",
        "notes": "values in 'new'/'old' are converted as docs/postgres-types.md says; bytes as {'$hex': ...}",
        "types": [
            {
                "oid": r[0],
                "name": r[1],
                "typtype": r[2],
                "typcategory": r[3],
                "typbasetype": r[4],
                "typtypmod": r[5],
                "typelem": r[6],
                "typdelim": r[7],
            }
            for r in types
        ],
        "captures": {},
        "events": workload.events,
    }
    for name, (proto, binary, two_phase, tz, style) in captures.items():
        opts = [f"proto_version '{proto}'", "publication_names 'cap_pub,cap_pub_ins'", "messages 'true'"]
        if proto >= 2:
            opts.append("streaming 'parallel'" if proto >= 4 else "streaming 'on'")
        if binary:
            opts.append("binary 'true'")
        if two_phase:
            opts.append("two_phase 'on'")
        frames = capture(args.dsn, slots[name], ", ".join(opts), tz, style, args.timeout)
        path = args.out / f"{name}.frames"
        path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        manifest["captures"][name] = {
            "file": path.name,
            "proto_version": proto,
            "binary": binary,
            "two_phase": two_phase,
            "streaming": proto >= 2,
            "timezone": tz,
            "interval_style": style,
            "options": ", ".join(opts),
            "frames": len(frames),
        }
        print(f"{name}: {len(frames)} frames, {path.stat().st_size} bytes", file=sys.stderr)
    for slot in slots.values():
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
