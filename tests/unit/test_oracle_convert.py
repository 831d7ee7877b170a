"""Oracle values -> the envelope's encodings, and parsed changes -> events (readers/oracle/convert.py,
schema.py). The inputs are what the SQL_REDO parser gives for literals in LogMiner's formats."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cdc_logs.envelope import Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.oracle.convert import NOT_IN_ROW, EventBuilder, TxContext, convert_value, parse_temporal
from cdc_logs.readers.oracle.redo_sql import UNSUPPORTED, EmptyLob, Raw, Temporal, parse
from cdc_logs.readers.oracle.schema import CatalogColumn, column_schema, table_info
from cdc_logs.schema import Semantic


def col(data_type: str, precision: int | None = None, scale: int | None = None, **kw: Any) -> CatalogColumn:
    return CatalogColumn("C", data_type, None, precision, scale, **kw)


EPOCH = dt.datetime(1970, 1, 1)


def us(*args: int) -> int:
    return int((dt.datetime(*args) - EPOCH) / dt.timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (col("NUMBER", 10, 0), "42", 42),
        (col("NUMBER", 18, 0), "-999999999999999999", -999999999999999999),
        (col("NUMBER", 10, 2), "1000.50", "1000.50"),
        (col("NUMBER"), "1E+30", "1000000000000000000000000000000"),
        (col("NUMBER", 38, 0), "12345678901234567890", "12345678901234567890"),
        (col("NUMBER", 5, 0), "-0", 0),
        (col("FLOAT", 126), ".5", "0.5"),
        (col("BINARY_DOUBLE"), "1.5E+000", 1.5),
        (col("BINARY_FLOAT"), "Nan", "NaN"),
        (col("BINARY_DOUBLE"), "-Inf", "-Infinity"),
        (col("VARCHAR2"), "it's", "it's"),
        (col("CHAR"), "", ""),
        (col("CLOB"), EmptyLob("CLOB"), NOT_IN_ROW),
        (col("VARCHAR2"), UNSUPPORTED, NOT_IN_ROW),
        (col("RAW"), Raw(b"\x00\xff"), b"\x00\xff"),
        (col("BLOB"), EmptyLob("BLOB"), NOT_IN_ROW),
        (
            col("DATE"),
            Temporal("TO_DATE", "2024-01-02 09:30:00", "YYYY-MM-DD HH24:MI:SS"),
            us(2024, 1, 2, 9, 30),
        ),
        (col("DATE"), Temporal("TO_DATE", "02-JAN-24", "DD-MON-RR"), us(2024, 1, 2)),
        (col("DATE"), Temporal("TO_DATE", "1969-12-31 23:59:59"), us(1969, 12, 31, 23, 59, 59)),
        (col("TIMESTAMP(6)", None, 6), Temporal("TO_TIMESTAMP", "2020-02-01 00:00:00."), us(2020, 2, 1)),
        (
            col("TIMESTAMP(3)", None, 3),
            Temporal("TO_TIMESTAMP", "2020-02-01 00:00:00.123"),
            us(2020, 2, 1) + 123000,
        ),
        (
            col("TIMESTAMP(9)", None, 9),
            Temporal("TO_TIMESTAMP", "2020-02-01 00:00:00.123456789"),
            us(2020, 2, 1) * 1000 + 123456789,
        ),
        (
            col("TIMESTAMP(6) WITH TIME ZONE", None, 6),
            Temporal("TO_TIMESTAMP_TZ", "2020-02-01 10:00:00.5 +02:00"),
            "2020-02-01T08:00:00.5Z",
        ),
        (
            col("TIMESTAMP(6) WITH TIME ZONE", None, 6),
            Temporal("TO_TIMESTAMP_TZ", "2020-07-01 10:00:00.000000 Europe/Paris"),
            "2020-07-01T08:00:00Z",
        ),
        (
            col("TIMESTAMP(6) WITH LOCAL TIME ZONE", None, 6),
            Temporal("TO_TIMESTAMP", "2020-02-01 10:00:00.000001"),
            "2020-02-01T10:00:00.000001Z",
        ),
        (col("NUMBER", 10, 0), None, None),
        (col("NUMBER"), "0e-99999999999", "0"),
    ],
)
def test_values(column: CatalogColumn, value: Any, expected: Any) -> None:
    assert convert_value(column, value) == expected


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (col("NUMBER", 10, 0), "1.5"),
        (col("NUMBER", 10, 2), "abc"),
        (col("NUMBER", 10, 0), "1e99999999999"),  # was a MemoryError, which stopped the reader
        (col("NUMBER"), "1e126"),
        (col("FLOAT", 126), "1e-131"),
        (col("NUMBER", 10, 2), Raw(b"1")),
        (col("DATE"), Temporal("TO_DATE", "2024-13-02 00:00:00")),
        (col("DATE"), Temporal("TO_DATE", "2024-01-02", "YYYY-MM-DD Q")),
        (col("TIMESTAMP WITH TIME ZONE"), Temporal("TO_TIMESTAMP_TZ", "2020-02-01 10:00:00.5 Mars/Base")),
        (col("VARCHAR2"), Raw(b"x")),
        (col("RAW"), "zz"),
    ],
)
def test_values_that_do_not_fit_raise(column: CatalogColumn, value: Any) -> None:
    with pytest.raises((ValueError, ArithmeticError)):
        convert_value(column, value)


def test_temporal_formats_with_twelve_hour_clock_and_ff_digits() -> None:
    stamp, nanos = parse_temporal(
        Temporal("TO_TIMESTAMP", "01/02/2024 01:02:03.45 PM", "MM/DD/YYYY HH:MI:SS.FF2 AM")
    )
    assert stamp == dt.datetime(2024, 1, 2, 13, 2, 3, 450000) and nanos == 450_000_000


def test_schema_types_follow_debezium() -> None:
    assert column_schema(col("NUMBER", 4, 0)).type == "int16"
    assert column_schema(col("NUMBER", 19, 0)).type == "string"
    assert column_schema(col("DATE")).semantic == Semantic.MICRO_TIMESTAMP
    assert column_schema(col("TIMESTAMP(9)", None, 9)).semantic == Semantic.NANO_TIMESTAMP
    assert column_schema(col("TIMESTAMP(6) WITH TIME ZONE", None, 6)).semantic == Semantic.ZONED_TIMESTAMP
    assert column_schema(col("BLOB")).type == "bytes"


INFO = table_info(
    "FREE",
    "HR",
    "EMP",
    [
        CatalogColumn("ID", "NUMBER", 22, 10, 0, False, True),
        CatalogColumn("NAME", "VARCHAR2", 40),
        CatalogColumn("DOC", "CLOB", 4000),
    ],
)


def build(sql: str) -> list[Any]:
    tx = TxContext("0A00", 500, 1)
    return EventBuilder("p", "FREE").events(INFO, parse(sql), tx, scn=499, rs_id="x", ssn=0, ts_ms=2)


def test_update_of_the_key_is_a_delete_then_a_create() -> None:
    events = build(
        'update "HR"."EMP" set "ID" = \'2\' where "ID" = \'1\' and "NAME" = \'a\' and "DOC" IS NULL'
    )
    assert [e.op for e in events] == [Op.DELETE, Op.CREATE]
    assert events[0].before == {"ID": 1, "NAME": "a", "DOC": None} and events[0].key == {"ID": 1}
    assert events[1].after == {"ID": 2, "NAME": "a", "DOC": None} and events[1].key == {"ID": 2}
    assert [e.transaction.total_order for e in events] == [1, 2]  # type: ignore[union-attr]


def test_lob_placeholders_are_listed_as_unchanged() -> None:
    (event,) = build('insert into "HR"."EMP"("ID","NAME","DOC") values (\'3\',\'b\',EMPTY_CLOB())')
    assert event.after == {"ID": 3, "NAME": "b"} and event.unchanged == ("DOC",)
    assert event.to_dict()["unchanged"] == ["DOC"]


def test_a_bad_value_names_the_column_never_the_value() -> None:
    with pytest.raises(CdcError) as info:
        build('insert into "HR"."EMP"("ID","NAME") values (\'Kq7Secret\',\'b\')')
    assert info.value.kind is ErrorKind.DECODE and "ID" in info.value.message
    assert "Kq7Secret" not in str(info.value)


def test_a_column_missing_from_the_catalog_is_a_decode_error() -> None:
    with pytest.raises(CdcError) as info:
        build('insert into "HR"."EMP"("ID","NEW_COL") values (\'1\',\'b\')')
    assert info.value.kind is ErrorKind.DECODE and "NEW_COL" in info.value.message


def test_dsn_forms() -> None:
    from cdc_logs.readers.oracle.connection import OracleDsn, parse_dsn

    assert parse_dsn("oracle://c##cdc:p%40ss@db:1521/ORCLCDB") == OracleDsn(
        "c##cdc", "p@ss", "db:1521/ORCLCDB"
    )
    assert parse_dsn("oracle://cdc@db/FREE") == OracleDsn("cdc", "", "db:1521/FREE")
    assert parse_dsn("c##dbzuser/dbz@127.0.0.1:1521/FREEPDB1") == OracleDsn(
        "c##dbzuser", "dbz", "127.0.0.1:1521/FREEPDB1"
    )
    for bad in ("mysql://u:Kq7x@h/db", "oracle://:Kq7x@h/db", "oracle://u:Kq7x@h:99999/db", "Kq7x"):
        with pytest.raises(CdcError) as info:
            parse_dsn(bad)
        assert info.value.kind is ErrorKind.CONFIG and "Kq7x" not in str(info.value)


TZ = col("TIMESTAMP(6) WITH TIME ZONE", None, 6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-07-01 10:00:00.000000 EUROPE/PARIS", "2020-07-01T08:00:00Z"),  # as Oracle writes it
        ("2020-07-01 10:00:00.000000 EUROPE/PARIS CEST", "2020-07-01T08:00:00Z"),
        ("2020-01-01 10:00:00.000000 AMERICA/ARGENTINA/BUENOS_AIRES -03", "2020-01-01T13:00:00Z"),
        ("2020-01-01 10:00:00.5 us/pacific", "2020-01-01T18:00:00.5Z"),
        # 02:30 happens twice on 2020-10-25 in Paris: the abbreviation picks which one.
        ("2020-10-25 02:30:00.000000 EUROPE/PARIS CEST", "2020-10-25T00:30:00Z"),
        ("2020-10-25 02:30:00.000000 EUROPE/PARIS CET", "2020-10-25T01:30:00Z"),
    ],
)
def test_upper_case_regions_and_abbreviations(text: str, expected: str) -> None:
    assert convert_value(TZ, Temporal("TO_TIMESTAMP_TZ", text)) == expected


def test_region_round_trip_over_every_zone_in_any_case() -> None:
    """Fuzz: a wall-clock time in a random zone, written in random case (with its abbreviation half
    of the time), reads back as the same instant."""
    import random
    import zoneinfo

    rnd = random.Random(1303)
    zones = sorted(zoneinfo.available_timezones())
    for _ in range(2000):
        name = rnd.choice(zones)
        local = dt.datetime(
            rnd.randint(1971, 2037), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23)
        )
        local = local.replace(minute=rnd.randint(0, 59), tzinfo=zoneinfo.ZoneInfo(name))
        written = "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in name)
        text = local.strftime("%Y-%m-%d %H:%M:%S.000000 ") + written
        abbreviation = local.tzname() or ""
        if rnd.random() < 0.5 and abbreviation.isalpha():
            text += " " + abbreviation
        got = convert_value(TZ, Temporal("TO_TIMESTAMP_TZ", text))
        want = local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert got == want, (text, got, want)


def test_an_unknown_region_names_it() -> None:
    with pytest.raises(ValueError, match="unknown time zone region MARS/BASE"):
        convert_value(TZ, Temporal("TO_TIMESTAMP_TZ", "2020-02-01 10:00:00.5 MARS/BASE"))


def test_a_bad_number_has_a_readable_message() -> None:
    with pytest.raises(ValueError) as info:
        convert_value(col("NUMBER", 10, 2), "12,5")
    assert str(info.value) == "not a number literal"
    info_ = table_info("DB", "HR", "T", [CatalogColumn("N", "NUMBER", None, 10, 2)])
    with pytest.raises(CdcError) as error:
        EventBuilder("p", "DB").row(info_, {"N": "abc"})
    assert "ConversionSyntax" not in error.value.message
    assert error.value.message == "column N (NUMBER) of HR.T: not a number literal"


@pytest.mark.parametrize("kind", ["INTERVAL DAY(2) TO SECOND(6)", "INTERVAL YEAR(2) TO MONTH"])
def test_interval_values_are_refused_as_the_docs_say(kind: str) -> None:
    with pytest.raises(ValueError, match="values are not converted"):
        convert_value(col(kind), "+01 02:03:04.000000")
    assert convert_value(col(kind), None) is None
