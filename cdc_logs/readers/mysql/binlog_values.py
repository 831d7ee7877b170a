"""Binlog value decoding that python-mysql-replication gets wrong, done here instead.

The library decodes each row value while it parses a row event; what it returns is turned into the
envelope value by types.py (see convert.column_converter). Most of its values are right or can be
repaired afterwards (YEAR 0000 arrives as 1900, an empty BINARY/VARBINARY/BLOB as the *str* '', a zero
TIMESTAMP as 1970-01-01 00:00:00: types.py repairs those). What cannot be repaired afterwards, because
the library has already lost the information, is corrected inside the library here:

* a negative TIME(1..6) with a fraction: the library reads the seconds and the fraction as two
  independent numbers, but MySQL stores the whole value as one offset-binary number, so for negative
  values the parts borrow from each other ('-00:00:00.000001' came out as -999999 µs). `_read_time2`
  decodes the bytes the way the server writes them (my_time_packed_from_binary in MySQL's
  mysys/my_time.cc; MariaDB writes the same format since 10.1, `mysql56_temporal_format`);
* character sets: the library decodes text with the Python codec named like the MySQL charset, but
  MySQL's `latin1` is cp1252 plus the five bytes cp1252 leaves undefined (0x81 0x8D 0x8F 0x90 0x9D,
  which Python refuses: one such byte stopped the whole stream), and MySQL's `utf16`/`utf32`/`ucs2`
  are big-endian without a byte order mark (Python's `utf16` guesses). `_charset_to_encoding` maps
  them to the right codecs;
* ENUM and SET members in the TABLE_MAP are in the column's charset, but the library decodes them as
  UTF-8 and turns any other member into '' (a latin1 ENUM('é') value came out as ''): members that
  are not UTF-8 are kept as bytes (`_read_type_values`) and decoded with the column's charset once
  it is known;
* collations the library's table lacks: it finds a text column's charset by its collation id, and
  takes an unknown id for UTF-8: MariaDB's UCA 14.0.0 collations (10.10+, ids from 2048, 256 a
  charset; a utf16_uca1400_ai_ci 'é' stopped the stream). `_name_charsets` resolves those ids and
  records every text column's MySQL charset name as `column.charset_name` (schema.py sizes
  CHAR/VARCHAR in characters by it: the library keeps only the codec name, utf8 for utf8mb3 and 4);
* column nullability: the TABLE_MAP event carries a null bitmap that the library reads and keeps on
  the event, not on its columns, so a row event cannot tell a NOT NULL column. Debezium writes a zero
  date in a NOT NULL column as the epoch (null only where the column allows null): the TABLE_MAP is
  post-processed to copy the bitmap onto each column as `column.nullable`.

`install()` replaces those pieces of the library's classes, once per process (convert.py calls it on
import). They are private parts of the library, so it checks they exist; on a version where they do
not, `require()` (called before any binlog row is converted) stops the reader with a CONFIG error: a
silently wrong value is worse than a stopped reader.
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.mysql import table_maps

_TIMEF_INT_OFS = 0x800000  # the offset of the 3-byte integer part (TIMEF_INT_OFS)
_TIMEF_OFS = 0x800000000000  # the offset of the 6-byte packed value of TIME(5..6) (TIMEF_OFS)
_lock = threading.Lock()
_installed = False
_missing: list[str] = []

# MySQL's latin1: cp1252, with the five bytes cp1252 leaves undefined mapped to the C1 controls.
_LATIN1_NAME = "cdc_logs_mysql_latin1"
_LATIN1_DECODE = "".join(
    chr(b) if b in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else bytes([b]).decode("cp1252") for b in range(256)
)
_LATIN1_ENCODE = codecs.charmap_build(_LATIN1_DECODE)
# The library's name for a column's charset (its `character_set_name`: the MySQL charset's name, but
# "cp1252" for latin1 and "utf8" for utf8mb3/utf8mb4) -> the Python codec that decodes it as the server
# does, where the name alone picks the wrong codec or none.
_ENCODINGS = {
    "cp1252": _LATIN1_NAME,
    "latin1": _LATIN1_NAME,
    "ucs2": "utf-16-be",
    "utf16": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf32": "utf-32-be",
    "macce": "mac-latin2",
    "eucjpms": "euc-jp",
}


def _latin1_search(name: str) -> codecs.CodecInfo | None:
    if name != _LATIN1_NAME:
        return None
    return codecs.CodecInfo(
        name=_LATIN1_NAME,
        encode=lambda text, errors="strict": codecs.charmap_encode(text, errors, _LATIN1_ENCODE),
        decode=lambda data, errors="strict": codecs.charmap_decode(data, errors, _LATIN1_DECODE),
    )


@functools.cache  # the library asks once per string value
def encoding(charset: str | None) -> str:
    """The Python codec that decodes text in the charset the library calls `charset`."""
    if not charset:
        return "utf-8"
    if charset in _ENCODINGS:
        return _ENCODINGS[charset]
    from pymysql.charset import charset_by_name

    try:
        known = charset_by_name(charset)
    except KeyError:
        known = None
    return known.encoding if known is not None else charset


def time2_micros(raw: bytes, fsp: int) -> int:
    """Microseconds of a TIME(fsp) value in MySQL's binary format (3 + ⌈fsp/2⌉ bytes, big-endian).

    The server packs a time as `(hh:mm:ss << 24) + µs`, negated as a whole for negative values, and
    stores it offset-binary. For fsp 1..4 the integer part and the fraction are stored separately,
    the fraction of a negative value counted down from the next second (for binary sort order).
    """
    number = int.from_bytes(raw, "big")
    if fsp <= 0:
        packed = (number - _TIMEF_INT_OFS) << 24
    elif fsp <= 4:
        frac_bytes = 1 if fsp <= 2 else 2
        intpart = (number >> (8 * frac_bytes)) - _TIMEF_INT_OFS
        frac = number & ((1 << (8 * frac_bytes)) - 1)
        if intpart < 0 and frac:
            intpart += 1
            frac -= 1 << (8 * frac_bytes)
        packed = (intpart << 24) + frac * (10_000 if frac_bytes == 1 else 100)
    else:
        packed = number - _TIMEF_OFS
    magnitude = abs(packed)
    hms, micros = magnitude >> 24, magnitude % (1 << 24)
    hours, minutes, seconds = (hms >> 12) % (1 << 10), (hms >> 6) % (1 << 6), hms % (1 << 6)
    total = (hours * 3600 + minutes * 60 + seconds) * 1_000_000 + micros
    return -total if packed < 0 else total


def _read_time2(self: Any, column: Any) -> dt.timedelta:
    """Replaces RowsEvent.__read_time2: same return type (a timedelta), the right value."""
    fsp = int(getattr(column, "fsp", 0) or 0)
    raw = self.packet.read(3 + (fsp + 1) // 2)
    return dt.timedelta(microseconds=time2_micros(bytes(raw), fsp))


def _charset_to_encoding(name: str) -> str:
    """Replaces RowsEvent.charset_to_encoding (a staticmethod)."""
    return encoding(name)


def _read_type_values(self: Any, length: int) -> list[list[str | bytes]] | None:
    """Replaces TableMapEvent._read_type_values: ENUM/SET members, kept as bytes when not UTF-8."""
    result: list[list[str | bytes]] = []
    read_until = self.packet.read_bytes + length
    if self.packet.read_bytes >= read_until:
        return None
    while self.packet.read_bytes < read_until:
        members: list[str | bytes] = []
        for _ in range(self.packet.read_length_coded_binary()):
            value = bytes(self.packet.read_variable_length_string())
            try:
                members.append(value.decode())
            except UnicodeDecodeError:
                members.append(value)  # decoded with the column's charset in _after_table_map
        result.append(members)
    return result


def _decode_members(members: list[Any] | None, charset: str | None) -> list[Any] | None:
    if not members or not any(isinstance(m, bytes) for m in members):
        return members
    codec = encoding(charset)
    return [m.decode(codec, "replace") if isinstance(m, bytes) else m for m in members]


# MariaDB's UCA 14.0.0 collations (10.10+): ids 2048 + 256 x the index of their charset here.
_UCA1400_CHARSETS = ("utf8mb3", "utf8mb4", "ucs2", "utf16", "utf32")


def mariadb_charset(collation_id: int) -> str | None:
    """The charset of a MariaDB collation id, also of one the library's table lacks."""
    from pymysqlreplication.constants import CHARSET

    known = CHARSET.charset_by_id(collation_id, "mariadb")
    if known is not None:
        return str(known.name)
    block = (collation_id - 2048) // 256
    return _UCA1400_CHARSETS[block] if 0 <= block < len(_UCA1400_CHARSETS) else None


