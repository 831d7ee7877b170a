"""The matrix's Oracle case: the workload written as LogMiner rows, replayed at the reader's connection
boundary. Recorded-style data, not a server: no Oracle server can run on the project's machines.

`OracleReplayCase` plays the database. For each workload transaction it appends the rows LogMiner
would show in V$LOGMNR_CONTENTS (mined without COMMITTED_DATA_ONLY, ALL COLUMNS supplemental
logging) to `redo.jsonl` in the run's directory: START, one row per change with SQL_REDO as LogMiner
writes it in the session's NLS formats (TO_DATE, TO_TIMESTAMP, TO_TIMESTAMP_TZ, HEXTORAW, UNISTR for
non-ASCII text, quoted numbers, `IS NULL` in WHERE), and COMMIT; a rolled-back transaction also gets
its undo rows (ROLLBACK=1, same ROW_ID, in reverse order) and ROLLBACK, as Oracle writes them. The
snapshot rows are written as the snapshot's flashback query returns them (TO_CHAR texts). The table
is `MX."mx_<id>"` with quoted lower-case columns, so the envelopes carry the matrix's column names.

`FileReplaySession` stands where `connection.LogMinerSession` stands: `install()` puts it there, in
the test process (the event-contract test) and, through oracle_replay_run.py, in the `cdc-logs run`
subprocess the matrix starts. The reader, the pipeline and every sink are the product's code; what
is simulated is Oracle: this proves the Oracle reader's output through every sink, not LogMiner.

`state()` is the case's own model of the table (there is no database to read back): the matrix's
check that the source holds what the workload modelled is trivially true for this case.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.matrix import workload
from tests.matrix.sources import Run, SourceCase
from tests.matrix.workload import COLUMNS, Tx

ENV = "CDC_ORACLE_REPLAY_DIR"
DBID = "2718281828"
OWNER = "MX"
#: (column, Oracle type, precision, scale, length)
COLUMN_TYPES: tuple[tuple[str, str, int | None, int | None, int | None], ...] = (
    ("id", "NUMBER", 10, 0, 22),
    ("n", "NUMBER", 10, 0, 22),
    ("big", "NUMBER", 19, 0, 22),
    ("dec", "NUMBER", 12, 3, 22),
    ("dbl", "BINARY_DOUBLE", None, None, 8),
    ("txt", "VARCHAR2", None, None, 800),
    ("flag", "NUMBER", 1, 0, 22),
    ("d", "DATE", None, None, 7),
    ("ts3", "TIMESTAMP(3)", None, 3, 11),
    ("ts6", "TIMESTAMP(6)", None, 6, 11),
    ("tstz", "TIMESTAMP(6) WITH TIME ZONE", None, 6, 13),
    ("tm", "VARCHAR2", None, None, 20),
    ("bin", "RAW", None, None, 16),
    ("js", "VARCHAR2", None, None, 4000),
    ("note", "VARCHAR2", None, None, 200),
)
_TYPES = {c[0]: c[1] for c in COLUMN_TYPES}

# kind, unit: Oracle has no DATE without time (d is a DATE at midnight: microseconds in the envelope),
# no TIME (tm is text) and no BOOLEAN before 23 (flag is NUMBER(1)).
ORACLE_KINDS: dict[str, tuple[str, str]] = {
    "n": ("int", "us"), "big": ("int", "us"), "dec": ("dec", "us"), "dbl": ("float", "us"),
    "txt": ("text", "us"), "flag": ("bool", "us"), "d": ("date", "ts_us"), "ts3": ("ts", "us"),
    "ts6": ("ts", "us"), "tstz": ("ts", "us"), "tm": ("time", "us"), "bin": ("bytes", "us"),
    "js": ("json", "us"), "note": ("text", "us"),
}  # fmt: skip


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(value: Any) -> str:
    """A NUMBER as Oracle prints it: no trailing zeros, no 0 before the point (.5, -.25)."""
    text = format(Decimal(value).normalize(), "f") if not isinstance(value, bool) else str(int(value))
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def _unistr(text: str) -> str:
    out = []
    for char in text:
        if char == "\\":
            out.append("\\005C")
        elif char.isascii():
            out.append(char)
        else:
            data = char.encode("utf-16-be")
            out.extend(f"\\{data[i]:02X}{data[i + 1]:02X}" for i in range(0, len(data), 2))
    return "UNISTR(" + _q("".join(out)) + ")"


def _oracle_row(row: dict[str, Any]) -> dict[str, Any]:
    """The workload's typed row as the Oracle table holds it (d a DATE, tm and js text, flag 0/1)."""
    out = dict(row)
    if row["d"] is not None:
        out["d"] = dt.datetime.combine(row["d"], dt.time())
    if row["tm"] is not None:
        out["tm"] = row["tm"].isoformat(timespec="microseconds")
    if row["js"] is not None:
        out["js"] = json.dumps(row["js"], ensure_ascii=False)
    if row["flag"] is not None:
        out["flag"] = int(row["flag"])
    return out


