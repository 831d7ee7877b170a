"""row_images.py on hand-made row images: the values it reads, and every case where it must leave the
event to python-mysql-replication (None) instead of guessing. Its equality with the library on a real
server's binlog, type by type, is tests/integration/test_mysql_row_images.py."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pymysqlreplication.column import Column
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

import cdc_logs.readers.mysql.convert  # noqa: F401 - binlog_values' corrections, as the reader has them
from cdc_logs.readers.mysql.row_images import RowImages

COLUMNS = [
    Column(type=FIELD_TYPE.LONG, name="id", unsigned=False),
    Column(type=FIELD_TYPE.VARCHAR, name="name", max_length=128, character_set_name="utf8mb4"),
    Column(type=FIELD_TYPE.NEWDECIMAL, name="price", precision=8, decimals=2),
    Column(type=FIELD_TYPE.DATETIME2, name="at", fsp=3),
    Column(type=FIELD_TYPE.TINY, name="flag", unsigned=True),
]


def _decimal_8_2(text: str) -> bytes:
    """DECIMAL(8,2): 6 integral digits in 3 bytes, 2 fractional in 1; negative: every byte inverted."""
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    data = bytearray(int(whole).to_bytes(3, "big") + int(frac).to_bytes(1, "big"))
    data[0] |= 0x80
    if negative:
        data = bytearray(b ^ 0xFF for b in data)
    return bytes(data)


def _datetime2(value: dt.datetime, fsp: int) -> bytes:
    year_month = value.year * 13 + value.month
    packed = (1 << 39) | (year_month << 22) | (value.day << 17) | (value.hour << 12)
    packed |= (value.minute << 6) | value.second
    digits = 2 * ((fsp + 1) // 2)  # an odd precision is stored with one more digit (zero)
    fraction = value.microsecond // 10 ** (6 - digits)
    return packed.to_bytes(5, "big") + fraction.to_bytes((fsp + 1) // 2, "big")


def _row(id_: int, name: str | None, price: str, at: dt.datetime, flag: int) -> bytes:
    nulls = 0b10 if name is None else 0
    out = bytes([nulls]) + struct.pack("<i", id_)
    if name is not None:
        raw = name.encode()
        out += bytes([len(raw)]) + raw
    return out + _decimal_8_2(price) + _datetime2(at, 3) + bytes([flag])


def _event(kind: type, body: bytes, *, columns: list[Column] = COLUMNS, **overrides: Any) -> Any:
    """A rows event as the library leaves it after reading its header: the rows unread in its packet."""
    header = b"HEADER"
    event = kind.__new__(kind)
    packet = SimpleNamespace(_data=header + body + b"CRC!", _position=len(header))
    wrapper = SimpleNamespace(packet=packet, read_bytes=10, _BinLogPacketWrapper__data_buffer=b"")
    every = bytes([(1 << len(columns)) - 1])
    attributes = {
        "packet": wrapper,
        "event_size": 10 + len(body),
        "columns": columns,
        "columns_present_bitmap": every,
        "columns_present_bitmap2": every,
        "complete": True,
        "_processed": True,
        "_ignore_decode_errors": False,
    }
    attributes.update(overrides)
    for name, value in attributes.items():
        setattr(event, name, value)
    return event


AT = dt.datetime(2024, 1, 2, 3, 4, 5, 123000)
ROW_A = _row(1, "héllo", "1234.56", AT, 255)
ROW_B = _row(-2, None, "-0.01", AT.replace(microsecond=0), 0)


def test_a_write_event_with_two_rows() -> None:
    parser = RowImages.for_columns(COLUMNS)
    assert parser is not None
    rows = parser.rows(_event(WriteRowsEvent, ROW_A + ROW_B))
    assert rows == [
        {
            "values": {"id": 1, "name": "héllo", "price": Decimal("1234.56"), "at": AT, "flag": 255},
            "none_sources": {},
        },
        {
            "values": {
                "id": -2,
                "name": None,
                "price": Decimal("-0.01"),
                "at": AT.replace(microsecond=0),
                "flag": 0,
            },
            "none_sources": {"name": "null"},
        },
    ]
    assert type(rows[0]["values"]["price"]) is Decimal


def test_an_update_event_pairs_the_images_and_a_delete_reads_like_a_write() -> None:
    parser = RowImages.for_columns(COLUMNS)
    assert parser is not None
    update = parser.rows(_event(UpdateRowsEvent, ROW_A + ROW_B))
    assert update is not None and len(update) == 1
    assert update[0]["before_values"]["id"] == 1 and update[0]["after_values"]["id"] == -2
    assert update[0]["after_none_sources"] == {"name": "null"}
    delete = parser.rows(_event(DeleteRowsEvent, ROW_B))
    assert delete is not None and delete[0]["values"]["price"] == Decimal("-0.01")


def test_columns_left_out_of_a_partial_image_are_none_by_the_bitmap() -> None:
    parser = RowImages.for_columns(COLUMNS)
    assert parser is not None
    # Only `id` present (MINIMAL's delete): a one-bit null bitmap, then the id.
    rows = parser.rows(
        _event(DeleteRowsEvent, b"\x00" + struct.pack("<i", 7), columns_present_bitmap=b"\x01")
    )
    assert rows == [
        {
            "values": {"id": 7, "name": None, "price": None, "at": None, "flag": None},
            "none_sources": {
                "name": "cols bitmap",
                "price": "cols bitmap",
                "at": "cols bitmap",
                "flag": "cols bitmap",
            },
        }
    ]


@pytest.mark.parametrize(
    ("case", "event"),
    [
        ("truncated", _event(WriteRowsEvent, ROW_A[:-1])),
        ("one byte too many", _event(WriteRowsEvent, ROW_A + b"\x00")),
        (
            "invalid UTF-8 (the library raises its own error)",
            _event(WriteRowsEvent, ROW_A.replace(b"llo", b"\xff\xfe\xfd")),
        ),
        ("bytes pushed back into the packet wrapper", _event(WriteRowsEvent, ROW_A, packet=None)),
        (
            "decode errors ignored: the library's rule",
            _event(WriteRowsEvent, ROW_A, _ignore_decode_errors=True),
        ),
        ("an incomplete event", _event(WriteRowsEvent, ROW_A, complete=False)),
        ("another column count", _event(WriteRowsEvent, ROW_A, columns=COLUMNS[:4])),
        ("rows the library has parsed already", _event(WriteRowsEvent, ROW_A, _RowsEvent__rows=[{}])),
        (
            "no column present, bytes left: no end",
            _event(DeleteRowsEvent, b"\x00\x00", columns_present_bitmap=b"\x00"),
        ),
        (
            "a codec that is not a text codec",
            _event(
                WriteRowsEvent,
                b"\x00\x02ab",
                columns=[Column(type=FIELD_TYPE.VARCHAR, name="v", max_length=10, character_set_name="hex")],
                columns_present_bitmap=b"\x01",
            ),
        ),
    ],
)
def test_what_it_cannot_read_cleanly_is_left_to_the_library(case: str, event: Any) -> None:
    if event.packet is None:  # a wrapper holding unread-back bytes (the library's DECIMAL reader does that)
        event.packet = SimpleNamespace(
            packet=SimpleNamespace(_data=b"HEADER" + ROW_A, _position=6),
            read_bytes=10,
            _BinLogPacketWrapper__data_buffer=b"\x80",
        )
    parser = RowImages.for_columns(event.columns if len(event.columns) != 4 else COLUMNS)
    assert parser is not None
    assert parser.rows(event) is None, case


def test_a_table_with_a_column_it_does_not_cover_keeps_the_library_parser() -> None:
    for column in (
        Column(type=FIELD_TYPE.JSON, name="doc", length_size=4),
        Column(type=FIELD_TYPE.GEOMETRY, name="shape", length_size=4),
        Column(type=FIELD_TYPE.DATETIME, name="old_style"),
        Column(type=FIELD_TYPE.ENUM, name="e", size=1, enum_values=None),  # no members: None, no reason
        Column(type=FIELD_TYPE.LONG, name=None, unsigned=False),  # no names (binlog_row_metadata MINIMAL)
    ):
        assert RowImages.for_columns([*COLUMNS, column]) is None, column.__dict__
