"""Tests for cdc_logs.envelope: the Debezium-shaped JSON value, the value encoding, the cache, from_dict."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs import __version__
from cdc_logs.envelope import (
    ChangeEvent,
    Heartbeat,
    Op,
    SourceInfo,
    Transaction,
    dumps,
    encode_value,
)
from cdc_logs.position import Lsn

ENVELOPE_KEYS = ["before", "after", "source", "op", "ts_ms", "transaction"]


def make_source(**overrides: Any) -> SourceInfo:
    fields: dict[str, Any] = {
        "connector": "postgresql",
        "name": "pipe",
        "db": "app",
        "schema": "public",
        "table": "users",
        "ts_ms": 1_700_000_000_000,
        "snapshot": "false",
        "extra": {"txId": 767, "lsn": 24023128},
    }
    fields.update(overrides)
    return SourceInfo(**fields)


def make_event(op: Op = Op.CREATE, **overrides: Any) -> ChangeEvent:
    fields: dict[str, Any] = {
        "op": op,
        "source": make_source(),
        "before": None,
        "after": {"id": 1, "email": "a@x"},
        "key": {"id": 1},
        "ts_ms": 1_700_000_000_123,
    }
    fields.update(overrides)
    return ChangeEvent(**fields)


def value_json(event: ChangeEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(event.to_json())
    return parsed


def encoded(value: Any) -> Any:
    """The JSON value a column value becomes inside an envelope's `after`."""
    return value_json(make_event(after={"v": value}))["after"]["v"]


# ------------------------------------------------------------------------------------------ shape
def test_value_has_debezium_fields_in_debezium_order() -> None:
    event = make_event()
    assert list(event.to_dict()) == ENVELOPE_KEYS
    assert list(value_json(event)) == ENVELOPE_KEYS


def test_design_doc_example_serializes_exactly() -> None:
    event = ChangeEvent(
        op=Op.CREATE,
        source=SourceInfo(
            connector="postgresql",
            name="<pipeline>",
            db="app",
            schema="public",
            table="users",
            ts_ms=0,
            extra={"txId": 767, "lsn": 24023128},
        ),
        after={"id": 1, "email": "a@x"},
        key={"id": 1},
        ts_ms=0,
        transaction=Transaction("767:24023128", 1, 1),
    )
    expected = {
        "before": None,
        "after": {"id": 1, "email": "a@x"},
        "source": {
            "version": __version__,
            "connector": "postgresql",
            "name": "<pipeline>",
            "ts_ms": 0,
            "snapshot": "false",
            "db": "app",
            "schema": "public",
            "table": "users",
            "txId": 767,
            "lsn": 24023128,
        },
        "op": "c",
        "ts_ms": 0,
        "transaction": {"id": "767:24023128", "total_order": 1, "data_collection_order": 1},
    }
    assert value_json(event) == expected
    assert list(value_json(event)["source"]) == list(expected["source"])  # type: ignore[arg-type]


def test_source_block_key_order_and_optional_schema() -> None:
    with_schema = make_source(extra={"lsn": 5, "txId": 9}).to_dict()
    assert list(with_schema) == [
        "version",
        "connector",
        "name",
        "ts_ms",
        "snapshot",
        "db",
        "schema",
        "table",
        "lsn",
        "txId",
    ]
    assert with_schema["version"] == __version__
    without_schema = make_source(schema=None, extra={}).to_dict()
    assert "schema" not in without_schema
    assert list(without_schema)[-1] == "table"


def test_key_travels_beside_the_value_not_inside_it() -> None:
    event = make_event(key={"id": 42})
    body = value_json(event)
    assert "key" not in body
    assert event.key_json() == b'{"id":42}'
    assert make_event(key=None).key_json() is None


def test_key_json_uses_the_value_encoding() -> None:
    event = make_event(key={"id": uuid.UUID(int=1), "at": dt.date(1970, 1, 3)})
    assert orjson.loads(event.key_json() or b"") == {"id": "00000000-0000-0000-0000-000000000001", "at": 2}


