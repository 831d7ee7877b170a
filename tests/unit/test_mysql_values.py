"""MySQL/MariaDB value decoding without a server: binlog_values (what python-mysql-replication gets wrong)
and the types.py repairs. tests/integration/test_mysql_types.py checks the same against the server."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysqlreplication import row_event
from pymysqlreplication.constants import FIELD_TYPE

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.mysql import binlog_values, convert, types
from cdc_logs.readers.mysql.schema import binlog_schema


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_mod(a: int, b: int) -> int:
    return a - b * _c_div(a, b)


def encode_time2(micros: int, fsp: int) -> bytes:
    """TIME(fsp) as the server writes it (my_time_packed_to_binary, MySQL mysys/my_time.cc)."""
    negative, magnitude = micros < 0, abs(micros)
    seconds, fraction = divmod(magnitude, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    packed = (((hours << 12) | (minutes << 6) | secs) << 24) + fraction
    packed = -packed if negative else packed
    intpart, frac = packed >> 24, _c_mod(packed, 1 << 24)
    if fsp == 0:
        return (intpart + 0x800000).to_bytes(3, "big")
    if fsp <= 2:
        return (intpart + 0x800000).to_bytes(3, "big") + (_c_div(frac, 10_000) & 0xFF).to_bytes(1, "big")
    if fsp <= 4:
        return (intpart + 0x800000).to_bytes(3, "big") + (_c_div(frac, 100) & 0xFFFF).to_bytes(2, "big")
    return (packed + 0x800000000000).to_bytes(6, "big")


def test_time2_known_values() -> None:
    assert binlog_values.time2_micros(bytes.fromhex("7fffffffffff"), 6) == -1  # '-00:00:00.000001'
    assert binlog_values.time2_micros(bytes.fromhex("800000000000"), 6) == 0
    assert binlog_values.time2_micros(bytes.fromhex("800000"), 0) == 0
    assert binlog_values.time2_micros(encode_time2(-100_000, 1), 1) == -100_000
    assert binlog_values.time2_micros(encode_time2(-3_020_399_999_999, 6), 6) == -3_020_399_999_999


@given(
    seconds=st.integers(min_value=0, max_value=838 * 3600 + 59 * 60 + 59),
    fraction=st.integers(min_value=0, max_value=999_999),
    negative=st.booleans(),
    fsp=st.integers(min_value=0, max_value=6),
)
def test_time2_decodes_what_the_server_encodes(seconds: int, fraction: int, negative: bool, fsp: int) -> None:
    fraction -= fraction % 10 ** (6 - fsp)  # a TIME(fsp) holds fsp digits
    micros = seconds * 1_000_000 + fraction
    micros = -micros if negative else micros
    raw = encode_time2(micros, fsp)
    assert len(raw) == 3 + (fsp + 1) // 2
    assert binlog_values.time2_micros(raw, fsp) == micros


def test_install_replaces_the_library_pieces_once() -> None:
    assert binlog_values.install() == [] and binlog_values.install() == []
    binlog_values.require()
    assert row_event.RowsEvent._RowsEvent__read_time2 is binlog_values._read_time2  # type: ignore[attr-defined]
    assert row_event.RowsEvent.charset_to_encoding("cp1252") == "cdc_logs_mysql_latin1"
    init: Any = row_event.TableMapEvent.__init__  # table_maps' cache around binlog_values' corrections
    assert init.__qualname__.startswith("cached.") and init.__wrapped__.__qualname__.startswith("_wrap_")
    assert not hasattr(init.__wrapped__.__wrapped__, "__wrapped__"), "wrapped twice"


def test_a_library_without_the_pieces_to_correct_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binlog_values, "_installed", False)
    monkeypatch.setattr(binlog_values, "_missing", ["RowsEvent._RowsEvent__read_time2"])
    with pytest.raises(CdcError) as info:
        convert.column_converter(_column(FIELD_TYPE.LONG))
    assert info.value.kind is ErrorKind.CONFIG and "mysql-replication" in (info.value.hint or "")


def test_mysql_latin1_and_wide_charsets_decode_as_the_server_does() -> None:
    binlog_values.install()
    latin1 = binlog_values.encoding("cp1252")  # the library's name for latin1
    assert b"\x80\x81\x8d\x8f\x90\x9d\xe9\xff".decode(latin1) == "€\x81\x8d\x8f\x90\x9déÿ"
    assert "€é\x81".encode(latin1) == b"\x80\xe9\x81"
    assert "é😀".encode("utf-16-be").decode(binlog_values.encoding("utf16")) == "é😀"
    assert "é😀".encode("utf-32-be").decode(binlog_values.encoding("utf32")) == "é😀"
    assert "é".encode("utf-16-le").decode(binlog_values.encoding("utf16le")) == "é"
    assert "é".encode("utf-16-be").decode(binlog_values.encoding("ucs2")) == "é"
    assert binlog_values.encoding("utf8") == "utf8"
    assert binlog_values.encoding(None) == "utf-8"


def test_table_map_post_processing_sets_nullability_and_decodes_members() -> None:
    columns = [
        SimpleNamespace(name="id", character_set_name=None, enum_values=None, set_values=None),
        SimpleNamespace(
            name="e", character_set_name="cp1252", enum_values=["", b"\xe9", "a"], set_values=None
        ),
        SimpleNamespace(name="s", character_set_name="cp1252", enum_values=None, set_values=[b"\xdf", "b"]),
    ]
    binlog_values._after_table_map(SimpleNamespace(columns=columns, null_bitmask=b"\x06"))
    assert [c.nullable for c in columns] == [False, True, True]
    assert columns[1].enum_values == ["", "é", "a"]
    assert columns[2].set_values == ["ß", "b"]
    binlog_values._after_table_map(SimpleNamespace())  # a filtered-out table: nothing to do


def _column(kind: int, **kw: Any) -> Any:
    return SimpleNamespace(type=kind, fsp=kw.pop("fsp", 0), **kw)


def test_binlog_column_converters_repair_the_library_values() -> None:
    year = convert.column_converter(_column(FIELD_TYPE.YEAR))
    assert year is not None and year(1900) == 0 and year(1901) == 1901 and year(2155) == 2155
    binary = convert.column_converter(_column(FIELD_TYPE.STRING, character_set_name="binary", max_length=4))
    assert binary is not None
    assert binary("") == b"\x00" * 4  # the library's empty BINARY: the str ''
    assert binary(b"\x01") == b"\x01\x00\x00\x00"
    varbinary = convert.column_converter(_column(FIELD_TYPE.VARCHAR, character_set_name="binary"))
    assert varbinary is not None and varbinary("") == b"" and varbinary(b"\x00") == b"\x00"
    blob = convert.column_converter(_column(FIELD_TYPE.BLOB, character_set_name="binary"))
    assert blob is not None and blob("") == b""
    assert convert.column_converter(_column(FIELD_TYPE.VARCHAR, character_set_name="utf8")) is None
    zero = dt.datetime(1970, 1, 1)
    ts = convert.column_converter(_column(FIELD_TYPE.TIMESTAMP2, fsp=2))
    assert (
        ts is not None
        and ts(zero) is None
        and ts(dt.datetime(1970, 1, 1, 0, 0, 1)) == "1970-01-01T00:00:01.00Z"
    )
    ts_nn = convert.column_converter(_column(FIELD_TYPE.TIMESTAMP2, fsp=2, nullable=False))
    assert ts_nn is not None and ts_nn(zero) == "1970-01-01T00:00:00.00Z" and ts_nn(None) == ts_nn(zero)


def test_zero_dates_in_not_null_columns_are_the_epoch() -> None:
    date_nn = _column(FIELD_TYPE.DATE, nullable=False)
    date = _column(FIELD_TYPE.DATE, nullable=True)
    assert convert.zero_date_column(date_nn) and not convert.zero_date_column(date)
    assert not convert.zero_date_column(_column(FIELD_TYPE.LONG, nullable=False))
    to_nn, to_null = convert.column_converter(date_nn), convert.column_converter(date)
    assert to_nn is not None and to_null is not None
    shape = convert._TableShape([], [("d", to_nn), ("n", to_null)], [], [], [("d", to_nn)])
    assert convert._convert({"d": None, "n": None}, None, shape) == {"d": 0, "n": None}
    assert convert._convert({"d": dt.date(1970, 1, 2), "n": None}, None, shape) == {"d": 1, "n": None}
    assert types.datetime_value("0000-00-00 00:00:00", 3, nullable=False) == 0
    assert types.datetime_value("0000-00-00 00:00:00", 3) is None
    assert types.date_value("2024-00-10") is None and types.date_value("2024-00-10", nullable=False) == 0
    assert types.timestamp_value("0000-00-00 00:00:00", 0) is None
    assert types.timestamp_value("0000-00-00 00:00:00", 0, nullable=False) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("members", "definition", "expected"),
    [
        ("c,a", ["a", "b", "c"], "a,c"),
        ({"c", "a"}, ["a", "b", "c"], "a,c"),
        ("a,😀", ["a", "?"], "a,😀"),  # information_schema spells 4-byte members '?': keep the server's text
        ("", ["a"], ""),
        (None, ["a"], ""),
    ],
)
def test_set_value(members: Any, definition: list[str], expected: str) -> None:
    assert types.set_value(members, definition) == expected


def _char_column(name: str, kind: int, max_length: int, collation_id: int | None) -> Any:
    """A CHAR/VARCHAR column as the library leaves it after a TABLE_MAP: its charset and collation
    from the collation id (by the library's own table), its size in bytes."""
    encode, collation = (
        ("utf8", None) if collation_id is None else row_event.find_charset(collation_id, "mariadb")[:2]
    )
    return _column(
        kind,
        name=name,
        max_length=max_length,
        character_set_name=encode,
        collation_name=collation,
        is_primary=False,
    )


def test_binlog_char_lengths_are_characters_as_in_information_schema() -> None:
    columns = [
        _char_column("u4", FIELD_TYPE.VARCHAR, 160, 45),  # VARCHAR(40) utf8mb4_general_ci
        _char_column("c4", FIELD_TYPE.STRING, 40, 46),  # CHAR(10) utf8mb4_bin
        _char_column("u3", FIELD_TYPE.VARCHAR, 99, 33),  # VARCHAR(33) utf8mb3_general_ci
        _char_column("l1", FIELD_TYPE.VARCHAR, 21, 8),  # VARCHAR(21) latin1_swedish_ci
        _char_column("w2", FIELD_TYPE.VARCHAR, 18, 35),  # VARCHAR(9) ucs2_general_ci
        _char_column("w4", FIELD_TYPE.STRING, 44, 60),  # CHAR(11) utf32_general_ci
        _char_column("vb", FIELD_TYPE.VARCHAR, 13, 63),  # VARBINARY(13)
        _char_column("bn", FIELD_TYPE.STRING, 6, 63),  # BINARY(6)
        # a charset nobody could name (no charset_name, no collation): the bytes, an upper bound
        _char_column("np", FIELD_TYPE.VARCHAR, 160, None),
    ]
    schema = binlog_schema(columns, "db", "t", "mariadb")
    lengths = {c.name: c.length for c in schema.columns}
    assert lengths == {
        "u4": 40,
        "c4": 10,
        "u3": 33,
        "l1": 21,
        "w2": 9,
        "w4": 11,
        "vb": 13,
        "bn": 6,
        "np": 160,
    }
    kinds = {c.name: (c.type, c.source_type) for c in schema.columns}
    assert kinds["c4"] == ("string", "CHAR") and kinds["vb"] == ("bytes", "VARBINARY")
    assert kinds["bn"] == ("bytes", "BINARY")


def test_table_map_names_the_charset_of_collations_the_library_lacks() -> None:
    def text(kind: int = FIELD_TYPE.VARCHAR) -> Any:
        return SimpleNamespace(type=kind, character_set_name="utf8", collation_name=None, enum_values=None)

    columns = [
        text(),
        SimpleNamespace(type=FIELD_TYPE.LONG),
        text(),
        text(FIELD_TYPE.ENUM),
        text(FIELD_TYPE.BLOB),
    ]
    metadata = SimpleNamespace(charset_collation_list=[2304, 2816, 45], enum_and_set_collation_list=[8])
    event = SimpleNamespace(columns=columns, dbms="mariadb", optional_metadata=metadata)
    binlog_values._after_table_map(event)
    # utf8mb4_uca1400_ai_ci, utf16_uca1400_ai_ci, utf8mb4_general_ci; ENUM latin1_swedish_ci
    charsets = [getattr(c, "charset_name", None) for c in columns]
    assert charsets == ["utf8mb4", None, "utf16", "latin1", "utf8mb4"]
    # the codec for the ids the library took for UTF-8; the ones it knows are its business
    assert [getattr(c, "character_set_name", None) for c in columns] == [
        "utf8",
        None,
        "utf16",
        "utf8",
        "utf8",
    ]
    assert (
        binlog_values.mariadb_charset(3072 + 255) == "utf32" and binlog_values.mariadb_charset(4000) is None
    )
