"""Parsed SQL_REDO values -> the envelope's encodings, and parsed changes -> `ChangeEvent`s. Pure.

Values (docs/envelope.md, as Debezium's Oracle connector with decimal.handling.mode=string):
  NUMBER(p<19, 0)             int                    NUMBER / FLOAT otherwise   decimal string
  BINARY_FLOAT / _DOUBLE      float ("NaN", "Infinity", "-Infinity" as strings)
  DATE, TIMESTAMP(<=6)        microseconds since the epoch      TIMESTAMP(7-9) nanoseconds
  TIMESTAMP WITH TIME ZONE    ISO-8601 UTC "...Z"    (WITH LOCAL TIME ZONE: rendered in the
                              mining session's time zone, UTC)
  CHAR / VARCHAR2 / CLOB ...  str                    RAW / BLOB                 bytes
LOB columns written as EMPTY_CLOB()/EMPTY_BLOB() and values LogMiner shows as `Unsupported Type` are
not in the row: they are listed in `unchanged` (their content is in LOB_WRITE rows, not mined).
A value that does not fit its column (bad number, unknown date format, a call on a text column)
raises CdcError DECODE naming the column, never the value: the reader dead-letters that change.

An update that changes the primary key is a delete of the old key then a create of the new one, as
Debezium emits it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.oracle.redo_sql import EmptyLob, Raw, Redo, Temporal, Unsupported, Value
from cdc_logs.readers.oracle.schema import CatalogColumn, TableInfo, base_type

_EPOCH: Final = dt.datetime(1970, 1, 1)
#: The mining session's NLS formats (connection.py sets them): the format of a call without one.
NLS_DATE_FORMAT: Final = "YYYY-MM-DD HH24:MI:SS"
NLS_TIMESTAMP_FORMAT: Final = "YYYY-MM-DD HH24:MI:SS.FF"
NLS_TIMESTAMP_TZ_FORMAT: Final = "YYYY-MM-DD HH24:MI:SS.FF TZH:TZM"
_DEFAULT_FORMATS: Final = {
    "TO_DATE": NLS_DATE_FORMAT,
    "TO_TIMESTAMP": NLS_TIMESTAMP_FORMAT,
    "TO_TIMESTAMP_TZ": NLS_TIMESTAMP_TZ_FORMAT,
}
_REGION_FORMAT: Final = "YYYY-MM-DD HH24:MI:SS.FF TZR"
# Oracle may follow the region with its abbreviation (TZR TZD: `EUROPE/PARIS CEST`).
_REGION_ABBREVIATION_FORMAT: Final = "YYYY-MM-DD HH24:MI:SS.FF TZR TZD"
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# Format-model elements, longest first, and the regex group each one reads.
_ELEMENTS: Final = (
    ("HH24", r"(?P<hour>\d{1,2})"),
    ("HH12", r"(?P<hour12>\d{1,2})"),
    ("YYYY", r"(?P<year>-?\d{1,4})"),
    ("RRRR", r"(?P<year>-?\d{1,4})"),
    ("SYYYY", r"(?P<year>-?\d{1,4})"),
    ("MON", r"(?P<mon>[A-Za-z]{3})"),
    ("TZH", r"(?P<tzh>[-+]\d{1,2})"),
    ("TZM", r"(?P<tzm>\d{2})"),
    ("TZR", r"(?P<tzr>[A-Za-z_/+-][A-Za-z0-9_/+:-]*)"),
    ("TZD", r"(?P<tzd>[A-Za-z+-][A-Za-z0-9+-]{0,9})"),
    ("FF", r"(?P<ff>\d{0,9})"),
    ("AM", r"(?P<ampm>[AaPp]\.?[Mm]\.?)"),
    ("PM", r"(?P<ampm>[AaPp]\.?[Mm]\.?)"),
    ("HH", r"(?P<hour12>\d{1,2})"),
    ("RR", r"(?P<yy>\d{2})"),
    ("YY", r"(?P<yy>\d{2})"),
    ("MM", r"(?P<month>\d{1,2})"),
    ("DD", r"(?P<day>\d{1,2})"),
    ("MI", r"(?P<minute>\d{1,2})"),
    ("SS", r"(?P<second>\d{1,2})"),
)
_FORMAT_CACHE: dict[str, re.Pattern[str]] = {}


def _format_regex(fmt: str) -> re.Pattern[str]:
    cached = _FORMAT_CACHE.get(fmt)
    if cached is not None:
        return cached
    parts: list[str] = []
    i, upper = 0, fmt.upper()
    seen: set[str] = set()
    while i < len(fmt):
        if upper.startswith("FF", i) and i + 2 < len(fmt) and fmt[i + 2].isdigit():
            i += 3  # FF1..FF9: read like FF
            parts.append(r"(?P<ff>\d{0,9})")
            seen.add("ff")
            continue
        for element, pattern in _ELEMENTS:
            if upper.startswith(element, i):
                group = pattern.split(">")[0].removeprefix("(?P<")
                if group in seen:
                    raise ValueError(f"format element {element} repeats a field")
                seen.add(group)
                parts.append(pattern)
                i += len(element)
                break
        else:
            char = fmt[i]
            if char.isalnum():
                raise ValueError(f"format element at {fmt[i : i + 4]!r} is not supported")
            parts.append(r"\s+" if char == " " else re.escape(char))
            i += 1
    compiled = re.compile("".join(parts))
    if len(_FORMAT_CACHE) < 256:
        _FORMAT_CACHE[fmt] = compiled
    return compiled


def parse_temporal(value: Temporal) -> tuple[dt.datetime, int]:
    """(datetime, nanoseconds of the second) of a TO_DATE/TO_TIMESTAMP[_TZ] call; aware when it has a
    zone. Raises ValueError."""
    formats = [value.fmt] if value.fmt else [_DEFAULT_FORMATS[value.func]]
    if not value.fmt and value.func == "TO_TIMESTAMP_TZ":
        # A value stored with a region shows its name (maybe with its abbreviation), not an offset.
        formats += [_REGION_FORMAT, _REGION_ABBREVIATION_FORMAT]
    m = None
    for fmt in formats:
        m = _format_regex(fmt).fullmatch(value.text.strip())
        if m is not None:
            break
    if m is None:
        raise ValueError("the text does not match its format")
    g = m.groupdict()
    if g.get("year") is not None:
        year = int(g["year"])
    elif g.get("yy") is not None:
        year = 2000 + int(g["yy"]) if int(g["yy"]) < 50 else 1900 + int(g["yy"])
    else:
        raise ValueError("no year in the format")
    if g.get("mon"):
        month = _MONTHS.index(g["mon"].upper()) + 1 if g["mon"].upper() in _MONTHS else 0
    else:
        month = int(g.get("month") or 1)
    hour = int(g.get("hour") or 0)
    if g.get("hour12") is not None:
        hour = int(g["hour12"]) % 12 + (12 if (g.get("ampm") or "A").upper().startswith("P") else 0)
    ff = g.get("ff") or ""
    nanos = int((ff + "000000000")[:9]) if ff else 0
    stamp = dt.datetime(
        year,
        month,
        int(g.get("day") or 1),
        hour,
        int(g.get("minute") or 0),
        int(g.get("second") or 0),
        nanos // 1000,
    )
    if g.get("tzr"):
        region = g["tzr"]
        if region.upper() in ("UTC", "GMT", "Z"):
            stamp = stamp.replace(tzinfo=dt.UTC)
        elif region[0] in "+-":
            stamp = stamp.replace(tzinfo=_offset(region[0], *region[1:].split(":", 1)))
        else:
            stamp = _in_region(stamp, region, g.get("tzd"))
    elif g.get("tzh") is not None:
        sign, hours = g["tzh"][0], g["tzh"][1:]
        stamp = stamp.replace(tzinfo=_offset(sign, hours, g.get("tzm") or "0"))
    return stamp, nanos


_ZONE_NAMES: dict[str, str] = {}


def _zone(region: str) -> zoneinfo.ZoneInfo:
    """The IANA zone of an Oracle region name: Oracle writes them upper case (EUROPE/PARIS), the
    IANA database is case sensitive, so the name is looked up case-insensitively."""
    if not _ZONE_NAMES:
        _ZONE_NAMES.update({name.upper(): name for name in zoneinfo.available_timezones()})
    name = _ZONE_NAMES.get(region.upper())
    if name is None:
        raise ValueError(f"unknown time zone region {region[:64]}")
    return zoneinfo.ZoneInfo(name)


def _in_region(stamp: dt.datetime, region: str, abbreviation: str | None) -> dt.datetime:
    """The wall-clock time in the region; its abbreviation (CET/CEST) picks the side of a daylight
    saving fold, where the same wall-clock time happens twice (else the first, as Oracle does)."""
    local = stamp.replace(tzinfo=_zone(region))
    if abbreviation:
        second = local.replace(fold=1)
        if second.tzname() == abbreviation.upper() and local.tzname() != second.tzname():
            return second
    return local


def _offset(sign: str, hours: str, minutes: str = "0") -> dt.timezone:
    delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= dt.timedelta(hours=24):
        raise ValueError("time zone offset out of range")
    return dt.timezone(-delta if sign == "-" else delta)


class _NotInRow:
    """A column the change does not carry (EMPTY_CLOB/BLOB, `Unsupported Type`)."""


NOT_IN_ROW: Final = _NotInRow()


def convert_value(col: CatalogColumn, value: Value) -> Any:
    """The envelope encoding of `value` in column `col` (NOT_IN_ROW for a value the redo lacks).
    Raises ValueError (the caller names the column)."""
    if value is None:
        return None
    if isinstance(value, EmptyLob | Unsupported):
        return NOT_IN_ROW
    kind = base_type(col.data_type)
    if kind in ("NUMBER", "FLOAT"):
        if not isinstance(value, str):
            raise ValueError("not a number literal")
        try:
            number = Decimal(value.strip())
        except InvalidOperation:  # its own message is `[<class 'decimal.ConversionSyntax'>]`
            raise ValueError("not a number literal") from None
        if not number.is_finite():
            raise ValueError("not a finite number")
        if number and not -130 <= number.adjusted() <= 125:
            # Outside NUMBER's range, so not from LogMiner; formatting 1e99999999999 as digits would
            # exhaust memory (a MemoryError, not a dead letter).
            raise ValueError("outside the range of Oracle's NUMBER")
        if not number and number.as_tuple().exponent < -130:  # type: ignore[operator]
            number = Decimal(0)  # 0e-99999999999: no run of zeros
        if col.scale == 0 and col.precision is not None and col.precision < 19:
            if number != number.to_integral_value():
                raise ValueError("a fraction in an integer column")
            return int(number)
        return _decimal_text(number)
    if kind in ("BINARY_FLOAT", "BINARY_DOUBLE"):
        if not isinstance(value, str):
            raise ValueError("not a number literal")
        text = value.strip()
        special = {"nan": "NaN", "inf": "Infinity", "+inf": "Infinity", "-inf": "-Infinity"}
        if text.lower() in special:
            return special[text.lower()]
        real = float(text)
        if math.isnan(real) or math.isinf(real):
            return "NaN" if math.isnan(real) else ("Infinity" if real > 0 else "-Infinity")
        return real
    if kind in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH LOCAL TIME ZONE"):
        if isinstance(value, str):  # a session format without a call: read as TO_TIMESTAMP would
            value = Temporal("TO_TIMESTAMP_TZ" if "ZONE" in kind else "TO_TIMESTAMP", value)
        if not isinstance(value, Temporal):
            raise ValueError("not a date or timestamp")
        stamp, nanos = parse_temporal(value)
        if "ZONE" in kind:
            if stamp.tzinfo is None:  # LOCAL TIME ZONE: rendered in the session's zone (UTC)
                stamp = stamp.replace(tzinfo=dt.UTC)
            utc = stamp.astimezone(dt.UTC).replace(tzinfo=None)
            digits = (col.scale if col.scale is not None else 6) if nanos % 1000 == 0 else 9
            text = utc.isoformat(timespec="seconds")
            if nanos:
                text += "." + f"{nanos:09d}"[: max(digits, 1)].rstrip("0").ljust(1, "0")
            return text + "Z"
        if stamp.tzinfo is not None:
            stamp = stamp.replace(tzinfo=None)  # TO_TIMESTAMP_TZ into a plain TIMESTAMP: wall time
        delta = stamp.replace(microsecond=0) - _EPOCH
        seconds = delta.days * 86_400 + delta.seconds
        if kind == "TIMESTAMP" and (col.scale or 6) > 6:
            return seconds * 1_000_000_000 + nanos
        return seconds * 1_000_000 + nanos // 1000
    if kind in ("RAW", "LONG RAW", "BLOB"):
        if isinstance(value, Raw):
            return value.data
        if isinstance(value, str) and re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", value):
            return bytes.fromhex(value)  # RAW rendered as its hex text
        raise ValueError("not a RAW value")
    if kind.startswith("INTERVAL"):
        # Not converted (yet): dead-lettered, as docs/sources/oracle.md says, whether LogMiner
        # wrote a TO_DSINTERVAL call (which the parser refuses) or a plain string.
        raise ValueError(f"{kind} values are not converted")
    if isinstance(value, str):
        return value
    raise ValueError(f"a {type(value).__name__} value in a {kind} column")


def _decimal_text(number: Decimal) -> str:
    text = format(number, "f")
    return "0" if text in ("-0", "0") else text


@dataclass(slots=True)
class TxContext:
    """What every event of one committed transaction shares."""

    xid: str
    commit_scn: int
    commit_ts_ms: int
    total: int = 0
    per_table: dict[str, int] | None = None

    def next_order(self, table: str) -> Transaction:
        if self.per_table is None:
            self.per_table = {}
        self.total += 1
        self.per_table[table] = self.per_table.get(table, 0) + 1
        return Transaction(self.xid, self.total, self.per_table[table])


class EventBuilder:
    """Builds the events of one parsed change. `db`: the database name written to `source.db`."""

    connector: Final = "oracle"

    def __init__(self, pipeline: str, db: str) -> None:
        self.pipeline = pipeline
        self.db = db

    def row(self, info: TableInfo, values: dict[str, Value]) -> tuple[dict[str, Any], list[str]]:
        """The converted row and the columns left out of it (not carried by the redo)."""
        out: dict[str, Any] = {}
        missing: list[str] = []
        for name, value in values.items():
            col = info.column(name)
            if col is None:
                raise CdcError(
                    ErrorKind.DECODE,
                    f"column {name!r} of {info.qualified} is not in the table's catalog (changed since?)",
                    "the change is dead-lettered; restart the source to read the catalog again",
                )
            try:
                converted = convert_value(col, value)
            except (ValueError, ArithmeticError, InvalidOperation, OverflowError) as exc:
                raise CdcError(
                    ErrorKind.DECODE,
                    f"column {name} ({col.data_type}) of {info.qualified}: {exc}",
                    "the change is dead-lettered with its SQL_REDO; report the column type",
                ) from None
            if converted is NOT_IN_ROW:
                missing.append(name)
            else:
                out[name] = converted
        return out, missing

    def events(
        self, info: TableInfo, redo: Redo, tx: TxContext, *, scn: int, rs_id: str, ssn: int, ts_ms: int
    ) -> list[ChangeEvent]:
        """The events of one change (two for an update of the key); positions are set by the caller."""
        extra = {
            "txId": tx.xid,
            "scn": str(scn),
            "commit_scn": str(tx.commit_scn),
            "rs_id": rs_id,
            "ssn": ssn,
        }

        def source() -> SourceInfo:
            return SourceInfo(
                connector=self.connector,
                name=self.pipeline,
                db=self.db,
                schema=info.owner,
                table=info.name,
                ts_ms=ts_ms,
                extra=dict(extra),
            )

        def event(
            op: Op, before: dict[str, Any] | None, after: dict[str, Any] | None, gone: list[str]
        ) -> ChangeEvent:
            row = after if after is not None else before
            assert row is not None
            key = {k: row[k] for k in info.key if k in row} or None
            return ChangeEvent(
                op=op,
                source=source(),
                before=before,
                after=after,
                key=key,
                ts_ms=tx.commit_ts_ms,
                transaction=tx.next_order(info.qualified),
                unchanged=tuple(gone),
                schema=info.schema,
            )

        if redo.op == "INSERT":
            after, gone = self.row(info, redo.new or {})
            return [event(Op.CREATE, None, after, gone)]
        if redo.op == "DELETE":
            before, gone = self.row(info, redo.old or {})
            return [event(Op.DELETE, before, None, gone)]
        before, gone_before = self.row(info, redo.old or {})
        changed, gone_new = self.row(info, redo.new or {})
        after = {**before, **changed}
        gone = [c for c in gone_before if c not in changed] + [c for c in gone_new if c not in gone_before]
        for name in gone_new:
            after.pop(name, None)
        key_before = {k: before.get(k) for k in info.key}
        key_after = {k: after.get(k) for k in info.key}
        if info.key and all(k in before for k in info.key) and key_before != key_after:
            return [event(Op.DELETE, before, None, gone_before), event(Op.CREATE, None, after, gone)]
        return [event(Op.UPDATE, before or None, after, gone)]