def literal(column: str, value: Any) -> str:
    """`value` of `column` as SQL_REDO shows it."""
    if value is None:
        return "NULL"
    kind = _TYPES[column]
    if kind in ("NUMBER", "BINARY_DOUBLE"):
        return _q(repr(value) if isinstance(value, float) else _number(value))
    if kind == "DATE":
        return f"TO_DATE('{value:%Y-%m-%d %H:%M:%S}', 'YYYY-MM-DD HH24:MI:SS')"
    if kind == "TIMESTAMP(3)":
        return f"TO_TIMESTAMP('{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d}')"
    if kind == "TIMESTAMP(6)":
        return f"TO_TIMESTAMP('{value:%Y-%m-%d %H:%M:%S.%f}')"
    if kind.endswith("WITH TIME ZONE"):
        return f"TO_TIMESTAMP_TZ('{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S.%f} +00:00')"
    if kind == "RAW":
        return f"HEXTORAW('{value.hex().upper()}')"
    return _unistr(value) if column == "txt" else _q(value)


def snapshot_text(column: str, value: Any) -> str | None:
    """`value` as the snapshot's flashback query renders it (TO_CHAR / RAWTOHEX)."""
    if value is None:
        return None
    kind = _TYPES[column]
    if kind in ("NUMBER", "BINARY_DOUBLE"):
        return repr(value) if isinstance(value, float) else _number(value)
    if kind == "DATE":
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if kind.startswith("TIMESTAMP("):
        stamp = value.astimezone(dt.UTC) if value.tzinfo else value
        text = f"{stamp:%Y-%m-%d %H:%M:%S.%f}000"
        return text + (" +00:00" if kind.endswith("ZONE") else "")
    if kind == "RAW":
        return value.hex().upper()
    return str(value)