def test_pipeline_fields_are_never_serialized() -> None:
    event = make_event(position=Lsn(server="sys", lsn=99), boundary=False)
    body = value_json(event)
    assert "position" not in body
    assert "boundary" not in body
    assert "encoded" not in body


@pytest.mark.parametrize(
    ("op", "code"),
    [
        (Op.CREATE, "c"),
        (Op.UPDATE, "u"),
        (Op.DELETE, "d"),
        (Op.READ, "r"),
        (Op.TRUNCATE, "t"),
        (Op.MESSAGE, "m"),
    ],
)
def test_op_codes(op: Op, code: str) -> None:
    assert value_json(make_event(op))["op"] == code
    assert Op(code) is op


def test_op_set_is_exactly_debeziums() -> None:
    assert {op.value for op in Op} == {"c", "u", "d", "r", "t", "m"}
    with pytest.raises(ValueError):
        Op("x")


def test_delete_carries_before_and_null_after() -> None:
    event = make_event(Op.DELETE, before={"id": 1, "email": "a@x"}, after=None)
    body = value_json(event)
    assert body["before"] == {"id": 1, "email": "a@x"}
    assert body["after"] is None
    assert event.row == {"id": 1, "email": "a@x"}


def test_row_is_after_when_present() -> None:
    event = make_event(Op.UPDATE, before={"id": 1, "v": 1}, after={"id": 1, "v": 2})
    assert event.row == {"id": 1, "v": 2}


def test_transaction_block_null_without_transaction() -> None:
    assert value_json(make_event(transaction=None))["transaction"] is None


def test_transaction_block_fields() -> None:
    body = value_json(make_event(transaction=Transaction("tx-1", 7, 3)))
    assert body["transaction"] == {"id": "tx-1", "total_order": 7, "data_collection_order": 3}
    assert list(body["transaction"]) == ["id", "total_order", "data_collection_order"]


def test_unchanged_only_when_non_empty_and_after_the_debezium_fields() -> None:
    assert "unchanged" not in value_json(make_event(unchanged=()))
    body = value_json(make_event(Op.UPDATE, unchanged=("big_text", "blob")))
    assert body["unchanged"] == ["big_text", "blob"]
    assert list(body) == [*ENVELOPE_KEYS, "unchanged"]


def test_unchanged_columns_are_not_invented_in_after() -> None:
    event = make_event(Op.UPDATE, after={"id": 1}, unchanged=("big_text",))
    assert "big_text" not in value_json(event)["after"]


def test_logical_message_content() -> None:
    event = make_event(Op.MESSAGE, after=None, key=None, content={"prefix": "audit", "content": "aGk="})
    body = value_json(event)
    assert body["op"] == "m"
    assert body["message"] == {"prefix": "audit", "content": "aGk="}
    assert "message" not in value_json(make_event())


# -------------------------------------------------------------------------------- value encoding
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
MINUS0530 = dt.timezone(-dt.timedelta(hours=5, minutes=30))

