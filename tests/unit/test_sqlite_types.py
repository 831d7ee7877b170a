"""Type torture test for the SQLite reader: every storage class at its extremes, in every kind of column
(each affinity, no declared type, STRICT, WITHOUT ROWID, keyed by rowid), through the triggers (the
after image of an insert, both images of an update, the before image of a delete) and through the
snapshot, checked against SQLite's own rendering of each stored value.

One table per case (`ty_<case>`) holds one row per value plus a NULL row; a few more tables hold every
value again under other keys. A stream reader is running while the rows are inserted, updated in place
(`SET v = v`) and deleted; a snapshot reader reads them in between. For every row SQLite renders the
stored value itself (`typeof(v)`, `hex(v)`, `printf('%!.18g', v)`), and the expected event value is
computed from that by the rules of docs/sources/sqlite.md, with no cdc_logs code:

  null -> None; integer -> int; real -> float, "Infinity" / "-Infinity" for the infinities (as SQLite
  prints them: 0.0 for a negative zero); text -> str (TEXT that is not UTF-8: the row is Undecodable,
  for the dead-letter file); blob -> bytes (base64 in JSON).

What Python's sqlite3 returns for the same row must agree too, up to the two documented differences
(infinities as strings, -0.0 as 0.0). NaN cannot be stored: SQLite turns it into NULL.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, Undecodable, dumps
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.sqlite.reader import SqliteReader

UNDECODABLE = "<undecodable>"  # the expected "value" of a row whose TEXT is not UTF-8
ALL_BYTES = "x'" + bytes(range(256)).hex() + "'"
MB = 1_000_000


@dataclass
class Case:
    name: str
    ddl: str  # the declared type of column v ("" for none)
    values: list[str]  # SQL expressions, inserted as they are
    affinity: str  # SQLite's affinity of the declared type (datatype3.html, section 3.1)


# The affinity rules, as SQLite documents them: INT -> INTEGER; CHAR, CLOB, TEXT -> TEXT; BLOB or no
# type -> BLOB; REAL, FLOA, DOUB -> REAL; anything else NUMERIC. The schema's Connect type per affinity
# (docs/sources/sqlite.md): the type a value of the affinity's own storage class has.
SCHEMA_TYPE = {"INTEGER": "int64", "TEXT": "string", "BLOB": "bytes", "REAL": "float64", "NUMERIC": "string"}
NATURAL = {"INTEGER": int, "TEXT": str, "BLOB": bytes, "REAL": float}

INTEGERS = ["-9223372036854775808", "9223372036854775807", "0", "-1", "1"]
REALS = [
    "0.0",
    "-0.0",
    "5e-324",
    "-5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "9e999",  # SQLite reads a literal beyond the doubles as Inf
    "-9e999",
    "9e999 - 9e999",  # NaN: SQLite stores NULL
    "1e-400",  # underflows to 0.0
    "0.1",
    "0.1 + 0.2",
    "1e22",
    "123456789.123456789",
    "-2.5",
    "9007199254740993.0",
]
TEXTS = [
    "''",
    "' '",
    "'a'",
    "'😀é€'",
    "'a' || char(0) || 'b'",  # an embedded NUL
    "char(0)",
    "'it''s \"q\" \\ / \n\t'",
    "replace(hex(zeroblob(250000)), '00', '😀')",  # 1 MB of 4-byte UTF-8 (only in ty_text)
    '\'["x","00"]\'',  # text that looks like the triggers' tagged blob
    '\'["f","Inf"]\'',
    "'null'",
    "json('{\"a\":  [1, 2]}')",  # a JSON function's result: TEXT with SQLite's JSON subtype
    "json_array('x', '00')",
    "json_array('f', '1.5')",
    "json_object('k', 'v')",
    "json_quote('x')",
    "CAST(x'e9' AS TEXT)",  # not UTF-8
]
BLOBS = ["x''", "x'00'", "x'ff'", ALL_BYTES, f"randomblob({MB})", "x'5b2278222c2230305d'"]
MIXED = ["1", "-1.5", "'t'", "x'00ff'", "9e999", "-0.0", "'12'", "' 12 '", "'1e3'"]

CASES: list[Case] = [
    Case(
        "integer",
        "INTEGER",
        [*INTEGERS, "'9223372036854775808'", "'12'", "' 12 '", "'12abc'", "1.5", "1.0", "x'00'"],
        "INTEGER",
    ),
    Case("bigint", "UNSIGNED BIG INT", ["9223372036854775807", "'18446744073709551615'", "-1"], "INTEGER"),
    Case("real", "REAL", [*REALS, "1", "'2.5'", "'abc'", "x'01'"], "REAL"),
    Case("double", "DOUBLE PRECISION", ["-0.0", "9e999", "1"], "REAL"),
    Case("float", "FLOAT", ["0.1", "-9e999"], "REAL"),
    Case("text", "TEXT", [*TEXTS, "1.5", "9e999", "-0.0", "x'00ff'", "12"], "TEXT"),
    Case("varchar", "VARCHAR(5)", ["'😀😀😀😀😀😀😀'", "''"], "TEXT"),
    Case("clob", "CLOB", ["'x'", "5"], "TEXT"),
    Case("blob", "BLOB", [*BLOBS, "'text'", "1", "1.5"], "BLOB"),
    Case("none", "", [*MIXED, *INTEGERS[:2], "1e-400", "x''", "''"], "BLOB"),
    Case(
        "numeric",
        "NUMERIC",
        [
            "1",
            "'1.0'",
            "'1.5'",
            "'abc'",
            "'1e999'",
            "'9223372036854775808'",
            "' 12 '",
            "x'01'",
            "-0.0",
            "'0.1'",
            "'-9223372036854775808'",
        ],
        "NUMERIC",
    ),
    Case("decimal", "DECIMAL(10,2)", ["'12.345'", "0.1", "'-0.01'", "'1e2'", "'x'"], "NUMERIC"),
    Case("boolean", "BOOLEAN", ["TRUE", "FALSE", "2", "'yes'"], "NUMERIC"),
    Case("datetime", "DATETIME", ["'2024-02-29 12:34:56.123456'", "1700000000", "2460000.5"], "NUMERIC"),
    Case("date", "DATE", ["'1969-12-31'", "'0000-01-01'"], "NUMERIC"),
    Case("json", "JSON", ["json('[1]')", "'{}'", "1"], "NUMERIC"),
]
for _case in CASES:
    _case.values = [*_case.values, "NULL"]

#: Every value of these cases again, in tables keyed other ways (and a STRICT table).
KEYED_CASES = [c for c in CASES if c.name in ("integer", "real", "text", "blob", "none")]
KEYED = {
    "without_rowid": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v) WITHOUT ROWID",
    "composite": "CREATE TABLE {t} (tag TEXT, id INTEGER, v, PRIMARY KEY (tag, id)) WITHOUT ROWID",
    "rowid": "CREATE TABLE {t} (id INTEGER, v)",  # no primary key: keyed by rowid
    "strict_any": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v ANY) STRICT",
    "rowid_named": "CREATE TABLE {t} (rowid TEXT, id INTEGER, v)",  # keyed by the rowid, named otherwise
}


def _keyed_values() -> list[str]:
    return [v for c in KEYED_CASES for v in c.values if "zeroblob" not in v and "randomblob" not in v]


# -- the expected value, from SQLite's rendering (no cdc_logs code) --------------------------------------

RENDER = "typeof(v), hex(v), printf('%!.18g', v)"


def expect(typeof: str, hexed: str, real: str) -> Any:
    if typeof == "null":
        return None
    if typeof == "integer":
        return int(bytes.fromhex(hexed).decode())  # hex() of an integer is hex of its text
    if typeof == "real":
        return {"Inf": "Infinity", "-Inf": "-Infinity"}.get(real) or float(real)
    if typeof == "text":
        try:
            return bytes.fromhex(hexed).decode("utf-8")
        except UnicodeDecodeError:
            return UNDECODABLE
    assert typeof == "blob", typeof
    return bytes.fromhex(hexed)


def documented(value: Any) -> Any:
    """What Python's sqlite3 returns, with the documented differences applied."""
    if isinstance(value, float):
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value == 0:
            return 0.0  # SQLite prints a negative zero as 0.0, and the triggers see what it prints
    return value