class RedoWriter:
    """Appends a transaction's LogMiner rows to redo.jsonl; `scn` is the last SCN written."""

    def __init__(self, root: Path, table: str) -> None:
        self.root = root
        self.table = table
        self.scn = 5000
        self.txn = 0
        self.rowids: dict[int, str] = {}
        self.rows: dict[int, dict[str, Any]] = {}  # the table as Oracle holds it

    def _row(
        self, code: int, xid: str, sql: str | None, *, rowid: str = "", rollback: int = 0
    ) -> dict[str, Any]:
        self.scn += 1
        op = {1: "INSERT", 2: "DELETE", 3: "UPDATE", 6: "START", 7: "COMMIT", 36: "ROLLBACK"}[code]
        dml = code in (1, 2, 3)
        return {
            "SCN": self.scn,
            "START_SCN": None,
            "COMMIT_SCN": self.scn if code == 7 else None,
            "XID": xid,
            "OPERATION_CODE": code,
            "OPERATION": op,
            "SEG_OWNER": OWNER if dml else None,
            "TABLE_NAME": self.table if dml else None,
            "SQL_REDO": sql,
            "CSF": 0,
            "ROLLBACK": rollback,
            "RS_ID": f" 0x000001.{self.scn:08x}.0010 ",
            "SSN": 0,
            "ROW_ID": rowid or "AAAAAAAAAAAAAAAAAA",
            "TIMESTAMP": dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0).isoformat(),
        }

    def _insert(self, rid: int, row: dict[str, Any]) -> str:
        cols = ",".join(f'"{c}"' for c in ("id", *COLUMNS))
        vals = ",".join([literal("id", rid), *(literal(c, row[c]) for c in COLUMNS)])
        return f'insert into "{OWNER}"."{self.table}"({cols}) values ({vals});'

    def _where(self, rid: int, row: dict[str, Any]) -> str:
        terms = [f'"id" = {literal("id", rid)}']
        terms += [f'"{c}" IS NULL' if row[c] is None else f'"{c}" = {literal(c, row[c])}' for c in COLUMNS]
        return " and ".join(terms)

    def _update(self, old_id: int, new_id: int, old: dict[str, Any], new: dict[str, Any]) -> str:
        sets = ([f'"id" = {literal("id", new_id)}'] if new_id != old_id else []) + [
            f'"{c}" = {literal(c, new[c])}' for c in COLUMNS if new[c] != old[c]
        ]
        if not sets:  # an update that changes nothing still names a column
            sets = [f'"{COLUMNS[0]}" = {literal(COLUMNS[0], new[COLUMNS[0]])}']
        return f'update "{OWNER}"."{self.table}" set {", ".join(sets)} where {self._where(old_id, old)};'

    def _delete(self, rid: int, row: dict[str, Any]) -> str:
        return f'delete from "{OWNER}"."{self.table}" where {self._where(rid, row)};'

    def transaction(self, tx: Tx) -> None:
        self.txn += 1
        xid = f"{self.txn:016X}"
        out = [self._row(6, xid, "set transaction read write;")]
        undo: list[dict[str, Any]] = []
        rows = dict(self.rows)
        rowids = dict(self.rowids)
        for op in tx.ops:
            new = _oracle_row(op.row())
            if op.kind == "insert":
                rowids[op.row_id] = f"AAAMX{op.row_id:013d}"
                out.append(self._row(1, xid, self._insert(op.row_id, new), rowid=rowids[op.row_id]))
                undo.append(
                    self._row(2, xid, self._delete(op.row_id, new), rowid=rowids[op.row_id], rollback=1)
                )
                rows[op.row_id] = new
            elif op.kind in ("update", "move"):
                target = op.new_id or op.row_id
                old = rows.pop(op.row_id)
                rid = rowids.pop(op.row_id)
                rowids[target] = rid
                out.append(self._row(3, xid, self._update(op.row_id, target, old, new), rowid=rid))
                undo.append(
                    self._row(3, xid, self._update(target, op.row_id, new, old), rowid=rid, rollback=1)
                )
                rows[target] = new
            elif op.kind == "delete":
                old = rows.pop(op.row_id)
                rid = rowids.pop(op.row_id)
                out.append(self._row(2, xid, self._delete(op.row_id, old), rowid=rid))
                undo.append(self._row(1, xid, self._insert(op.row_id, old), rowid=rid, rollback=1))
            else:
                raise ValueError(op.kind)
        if tx.rollback:
            for row in reversed(undo):
                self.scn += 1
                row["SCN"] = self.scn
                out.append(row)
            out.append(self._row(36, xid, "rollback;"))
        else:
            out.append(self._row(7, xid, "commit;"))
            self.rows, self.rowids = rows, rowids
        with open(self.root / "redo.jsonl", "a") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
        _write_json(self.root / "scn.json", {"scn": self.scn})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(tmp, path)


class OracleReplayCase(SourceCase):
    name = "oracle"
    config_type = "oracle"
    kinds = ORACLE_KINDS

    def __init__(self, root: Path) -> None:
        self.root = root / "oracle-redo"
        self.writer: RedoWriter | None = None
        self._saved: Any = None

    def identity(self, run: Run) -> tuple[str, str | None, str]:
        return ("REPLAY", OWNER, run.table)

    def prepare(self, run: Run) -> None:
        run.table = f"mx_{run.id}"
        self.root.mkdir(parents=True, exist_ok=True)
        catalog = [
            {
                "COLUMN_NAME": name,
                "DATA_TYPE": kind,
                "DATA_LENGTH": length,
                "DATA_PRECISION": precision,
                "DATA_SCALE": scale,
                "NULLABLE": "N" if name == "id" else "Y",
                "PK": name == "id",
            }
            for name, kind, precision, scale, length in COLUMN_TYPES
        ]
        _write_json(self.root / "catalog.json", {f"{OWNER}.{run.table}": catalog})
        self.writer = RedoWriter(self.root, run.table)
        snapshot = []
        for rid in workload.SNAPSHOT_IDS:
            row = _oracle_row(workload.values(rid, 0))
            self.writer.rows[rid] = row
            self.writer.rowids[rid] = f"AAAMX{rid:013d}"
            snapshot.append([snapshot_text("id", rid), *(snapshot_text(c, row[c]) for c in COLUMNS)])
        _write_json(self.root / "snapshot.json", {"scn": self.writer.scn, "rows": snapshot})
        (self.root / "redo.jsonl").write_text("")
        _write_json(self.root / "scn.json", {"scn": self.writer.scn})
        os.environ[ENV] = str(self.root)
        self._saved = install()

    def config(self, run: Run) -> dict[str, Any]:
        return {
            "type": "oracle",
            "dsn": "oracle://replay@replay:1521/REPLAY",
            "tables": [f'{OWNER}."{run.table}"'],
            "snapshot": True,
            "window_scns": 2000,
            "min_window_scns": 500,
            "poll_interval_ms": 50,
            "heartbeat_interval_ms": 1000,
            "redo_flush_lag_ms": 0,
        }

    def command(self, config_path: Path) -> list[str]:
        import sys

        return [
            sys.executable,
            str(Path(__file__).with_name("oracle_replay_run.py")),
            "run",
            "-c",
            str(config_path),
        ]

    def execute(self, run: Run, tx: Tx) -> None:
        assert self.writer is not None
        self.writer.transaction(tx)

    def state(self, run: Run) -> dict[int, dict[str, Any]]:
        assert self.writer is not None
        out = {}
        for rid, row in self.writer.rows.items():
            typed = dict(row)
            if typed["d"] is not None:
                typed["d"] = typed["d"].date()
            out[rid] = typed
        return out

    def cleanup(self, run: Run) -> None:
        os.environ.pop(ENV, None)
        uninstall(self._saved)