ENCODING_TABLE = [
    # Decimal -> string, exactly str(Decimal) (same rule as Java's BigDecimal.toString)
    ("decimal", Decimal("12.50"), "12.50"),
    ("decimal-negative", Decimal("-0.001"), "-0.001"),
    ("decimal-big", Decimal("123456789012345678901234567890.123"), "123456789012345678901234567890.123"),
    ("decimal-exponent", Decimal("1E+3"), "1E+3"),
    ("decimal-tiny", Decimal("0.0000001"), "1E-7"),
    ("decimal-nan", Decimal("NaN"), "NaN"),
    ("decimal-snan", Decimal("sNaN"), "NaN"),
    ("decimal-inf", Decimal("Infinity"), "Infinity"),
    ("decimal-neg-inf", Decimal("-Infinity"), "-Infinity"),
    # bytes -> base64
    ("bytes", b"\x00\x01\xff", "AAH/"),
    ("bytes-empty", b"", ""),
    ("bytearray", bytearray(b"ab"), "YWI="),
    ("memoryview", memoryview(b"xyz"), "eHl6"),
    # tz-aware datetime -> ISO-8601 in UTC with Z
    ("aware-utc", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05Z"),
    ("aware-micros", dt.datetime(2024, 1, 2, 3, 4, 5, 123, tzinfo=UTC), "2024-01-02T03:04:05.000123Z"),
    ("aware-plus2", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=PLUS2), "2024-01-02T01:04:05Z"),
    (
        "aware-minus0530-next-day",
        dt.datetime(2024, 12, 31, 20, 0, 0, 500000, tzinfo=MINUS0530),
        "2025-01-01T01:30:00.500000Z",
    ),
    # naive datetime -> microseconds since the epoch
    ("naive-epoch", dt.datetime(1970, 1, 1), 0),
    ("naive", dt.datetime(2024, 1, 2, 3, 4, 5, 6), 1_704_164_645_000_006),
    ("naive-pre-1970", dt.datetime(1969, 12, 31, 23, 59, 59, 999999), -1),
    ("naive-1900", dt.datetime(1900, 1, 1), -2_208_988_800_000_000),
    # date -> days since the epoch
    ("date-epoch", dt.date(1970, 1, 1), 0),
    ("date", dt.date(2024, 1, 2), 19724),
    ("date-pre-1970", dt.date(1969, 12, 31), -1),
    ("date-min", dt.date(1, 1, 1), -719162),
    # time -> microseconds since midnight
    ("time-midnight", dt.time(0, 0), 0),
    ("time", dt.time(1, 2, 3, 4), 3_723_000_004),
    ("time-last", dt.time(23, 59, 59, 999999), 86_399_999_999),
    # timedelta -> microseconds
    ("timedelta", dt.timedelta(days=1, microseconds=5), 86_400_000_005),
    ("timedelta-negative", dt.timedelta(microseconds=-1), -1),
    ("timedelta-negative-days", dt.timedelta(days=-1, seconds=1), -86_399_000_000),
    # UUID -> canonical string
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    # containers
    ("list", [1, Decimal("1.5"), b"a"], [1, "1.5", "YQ=="]),
    ("tuple", (1, 2), [1, 2]),
    ("set", {7}, [7]),
    ("nested-dict", {"a": {"b": dt.date(1970, 1, 2)}}, {"a": {"b": 1}}),
    # JSON columns travel as their text
    ("json-text", '{"a": [1, 2]}', '{"a": [1, 2]}'),
    # JSON-native values are unchanged
    ("int", 2**63 - 1, 2**63 - 1),
    ("float", 1.5, 1.5),
    ("bool", True, True),
    ("null", None, None),
    ("text", "é ✓", "é ✓"),
]


@pytest.mark.parametrize(
    ("value", "expected"), [row[1:] for row in ENCODING_TABLE], ids=[r[0] for r in ENCODING_TABLE]
)
def test_value_encoding_table(value: Any, expected: Any) -> None:
    assert encoded(value) == expected


def test_bytes_round_trip_through_base64() -> None:
    raw = bytes(range(256))
    assert base64.b64decode(encoded(raw)) == raw


def test_unknown_type_is_an_error_not_a_silent_string() -> None:
    with pytest.raises(TypeError):
        encode_value(object())
    with pytest.raises(TypeError):
        dumps({"v": object()})


def test_nested_values_in_before_and_source_extra_are_encoded() -> None:
    event = make_event(
        Op.UPDATE,
        before={"tags": [Decimal("1.0")], "meta": {"at": dt.datetime(1970, 1, 1, 0, 0, 1)}},
        source=make_source(extra={"lsn": 1, "commit_time": dt.datetime(2024, 1, 1, tzinfo=UTC)}),
    )
    body = value_json(event)
    assert body["before"] == {"tags": ["1.0"], "meta": {"at": 1_000_000}}
    assert body["source"]["commit_time"] == "2024-01-01T00:00:00Z"


_naive = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
_offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