def _name_charsets(event: Any, columns: list[Any]) -> None:
    """Each text/ENUM/SET column's MySQL charset name as `column.charset_name`, and the library's codec
    name where it took an id it does not know for UTF-8 (its own order of ids: sync_column_info)."""
    from pymysqlreplication.constants import CHARSET
    from pymysqlreplication.row_event import TableMapEvent

    metadata = getattr(event, "optional_metadata", None)
    texts = list(getattr(metadata, "charset_collation_list", None) or [])
    members = list(getattr(metadata, "enum_and_set_collation_list", None) or [])
    dbms = getattr(event, "dbms", "mysql")
    for column in columns:
        kind = getattr(column, "type", None)
        if TableMapEvent._is_character_column(kind, dbms=dbms):
            ids = texts
        elif TableMapEvent._is_enum_or_set_column(kind):
            ids = members
        else:
            continue
        if not ids:
            continue  # no FULL metadata: the library knows no charset either
        collation_id = int(ids.pop(0))
        known = CHARSET.charset_by_id(collation_id, dbms)
        name = known.name if known is not None else None
        if name is None and dbms == "mariadb":
            name = mariadb_charset(collation_id)
            if name is not None:  # the library's codec name for it (Charset.encoding)
                column.character_set_name = CHARSET.Charset(collation_id, name, "").encoding
        column.charset_name = name