# -- the connection boundary ------------------------------------------------------------------------
def install() -> Any:
    """Put FileReplaySession where the Oracle reader's connection is (returns what was there)."""
    from cdc_logs.readers.oracle import connection

    saved = connection.LogMinerSession
    connection.LogMinerSession = FileReplaySession  # type: ignore[misc,assignment]
    return saved


def uninstall(saved: Any) -> None:
    if saved is not None:
        from cdc_logs.readers.oracle import connection

        connection.LogMinerSession = saved  # type: ignore[misc]


class FileReplaySession:
    """Answers the reader's queries from the directory `OracleReplayCase` writes (see the module
    docstring); constructed as LogMinerSession is, the directory from CDC_ORACLE_REPLAY_DIR."""

    def __init__(self, dsn: Any, *, pdb: str | None = None, fetch_rows: int = 2000, **timeouts: Any) -> None:
        self.root = Path(os.environ[ENV])
        self.where = "replay"
        self._rows: list[dict[str, Any]] = []
        self._offset = 0

    def identity(self) -> Any:
        from cdc_logs.readers.oracle.connection import Identity

        return Identity(DBID, "REPLAY")

    def current_scn(self) -> int:
        return int(json.loads((self.root / "scn.json").read_text())["scn"])

    def oldest_open_scn(self) -> int | None:
        return None  # every transaction is written whole

    def list_logs(self, start: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        online = {
            "MEMBER": "/opt/oracle/oradata/REPLAY/redo01.log",
            "THREAD#": 1,
            "SEQUENCE#": 1,
            "FIRST_CHANGE#": 1,
            "NEXT_CHANGE#": None,
            "STATUS": "CURRENT",
            "ARCHIVED": "NO",
        }
        return [online], []

    def table_columns(self, owner: str, table: str) -> list[Any]:
        from cdc_logs.readers.oracle.schema import CatalogColumn

        rows = json.loads((self.root / "catalog.json").read_text()).get(f"{owner}.{table}", [])
        return [
            CatalogColumn(
                r["COLUMN_NAME"], r["DATA_TYPE"], r["DATA_LENGTH"], r["DATA_PRECISION"], r["DATA_SCALE"],
                r["NULLABLE"] != "N", r["PK"],
            )
            for r in rows
        ]  # fmt: skip

    def _load(self) -> None:
        with open(self.root / "redo.jsonl", "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        for line in data[:end].splitlines():
            self._rows.append(json.loads(line))
        self._offset += end

    def mine(
        self, files: Sequence[Any], start: int, end: int, tables: Sequence[tuple[str, str]]
    ) -> Iterator[dict[str, Any]]:
        self._load()
        wanted = set(tables)
        for row in self._rows:
            if start < row["SCN"] <= end and (
                row["OPERATION_CODE"] in (6, 7, 36) or (row["SEG_OWNER"], row["TABLE_NAME"]) in wanted
            ):
                yield dict(row)

    def snapshot_rows(self, sql: str, scn: int) -> Iterator[tuple[Any, ...]]:
        recorded = json.loads((self.root / "snapshot.json").read_text())
        assert recorded["scn"] == scn, (recorded["scn"], scn)
        yield from (tuple(r) for r in recorded["rows"])

    def try_query(self, sql: str, binds: dict[str, Any] | None = None) -> Any:
        raise AssertionError("doctor is not replayed")

    def close(self) -> None:
        pass
