"""Latency at a fixed load, and idle RSS, for `cdc-logs run` (Postgres -> Kafka) and the Debezium
Postgres connector, one after the other on the same table with the same load.

For each: start it (a slot of its own made just before), wait until a probe row is in its topic (it
streams), stay idle `idle_s` and take the RSS (cdc-logs: the `cdc-logs run` process; Debezium: the
Kafka Connect worker's JVM, which the stack shares: other connectors may be running in it, and the count
is reported), then run the open-loop load (loadgen.py: `rate` changes/s, `commit_rows` per commit, for
`latency_s`). A row's latency is its Kafka record's LogAppendTime minus its commit's time as the server
recorded it (`source.ts_ms`, in the envelope of both): commit -> Kafka, on one machine's clock. The load
being open loop, a stall of the pipeline does not slow the commits down, so it shows in the percentiles.
The same percentiles from each commit's *intended* time (t0 + k/rate) are kept in the JSON
(`extra.from_intended_ms`): they also count how late the generator and the database were. Both
contenders run at their defaults (cdc-logs: batch.max_wait_ms 200 ms; Debezium: poll.interval.ms
500 ms and the worker's producer settings).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchkit import stack as st
from benchkit.context import Context
from benchkit.proc import CdcRun, child_env
from benchkit.report import Result, Target
from benchkit.stats import percentile, row_intended
from benchkit.throughput import kafka_sink, pg_source


def _load(
    ctx: Context, table: str, first: int, reader: st.TopicReader, check: Callable[[], None]
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Run the load; per row the latency (ms) from its commit (`source.ts_ms`) and from its commit's
    intended time to its Kafka record, and the generator's report."""
    z = ctx.sizes
    t0 = time.time() + 1.5  # the generator's own start-up is before t0
    gen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchkit.loadgen",
            ctx.stack.pg_dsn,
            table,
            repr(t0),
            str(z.latency_rate),
            str(z.latency_s),
            str(z.commit_rows),
            str(first),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    ctx.cleanup.add(f"load generator pid {gen.pid}", lambda: _end(gen))
    rows = round(z.latency_s * z.latency_rate / z.commit_rows) * z.commit_rows

    def alive() -> None:
        check()
        if gen.poll() not in (None, 0):
            raise RuntimeError(f"load generator exited {gen.returncode}: {gen.stderr.read()[-2000:]}")  # type: ignore[union-attr]

    got = reader.until(set(range(first, first + rows)), timeout=z.latency_s + 90, check=alive)
    out, err = gen.communicate(timeout=60)
    if gen.returncode != 0:
        raise RuntimeError(f"load generator exited {gen.returncode}: {err[-2000:]}")
    report = json.loads(out.strip().splitlines()[-1])
    from_commit = [float(append - commit) for append, commit in got.values()]
    from_intended = [
        append - row_intended(t0, z.latency_rate, z.commit_rows, rid - first + 1) * 1000
        for rid, (append, _commit) in got.items()
    ]
    return from_commit, from_intended, report


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def _probe(ctx: Context, table: str, rid: int, reader: st.TopicReader, timeout: float = 90) -> None:
    with st.pg(ctx.stack.pg_dsn) as db:
        db.execute(f"INSERT INTO {table} VALUES ({rid}, 'probe', 0, now())")
    reader.until({rid}, timeout=timeout)


