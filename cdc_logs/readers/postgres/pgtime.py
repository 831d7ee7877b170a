"""Postgres date/time values -> Debezium's temporal representations (text and binary share these).

Debezium defaults (time.precision.mode=adaptive, interval.handling.mode=numeric):
  date         io.debezium.time.Date             days since 1970-01-01
  time(p)      io.debezium.time.MicroTime        µs since midnight; p <= 3: io.debezium.time.Time, ms
  timestamp(p) io.debezium.time.MicroTimestamp   µs since the epoch; p <= 3: io.debezium.time.Timestamp, ms
                                                 (µs beyond int64, after the year 294247: the int64 bound)
  timestamptz  io.debezium.time.ZonedTimestamp   "2024-02-29T11:45:10.123456Z": UTC, exactly p digits
  timetz       io.debezium.time.ZonedTime        "08:15:10.5Z": UTC, trailing fraction zeros dropped
  interval     io.debezium.time.MicroDuration    µs; a month is 365.25/12 days, a year 12 months;
                                                 beyond int64 the int64 bounds (as Debezium's cast)
All arithmetic is on integers, on the proleptic Gregorian calendar Postgres uses (BC years and years
past 9999 included), so no value is rounded through a float. Text input is DateStyle=ISO output.
Infinities: timestamptz keeps "infinity"/"-infinity" (as Debezium does); timestamp uses Debezium's
documented sentinels (+9223372036825200000 / -9223372036832400000, whatever the precision); date uses
the int32 bounds (Debezium's own date constants are broken upstream, see docs/postgres-types.md).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Final

DAY_US: Final = 86_400_000_000
MONTH_US: Final = 2_629_800_000_000  # 30.4375 days, Debezium's MicroDuration.DAYS_PER_MONTH_AVG
PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01 in µs since 1970-01-01
PG_EPOCH_DAYS: Final = 10_957
DATE_POS_INF: Final = 2**31 - 1
DATE_NEG_INF: Final = -(2**31)
TIMESTAMP_POS_INF: Final = 9_223_372_036_825_200_000
TIMESTAMP_NEG_INF: Final = -9_223_372_036_832_400_000
INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)

_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_EPOCH_DT: Final = dt.datetime(1970, 1, 1)
_ONE_US: Final = dt.timedelta(microseconds=1)
_fromiso_date = dt.date.fromisoformat
_fromiso_datetime = dt.datetime.fromisoformat
_fromiso_time = dt.time.fromisoformat


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is year 0)."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"bad date {year}-{month}-{day}")
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (astronomical year)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def format_zoned_timestamp(us: int, precision: int) -> str:
    """ZonedTimestamp text of µs since the epoch (UTC): ISO-8601 with exactly `precision` digits."""
    days, rem = divmod(us, DAY_US)
    year, month, day = civil_from_days(days)
    hour, rem = divmod(rem, 3_600_000_000)
    minute, rem = divmod(rem, 60_000_000)
    second, frac = divmod(rem, 1_000_000)
    ytext = f"{year:04d}" if 0 <= year <= 9999 else f"+{year}" if year > 0 else f"-{-year:04d}"
    out = f"{ytext}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if precision > 0:
        out += "." + f"{frac:06d}"[: min(precision, 6)]
    elif frac:
        out += "." + f"{frac:06d}".rstrip("0")
    return out + "Z"


def format_zoned_time(us: int) -> str:
    """ZonedTime text of µs since midnight UTC: fraction digits as needed, like Java's ISO_OFFSET_TIME."""
    hour, rem = divmod(us, 3_600_000_000)
    minute, rem = divmod(rem, 60_000_000)
    second, frac = divmod(rem, 1_000_000)
    out = f"{hour:02d}:{minute:02d}:{second:02d}"
    if frac:
        out += "." + f"{frac:06d}".rstrip("0")
    return out + "Z"