# -- one run ----------------------------------------------------------------------------------------------

PATHS = ("insert", "update_before", "update_after", "snapshot", "delete")


@dataclass
class Run:
    path: Path
    tables: dict[str, str]  # case or keyed-table name -> table
    rows: dict[str, dict[Any, str]] = field(default_factory=dict)  # table -> row id -> literal
    rendered: dict[str, dict[Any, Any]] = field(default_factory=dict)  # table -> row id -> expected
    python: dict[str, dict[Any, Any]] = field(default_factory=dict)  # table -> row id -> sqlite3's value
    got: dict[str, dict[str, dict[Any, Any]]] = field(default_factory=lambda: {p: {} for p in PATHS})
    schemas: dict[str, Any] = field(default_factory=dict)
    undecodable: dict[str, list[Undecodable]] = field(default_factory=dict)  # table -> items
    items: list[Any] = field(default_factory=list)  # everything the readers yielded (contract checks)


def _row_id(table: str, event_key: dict[str, Any] | None, row: dict[str, Any]) -> Any:
    if table.endswith("_k_rowid"):
        assert event_key is not None
        return event_key["rowid"]
    return row["id"]


def _record(run: Run, item: Any, path_of: dict[Op, list[str]]) -> None:
    run.items.append(item)
    if isinstance(item, Undecodable):
        run.undecodable.setdefault(item.table.removeprefix("main."), []).append(item)
        return
    if not isinstance(item, ChangeEvent):
        return
    table = item.source.table
    run.schemas[table] = item.schema
    for path in path_of[item.op]:
        row = item.before if path in ("update_before", "delete") else item.after
        assert row is not None
        run.got[path].setdefault(table, {})[_row_id(table, item.key, row)] = row


