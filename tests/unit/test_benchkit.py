"""The pure parts of scripts/benchkit (the benchmark runner): percentiles, the open-loop schedule, rates,
targets and the JSON/Markdown renderings. No timing is asserted anywhere; these only keep the arithmetic
and the report from breaking silently."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit import report
from benchkit.__main__ import _from_dict, render
from benchkit.report import Result, Target
from benchkit.stack import row_id
from benchkit.stats import intended_times, percentile, rate_between, row_intended


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [15, 20, 35, 40, 50]
    assert percentile(values, 0) == 15
    assert percentile(values, 100) == 50
    assert percentile(values, 50) == 35
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6: 20 + 0.6 * 15
    assert percentile(list(reversed(values)), 40) == pytest.approx(29.0)  # order does not matter
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_of_nothing_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError):
        percentile([], 99)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_open_loop_schedule_is_fixed_by_rate_not_by_progress() -> None:
    times = intended_times(1000.0, 2000, 60, 10)
    assert len(times) == 12_000  # 2,000 changes/s, 10 per commit, 60 s
    assert times[0] == 1000.0
    assert times[1] - times[0] == pytest.approx(0.005)
    assert times[-1] == pytest.approx(1000.0 + 59.995)
    # rows 1..10 belong to commit 0, row 11 to commit 1
    assert row_intended(1000.0, 2000, 10, 1) == row_intended(1000.0, 2000, 10, 10) == 1000.0
    assert row_intended(1000.0, 2000, 10, 11) == pytest.approx(1000.005)
    assert row_intended(1000.0, 2000, 10, 120_000) == pytest.approx(times[-1])
    with pytest.raises(ValueError):
        intended_times(0.0, 0, 10, 1)


def test_rate_counts_the_intervals_between_first_and_last() -> None:
    assert rate_between(101, 10.0, 11.0) == pytest.approx(100.0)
    assert rate_between(2, 5.0, 5.0) == pytest.approx(1000.0)  # a window under 1 ms counts as 1 ms
    with pytest.raises(ValueError):
        rate_between(1, 0.0, 1.0)


def _results() -> list[Result]:
    return [
        Result(
            "pg_null_rate",
            "Postgres -> null sink",
            70_000,
            "rows/s",
            "pg_recvlogical",
            100_000,
            Target(">=", 0.7),
        ),
        Result("latency_p99", "latency p99", 300, "ms", "Debezium", 500, Target("<=", 0.5), "open loop"),
        Result("big", "1M-row transaction", 93.4, "MB", target=Target("<=", 256, on="value")),
        Result("tail", "tail first event", 1.234, "s"),
        Result("otel", "null, opentelemetry on", None, "rows/s", skipped="unknown type 'opentelemetry' | x"),
    ]


def test_targets_pass_and_miss() -> None:
    null, lat, big, tail, otel = _results()
    assert null.ratio == pytest.approx(0.7) and null.met is True  # the bound itself is met
    assert lat.ratio == pytest.approx(0.6) and lat.met is False
    assert big.ratio is None and big.met is True
    assert tail.met is None and otel.met is None and otel.ratio is None
    assert Target(">=", 1.5).text("rows/s") == "≥ 1.5x"
    assert Target("<=", 256, on="value").text("MB") == "≤ 256 MB"


def test_markdown_table_rows() -> None:
    lines = report.markdown_table(_results()).splitlines()
    assert lines[0] == "| case | cdc-logs | reference | ratio | target | met |"
    assert lines[2] == (
        "| Postgres -> null sink | 70,000 rows/s | pg_recvlogical 100,000 rows/s | 0.70x | ≥ 0.7x | PASS |"
    )
    assert lines[3] == "| latency p99 | 300 ms | Debezium 500 ms | 0.60x | ≤ 0.5x | MISS |"
    assert lines[4] == "| 1M-row transaction | 93 MB |  |  | ≤ 256 MB | PASS |"
    assert lines[5] == "| tail first event | 1.23 s |  |  |  |  |"
    assert lines[6] == "| null, opentelemetry on | skipped: unknown type 'opentelemetry' \\| x | | | | |"


def test_json_has_every_field_and_reads_back() -> None:
    data = json.loads(report.to_json({"mode": "quick"}, _results()))
    assert data["meta"] == {"mode": "quick"}
    first = data["results"][0]
    assert first == {
        "case": "pg_null_rate",
        "title": "Postgres -> null sink",
        "value": 70_000,
        "unit": "rows/s",
        "reference": "pg_recvlogical",
        "reference_value": 100_000,
        "ratio": 0.7,
        "target": "≥ 0.7x",
        "target_op": ">=",
        "target_bound": 0.7,
        "target_on": "ratio",
        "met": True,
        "note": "",
        "skipped": None,
        "extra": {},
    }
    assert [r["met"] for r in data["results"]] == [True, False, True, None, None]
    again = [_from_dict(d) for d in data["results"]]
    assert report.markdown_table(again) == report.markdown_table(_results())


def test_doc_section_is_replaced_between_markers_only() -> None:
    doc = "# Benchmarks\n\nintro\n"
    once = report.replace_section(doc, "table one")
    assert once.startswith("# Benchmarks\n\nintro\n") and "table one" in once
    twice = report.replace_section(once + "\n## Later\n\nkept\n", "table two")
    assert "table one" not in twice and "table two" in twice and twice.endswith("## Later\n\nkept\n")
    assert twice.count(report.BEGIN) == 1


def test_render_names_the_run_and_the_notes() -> None:
    meta = {
        "date": "2026-12-06 12:00 UTC",
        "command": "scripts/bench --quick",
        "mode": "quick",
        "commit": "abc",
        "seconds": 300.0,
        "python": "3.11.7",
        "machine": "x86_64 Linux",
        "cpus": 2,
        "versions": {
            "postgres": "15",
            "mariadb": "10.11",
            "kafka_connect": "4.3.0",
            "debezium": "3.6.1.Final",
        },
        "note": "shared machine",
        "load_average": {"start": 1.25, "end": 20.5},
    }
    text = render(meta, _results(), "benchmarks.png")
    assert "`scripts/bench --quick` (quick), cdc-logs abc" in text
    assert "Load average (1 min) 1.2 at the start, 20.5 at the end." in text
    assert "**shared machine**" in text and "![benchmark chart](benchmarks.png)" in text
    assert "- **latency p99**: open loop" in text
    shared = [*_results(), Result("latency_p50", "latency p50", 100, "ms", note="open loop")]
    assert "- **latency p99, latency p50**: open loop" in render(meta, shared, None)


def test_row_id_reads_envelopes_and_connect_records() -> None:
    envelope = {"op": "c", "after": {"id": 7}, "source": {"ts_ms": 1234}}
    assert row_id(orjson.dumps(envelope)) == (7, 1234)
    assert row_id(orjson.dumps({"schema": {}, "payload": envelope})) == (7, 1234)
    assert row_id(orjson.dumps({"op": "d", "before": {"id": 7}, "after": None})) is None
    assert row_id(orjson.dumps({"status": "BEGIN", "id": "tx"})) is None


def test_chart_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    report.chart(_results(), path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_optional_case_runs_only_when_its_config_is_accepted() -> None:
    from benchkit.throughput import optional_variant, pg_source

    base = {
        "name": "probe",
        "source": {**pg_source("t", "s", "p"), "dsn": "postgresql://probe@localhost/probe"},
        "destination": {"type": "discard"},
    }
    assert optional_variant(base) is None
    why = optional_variant({**base, "plugins": {"middleware": [{"type": "no_such_middleware"}]}})
    assert why is not None and "no_such_middleware" in why