def clamp_int64(n: int) -> int:
    """The int64 bounds for what lies beyond (MicroTimestamp and MicroDuration are int64 fields: an
    envelope number is 64-bit). Postgres timestamps reach 294276 AD, but int64 µs since 1970 end on
    294247-01-10 04:00:54.775807."""
    return INT64_MAX if n > INT64_MAX else INT64_MIN if n < INT64_MIN else n


def interval_us(months: int, days: int, us: int) -> int:
    """An interval's MicroDuration: months of 30.4375 days. An interval can hold ±178 million years,
    far beyond int64 µs (±292 thousand years); Debezium computes in double and casts to long, which
    saturates, so the int64 bounds are what it writes for those (an unbounded integer could not be
    written at all: the envelope's numbers are 64-bit)."""
    return clamp_int64(months * MONTH_US + days * DAY_US + us)


def precision_of(typmod: int) -> int:
    """Fractional-second precision of time/timestamp types: the typmod, 6 when unspecified."""
    return 6 if typmod < 0 else min(typmod, 6)


# ---- text parsing ------------------------------------------------------------------------------


def _time_us(s: str) -> int:
    """'HH:MM:SS[.ffffff]' (hours may be 24) -> µs."""
    if not 8 <= len(s) <= 15 or s[2] != ":" or s[5] != ":" or (len(s) > 8 and s[8] != "."):
        raise ValueError(f"bad time {s!r}")
    if s[0] != "2" or s[1] != "4":  # the C parser, 4x faster than slicing by hand
        t = _fromiso_time(s)
        return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
    us = ((int(s[0:2]) * 60 + int(s[3:5])) * 60 + int(s[6:8])) * 1_000_000
    if len(s) > 8:
        if len(s) > 15 or not s[9:].isdigit():
            raise ValueError(f"bad time fraction {s!r}")
        us += int((s[9:] + "00000")[:6])
    return us


def _offset_us(s: str) -> int:
    """'+HH', '+HH:MM' or '+HH:MM:SS' -> µs east of UTC."""
    parts = s[1:].split(":")
    if not 1 <= len(parts) <= 3 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError(f"bad UTC offset {s!r}")
    secs = 0
    for part in parts:  # hours, minutes, seconds
        secs = secs * 60 + int(part)
    secs *= 60 ** (3 - len(parts))
    return (-secs if s[0] == "-" else secs) * 1_000_000


def _split_offset(s: str) -> tuple[str, int]:
    i = max(s.rfind("+"), s.rfind("-"))
    if i < 8:
        raise ValueError(f"no UTC offset in {s!r}")
    return s[:i], _offset_us(s[i:])


def _timestamp_us(s: str, with_offset: bool) -> int:
    """ISO DateStyle timestamp text (any year, ' BC' suffix, optional offset) -> µs since the epoch, UTC."""
    bc = s.endswith(" BC")
    if bc:
        s = s[:-3]
    date_part, sep, time_part = s.partition(" ")
    ymd = date_part.split("-")
    if not sep or len(ymd) != 3:
        raise ValueError(f"bad timestamp {s!r}")
    year = int(ymd[0])
    offset = 0
    if with_offset:
        time_part, offset = _split_offset(time_part)
    days = days_from_civil(1 - year if bc else year, int(ymd[1]), int(ymd[2]))
    return days * DAY_US + _time_us(time_part) - offset


def text_date(s: str) -> int:
    if len(s) == 10:
        return _fromiso_date(s).toordinal() - _EPOCH_ORDINAL
    if s == "infinity":
        return DATE_POS_INF
    if s == "-infinity":
        return DATE_NEG_INF
    bc = s.endswith(" BC")
    ymd = (s[:-3] if bc else s).split("-")
    if len(ymd) != 3:
        raise ValueError(f"bad date {s!r}")
    year = int(ymd[0])
    return days_from_civil(1 - year if bc else year, int(ymd[1]), int(ymd[2]))


def text_time(typmod: int) -> Callable[[str], int]:
    if precision_of(typmod) <= 3:
        return lambda s: _time_us(s) // 1000
    return _time_us


