"""Postgres column values -> the values Debezium's JSON converter writes by default, keyed by type OID.

pgoutput sends each column in text format (or binary with `binary 'true'`); `TypeRegistry` turns a
Relation message into a `RowConverter` once (one converter function per column, chosen by type OID
and type modifier), so converting a row is one dict comprehension. docs/postgres-types.md has the
table; in short (Debezium defaults: decimal.handling.mode=string, time.precision.mode=adaptive,
interval.handling.mode=numeric, binary.handling.mode=bytes):

  int2/int4/int8/oid -> int            numeric, money -> exact decimal string ("NaN", "Infinity")
  float4/float8 -> float, or the strings "NaN" / "Infinity" / "-Infinity" (Jackson's default)
  date -> days since 1970-01-01        time -> µs since midnight (ms when precision <= 3)
  timestamp -> µs since the epoch (ms when precision <= 3)
  timestamptz -> "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC (exactly `precision` fraction digits)
  timetz -> "HH:MM:SS[.f]Z" in UTC     interval -> µs, months of 365.25/12 days
  bytea -> bytes (base64 in the envelope)   bit(1)/varbit(1) -> bool, other bit -> little-endian bytes
  arrays -> lists (nested), everything else (text, uuid, json, inet, enums...) -> the text as-is

Values already come out JSON-ready (ints and strings), except bytes, which the envelope base64-encodes.
Text format assumes the walsender session runs with DateStyle=ISO, IntervalStyle=postgres (iso_8601 is
read too), client_encoding=UTF8 and lc_monetary=C; TimeZone=UTC is the fast path for timestamptz.
Domains resolve to their base type: from the Type message pgoutput sends for a domain column (it names
the base type) or from pg_type rows (`learn_pg_types`, see `PG_TYPE_QUERY`), which also tell enums
and arrays of user types apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.postgres import pgtime
from cdc_logs.readers.postgres.pgbinary import BINARY_FACTORIES, binary_array
from cdc_logs.readers.postgres.pgoutput import UNCHANGED, Relation, TupleValue, Type

__all__ = [
    "OID",
    "PG_TYPE_QUERY",
    "RowConverter",
    "TypeRegistry",
    "parse_array",
    "split_unchanged",
]

TextConverter = Callable[[str], Any]
BinaryConverter = Callable[[bytes], Any]


class OID:
    """Built-in type OIDs (pg_type.dat); stable across Postgres versions."""

    BOOL = 16
    BYTEA = 17
    CHAR = 18
    NAME = 19
    INT8 = 20
    INT2 = 21
    INT4 = 23
    TEXT = 25
    OID = 26
    JSON = 114
    XML = 142
    POINT = 600
    CIDR = 650
    FLOAT4 = 700
    FLOAT8 = 701
    MACADDR8 = 774
    MONEY = 790
    MACADDR = 829
    INET = 869
    BPCHAR = 1042
    VARCHAR = 1043
    DATE = 1082
    TIME = 1083
    TIMESTAMP = 1114
    TIMESTAMPTZ = 1184
    INTERVAL = 1186
    TIMETZ = 1266
    BIT = 1560
    VARBIT = 1562
    NUMERIC = 1700
    UUID = 2950
    JSONB = 3802


# base type oid -> (name, array type oid)
_BUILTINS: Final[dict[int, tuple[str, int]]] = {
    OID.BOOL: ("bool", 1000), OID.BYTEA: ("bytea", 1001), OID.CHAR: ("char", 1002), OID.NAME: ("name", 1003),
    OID.INT8: ("int8", 1016), OID.INT2: ("int2", 1005), OID.INT4: ("int4", 1007), OID.TEXT: ("text", 1009),
    OID.OID: ("oid", 1028), OID.JSON: ("json", 199), OID.XML: ("xml", 143), OID.POINT: ("point", 1017),
    OID.CIDR: ("cidr", 651), OID.FLOAT4: ("float4", 1021), OID.FLOAT8: ("float8", 1022),
    OID.MACADDR8: ("macaddr8", 775), OID.MONEY: ("money", 791), OID.MACADDR: ("macaddr", 1040),
    OID.INET: ("inet", 1041), OID.BPCHAR: ("bpchar", 1014), OID.VARCHAR: ("varchar", 1015),
    OID.DATE: ("date", 1182), OID.TIME: ("time", 1183), OID.TIMESTAMP: ("timestamp", 1115),
    OID.TIMESTAMPTZ: ("timestamptz", 1185), OID.INTERVAL: ("interval", 1187), OID.TIMETZ: ("timetz", 1270),
    OID.BIT: ("bit", 1561), OID.VARBIT: ("varbit", 1563), OID.NUMERIC: ("numeric", 1231),
    OID.UUID: ("uuid", 2951), OID.JSONB: ("jsonb", 3807),
}  # fmt: skip
_BOX, _BOX_ARRAY = 603, 1020  # the one built-in whose array delimiter is ';'
_ARRAYS: Final[dict[int, tuple[int, str]]] = {arr: (elem, ",") for elem, (_, arr) in _BUILTINS.items()}
_ARRAYS[_BOX_ARRAY] = (_BOX, ";")
# types whose Debezium value is their text as is (so passing the text through is not a fallback)
_STRING_TYPES: Final = frozenset(
    {OID.TEXT, OID.VARCHAR, OID.BPCHAR, OID.NAME, OID.CHAR, OID.UUID, OID.JSON, OID.JSONB, OID.XML, OID.INET,
     OID.CIDR, OID.MACADDR, OID.MACADDR8}
)  # fmt: skip
_BY_NAME: Final[dict[str, int]] = {name: oid for oid, (name, _) in _BUILTINS.items()} | {
    "_" + name: arr for _, (name, arr) in _BUILTINS.items()
}

#: The pg_type columns `TypeRegistry.learn_pg_types` reads, for the OIDs a Relation names.
PG_TYPE_QUERY: Final = (
    "SELECT oid, typname, typtype, typcategory, typbasetype, typtypmod, typelem, typdelim "
    "FROM pg_catalog.pg_type WHERE oid = ANY(%s)"
)


# ---- text format -------------------------------------------------------------------------------


def _bool(s: str) -> bool:
    if s == "t":
        return True
    if s == "f":
        return False
    raise ValueError(f"not a boolean: {s!r}")


def _float(s: str) -> float | str:
    # "NaN", "Infinity", "-Infinity" stay strings, as Jackson writes non-finite doubles by default
    return s if s[-1] in "yN" else float(s)


def _numeric(s: str) -> str:
    if not s:
        raise ValueError("empty numeric")
    return s


_HEX_PREFIX = "\\x"
_BYTEA_ESCAPE = re.compile(rb"\\(\\|[0-7]{3})")


def _bytea(s: str) -> bytes:
    if s.startswith(_HEX_PREFIX):
        return bytes.fromhex(s[2:])
    # bytea_output = escape: printable ASCII as is, a backslash doubled, other bytes as \\ooo
    return _BYTEA_ESCAPE.sub(_unescape_byte, s.encode("latin-1"))


def _unescape_byte(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    return b"\\" if code == b"\\" else bytes([int(code, 8)])


_MONEY_JUNK = re.compile(r"[^0-9.]")
_MONEY_MARKS = str.maketrans("", "", "$,()- ")


def _money(s: str) -> str:
    # lc_monetary=C prints "$1,234.56", "-$1,234.56"; some locales use "($1,234.56)" for negatives
    digits = s.translate(_MONEY_MARKS)
    if not digits.replace(".", "", 1).isdigit():
        digits = _MONEY_JUNK.sub("", s)  # another currency symbol
        if not digits or digits.count(".") > 1:
            raise ValueError(f"not a money value: {s!r}")
    return "-" + digits if s[0] in "-(" else digits


def _bits(typmod: int) -> TextConverter:
    if typmod == 1:  # BIT(1) / VARBIT(1): a boolean, like Debezium
        return lambda s: s == "1" if s in ("0", "1") else _bad_bits(s)

    def to_bytes(s: str) -> bytes:
        n = int(s, 2) if s else 0
        return n.to_bytes((n.bit_length() + 7) // 8, "little")

    return to_bytes


def _bad_bits(s: str) -> bool:
    raise ValueError(f"not a bit(1) value: {s!r}")


def _text_factories() -> dict[int, Callable[[int], TextConverter]]:
    def same(fn: TextConverter) -> Callable[[int], TextConverter]:
        return lambda _typmod: fn

    return {
        OID.BOOL: same(_bool),
        OID.INT2: same(int),
        OID.INT4: same(int),
        OID.INT8: same(int),
        OID.OID: same(int),
        OID.FLOAT4: same(_float),
        OID.FLOAT8: same(_float),
        OID.NUMERIC: same(_numeric),
        OID.MONEY: same(_money),
        OID.BYTEA: same(_bytea),
        OID.DATE: same(pgtime.text_date),
        OID.TIME: pgtime.text_time,
        OID.TIMETZ: same(pgtime.text_timetz),
        OID.TIMESTAMP: pgtime.text_timestamp,
        OID.TIMESTAMPTZ: pgtime.text_timestamptz,
        OID.INTERVAL: same(pgtime.text_interval),
        OID.BIT: _bits,
        OID.VARBIT: _bits,
    }


_TEXT_FACTORIES: Final = _text_factories()


def _as_text(s: str) -> str:
    return s


# ---- arrays (text form) ------------------------------------------------------------------------

_TOKENS: dict[str, re.Pattern[str]] = {}
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _tokenizer(delim: str) -> re.Pattern[str]:
    pattern = _TOKENS.get(delim)
    if pattern is None:
        d = re.escape(delim)
        pattern = re.compile(rf'"((?:[^"\\]|\\.)*)"|([{{}}]|{d})|([^{{}}"{d}]+)', re.DOTALL)
        _TOKENS[delim] = pattern
    return pattern


def parse_array(s: str, element: TextConverter = _as_text, delim: str = ",") -> list[Any]:
    """Parse Postgres array text (`{1,NULL,"a,b"}`, nested, with optional `[lo:hi]=` bounds)."""
    if s[0] == "[":  # explicit bounds, e.g. [0:1]={7,8}: the lower bound is not kept
        s = s[s.index("=") + 1 :]
    if s[0] != "{" or s[-1] != "}":
        raise ValueError(f"not an array: {s[:40]!r}")
    body = s[1:-1]
    if '"' not in body and "{" not in body and "}" not in body:  # flat and unquoted: the common case
        if not body:
            return []
        return [None if e == "NULL" else element(e) for e in body.split(delim)]
    stack: list[list[Any]] = []
    current: list[Any] | None = None
    result: list[Any] | None = None
    for m in _tokenizer(delim).finditer(s):
        quoted, punct, bare = m.group(1), m.group(2), m.group(3)
        if punct == "{":
            new: list[Any] = []
            if current is not None:
                current.append(new)
                stack.append(current)
            current = new
        elif punct == "}":
            if current is None:
                raise ValueError("unbalanced '}' in array")
            result = current
            current = stack.pop() if stack else None
        elif punct is not None:  # the delimiter
            continue
        elif current is None:
            raise ValueError("array element outside braces")
        elif quoted is not None:
            current.append(element(_UNESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted))
        else:
            bare = bare.strip()
            if bare:  # whitespace around a quoted element is not an element
                current.append(None if bare == "NULL" else element(bare))
    if result is None or current is not None:
        raise ValueError("unbalanced braces in array")
    return result


def _text_array(element: TextConverter, delim: str) -> TextConverter:
    return lambda s: parse_array(s, element, delim)


# ---- registry ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _UserType:
    name: tuple[str, str] | None = None  # (namespace, name) from a Type message
    base: tuple[int, int] | None = None  # domain: (base oid, base typmod)
    element: tuple[int, str] | None = None  # array: (element oid, delimiter)
    enum: bool = False


class TypeRegistry:
    """What the reader knows about type OIDs; builds per-relation converters.

    Feed it every Type message (`learn_type`) and, when it can run SQL, pg_type rows for the OIDs
    in each Relation (`learn_pg_types(rows of PG_TYPE_QUERY)`): pg_type is authoritative and also
    gives a domain's base typmod and the element type of arrays of user types.
    """

    def __init__(self) -> None:
        self._user: dict[int, _UserType] = {}
        self._by_name: dict[tuple[str, str], int] = {}

    # -- learning
    def learn_type(self, msg: Type) -> None:
        """A pgoutput Type message. For a domain it names the *base* type, so builtin bases resolve."""
        entry = self._user.setdefault(msg.oid, _UserType())
        entry.name = (msg.namespace, msg.name)
        self._by_name.setdefault((msg.namespace, msg.name), msg.oid)

    def register_domain(self, oid: int, base_oid: int, base_typmod: int = -1) -> None:
        self._user.setdefault(oid, _UserType()).base = (base_oid, base_typmod)

    def register_enum(self, oid: int) -> None:
        self._user.setdefault(oid, _UserType()).enum = True

    def register_array(self, oid: int, element_oid: int, delimiter: str = ",") -> None:
        self._user.setdefault(oid, _UserType()).element = (element_oid, delimiter)

    def learn_pg_types(self, rows: Iterable[Sequence[Any]]) -> None:
        """Rows of PG_TYPE_QUERY (oid, typname, typtype, typcategory, typbasetype, typtypmod, typelem,
        typdelim)."""
        for oid, _name, typtype, category, basetype, typmod, elem, delim in rows:
            if typtype == "d":
                self.register_domain(int(oid), int(basetype), int(typmod))
            elif typtype == "e":
                self.register_enum(int(oid))
            elif category == "A" and int(elem):
                self.register_array(int(oid), int(elem), str(delim or ","))

    def unknown_oids(self, relation: Relation) -> list[int]:
        """Column type OIDs that are neither built in nor learned from pg_type (query these)."""
        known = (_BUILTINS, _ARRAYS)
        return [
            c.type_oid
            for c in relation.columns
            if not any(c.type_oid in k for k in known) and not self._learned(c.type_oid)
        ]

    def _learned(self, oid: int) -> bool:
        entry = self._user.get(oid)
        return entry is not None and (entry.base is not None or entry.element is not None or entry.enum)

    # -- resolution
    def resolve(self, oid: int, typmod: int = -1) -> tuple[int, int, tuple[int, str] | None]:
        """(base oid, typmod, array element) after following domains; element is None for scalars."""
        for _ in range(32):  # domains over domains; bounded against cycles
            if oid in _ARRAYS:
                return oid, typmod, _ARRAYS[oid]
            entry = self._user.get(oid)
            if entry is None or oid in _BUILTINS:
                return oid, typmod, None
            if entry.element is not None:
                return oid, typmod, entry.element
            if entry.base is not None:
                oid, typmod = entry.base[0], entry.base[1] if entry.base[1] != -1 else typmod
                continue
            if entry.enum or entry.name is None:
                return oid, typmod, None
            ns, name = entry.name
            if ns == "pg_catalog" and name in _BY_NAME:  # Type message of a domain over a builtin
                oid = _BY_NAME[name]
                continue
            if name.startswith("_") and (ns, name[1:]) in self._by_name:  # array of a user type
                return oid, typmod, (self._by_name[(ns, name[1:])], ",")
            target = self._by_name.get((ns, name))
            if target is None or target == oid:
                return oid, typmod, None
            oid = target  # domain over a user type: the Type message named that type
        raise CdcError(ErrorKind.DECODE, f"type {oid}: domain chain too long (a cycle?)")

    def is_enum(self, oid: int) -> bool:
        entry = self._user.get(oid)
        return entry is not None and entry.enum

    def text_converter(self, oid: int, typmod: int = -1) -> TextConverter:
        base, typmod, element = self.resolve(oid, typmod)
        if element is not None:
            return _text_array(self.text_converter(element[0], typmod), element[1])
        factory = _TEXT_FACTORIES.get(base)
        return factory(typmod) if factory is not None else _as_text

    def binary_converter(self, oid: int, typmod: int = -1) -> BinaryConverter:
        base, typmod, element = self.resolve(oid, typmod)
        if element is not None:
            return binary_array(self.binary_converter(element[0], typmod))
        factory = BINARY_FACTORIES.get(base)
        if factory is not None:
            return factory(typmod)
        entry = self._user.get(base)
        if entry is not None and entry.enum:
            return _utf8
        return bytes  # unknown type in binary format: the raw bytes (see docs/postgres-types.md)

    def is_known(self, oid: int, typmod: int = -1) -> bool:
        """True when the type has its own converter (not the text / raw-bytes fallback)."""
        base, _, element = self.resolve(oid, typmod)
        if element is not None:
            return self.is_known(element[0], typmod)
        entry = self._user.get(base)
        return base in _TEXT_FACTORIES or base in _STRING_TYPES or (entry is not None and entry.enum)

    def row_converter(self, relation: Relation, *, binary: bool = False) -> RowConverter:
        """Precompute one converter per column. `binary`: the stream was started with binary 'true'."""
        cols = relation.columns
        text = tuple(self.text_converter(c.type_oid, c.type_modifier) for c in cols)
        convs: tuple[Callable[[Any], Any], ...]
        if binary:
            binaries = (self.binary_converter(c.type_oid, c.type_modifier) for c in cols)
            convs = tuple(_dual(t, b) for t, b in zip(text, binaries, strict=True))
        else:
            convs = text
        return RowConverter(
            relation=relation,
            names=tuple(c.name for c in cols),
            converters=convs,
            binary=binary,
            fallback=tuple(c.name for c in cols if not self.is_known(c.type_oid, c.type_modifier)),
        )


def _utf8(b: bytes) -> str:
    return b.decode()


def _dual(text: TextConverter, binary: BinaryConverter) -> Callable[[str | bytes], Any]:
    def convert(v: str | bytes) -> Any:
        return binary(v) if v.__class__ is bytes else text(v)  # type: ignore[arg-type]

    return convert


@dataclass(frozen=True, slots=True)
class RowConverter:
    """Converts a TupleData of one relation to a {column: value} dict, Debezium-style."""

    relation: Relation
    names: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]
    binary: bool = False
    fallback: tuple[str, ...] = field(default=())  # columns passed through as text / raw bytes

    def convert(self, values: Sequence[TupleValue]) -> dict[str, Any]:
        """Column name -> value. NULL -> None; an unchanged TOAST column keeps the UNCHANGED marker
        (only Update new tuples carry it: pass those through `split_unchanged`)."""
        if len(values) != len(self.names):
            raise self._error(f"{len(values)} values for {len(self.names)} columns (a stale Relation?)")
        try:
            if self.binary:
                return {
                    n: v if v is None or v is UNCHANGED else c(v)
                    for n, c, v in zip(self.names, self.converters, values)  # noqa: B905 - checked above
                }
            return {
                n: c(v) if v.__class__ is str else v
                for n, c, v in zip(self.names, self.converters, values)  # noqa: B905 - checked above
            }
        except Exception as exc:  # a value the converter cannot read: name the column
            raise self._column_error(values, exc) from exc

    def _column_error(self, values: Sequence[TupleValue], exc: Exception) -> CdcError:
        for name, conv, value in zip(self.names, self.converters, values, strict=True):
            if value is None or value is UNCHANGED or (not self.binary and value.__class__ is not str):
                continue
            try:
                conv(value)
            except Exception as inner:
                # Never the value itself (nor the exception text, which often quotes it): it may be
                # personal data, and errors reach logs. The dead-letter file keeps the raw row.
                length = len(value) if isinstance(value, str | bytes) else 0
                size = f"{length} {'bytes' if isinstance(value, bytes) else 'characters'}"
                problem = type(inner).__name__
                return self._error(f"column {name!r}: a value of {size} cannot be converted ({problem})")
        return self._error(f"conversion failed ({type(exc).__name__})")

    def _error(self, detail: str) -> CdcError:
        rel = self.relation
        return CdcError(
            ErrorKind.DECODE,
            f"{rel.namespace}.{rel.name}: {detail}",
            "check the replication session settings (DateStyle=ISO, IntervalStyle=postgres,"
            " client_encoding=UTF8, lc_monetary=C) and report the value",
        )


def split_unchanged(row: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Drop unchanged-TOAST columns from a converted row; return them as the envelope's `unchanged`."""
    unchanged = tuple(k for k, v in row.items() if v is UNCHANGED)
    if not unchanged:
        return row, ()
    return {k: v for k, v in row.items() if v is not UNCHANGED}, unchanged
