"""`cdc-logs tail`'s time to first event, and the peak RSS of `cdc-logs run` through one huge transaction.

Tail, two ways, from process start to the first envelope line on its stdout (`--format json --limit 1`):
  in the slot   the change is already in a slot it is given (`--slot`, `--publication`): start-up,
                connect, start replication, decode, print;
  just after    no slot (a temporary one, as `tail` is mostly run): a row is committed every 50 ms from
                the moment the process starts, and the first one committed after its slot exists is
                printed, so this includes creating the slot (and up to 50 ms of waiting for a row).
Big transaction: one `INSERT ... SELECT generate_series(1, N)` in a slot made before it, drained by
`cdc-logs run` into the null sink with `--limit N`; peak RSS = that process's VmHWM (proc.py says why not
ru_maxrss)
(Python, the reader's transaction buffer - 32 MiB, then disk - and the batches).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from benchkit import stack as st
from benchkit.context import Context
from benchkit.proc import CdcRun, child_env
from benchkit.report import Result, Target
from benchkit.throughput import pg_source


def _tail(ctx: Context, args: list[str], table: str, keep_writing: bool) -> float:
    cmd = [
        sys.executable,
        "-m",
        "cdc_logs",
        "tail",
        "--source",
        "pg",
        "--table",
        f"public.{table}",
        "--format",
        "json",
        "--limit",
        "1",
        *args,
    ]
    stop = threading.Event()

    def writer() -> None:
        with st.pg(ctx.stack.pg_dsn) as db:
            rid = 1_000_000
            while not stop.is_set():
                rid += 1
                db.execute(f"INSERT INTO {table} VALUES ({rid}, 'tail', 0, now())")
                time.sleep(0.05)

    started = time.time()
    env = child_env(CDC_DSN=ctx.stack.pg_dsn)  # not --dsn: a password on a command line shows in ps
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    ctx.cleanup.add(f"tail pid {proc.pid}", lambda: _kill(proc))
    thread = threading.Thread(target=writer, daemon=True)
    if keep_writing:
        thread.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        first = time.time()
        if not line.startswith("{"):
            raise RuntimeError(f"tail printed {line!r}")
        proc.wait(30)
    finally:
        stop.set()
        _kill(proc)
        if keep_writing:
            thread.join(5)
    return first - started


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tail_first_event(ctx: Context) -> list[Result]:
    s = ctx.stack
    table, pub, slot = ctx.name("tail_t"), ctx.name("tail_pub"), ctx.name("tail_slot")
    with st.pg(s.pg_dsn) as db:
        st.make_table(db, ctx.cleanup, table, s.pg_dsn)
        st.make_publication(db, ctx.cleanup, pub, table, s.pg_dsn)
        st.make_slot(db, ctx.cleanup, slot, s.pg_dsn)
        db.execute(f"INSERT INTO {table} VALUES (1, 'in the slot', 0, now())")
    ctx.say("tail: first event already in the slot")
    in_slot = min(
        _tail(ctx, ["--slot", slot, "--publication", pub], table, keep_writing=False) for _ in range(1)
    )
    ctx.say("tail: first event committed after start (temporary slot)")
    fresh = _tail(ctx, [], table, keep_writing=True)
    return [
        Result(
            "tail_first_event",
            "tail: start -> first event (in the slot)",
            in_slot,
            "s",
            note="`cdc-logs tail --source pg --slot S --format json --limit 1`, the change already in S",
        ),
        Result(
            "tail_first_event_fresh",
            "tail: start -> first event (committed after start)",
            fresh,
            "s",
            note="temporary slot; a row committed every 50 ms from the start",
        ),
    ]


def big_transaction(ctx: Context) -> list[Result]:
    s, n = ctx.stack, ctx.sizes.big_rows
    table, pub, slot = ctx.name("big_t"), ctx.name("big_pub"), ctx.name("big_slot")
    with st.pg(s.pg_dsn) as db:
        st.make_table(db, ctx.cleanup, table, s.pg_dsn)
        st.make_publication(db, ctx.cleanup, pub, table, s.pg_dsn)
        st.make_slot(db, ctx.cleanup, slot, s.pg_dsn)
        ctx.say(f"big transaction: one INSERT of {n:,} rows")
        db.execute(
            f"INSERT INTO {table} SELECT g, 'name ' || g, g * 1.25, now() FROM generate_series(1, {n}) g"
        )
    ctx.say("big transaction: cdc-logs run -> null")
    config = {
        "name": ctx.name("big"),
        "source": pg_source(table, slot, pub),
        "destination": {"type": "discard"},
    }
    run = CdcRun(ctx.cleanup, ctx.workdir / "big", config, limit=n)
    fin = run.check(run.wait(timeout=120 + n / 2000), "big transaction")
    entry = fin.log("discarded") or {}
    note = f"one transaction of {n:,} rows through `cdc-logs run` -> null; VmHWM of the process"
    if n < 1_000_000:
        note += f" (--quick: {n:,} rows, not 1,000,000)"
    return [
        Result(
            "big_tx_peak_rss",
            f"{n:,}-row transaction, peak RSS",
            fin.peak_rss_mb,
            "MB",
            target=Target("<=", 256, on="value"),
            note=note,
            extra={"events": entry.get("events"), "per_second": entry.get("per_second")},
        )
    ]
