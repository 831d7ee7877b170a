"""Tests for cdc_logs.position: ordering per server, server identity, encode/decode, LSN text."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.position import (
    BinlogPosition,
    KafkaOffsets,
    Lsn,
    Position,
    Watermark,
    decode,
    format_lsn,
    parse_lsn,
)

SERVER = "7301234567890123456"
OTHER = "7309999999999999999"


def binlog(seq: int, pos: int, server: str = SERVER, gtid: str | None = None) -> BinlogPosition:
    return BinlogPosition(server=server, file=f"mysql-bin.{seq:06d}", pos=pos, gtid=gtid)


# ------------------------------------------------------------------------------------ ordering
def test_lsn_total_order_within_one_server() -> None:
    positions = [Lsn(SERVER, 30), Lsn(SERVER, 10), Lsn(SERVER, 20)]
    assert sorted(positions) == [Lsn(SERVER, 10), Lsn(SERVER, 20), Lsn(SERVER, 30)]
    assert max(positions) == Lsn(SERVER, 30)
    assert Lsn(SERVER, 1) < Lsn(SERVER, 2)
    assert Lsn(SERVER, 2) > Lsn(SERVER, 1)
    assert Lsn(SERVER, 2) >= Lsn(SERVER, 2)
    assert Lsn(SERVER, 2) <= Lsn(SERVER, 2)
    assert not Lsn(SERVER, 2) < Lsn(SERVER, 2)


def test_equal_positions_hash_equal() -> None:
    assert Lsn(SERVER, 5) == Lsn(SERVER, 5)
    assert len({Lsn(SERVER, 5), Lsn(SERVER, 5), Lsn(SERVER, 6)}) == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_lsn_order_is_integer_order(a: int, b: int) -> None:
    assert (Lsn(SERVER, a) < Lsn(SERVER, b)) == (a < b)
    assert (Lsn(SERVER, a) == Lsn(SERVER, b)) == (a == b)


def test_binlog_order_across_files_is_numeric_not_lexical() -> None:
    assert BinlogPosition(SERVER, "mysql-bin.000009", 9_999) < BinlogPosition(SERVER, "mysql-bin.000010", 4)
    assert BinlogPosition(SERVER, "mysql-bin.999999", 4) < BinlogPosition(SERVER, "mysql-bin.1000000", 4)
    assert binlog(3, 100) < binlog(3, 101)
    assert binlog(3, 101) > binlog(3, 100)


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.integers(1, 2_000_000), st.integers(4, 2**40)),
    st.tuples(st.integers(1, 2_000_000), st.integers(4, 2**40)),
)
def test_binlog_order_is_file_number_then_pos(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (binlog(*a) < binlog(*b)) == (a < b)


def test_watermark_kafka_orders() -> None:
    assert Watermark(SERVER, ("2024-01-01", 9)) < Watermark(SERVER, ("2024-01-01", 10))
    assert Watermark(SERVER, ("2024-01-01", 99)) < Watermark(SERVER, ("2024-01-02", 1))
    assert KafkaOffsets(SERVER, (("t:0", 5), ("t:1", 5))) < KafkaOffsets(SERVER, (("t:0", 5), ("t:1", 6)))


COMPARISONS: list[Callable[[Any, Any], bool]] = [operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("compare", COMPARISONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Lsn(SERVER, 1), Lsn(OTHER, 2)),
        (binlog(1, 4), binlog(1, 4, server=OTHER)),
        (Watermark(SERVER, (1,)), Watermark(OTHER, (2,))),
    ],
    ids=["lsn", "binlog", "watermark"],
)
def test_comparing_across_servers_is_a_server_mismatch(
    compare: Callable[[Any, Any], bool], left: Position, right: Position
) -> None:
    with pytest.raises(CdcError) as info:
        compare(left, right)
    assert info.value.kind is ErrorKind.SERVER_MISMATCH
    assert info.value.directive is Directive.OPERATOR
    assert left.server in info.value.message
    assert right.server in info.value.message
    assert info.value.hint and "offsets reset" in info.value.hint


def test_max_over_two_servers_refuses() -> None:
    with pytest.raises(CdcError) as info:
        max([Lsn(SERVER, 1), Lsn(OTHER, 2)])
    assert info.value.kind is ErrorKind.SERVER_MISMATCH


def test_positions_from_different_servers_are_never_equal() -> None:
    assert Lsn(SERVER, 1) != Lsn(OTHER, 1)
    assert Lsn(SERVER, 1) != Watermark(SERVER, (1,))
    assert Lsn(SERVER, 1) != "Lsn(1)"


def test_comparing_different_position_kinds_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = Lsn(SERVER, 1) < Watermark(SERVER, (2,))
    with pytest.raises(TypeError):
        _ = Lsn(SERVER, 1) < 5


def test_describe() -> None:
    assert Lsn(SERVER, 0x16B3748).describe() == "0/16B3748"
    assert binlog(9, 120).describe() == "mysql-bin.000009:120"
    assert binlog(9, 120, gtid="0-1-42").describe() == "mysql-bin.000009:120 gtid=0-1-42"
    assert Watermark(SERVER, (3, "x")).describe() == "3,x"


# ---------------------------------------------------------------------------- encode / decode
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_u64 = st.integers(0, 2**64 - 1)
_i64 = st.integers(-(2**63), 2**63 - 1)
_positions = st.one_of(
    st.builds(Lsn, server=_text, lsn=_u64),
    st.builds(
        BinlogPosition,
        server=_text,
        file=st.integers(1, 999_999).map(lambda n: f"mysql-bin.{n:06d}"),
        pos=st.integers(4, 2**63 - 1),
        gtid=st.none() | _text,
        flavor=st.sampled_from(["mysql", "mariadb"]),
    ),
    st.builds(
        Watermark,
        server=_text,
        values=st.lists(_i64 | _text | st.floats(allow_nan=False, allow_infinity=False), max_size=3).map(
            tuple
        ),
    ),
    st.builds(KafkaOffsets, server=_text, offsets=st.lists(st.tuples(_text, _i64), max_size=3).map(tuple)),
)


@settings(max_examples=300, deadline=None)
@given(_positions)
def test_encode_decode_round_trip(position: Position) -> None:
    text = position.encode()
    assert isinstance(text, str)
    back = decode(text)
    assert type(back) is type(position)
    assert back == position
    assert back.to_dict() == position.to_dict()  # also the fields outside sort_key (gtid, flavor)
    assert back.server == position.server
    assert back.encode() == text


def test_encoding_is_readable_json_with_type_and_server() -> None:
    data = orjson.loads(Lsn(SERVER, 42).encode())
    assert data == {"type": "pg_lsn", "server": SERVER, "lsn": 42}
    data = orjson.loads(binlog(10, 4, gtid="uuid:1-5").encode())
    assert data == {
        "type": "binlog",
        "server": SERVER,
        "file": "mysql-bin.000010",
        "pos": 4,
        "gtid": "uuid:1-5",
        "flavor": "mysql",
    }


def test_every_kind_is_registered_and_distinct() -> None:
    kinds = [cls.kind for cls in (Lsn, BinlogPosition, Watermark, KafkaOffsets)]
    assert len(set(kinds)) == len(kinds)
    assert all(kinds)


GARBAGE = [
    "",
    "not json",
    "{",
    "[]",
    "1",
    "null",
    '"pg_lsn"',
    '{"server": "s", "lsn": 1}',
    '{"type": "nope", "server": "s"}',
    '{"type": "pg_lsn"}',
    '{"type": "pg_lsn", "server": "s", "bogus": 1}',
    '{"type": "watermark"}',
    '{"type": "kafka", "server": "s", "offsets": [["t:0", "x"]]}',
    '{"type": "kafka", "server": "s", "offsets": [1]}',
]


@pytest.mark.parametrize("text", GARBAGE)
def test_decode_garbage_is_a_decode_error(text: str) -> None:
    with pytest.raises(CdcError) as info:
        decode(text)
    assert info.value.kind is ErrorKind.DECODE
    assert info.value.directive is Directive.STOP
    assert info.value.hint and "cdc-logs offsets" in info.value.hint


def test_decode_error_quotes_at_most_200_chars() -> None:
    text = "x" * 1000
    with pytest.raises(CdcError) as info:
        decode(text)
    assert "x" * 200 in info.value.message
    assert "x" * 201 not in info.value.message


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "pg_lsn", "server": "s", "lsn": "0/16B3748"}',
        '{"type": "binlog", "server": "s", "file": "mysql-bin.000001", "pos": "4"}',
        '{"type": "watermark", "server": 7, "values": [1]}',
    ],
)
def test_decode_rejects_wrongly_typed_fields(text: str) -> None:
    with pytest.raises(CdcError) as info:
        decode(text)
    assert info.value.kind is ErrorKind.DECODE


# -------------------------------------------------------------------------------------- LSN text
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", (0x16 << 32) | 0xB374D848),
        ("16/b374d848", (0x16 << 32) | 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_parse_lsn_examples(text: str, value: int) -> None:
    assert parse_lsn(text) == value


def test_format_lsn_examples() -> None:
    assert format_lsn(0) == "0/0"
    assert format_lsn(0x16B3748) == "0/16B3748"
    assert format_lsn((0x16 << 32) | 0xB374D848) == "16/B374D848"
    assert format_lsn(2**64 - 1) == "FFFFFFFF/FFFFFFFF"


@settings(max_examples=300, deadline=None)
@given(_u64)
def test_lsn_text_round_trip(lsn: int) -> None:
    text = format_lsn(lsn)
    assert parse_lsn(text) == lsn
    assert text == text.upper()
    hi, lo = text.split("/")
    assert len(hi) <= 8
    assert len(lo) <= 8


@pytest.mark.parametrize("text", ["", "16B3748", "1/2/3", "G/0", "0/", "/0", "0/xyz", "0x/1"])
def test_parse_lsn_rejects_bad_text(text: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_lsn(text)
    assert info.value.kind is ErrorKind.USAGE
    assert info.value.hint and "X/Y" in info.value.hint


@pytest.mark.parametrize("text", ["-1/0", "0/-1", "0/100000000", "100000000/0", "0x1/0", "1_0/0"])
def test_parse_lsn_rejects_out_of_range_halves(text: str) -> None:
    with pytest.raises(CdcError):
        parse_lsn(text)


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 100),
    st.sampled_from(["", "isnap-state"]),
    st.sampled_from([(), ("public.t",)]),
)
def test_lsn_fast_to_dict_is_the_generic_one(
    lsn: int, change: int, event: int, incremental: str, captured: tuple[str, ...]
) -> None:
    # Lsn.to_dict builds an event's dict directly (hot: a Kafka header per record); the generic
    # dataclass path must give the same keys in the same order, so the encoded text is unchanged.
    from dataclasses import asdict

    position = Lsn("srv", lsn, change, event=event, incremental=incremental, captured=captured)
    generic: dict[str, Any] = {"type": "pg_lsn", **asdict(position)}
    for name in ("event", "incremental", "captured", "change"):
        if not generic[name]:
            del generic[name]
    if "captured" in generic:
        generic["captured"] = list(generic["captured"])
    assert list(position.to_dict().items()) == list(generic.items())
    assert decode(position.encode()).to_dict() == position.to_dict()


@given(
    st.text(max_size=12),
    st.integers(0, 2**40),
    st.integers(0, 100),
    st.one_of(st.none(), st.text(max_size=20)),
    st.sampled_from(["mysql", "mariadb"]),
    st.booleans(),
    st.sampled_from(["", "isnap-state"]),
    st.sampled_from([(), ("shop.t",)]),
)
def test_binlog_fast_to_dict_is_the_generic_one(
    file: str,
    pos: int,
    event: int,
    gtid: str | None,
    flavor: str,
    pending: bool,
    incremental: str,
    captured: tuple[str, ...],
) -> None:
    # BinlogPosition.to_dict builds an event's dict directly (every MariaDB row, every Kafka header);
    # the generic dataclass path must give the same keys in the same order: the same encoded text.
    from dataclasses import asdict

    position = BinlogPosition(
        server="mariadb:server_id=1,domain_id=0",
        file=file,
        pos=pos,
        gtid=gtid,
        flavor=flavor,
        snapshot_pending=pending,
        event=event,
        incremental=incremental,
        captured=captured,
    )
    generic: dict[str, Any] = {"type": "binlog", **asdict(position)}
    for name in ("event", "incremental", "captured", "snapshot_pending"):
        if not generic[name]:
            del generic[name]
    if "captured" in generic:
        generic["captured"] = list(generic["captured"])
    assert list(position.to_dict().items()) == list(generic.items())
    assert position.encode() == orjson.dumps(generic).decode()
    assert decode(position.encode()) == position