def text_timetz(s: str) -> str:
    local, offset = _split_offset(s)
    us = _time_us(local)
    if us == DAY_US and offset == 0:
        return "24:00:00Z"  # Postgres allows 24:00:00; Debezium keeps that boundary at UTC
    return format_zoned_time((us - offset) % DAY_US)


def _timestamp_fast(s: str) -> int:
    return (_fromiso_datetime(s) - _EPOCH_DT) // _ONE_US


def text_timestamp(typmod: int) -> Callable[[str], int]:
    millis = precision_of(typmod) <= 3

    def convert(s: str) -> int:
        first = s[0]
        if first == "i" or first == "-":
            if s == "infinity":
                return TIMESTAMP_POS_INF
            if s == "-infinity":
                return TIMESTAMP_NEG_INF
        fast = len(s) <= 26 and s[4] == "-" and s[-1] != "C"  # a 4-digit AD year: the C parser
        us = _timestamp_fast(s) if fast else _timestamp_us(s, False)
        return us // 1000 if millis else clamp_int64(us)  # (µs past the year 294247: see clamp_int64)

    return convert


def text_timestamptz(typmod: int) -> Callable[[str], str]:
    precision = precision_of(typmod)
    zeros = "000000"

    def convert(s: str) -> str:
        if s[-3:] == "+00" and s[4] == "-" and s[10] == " " and len(s) <= 29:  # TimeZone=UTC: rewrite
            frac = s[20:-3] if s[19] == "." else ""
            if precision:
                return f"{s[:10]}T{s[11:19]}.{(frac + zeros)[:precision]}Z"
            return f"{s[:10]}T{s[11:19]}{'.' + frac if frac else ''}Z"
        if s == "infinity" or s == "-infinity":
            return s
        return format_zoned_timestamp(_timestamp_us(s, True), precision)

    return convert


_ISO_INTERVAL = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)W)?(?:(-?\d+)D)?"
    r"(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,6}))?S)?)?"
)


def _signed_time_us(s: str) -> int:
    """'[+-]H+:MM:SS[.ffffff]' (the time part of a postgres-style interval) -> µs."""
    negative = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    hours, minutes, seconds = body.split(":")
    whole, _, frac = seconds.partition(".")
    if len(minutes) != 2 or len(whole) != 2 or len(frac) > 6 or (frac and not frac.isdigit()):
        raise ValueError(f"bad interval time {s!r}")
    us = ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int((frac + "000000")[:6])
    return -us if negative else us


def text_interval(s: str) -> int:
    """IntervalStyle postgres ('1 year 2 mons -3 days +04:05:06.5') or iso_8601 ('P1Y2M-3DT4H5M6.5S')."""
    if s[0] == "P":
        m = _ISO_INTERVAL.fullmatch(s)
        if m is None:
            raise ValueError(f"bad ISO 8601 interval {s!r}")
        y, mo, w, d, h, mi, sec_sign, sec, frac = m.groups()
        months = int(y or 0) * 12 + int(mo or 0)
        days = int(w or 0) * 7 + int(d or 0)
        us = (int(h or 0) * 60 + int(mi or 0)) * 60_000_000
        sec_us = int(sec or 0) * 1_000_000 + int(((frac or "") + "000000")[:6])
        return interval_us(months, days, us + (-sec_us if sec_sign else sec_us))
    parts = s.split()
    months = days = time_us = 0
    i = 0
    while i < len(parts):
        token = parts[i]
        if ":" in token:
            time_us = _signed_time_us(token)
            i += 1
            continue
        if i + 1 >= len(parts):
            raise ValueError(f"bad interval {s!r} (IntervalStyle must be postgres or iso_8601)")
        n, unit = int(token), parts[i + 1]
        i += 2
        if unit in ("year", "years"):
            months += 12 * n
        elif unit in ("mon", "mons"):
            months += n
        elif unit in ("day", "days"):
            days += n
        else:
            raise ValueError(f"bad interval unit {unit!r} in {s!r}")
    return interval_us(months, days, time_us)
