"""`scripts/bench [--quick] [--json FILE] [--write] [--chart PNG] [--only GROUPS] [--with adaptive]`

Runs the groups of cases in this order (the JVM is warm for Debezium's throughput after its latency run):
  latency  commit -> Kafka p50/p95/p99 at 2,000 changes/s, cdc-logs vs Debezium; idle RSS vs the worker
  pg       Postgres -> null / file / Kafka / Kafka + file vs pg_recvlogical and Debezium (+ optional cases)
  mysql    MariaDB -> Kafka vs raw python-mysql-replication
  tail     `cdc-logs tail` start -> first event
  big      the big transaction's peak RSS
`--write` puts the table into docs/benchmarks.md (between the results markers) and draws the chart
(docs/benchmarks.png); `--from-json FILE` renders a saved run instead of measuring.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import report
from benchkit.cleanup import Cleanup
from benchkit.context import Context, Sizes
from benchkit.report import Result
from benchkit.stack import Stack, run_id

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"
GROUPS = ("latency", "pg", "mysql", "tail", "big")
OTEL_PARAMS = {"service_name": "cdc-bench", "endpoint": "http://127.0.0.1:4318", "sampling_rate": 1.0}


def _groups() -> dict[str, Callable[[Context], list[Result]]]:
    from benchkit.footprint import big_transaction, tail_first_event
    from benchkit.latency import latency_and_idle
    from benchkit.mysql import mariadb_kafka
    from benchkit.throughput import pg_throughput

    return {
        "latency": latency_and_idle,
        "pg": pg_throughput,
        "mysql": mariadb_kafka,
        "tail": tail_first_event,
        "big": big_transaction,
    }


def _versions(stack: Stack) -> dict[str, Any]:
    """What was measured on: never a secret (no DSN), only versions and the machine."""
    import psycopg
    import pymysql

    from cdc_logs.debezium.connect import ConnectClient
    from cdc_logs.readers.mysql.connection import parse_dsn

    out: dict[str, Any] = {}
    try:
        with psycopg.connect(stack.pg_dsn, connect_timeout=5) as db:
            out["postgres"] = db.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        conn = pymysql.connect(**parse_dsn(stack.mariadb_dsn).kwargs())
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            out["mariadb"] = cur.fetchone()[0]
        conn.close()
        with ConnectClient(stack.connect_url) as client:
            out["kafka_connect"] = client.cluster_info().get("version")
            out["debezium"] = next(
                (p.get("version") for p in client.plugins() if "PostgresConnector" in p.get("class", "")),
                None,
            )
    except Exception as exc:
        out["error"] = str(exc)[:200]
    return out


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cdc_logs"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def render(meta: dict[str, Any], results: list[Result], chart_name: str | None) -> str:
    """The generated part of docs/benchmarks.md: when/where, the table, the chart, the notes."""
    v = meta.get("versions", {})
    lines = [
        f"Measured {meta['date']} with `{meta['command']}` ({meta['mode']}), cdc-logs {meta['commit']}, in "
        f"{meta['seconds']:.0f} s. Python {meta['python']}, {meta['machine']}, {meta['cpus']} cores; "
        f"PostgreSQL {v.get('postgres', '?')}, MariaDB {v.get('mariadb', '?')}, Kafka Connect "
        f"{v.get('kafka_connect', '?')} with Debezium {v.get('debezium', '?')}.",
    ]
    load = meta.get("load_average")
    if load:
        lines[0] += f" Load average (1 min) {load['start']:.1f} at the start, {load['end']:.1f} at the end."
    if meta.get("note"):
        lines += ["", f"**{meta['note']}**"]
    lines += ["", report.markdown_table(results), ""]
    if chart_name:
        lines += [f"![benchmark chart]({chart_name})", ""]
    grouped: dict[str, list[str]] = {}  # one line per note: p50/p95/p99 share theirs
    for r in results:
        if r.note and not r.skipped:
            grouped.setdefault(r.note, []).append(r.title)
    notes = [f"- **{', '.join(titles)}**: {note}" for note, titles in grouped.items()]
    if notes:
        lines += ["How each row was taken in this run:", "", *notes, ""]
    return "\n".join(lines)


def _from_dict(d: dict[str, Any]) -> Result:
    target = None
    if d.get("target_op"):
        target = report.Target(d["target_op"], d["target_bound"], d.get("target_on", "ratio"))
    return Result(
        d["case"],
        d["title"],
        d["value"],
        d["unit"],
        d.get("reference"),
        d.get("reference_value"),
        target,
        d.get("note", ""),
        d.get("skipped"),
        d.get("extra", {}),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: about 5 minutes")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and its chart")
    parser.add_argument("--chart", type=Path, help="draw the chart (PNG) here")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"comma-separated groups of {','.join(GROUPS)}"
    )
    parser.add_argument("--with", dest="extras", default="", help="optional cases: adaptive")
    parser.add_argument(
        "--otel-params",
        default=json.dumps(OTEL_PARAMS),
        help="params of the opentelemetry middleware case (JSON; default: every batch sampled, exported "
        "to 127.0.0.1:4318, where the stack runs no collector, so exports fail fast and are dropped)",
    )
    parser.add_argument("--note", default="", help="a line printed above the table (e.g. 'shared machine')")
    parser.add_argument("--from-json", type=Path, help="render a saved --json run instead of measuring")
    for name in ("pg-rows", "mysql-rows", "big-rows", "repeat"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--latency-s", type=float)
    args = parser.parse_args(argv)

    if args.from_json:
        data = json.loads(args.from_json.read_text())
        meta, results = data["meta"], [_from_dict(d) for d in data["results"]]
        if args.note:
            meta["note"] = args.note
        failed = False
    else:
        meta, results, failed = measure(args)
    print()
    print(report.markdown_table(results))
    if args.json and not args.from_json:
        args.json.write_text(report.to_json(meta, results))
        print(f"wrote {args.json}")
    chart = args.chart or (CHART if args.write else None)
    if chart:
        report.chart(
            results, chart, f"cdc-logs benchmarks, {meta['mode']}, {meta['date']} (ratios within one run)"
        )
        print(f"wrote {chart}")
    if args.write:
        rel = os.path.relpath(chart, DOC.parent) if chart else None
        DOC.write_text(report.replace_section(DOC.read_text(), render(meta, results, rel)))
        print(f"wrote {DOC}")
    return 1 if failed else 0


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], list[Result], bool]:
    from cdc_logs.observability import logging as cdc_logging

    cdc_logging.configure("warning")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    for field in ("pg_rows", "mysql_rows", "big_rows", "repeat", "latency_s"):
        if getattr(args, field) is not None:
            setattr(sizes, field, getattr(args, field))
    stack = Stack.from_env()
    wanted = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(wanted) - set(GROUPS)
    if unknown:
        raise SystemExit(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
    started = time.monotonic()
    load_start = os.getloadavg()[0]  # how busy the machine was: the numbers mean little when it is
    results: list[Result] = []
    failed = False
    groups = _groups()
    with Cleanup() as cleanup, tempfile.TemporaryDirectory(prefix="cdc-bench-") as tmp:
        ctx = Context(
            stack,
            cleanup,
            Path(tmp),
            run_id(),
            sizes,
            otel_params=json.loads(args.otel_params),
            extras={e for e in args.extras.split(",") if e},
        )
        ctx.say(f"run {ctx.rid}: {', '.join(wanted)} ({'quick' if args.quick else 'full'})")
        for group in GROUPS:
            if group not in wanted:
                continue
            try:
                results += groups[group](ctx)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                failed = True
                traceback.print_exc()
                results.append(
                    Result(f"{group}_failed", f"{group} cases", None, "", skipped=f"failed: {exc}"[:300])
                )
        ctx.say("cleaning up")
    command = "scripts/bench" + (" --quick" if args.quick else "")
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "mode": "quick" if args.quick else "full",
        "sizes": vars(sizes),
        "commit": _git_commit(),
        "seconds": time.monotonic() - started,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "cpus": os.cpu_count(),
        "versions": _versions(stack),
        "note": args.note,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
    }
    return meta, results, failed


if __name__ == "__main__":
    sys.exit(main())
