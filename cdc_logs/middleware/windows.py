"""Event-time windows for iot_aggregation: which windows a time falls in, the per-field accumulator
(count, exact sum, min, max, the values when percentiles are asked for), percentiles, and the JSON
form of all of it for the checkpointed state.

Windows are aligned to the Unix epoch (UTC): a 5m window starts at :00, :05, ...; a window is
[start, start + size) in milliseconds. Sliding windows start every `slide` ms, so a time is in
size/slide of them (tumbling: slide == size, exactly one).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

Number = int | float | Decimal

_PERCENTILE = re.compile(r"^(?:p|percentile_)(\d{1,2}(?:\.\d+)?)$")
FUNCTIONS = ("avg", "min", "max", "count", "sum")
# Sums of Decimals are exact up to this many digits (far more than any NUMERIC column holds in practice).
_DECIMAL_DIGITS = 60


def window_starts(t: int, size: int, slide: int) -> list[int]:
    """The starts of every window holding time `t` (ms), oldest first."""
    last = (t // slide) * slide
    first = last - ((size - 1) // slide) * slide
    return [s for s in range(first, last + 1, slide) if s <= t < s + size]


def percentile_of(name: str) -> Decimal | None:
    """p95 / percentile_95 / percentile_99.9 -> Decimal("95") (None: not a percentile; "median" is p50)."""
    if name == "median":
        return Decimal(50)
    match = _PERCENTILE.match(name)
    return Decimal(match.group(1)) if match else None


def check_function(name: str) -> str:
    if name in FUNCTIONS or percentile_of(name) is not None:
        return name
    raise ValueError(
        f"unknown aggregation function {name!r}: use avg, min, max, count, sum, median, p50/p95/p99 or "
        "percentile_N (0 <= N < 100)"
    )


def column_suffix(name: str) -> str:
    """The output column suffix of a function: percentile_99.9 -> p99_9, median -> p50."""
    p = percentile_of(name)
    if p is None:
        return name
    return "p" + format(p.normalize(), "f").replace(".", "_")


def percentile(values: list[Number], p: Decimal) -> Number:
    """Linear interpolation between the closest ranks (numpy's default, `statistics.quantiles`'
    inclusive method): rank = p/100 * (n - 1) in the sorted values. Decimals stay exact."""
    ordered = sorted(values)
    n = len(ordered)
    rank = p * (n - 1) / 100
    low = math.floor(rank)
    fraction = rank - low
    if fraction == 0 or low + 1 >= n:
        return ordered[low]
    a, b = ordered[low], ordered[low + 1]
    if isinstance(a, Decimal):
        with localcontext() as ctx:
            ctx.prec = _DECIMAL_DIGITS
            return a + (Decimal(b) - a) * fraction
    return float(a) + (float(b) - float(a)) * float(fraction)


@dataclass(slots=True)
class FieldAcc:
    """One value field in one window. NULLs are not counted (as SQL's aggregates)."""

    n: int = 0
    total: Number = 0
    low: Number | None = None
    high: Number | None = None
    values: list[Number] | None = None  # kept only when a percentile is asked for

    def add(self, value: Number) -> None:
        self.n += 1
        if isinstance(value, Decimal):
            with localcontext() as ctx:
                ctx.prec = _DECIMAL_DIGITS
                self.total = Decimal(self.total) + value
        else:
            self.total = self.total + value  # type: ignore[operator]  # one kind per field: never mixed
        self.low = value if self.low is None or value < self.low else self.low
        self.high = value if self.high is None or value > self.high else self.high
        if self.values is not None:
            self.values.append(value)

    def result(self, function: str, kind: str) -> Any:
        if self.n == 0:
            return None
        if function == "avg":
            if kind == "decimal":
                return Decimal(self.total) / self.n  # 28 significant digits (decimal's default)
            return self.total / self.n
        if function == "min":
            return self.low
        if function == "max":
            return self.high
        if function == "sum":
            return self.total
        if function == "count":
            return self.n
        p = percentile_of(function)
        assert p is not None and self.values is not None
        return percentile(self.values, p)

    def to_json(self) -> list[Any]:
        return [self.n, enc(self.total), enc(self.low), enc(self.high), _enc_list(self.values)]

    @classmethod
    def from_json(cls, data: list[Any]) -> FieldAcc:
        values = data[4]
        return cls(
            data[0],
            dec(data[1]),
            dec(data[2]),
            dec(data[3]),
            None if values is None else [dec(v) for v in values],
        )


@dataclass(slots=True)
class Window:
    """One group's window: how many rows, and an accumulator per value field."""

    count: int = 0
    fields: dict[str, FieldAcc] = field(default_factory=dict)
    emitted: dict[str, Any] | None = None  # the row last emitted (late_data: update keeps closed windows)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "fields": {k: v.to_json() for k, v in self.fields.items()},
        }
        if self.emitted is not None:
            out["emitted"] = self.emitted
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        fields = {k: FieldAcc.from_json(v) for k, v in data["fields"].items()}
        return cls(int(data["count"]), fields, data.get("emitted"))


def enc(value: Number | None) -> Any:
    """A number in the state's JSON (a Decimal as {"d": text}, so it comes back exact)."""
    return {"d": str(value)} if isinstance(value, Decimal) else value


def dec(value: Any) -> Any:
    return Decimal(value["d"]) if isinstance(value, dict) else value


def _enc_list(values: list[Number] | None) -> list[Any] | None:
    return None if values is None else [enc(v) for v in values]