@settings(max_examples=150, deadline=None)
@given(_naive)
def test_naive_datetime_is_epoch_micros(value: dt.datetime) -> None:
    assert encode_value(value) == (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


@settings(max_examples=150, deadline=None)
@given(
    # years >= 1000: see test_aware_datetime_before_year_1000_is_zero_padded for the earlier ones
    st.datetimes(min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(9998, 12, 31)),
    _offsets,
)
def test_aware_datetime_is_the_same_instant_in_utc(local: dt.datetime, tz: dt.timezone) -> None:
    value = local.replace(tzinfo=tz)
    text = encode_value(value)
    assert isinstance(text, str)
    assert text.endswith("Z")
    assert "+" not in text
    assert dt.datetime.fromisoformat(text.replace("Z", "+00:00")) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),  # a common 'minimum' sentinel
        (dt.datetime(999, 5, 1, 1, 1, 1, 5, tzinfo=UTC), "0999-05-01T01:01:01.000005Z"),
    ],
)
def test_aware_datetime_before_year_1000_is_zero_padded(value: dt.datetime, expected: str) -> None:
    assert encode_value(value) == expected


@settings(max_examples=150, deadline=None)
@given(st.dates())
def test_date_is_epoch_days(value: dt.date) -> None:
    assert encode_value(value) == value.toordinal() - dt.date(1970, 1, 1).toordinal()


@settings(max_examples=150, deadline=None)
@given(st.timedeltas())
def test_timedelta_is_micros(value: dt.timedelta) -> None:
    assert encode_value(value) == value // dt.timedelta(microseconds=1)


@settings(max_examples=150, deadline=None)
@given(st.times())
def test_time_is_micros_since_midnight(value: dt.time) -> None:
    expected = (dt.datetime.combine(dt.date(2000, 1, 1), value) - dt.datetime(2000, 1, 1)) // dt.timedelta(
        microseconds=1
    )
    assert encode_value(value) == expected