def _drain(stream: Iterator[Any], run: Run, until: int, counted: set[Op]) -> None:
    path_of = {
        Op.CREATE: ["insert"],
        Op.UPDATE: ["update_before", "update_after"],
        Op.DELETE: ["delete"],
        Op.READ: ["snapshot"],
    }
    seen = 0
    deadline = time.monotonic() + 60
    while seen < until:
        item = next(stream)
        if item is None:
            assert time.monotonic() < deadline, f"timed out after {seen} of {until}"
            continue
        _record(run, item, path_of)
        if isinstance(item, Undecodable) or (isinstance(item, ChangeEvent) and item.op in counted):
            seen += 1


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    path = tmp_path_factory.mktemp("sqlite_types") / "types.db"
    tables = {c.name: f"ty_{c.name}" for c in CASES} | {k: f"ty_k_{k}" for k in KEYED}
    result = Run(path, tables)
    w = sqlite3.connect(path, isolation_level=None)
    w.text_factory = bytes  # read TEXT as its bytes: some of it is not UTF-8
    w.execute("PRAGMA synchronous = OFF")  # a scratch file: no fsync per statement
    for case in CASES:
        w.execute(f"CREATE TABLE {tables[case.name]} (id INTEGER PRIMARY KEY, v {case.ddl})")
        result.rows[tables[case.name]] = dict(enumerate(case.values, 1))
    for name, ddl in KEYED.items():
        w.execute(ddl.format(t=tables[name]))
        result.rows[tables[name]] = dict(enumerate(_keyed_values(), 1))
    stream_reader = SqliteReader(
        str(path), list(tables.values()), pipeline_name="types", consumer="stream", poll_interval_s=0.01
    )
    stream_reader.open()
    stream = stream_reader.stream(None)
    assert isinstance(next(stream), Heartbeat)
    try:
        total = sum(len(rows) for rows in result.rows.values())
        for table, rows in result.rows.items():
            for row_id, literal in rows.items():
                if table == tables["composite"]:
                    w.execute(f"INSERT INTO {table} (tag, id, v) VALUES ('k', {row_id}, {literal})")
                elif table == tables["rowid_named"]:
                    w.execute(f"INSERT INTO {table} (rowid, id, v) VALUES ('r{row_id}', {row_id}, {literal})")
                else:
                    w.execute(f"INSERT INTO {table} (id, v) VALUES ({row_id}, {literal})")
            select = f"SELECT {'rowid' if table == tables['rowid'] else 'id'}, {RENDER}, v FROM {table}"
            rendered = w.execute(select).fetchall()
            result.rendered[table], result.python[table] = {}, {}
            for row in rendered:
                row_id, typeof, hexed, real, value = row[0], *(x.decode() for x in row[1:4]), row[4]
                result.rendered[table][row_id] = expect(typeof, hexed, real)
                result.python[table][row_id] = _text(value) if typeof == "text" else documented(value)
        _drain(stream, result, total, {Op.CREATE})
        for table in result.rows:
            w.execute(f"UPDATE {table} SET v = v")
        _drain(stream, result, total, {Op.UPDATE})

        snapshot_reader = SqliteReader(
            str(path), list(tables.values()), pipeline_name="types", consumer="snap", snapshot=True
        )
        snapshot_reader.open()
        try:
            _drain(snapshot_reader.stream(None), result, total, {Op.READ})
        finally:
            snapshot_reader.close()

        for table in result.rows:
            w.execute(f"DELETE FROM {table}")
        _drain(stream, result, total, {Op.DELETE})
    finally:
        stream_reader.close()
        w.close()
    yield result


def _text(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1, 0.0 is not -0.0, bytes are not str)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:60] + f"...({len(text)} chars)"