def latency_and_idle(ctx: Context) -> list[Result]:
    s, z = ctx.stack, ctx.sizes
    table, pub = ctx.name("lat_t"), ctx.name("lat_pub")
    with st.pg(s.pg_dsn) as db:
        st.make_table(db, ctx.cleanup, table, s.pg_dsn)
        st.make_publication(db, ctx.cleanup, pub, table, s.pg_dsn)
        st.make_slot(db, ctx.cleanup, ctx.name("lat_cdc"), s.pg_dsn)  # Debezium's: made when its turn comes
    topic = ctx.name("lat_cdc")
    st.make_topic(s.bootstrap, ctx.cleanup, topic)
    rows = round(z.latency_s * z.latency_rate / z.commit_rows) * z.commit_rows

    ctx.say("latency: cdc-logs run Postgres -> Kafka (start, probe, idle RSS)")
    config = {
        "name": ctx.name("lat_cdc"),
        "source": pg_source(table, ctx.name("lat_cdc"), pub),
        "destination": kafka_sink(topic),
    }
    run = CdcRun(ctx.cleanup, ctx.workdir / "lat_cdc", config)
    reader = st.TopicReader(s.bootstrap, topic)
    try:
        _probe(ctx, table, -1, reader)
        time.sleep(z.idle_s)
        cdc_rss = st.rss_mb(run.pid)
        ctx.say(f"latency: cdc-logs idle RSS {cdc_rss:.0f} MB; {z.latency_rate}/s for {z.latency_s:.0f} s")
        cdc_lat, cdc_int, cdc_gen = _load(ctx, table, 1, reader, run.alive)
    finally:
        reader.close()
        run.stop()
    run.check(run.wait(60), "latency run")

    ctx.say("latency: Debezium connector (start, probe, worker RSS)")
    with st.pg(s.pg_dsn) as db:
        st.make_slot(db, ctx.cleanup, ctx.name("lat_dbz"), s.pg_dsn)
    prefix = ctx.name("lat_dbz")
    dbz_topic = f"{prefix}.public.{table}"
    st.make_topic(s.bootstrap, ctx.cleanup, dbz_topic)
    name = ctx.name("lat_dbz")
    st.start_connector(
        s.connect_url,
        s.bootstrap,
        ctx.cleanup,
        name,
        st.debezium_pg_config(s.pg_dsn, prefix, ctx.name("lat_dbz"), pub, f"public.{table}"),
    )
    reader = st.TopicReader(s.bootstrap, dbz_topic)
    try:
        _probe(ctx, table, -2, reader)
        time.sleep(z.idle_s)
        worker = st.connect_worker_pid()
        worker_rss = st.rss_mb(worker) if worker else None
        connectors = st.running_connectors(s.connect_url)
        ctx.say(f"latency: Connect worker RSS {worker_rss or 0:.0f} MB with {len(connectors)} connector(s)")
        dbz_lat, dbz_int, dbz_gen = _load(ctx, table, rows + 1, reader, lambda: None)
    finally:
        reader.close()
        st.delete_connector(s.connect_url, name)

    cdc_i99, dbz_i99 = percentile(cdc_int, 99), percentile(dbz_int, 99)
    cdc_late, dbz_late = cdc_gen["late_ms_p99"], dbz_gen["late_ms_p99"]
    how = (
        f"{z.latency_rate:,} changes/s ({z.commit_rows} per commit) for {z.latency_s:.0f} s, open loop, "
        f"commit (source.ts_ms) -> LogAppendTime; from the intended commit times p99 is {cdc_i99:,.0f} ms "
        f"vs {dbz_i99:,.0f} ms; commits finished late by p99 {cdc_late:,.0f} ms (cdc-logs run) and "
        f"{dbz_late:,.0f} ms (Debezium run)"
    )
    results = []
    for p in (50, 95, 99):
        results.append(
            Result(
                f"latency_p{p}",
                f"commit -> Kafka latency p{p}",
                percentile(cdc_lat, p),
                "ms",
                "Debezium",
                percentile(dbz_lat, p),
                Target("<=", 0.5) if p == 99 else None,
                how,
                extra={
                    "rows": len(cdc_lat),
                    "generator": {"cdc": cdc_gen, "debezium": dbz_gen},
                    "from_intended_ms": {"cdc": percentile(cdc_int, p), "debezium": percentile(dbz_int, p)},
                },
            )
        )
    results.append(
        Result(
            "idle_rss",
            "idle RSS, Postgres -> Kafka",
            cdc_rss,
            "MB",
            "Connect worker",
            worker_rss,
            Target("<=", 0.25),
            f"after start-up and a probe row, {z.idle_s:.0f} s idle; the Connect worker is the stack's "
            f"shared JVM (-Xms256m -Xmx1g) with {len(connectors)} connector(s) running: "
            + ", ".join(connectors[:6]),
            extra={"connectors": connectors},
        )
    )
    return results