@settings(max_examples=100, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_finite_decimal_string_is_exact(value: Decimal) -> None:
    text = encoded(value)
    assert isinstance(text, str)
    assert Decimal(text) == value
    assert Decimal(text).as_tuple() == value.as_tuple()  # scale is kept: "12.50" stays "12.50"


# ------------------------------------------------------------------------------------------ cache
def test_to_json_is_cached() -> None:
    event = make_event()
    first = event.to_json()
    assert event.to_json() is first
    assert event.encoded is first


def test_cache_is_not_refreshed_by_later_mutation() -> None:
    """Documented: transforms run before the first to_json(); nothing changes the event after it."""
    event = make_event(after={"id": 1})
    first = event.to_json()
    event.after = {"id": 2}
    assert event.to_json() == first
    event.encoded = None
    assert value_json(event)["after"] == {"id": 2}


def test_cache_is_ignored_by_equality_and_repr() -> None:
    cached, fresh = make_event(), make_event()
    cached.to_json()
    assert cached == fresh
    assert "encoded" not in repr(cached)


def test_equality_sees_serialized_fields() -> None:
    assert make_event(after={"id": 1}) != make_event(after={"id": 2})
    assert make_event(unchanged=("a",)) != make_event()


# -------------------------------------------------------------------------------------- from_dict
def test_from_dict_round_trip_example() -> None:
    event = make_event(
        Op.UPDATE,
        before={"id": 1, "email": "old@x", "tags": ["a"]},
        after={"id": 1, "email": "new@x", "tags": ["a", "b"]},
        transaction=Transaction("767:24023128", 2, 1),
        unchanged=("bio",),
    )
    back = ChangeEvent.from_dict(orjson.loads(event.to_json()), key=event.key)
    assert back == event
    assert back.to_json() == event.to_json()


def test_from_dict_reads_debezium_producer_values() -> None:
    """A value written by Debezium itself: boolean snapshot, Mongo `collection`, no transaction."""
    data = {
        "before": None,
        "after": {"_id": 1},
        "source": {
            "version": "2.7.0.Final",
            "connector": "mongodb",
            "name": "srv",
            "ts_ms": 5,
            "snapshot": True,
            "db": "inventory",
            "collection": "customers",
            "ord": 1,
        },
        "op": "r",
        "ts_ms": 6,
        "transaction": None,
    }
    event = ChangeEvent.from_dict(data, key={"id": 1})
    assert event.op is Op.READ
    assert event.source.table == "customers"
    assert event.source.snapshot == "true"
    assert event.source.extra == {"collection": "customers", "ord": 1}
    assert event.transaction is None
    assert event.key == {"id": 1}
    assert event.ts_ms == 6
    # our own version replaces the producer's
    assert value_json(event)["source"]["version"] == __version__


def test_from_dict_rejects_unknown_op() -> None:
    with pytest.raises(ValueError):
        ChangeEvent.from_dict({"op": "z", "source": {}})


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_row = st.none() | st.dictionaries(_text, _json, max_size=4)
_KNOWN_SOURCE_KEYS = {
    "version",
    "connector",
    "name",
    "ts_ms",
    "snapshot",
    "db",
    "schema",
    "table",
    "collection",
}
_sources = st.builds(
    SourceInfo,
    connector=st.sampled_from(["postgresql", "mysql", "sqlite", "oracle", "mongodb"]),
    name=_text,
    db=_text,
    table=_text.filter(bool),
    schema=st.none() | _text,
    ts_ms=st.integers(min_value=0, max_value=2**62),
    snapshot=st.sampled_from(["true", "false", "first", "last", "incremental"]),
    extra=st.dictionaries(_text.filter(lambda k: k not in _KNOWN_SOURCE_KEYS), _json, max_size=3),
)
_events = st.builds(
    ChangeEvent,
    op=st.sampled_from(list(Op)),
    source=_sources,
    before=_row,
    after=_row,
    key=st.none() | st.dictionaries(_text, _scalars, min_size=1, max_size=2),
    ts_ms=st.integers(min_value=0, max_value=2**62),
    transaction=st.none()
    | st.builds(
        Transaction,
        id=_text,
        total_order=st.integers(min_value=0, max_value=2**62),
        data_collection_order=st.integers(min_value=0, max_value=2**62),
    ),
    unchanged=st.lists(_text, max_size=3).map(tuple),
    content=st.none() | st.dictionaries(_text, _scalars, max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(_events)
def test_from_dict_round_trip_property(event: ChangeEvent) -> None:
    text = event.to_json()
    back = ChangeEvent.from_dict(orjson.loads(text), key=event.key)
    assert back == event
    assert back.to_json() == text


# -------------------------------------------------------------------------------------- heartbeat
def test_heartbeat_is_a_boundary_position_without_data() -> None:
    position = Lsn(server="sys", lsn=10)
    beat = Heartbeat(position)
    assert beat.position == position
    assert beat.boundary is True
    assert not hasattr(beat, "to_json")


# ------------------------------------------------------------------------------- docs/envelope.md
DOC = Path(__file__).resolve().parents[2] / "docs" / "envelope.md"


def _doc_encoding_rows() -> list[tuple[str, str]]:
    section = DOC.read_text().split("## Value encoding", 1)[1].split("Notes:", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].startswith("`") and cells[3].startswith("`"):
            rows.append((cells[2].strip("`"), cells[3].strip("`")))
    return rows


def test_docs_encoding_table_matches_the_code() -> None:
    """Every example of the user doc's value-encoding table is what dumps() writes."""
    rows = _doc_encoding_rows()
    assert len(rows) >= 20
    names = {
        "Decimal": Decimal,
        "datetime": dt.datetime,
        "date": dt.date,
        "time": dt.time,
        "timedelta": dt.timedelta,
        "timezone": dt.timezone,
        "UUID": uuid.UUID,
    }
    for python_text, json_text in rows:
        value = eval(python_text, names)
        assert dumps(value) == json_text.encode(), python_text


def test_docs_shape_example_is_what_to_json_writes() -> None:
    text = DOC.read_text().split("## Shape", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    example = orjson.loads(text)
    example["source"]["version"] = __version__  # the doc need not change on every release
    event = ChangeEvent.from_dict(example)
    assert list(value_json(event)) == list(example)
    assert list(value_json(event)["source"]) == list(example["source"])
    assert value_json(event) == example
