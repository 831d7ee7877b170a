"""Results, targets, and their renderings: JSON, the Markdown table of docs/benchmarks.md, the chart.

A `Result` is one measured value, optionally next to a reference (pg_recvlogical, Debezium, raw
parsing, the Connect worker) and a target from issue 15. The ratio is always value / reference in the
value's own unit, so a throughput target reads "ratio >= 0.7" and a latency or memory one "ratio <= 0.5".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Target:
    """`ratio >= 0.7`, `ratio <= 0.5`, or a bound on the value itself (`value <= 256` MB)."""

    op: Literal[">=", "<="]
    bound: float
    on: Literal["ratio", "value"] = "ratio"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        x = ratio if self.on == "ratio" else value
        if x is None:
            return None
        return x >= self.bound if self.op == ">=" else x <= self.bound

    def text(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {self.bound:g}x" if self.on == "ratio" else f"{sign} {self.bound:g} {unit}"


@dataclass
class Result:
    case: str  # stable id, e.g. pg_null_rate
    title: str  # what a reader sees, e.g. "Postgres -> null sink"
    value: float | None
    unit: str  # rows/s, ms, MB, s
    reference: str | None = None  # what value is compared with
    reference_value: float | None = None
    target: Target | None = None
    note: str = ""
    skipped: str | None = None  # why there is no value (a case not available, or it failed)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference_value:
            return None
        return self.value / self.reference_value

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value, self.ratio) if self.target else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "title": self.title,
            "value": self.value,
            "unit": self.unit,
            "reference": self.reference,
            "reference_value": self.reference_value,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "target": self.target.text(self.unit) if self.target else None,
            "target_op": self.target.op if self.target else None,
            "target_bound": self.target.bound if self.target else None,
            "target_on": self.target.on if self.target else None,
            "met": self.met,
            "note": self.note,
            "skipped": self.skipped,
            "extra": self.extra,
        }


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit in ("ms", "MB"):
        return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{value:g} {unit}"


def markdown_table(results: Iterable[Result]) -> str:
    """The results table: one row per result; `met` is PASS, MISS, or empty (no target)."""
    lines = [
        "| case | cdc-logs | reference | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | :---: |",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.title} | skipped: {_cell(r.skipped)} | | | | |")
            continue
        ref = f"{r.reference} {fmt_value(r.reference_value, r.unit)}" if r.reference else ""
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        target = r.target.text(r.unit) if r.target else ""
        met = {True: "PASS", False: "MISS", None: ""}[r.met]
        lines.append(f"| {r.title} | {fmt_value(r.value, r.unit)} | {ref} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_json(meta: Mapping[str, Any], results: Iterable[Result]) -> str:
    return json.dumps({"meta": dict(meta), "results": [r.to_dict() for r in results]}, indent=2) + "\n"


def replace_section(doc: str, body: str) -> str:
    """Put `body` between the results markers of docs/benchmarks.md (appended when they are missing)."""
    block = f"{BEGIN}\n{body.strip()}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _m: block, doc)
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def chart(results: list[Result], path: Path, title: str) -> None:
    """A PNG: throughput (rows/s, cdc-logs next to its reference) and every target ratio against its bound."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r for r in results if r.unit == "rows/s" and r.value is not None]
    targeted = [r for r in results if r.target is not None and r.target.on == "ratio" and r.ratio is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    ys = range(len(rates))
    left.barh(
        [y + 0.2 for y in ys], [r.value or 0 for r in rates], height=0.4, label="cdc-logs", color="#2a7ab0"
    )
    left.barh(
        [y - 0.2 for y in ys],
        [r.reference_value or 0 for r in rates],
        height=0.4,
        label="reference",
        color="#b0b0b0",
    )
    left.set_yticks(list(ys), [f"{r.title}\nvs {r.reference or '-'}" for r in rates], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("rows/s (start-up excluded)")
    left.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    left.legend(loc="lower right", fontsize=8)
    left.set_title("Throughput", fontsize=10)
    ys2 = range(len(targeted))
    colors = ["#3a9a4a" if r.met else "#c0392b" for r in targeted]
    right.barh(list(ys2), [r.ratio or 0 for r in targeted], color=colors, height=0.5)
    for y, r in zip(ys2, targeted, strict=True):
        assert r.target is not None
        right.plot([r.target.bound, r.target.bound], [y - 0.35, y + 0.35], color="black", linewidth=2)
        better = "higher" if r.target.op == ">=" else "lower"
        right.text(
            max(r.ratio or 0, r.target.bound) + 0.04,
            y,
            f"{r.ratio:.2f}x (target {r.target.text(r.unit)}, {better} is better)",
            va="center",
            fontsize=8,
        )
    right.set_yticks(list(ys2), [r.title for r in targeted], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("ratio to the reference; black: the target")
    right.set_title("Targets of issue 15", fontsize=10)
    right.set_xlim(
        0, max([r.ratio or 0 for r in targeted] + [t.target.bound for t in targeted if t.target] + [1]) * 2.6
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
