"""A pure parser of the SQL_REDO text LogMiner writes for a row change (no I/O, no catalog).

LogMiner (V$LOGMNR_CONTENTS.SQL_REDO) renders each row change as one statement of a fixed shape:

    insert into "HR"."EMP"("ID","NAME","HIRED") values ('1','Bob',TO_DATE('2024-01-02', 'YYYY-MM-DD'));
    update "HR"."EMP" set "NAME" = 'Rob' where "ID" = '1' and "NAME" = 'Bob' and "NOTE" IS NULL;
    delete from "HR"."EMP" where "ID" = '1' and "NAME" = 'Rob';

Values are literals in the mining session's NLS formats: quoted strings (numbers too: '1'), with ''
for a quote inside; NULL (also `"C" = NULL` and `"C" IS NULL` in a WHERE); TO_DATE, TO_TIMESTAMP and
TO_TIMESTAMP_TZ calls with one or two string arguments; HEXTORAW('0A1B'); EMPTY_CLOB() and
EMPTY_BLOB() (the LOB's content follows in LOB_WRITE rows, which are not mined); UNISTR('\\00e9')
for characters the database character set cannot show; `Unsupported Type` for a value LogMiner
cannot render; and `||` between string pieces. The trailing `;` is optional (NO_SQL_DELIMITER), a
`ROWID = '...'` term of a WHERE is recorded apart, unquoted names are upper-cased as Oracle does.
CSF continuation (SQL_REDO longer than 4000 bytes continued in the next row) is joined before this
parser sees the text (rows.py).

`parse(sql)` returns a `Redo` or raises `RedoSqlError` (a `CdcError` of kind DECODE): never another
exception, whatever the input (tests/unit/test_oracle_redo_sql.py fuzzes it with 100,000+ inputs).
Error messages name the offset and what was expected, never the text itself (it holds row data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cdc_logs.errors import CdcError, ErrorKind

__all__ = [
    "UNSUPPORTED",
    "EmptyLob",
    "Raw",
    "Redo",
    "RedoSqlError",
    "Temporal",
    "Unsupported",
    "Value",
    "parse",
    "quote_string",
]


class RedoSqlError(CdcError):
    """SQL_REDO text this parser cannot read: the reader dead-letters the row (never skips it)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(
            ErrorKind.DECODE,
            f"unreadable SQL_REDO at offset {offset}: {message}",
            "the row goes to the dead-letter file with its SQL_REDO; report the statement's shape "
            "(docs/sources/oracle.md lists what is read)",
        )
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Temporal:
    """A TO_DATE / TO_TIMESTAMP / TO_TIMESTAMP_TZ call: its text and format model ('' when absent)."""

    func: str  # "TO_DATE" | "TO_TIMESTAMP" | "TO_TIMESTAMP_TZ"
    text: str
    fmt: str = ""


@dataclass(frozen=True, slots=True)
class Raw:
    """HEXTORAW('..'): the bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EmptyLob:
    """EMPTY_CLOB() / EMPTY_BLOB(): a LOB whose content the redo carries elsewhere (LOB_WRITE rows)."""

    kind: str  # "CLOB" | "BLOB"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """LogMiner's `Unsupported Type`: a value it cannot render."""


UNSUPPORTED: Final = Unsupported()

#: A parsed value: text (strings and numbers alike, as LogMiner quotes both), NULL, or a call.
Value = str | None | Temporal | Raw | EmptyLob | Unsupported


@dataclass(frozen=True, slots=True)
class Redo:
    """One parsed row change. `new`: the inserted row / the SET columns; `old`: the WHERE columns
    (the key and the supplementally logged columns) of an update or delete."""

    op: str  # "INSERT" | "UPDATE" | "DELETE"
    owner: str
    table: str
    new: dict[str, Value] | None = None
    old: dict[str, Value] | None = None
    rowid: str | None = None


_WS = re.compile(r"\s*")
_STRING = re.compile(r"'((?:[^']|'')*)'")
_QUOTED = re.compile(r'"([^"]*)"')
_BARE = re.compile(r"[A-Za-z][A-Za-z0-9_$#]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_UNISTR_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{4})|\\\\")
_CALLS: Final = frozenset({"TO_DATE", "TO_TIMESTAMP", "TO_TIMESTAMP_TZ"})