def _after_table_map(event: Any) -> None:
    columns = getattr(event, "columns", None)
    if not columns:
        return  # a filtered-out table: the library stopped parsing it
    _name_charsets(event, columns)
    bitmap = getattr(event, "null_bitmask", None)
    if isinstance(bitmap, bytes | bytearray):
        for index, column in enumerate(columns):
            if index // 8 < len(bitmap):
                column.nullable = bool(bitmap[index // 8] & (1 << (index % 8)))
    for column in columns:
        charset = getattr(column, "character_set_name", None)
        if getattr(column, "enum_values", None):
            column.enum_values = _decode_members(column.enum_values, charset)
        if getattr(column, "set_values", None):
            column.set_values = _decode_members(column.set_values, charset)


def _wrap_table_map_init(original: Callable[..., None]) -> Callable[..., None]:
    def _table_map_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _after_table_map(self)

    _table_map_init.__wrapped__ = original  # type: ignore[attr-defined]
    return _table_map_init


def install() -> list[str]:
    """Patch the library (idempotent). Returns what this library version lacks (empty: installed);
    `require()` turns that into an error where a row is about to be converted."""
    global _installed, _missing
    with _lock:
        if _installed or _missing:
            return _missing
        from pymysqlreplication import row_event

        rows, table_map = row_event.RowsEvent, row_event.TableMapEvent
        _missing = [
            f"{cls.__name__}.{name}"
            for cls, name in (
                (rows, "_RowsEvent__read_time2"),
                (rows, "charset_to_encoding"),
                (table_map, "_read_type_values"),
            )
            if not callable(getattr(cls, name, None))
        ]
        if _missing:
            return _missing
        codecs.register(_latin1_search)
        rows._RowsEvent__read_time2 = _read_time2
        rows.charset_to_encoding = staticmethod(_charset_to_encoding)
        table_map._read_type_values = _read_type_values
        table_map.__init__ = table_maps.cached(_wrap_table_map_init(table_map.__init__))
        _installed = True
        return []


def require() -> None:
    """Raise unless install() succeeded: values decoded without the corrections would be wrong."""
    if not _installed and install():
        raise CdcError(
            ErrorKind.CONFIG,
            "this version of python-mysql-replication lacks what cdc-logs corrects in it: "
            + ", ".join(_missing),
            "install mysql-replication 1.0.x (pip install 'mysql-replication>=1.0.9,<1.1')",
        )