def check(run: Run, table: str) -> None:
    problems = []
    for row_id, literal in run.rows[table].items():
        expected = run.rendered[table][row_id]
        if not same(run.python[table][row_id], expected):
            problems.append(f"{_short(literal)}: sqlite3 returned {_short(run.python[table][row_id])}")
        for path in PATHS:
            row = run.got[path].get(table, {}).get(row_id)
            if expected == UNDECODABLE:
                if row is not None:
                    problems.append(f"{_short(literal)}: {path} gave a row, expected an Undecodable")
                continue
            if row is None:
                problems.append(f"{_short(literal)}: no {path} event")
                continue
            value = row["v"]
            if not same(value, expected):
                problems.append(
                    f"{_short(literal)}: {path} gave {_short(value)}, expected {_short(expected)}"
                    " (SQLite's rendering)"
                )
            # The envelope writes what the event holds (V1): only bytes change, to base64.
            written = orjson.loads(dumps(value))
            if not isinstance(value, bytes) and not same(written, value):
                problems.append(f"{_short(literal)}: {path} is written as {_short(written)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_value_through_the_triggers_and_the_snapshot(run: Run, case: Case) -> None:
    check(run, run.tables[case.name])


@pytest.mark.parametrize("keyed", list(KEYED))
def test_every_value_in_tables_keyed_other_ways(run: Run, keyed: str) -> None:
    check(run, run.tables[keyed])


def test_text_that_is_not_utf8_is_undecodable_in_every_path(run: Run) -> None:
    """Each such row: one Undecodable per change (insert, update, delete) and one for the snapshot."""
    for table in run.rows:
        bad = [i for i, v in run.rendered[table].items() if v == UNDECODABLE]
        got = run.undecodable.get(table, [])
        assert len(got) == 4 * len(bad), (table, len(got), len(bad))
        assert all("UTF-8" in u.reason and u.table == f"main.{table}" for u in got)


def _connect_type(value: Any) -> str:
    """The Connect type a value is, by the docs' encodings (a REAL's infinities are strings)."""
    if value in ("Infinity", "-Infinity") or isinstance(value, float):
        return "float64"
    return {int: "int64", str: "string", bytes: "bytes"}[type(value)]


def test_the_schema_follows_the_declared_affinity(run: Run) -> None:
    """The schema describes the declared column (SQLite is dynamically typed): every value of the
    affinity's own storage class is of the schema's type; NUMERIC columns are described as strings
    (DECIMAL when declared so) and carry numbers as stored (docs/sources/sqlite.md)."""
    for case in CASES:
        table = run.tables[case.name]
        column = run.schemas[table].column("v")
        assert column.type == SCHEMA_TYPE[case.affinity], (case.name, column)
        natural = NATURAL.get(case.affinity)
        for expected in run.rendered[table].values():
            if natural is not None and isinstance(expected, natural):
                assert _connect_type(expected) == column.type, (case.name, expected)
    assert run.schemas[run.tables["decimal"]].column("v").source_type == "DECIMAL(10,2)"
    assert run.schemas[run.tables["none"]].column("v").source_type == "BLOB"
    rowid_schema = run.schemas[run.tables["rowid"]]
    assert rowid_schema.key == ("rowid",) and rowid_schema.column("rowid").type == "int64"
    assert run.schemas[run.tables["composite"]].key == ("tag", "id")


def test_nan_bound_from_python_is_stored_as_null(tmp_path: Path) -> None:
    """SQLite has no NaN: a NaN bound as a parameter (or computed) is stored as NULL."""
    path = tmp_path / "nan.db"
    w = sqlite3.connect(path, isolation_level=None)
    w.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v REAL)")
    reader = SqliteReader(str(path), ["t"], pipeline_name="p", poll_interval_s=0.01)
    reader.open()
    stream = reader.stream(None)
    next(stream)
    w.execute("INSERT INTO t VALUES (1, ?)", (float("nan"),))
    item = next(i for i in stream if i is not None)
    reader.close()
    assert isinstance(item, ChangeEvent) and item.after == {"id": 1, "v": None}
    assert w.execute("SELECT typeof(v) FROM t").fetchone() == ("null",)


def test_the_event_contract_holds_for_every_item(run: Run) -> None:
    """V1 (JSON-ready values), V2 (the key equals the row's), V5 (the schema names every column)..."""
    stream = ContractChecker().check_all([i for i in run.items if not _is_snapshot(i)])
    snapshot = ContractChecker().check_all([i for i in run.items if _is_snapshot(i)])
    assert not stream and not snapshot, (stream[:5], snapshot[:5])
    # A rowid-keyed table with a column named "rowid": the key is the rowid, under its own name.
    named = [i for i in run.items if isinstance(i, ChangeEvent) and i.source.table.endswith("rowid_named")]
    assert named and all(i.key is not None and set(i.key) == {"_rowid_"} for i in named)


def _is_snapshot(item: Any) -> bool:
    return isinstance(item, ChangeEvent) and item.op is Op.READ