def quote_string(text: str) -> str:
    """`text` as an Oracle string literal (the inverse of reading one)."""
    return "'" + text.replace("'", "''") + "'"


class _Parser:
    __slots__ = ("n", "pos", "sql")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.pos = 0
        self.n = len(sql)

    # -- scanning ----------------------------------------------------------------------------------
    def fail(self, what: str) -> RedoSqlError:
        return RedoSqlError(what, self.pos)

    def ws(self) -> None:
        m = _WS.match(self.sql, self.pos)
        if m:
            self.pos = m.end()

    def peek(self) -> str:
        return self.sql[self.pos] if self.pos < self.n else ""

    def expect(self, char: str) -> None:
        self.ws()
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def accept(self, char: str) -> bool:
        self.ws()
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def word(self) -> str:
        """The next bare word, upper-cased ('' when none)."""
        self.ws()
        m = _WORD.match(self.sql, self.pos)
        if not m:
            return ""
        self.pos = m.end()
        return m.group().upper()

    def keyword(self, *words: str) -> None:
        for expected in words:
            if self.word() != expected:
                raise self.fail(f"expected {expected}")

    def peek_word(self) -> str:
        save = self.pos
        word = self.word()
        self.pos = save
        return word

    def identifier(self) -> str:
        self.ws()
        m = _QUOTED.match(self.sql, self.pos)
        if m:
            self.pos = m.end()
            if not m.group(1):
                raise self.fail("empty quoted identifier")
            return m.group(1)
        m = _BARE.match(self.sql, self.pos)
        if m:
            self.pos = m.end()
            return m.group().upper()
        raise self.fail("expected an identifier")

    def table_name(self) -> tuple[str, str]:
        first = self.identifier()
        if self.peek() == ".":
            self.pos += 1
            return first, self.identifier()
        return "", first

    def string(self) -> str:
        self.ws()
        m = _STRING.match(self.sql, self.pos)
        if not m:
            raise self.fail("expected a string literal")
        self.pos = m.end()
        return m.group(1).replace("''", "'")

    # -- values --------------------------------------------------------------------------------------
    def value(self) -> Value:
        first = self.term()
        self.ws()
        if not self.sql.startswith("||", self.pos):
            return first
        pieces = [first]
        while self.sql.startswith("||", self.pos):
            self.pos += 2
            pieces.append(self.term())
            self.ws()
        if not all(isinstance(p, str) or p is None for p in pieces):
            raise self.fail("|| joins strings only")
        return "".join(p for p in pieces if isinstance(p, str))  # NULL || 'x' is 'x' in Oracle

    def term(self) -> Value:
        self.ws()
        char = self.peek()
        if char == "'":
            return self.string()
        if char.isdigit() or char in "-+.":
            m = _NUMBER.match(self.sql, self.pos)
            if not m:
                raise self.fail("expected a number")
            self.pos = m.end()
            return m.group()
        word = self.word()
        if not word:
            raise self.fail("expected a value")
        if word == "NULL":
            return None
        if word == "UNSUPPORTED":
            self.keyword("TYPE")
            return UNSUPPORTED
        if word in _CALLS:
            self.expect("(")
            text = self.string()
            fmt = self.string() if self.accept(",") else ""
            self.expect(")")
            return Temporal(word, text, fmt)
        if word == "HEXTORAW":
            self.expect("(")
            start = self.pos
            hex_text = self.string()
            if not _HEX.fullmatch(hex_text) or len(hex_text) % 2:
                self.pos = start
                raise self.fail("HEXTORAW needs an even number of hex digits")
            self.expect(")")
            return Raw(bytes.fromhex(hex_text))
        if word in ("EMPTY_CLOB", "EMPTY_BLOB"):
            self.expect("(")
            self.expect(")")
            return EmptyLob(word[6:])
        if word == "UNISTR":
            self.expect("(")
            start = self.pos
            text = self.string()
            self.expect(")")
            return _unistr(text, start)
        raise self.fail("unknown function or keyword")

    # -- statements ----------------------------------------------------------------------------------
    def statement(self) -> Redo:
        verb = self.word()
        if verb == "INSERT":
            redo = self.insert()
        elif verb == "UPDATE":
            redo = self.update()
        elif verb == "DELETE":
            redo = self.delete()
        else:
            raise self.fail("expected insert, update or delete")
        self.accept(";")
        self.ws()
        if self.pos != self.n:
            raise self.fail("unexpected text after the statement")
        return redo

    def insert(self) -> Redo:
        self.keyword("INTO")
        owner, table = self.table_name()
        self.expect("(")
        columns = [self.identifier()]
        while self.accept(","):
            columns.append(self.identifier())
        self.expect(")")
        self.keyword("VALUES")
        self.expect("(")
        values = [self.value()]
        while self.accept(","):
            values.append(self.value())
        self.expect(")")
        if len(values) != len(columns):
            raise self.fail(f"{len(columns)} columns but {len(values)} values")
        return Redo("INSERT", owner, table, new=self._unique(columns, values))

    def update(self) -> Redo:
        owner, table = self.table_name()
        self.keyword("SET")
        columns, values = [], []
        while True:
            columns.append(self.identifier())
            self.expect("=")
            values.append(self.value())
            if not self.accept(","):
                break
        old, rowid = self.where()
        return Redo("UPDATE", owner, table, new=self._unique(columns, values), old=old, rowid=rowid)

    def delete(self) -> Redo:
        self.keyword("FROM")
        owner, table = self.table_name()
        old, rowid = self.where()
        if not old:  # LogMiner always names the deleted row: without it there is no key to send
            raise self.fail("a delete without WHERE terms")
        return Redo("DELETE", owner, table, old=old, rowid=rowid)

    def where(self) -> tuple[dict[str, Value], str | None]:
        """The WHERE terms (`"C" = v`, `"C" IS NULL`, joined by `and`); none when there is no WHERE."""
        if self.peek_word() != "WHERE":
            return {}, None
        self.word()
        columns: list[str] = []
        values: list[Value] = []
        rowid = None
        while True:
            self.ws()  # before looking for the quote: `ROWID` and `"ROWID"` (a column) differ
            quoted = self.peek() == '"'
            name = self.identifier()
            if self.peek_word() == "IS":
                self.keyword("IS", "NULL")
                value: Value = None
            else:
                self.expect("=")
                value = self.value()
            if name == "ROWID" and not quoted:
                if not isinstance(value, str):
                    raise self.fail("ROWID must be a string")
                rowid = value
            else:
                columns.append(name)
                values.append(value)
            if self.peek_word() != "AND":
                break
            self.word()
        return self._unique(columns, values), rowid

    def _unique(self, columns: list[str], values: list[Value]) -> dict[str, Value]:
        row = dict(zip(columns, values, strict=True))
        if len(row) != len(columns):
            raise self.fail("a column appears twice")
        return row


def _unistr(text: str, offset: int) -> str:
    """UNISTR's escapes: \\XXXX is a UTF-16 code unit (pairs make one character), \\\\ a backslash."""
    units: list[str] = []
    pos = 0
    for m in _UNISTR_ESCAPE.finditer(text):
        units.append(text[pos : m.start()])
        units.append(chr(int(m.group(1), 16)) if m.group(1) else "\\")
        pos = m.end()
    rest = text[pos:]
    if "\\" in rest or any("\\" in u for u in units[::2]):
        raise RedoSqlError("a backslash in UNISTR must start \\XXXX or \\\\", offset)
    units.append(rest)
    joined = "".join(units)
    try:
        # Surrogate pairs (characters beyond the BMP) become one character; a lone surrogate fails.
        return joined.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError:
        raise RedoSqlError("UNISTR holds an unpaired UTF-16 surrogate", offset) from None


def parse(sql: str) -> Redo:
    """Parse one SQL_REDO statement (CSF pieces already joined); see the module docstring."""
    if not isinstance(sql, str):
        raise RedoSqlError("SQL_REDO is not text", 0)
    return _Parser(sql).statement()
