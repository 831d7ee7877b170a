"""Postgres throughput of `cdc-logs run` into the null sink, a file, Kafka, and Kafka + file (fan-out),
next to pg_recvlogical and the Debezium Postgres connector, all draining the same WAL in one run.

One table and one publication; a slot per contender is created before the rows are written, so each
drains exactly the same changes from its own slot, one after the other. Every `cdc-logs run` is a
subprocess with `--limit <rows>` and the defaults a user gets (batch, offsets store, heartbeats); the
rate is taken between the first and the last change reaching the sink (start-up excluded and reported
on its own):
  null  the discard sink's own first/last write times (logged when it closes);
  file  first time the file holds data (polled every 5 ms) to its mtime after the run;
  kafka the broker's LogAppendTime of the first and the last record (the same for Debezium);
  fan-out the earliest of the two firsts to the latest of the two lasts.
"""

from __future__ import annotations

import time
from typing import Any

from benchkit import stack as st
from benchkit.context import Context
from benchkit.proc import CdcRun, FirstWrite
from benchkit.report import Result, Target
from benchkit.stats import rate_between
from cdc_logs.configfile import parse_config


def pg_source(table: str, slot: str, publication: str) -> dict[str, Any]:
    return {
        "type": "postgresql",
        "dsn": "${CDC_PG_DSN}",
        "tables": [f"public.{table}"],
        "slot": slot,
        "publication": publication,
        "snapshot": False,
    }


def kafka_sink(topic: str, name: str = "kafka") -> dict[str, Any]:
    return {"name": name, "type": "kafka", "bootstrap_servers": "${CDC_KAFKA_BOOTSTRAP}", "topic": topic}


def optional_variant(config: dict[str, Any]) -> str | None:
    """None when this cdc-logs accepts the config, else why not (its first line)."""
    try:
        parse_config(config)
    except Exception as exc:
        return str(exc).splitlines()[0][:200]
    return None


def _run(ctx: Context, key: str, config: dict[str, Any], rows: int) -> tuple[CdcRun, Any]:
    run = CdcRun(ctx.cleanup, ctx.workdir / key, config, limit=rows)
    finished = run.check(run.wait(timeout=60 + rows / 500), key)
    return run, finished


def _discard_window(finished: Any) -> tuple[float, float, int]:
    entry = finished.log("discarded")
    if not entry or entry.get("first_write_at") is None:
        raise RuntimeError(f"no 'discarded' log with write times: {entry}")
    return float(entry["first_write_at"]), float(entry["last_write_at"]), int(entry["events"])


def _kafka_window(ctx: Context, topic: str, rows: int) -> tuple[float, float]:
    reader = st.TopicReader(ctx.stack.bootstrap, topic)
    try:
        got = reader.until(set(range(1, rows + 1)), timeout=120)
    finally:
        reader.close()
    appends = [append for append, _commit in got.values()]
    return min(appends) / 1000, max(appends) / 1000


def one_round(ctx: Context, rnd: int) -> dict[str, dict[str, float]]:
    """Every contender on the same fresh rows; {case: {"rate": rows/s, "startup": s}}."""
    s = ctx.stack
    rows = ctx.sizes.pg_rows
    tag = f"r{rnd}"
    table, pub = ctx.name(f"{tag}_t"), ctx.name(f"{tag}_pub")
    db = st.pg(s.pg_dsn)
    st.make_table(db, ctx.cleanup, table, s.pg_dsn)
    st.make_publication(db, ctx.cleanup, pub, table, s.pg_dsn)
    otel_cfg = {"plugins": {"middleware": [{"type": "opentelemetry", "params": ctx.otel_params}]}}
    adaptive_cfg = {
        "sync": {
            "batch_optimization": {
                "adaptive_batching": True,
                "min_batch_size": 100,
                "max_batch_size": 10_000,
                "target_latency_ms": 100,
            }
        }
    }
    cases = ["raw", "null", "process", "file", "kafka", "fanout", "dbz"]
    skipped: dict[str, str] = {}
    # Only the config's shape is checked: a placeholder DSN, nothing connects.
    source = {**pg_source(table, "x", pub), "dsn": "postgresql://probe@localhost/probe"}
    probe = {"name": "probe", "source": source, "destination": {"type": "discard"}}
    for key, extra, wanted in (
        ("otel", otel_cfg, True),
        ("adaptive", adaptive_cfg, True),  # adaptive batching exists now: always measured
    ):
        why = optional_variant({**probe, **extra})
        if not wanted:
            skipped[key] = "not asked for (--with adaptive)"
        elif why:
            skipped[key] = why
        else:
            cases.append(key)
    slots = {key: ctx.name(f"{tag}_{key}") for key in cases}
    for slot in slots.values():
        st.make_slot(db, ctx.cleanup, slot, s.pg_dsn)
    topics = {key: ctx.name(f"{tag}_{key}") for key in ("kafka", "fanout", "adaptive")}
    prefix = ctx.name(f"{tag}_dbz")
    topics["dbz"] = f"{prefix}.public.{table}"
    for key, topic in topics.items():
        if key in cases:
            st.make_topic(s.bootstrap, ctx.cleanup, topic)
    ctx.say(f"round {rnd}: writing {rows:,} rows (10 per transaction)")
    st.load_rows(db, table, rows)
    end = st.lsn(db)
    # pg_recvlogical's own start-up (connect, start replication, exit) is taken off its time: measured
    # on a slot made after the rows, so that it has nothing to send before `end`.
    st.make_slot(db, ctx.cleanup, slots["raw"] + "0", s.pg_dsn)
    db.close()
    out: dict[str, dict[str, float]] = {"_skipped": skipped}  # type: ignore[dict-item]

    ctx.say("pg_recvlogical")
    empty = min(st.pg_recvlogical(s.pg_dsn, slots["raw"] + "0", pub, end) for _ in range(3))
    seconds = st.pg_recvlogical(s.pg_dsn, slots["raw"], pub, end)
    out["raw"] = {"rate": rows / max(0.001, seconds - empty), "startup": empty}

    def cfg(key: str, destination: Any, **extra: Any) -> dict[str, Any]:
        dest_key = "destinations" if isinstance(destination, list) else "destination"
        return {
            "name": ctx.name(f"{tag}_{key}"),
            "source": pg_source(table, slots[key], pub),
            dest_key: destination,
            **extra,
        }

    for key, extra in (("null", {}), ("process", {}), ("otel", otel_cfg)):
        if key not in cases:
            continue
        ctx.say(f"cdc-logs run: Postgres -> null ({key})")
        config = cfg(key, {"type": "discard"}, **extra)
        if key == "process":  # decoding in a second process from the start, whatever `auto` decides here
            config["source"]["decode_process"] = "on"
        _r, fin = _run(ctx, key, config, rows)
        first, last, events = _discard_window(fin)
        out[key] = {"rate": rate_between(events, first, last), "startup": first - fin.spawned_at}

    ctx.say("cdc-logs run: Postgres -> file")
    path = ctx.workdir / "file" / "out.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    watch = FirstWrite(path)
    _r, fin = _run(ctx, "file", cfg("file", {"type": "file", "path": str(path)}), rows)
    watch.stop()
    lines = sum(1 for _ in path.open("rb"))
    if lines != rows or watch.at is None:
        raise RuntimeError(f"file sink: {lines} lines of {rows}")
    out["file"] = {
        "rate": rate_between(rows, watch.at, path.stat().st_mtime),
        "startup": watch.at - fin.spawned_at,
    }
    path.unlink()

    for key, extra in (("kafka", {}), ("adaptive", adaptive_cfg)):
        if key not in cases:
            continue
        ctx.say(f"cdc-logs run: Postgres -> Kafka ({key})")
        _r, fin = _run(ctx, key, cfg(key, kafka_sink(topics[key]), **extra), rows)
        first, last = _kafka_window(ctx, topics[key], rows)
        out[key] = {"rate": rate_between(rows, first, last), "startup": first - fin.spawned_at}

    ctx.say("cdc-logs run: Postgres -> Kafka + file (fan-out)")
    fpath = ctx.workdir / "fanout" / "out.jsonl"
    fpath.parent.mkdir(parents=True, exist_ok=True)
    watch = FirstWrite(fpath)
    dests = [kafka_sink(topics["fanout"]), {"name": "file", "type": "file", "path": str(fpath)}]
    _r, fin = _run(ctx, "fanout", cfg("fanout", dests), rows)
    watch.stop()
    kfirst, klast = _kafka_window(ctx, topics["fanout"], rows)
    if watch.at is None:
        raise RuntimeError("fan-out: the file sink wrote nothing")
    first, last = min(kfirst, watch.at), max(klast, fpath.stat().st_mtime)
    out["fanout"] = {"rate": rate_between(rows, first, last), "startup": first - fin.spawned_at}
    fpath.unlink()

    ctx.say("Debezium Postgres connector -> Kafka")
    name = ctx.name(f"{tag}_dbz")
    created = time.time()
    st.start_connector(
        s.connect_url,
        s.bootstrap,
        ctx.cleanup,
        name,
        st.debezium_pg_config(s.pg_dsn, prefix, slots["dbz"], pub, f"public.{table}"),
    )
    first, last = _kafka_window(ctx, topics["dbz"], rows)
    st.delete_connector(s.connect_url, name)
    out["dbz"] = {"rate": rate_between(rows, first, last), "startup": first - created}
    # This round's slots are done with: dropped now, so the rounds of a full run (best of 3, ten
    # slots each) stay within the server's max_replication_slots (the stack's is 20).
    for slot in (*slots.values(), slots["raw"] + "0"):
        st.drop_slot(s.pg_dsn, slot)
    return out


def pg_throughput(ctx: Context) -> list[Result]:
    rounds = [one_round(ctx, i) for i in range(ctx.sizes.repeat)]
    skipped: dict[str, str] = rounds[0]["_skipped"]  # type: ignore[assignment]
    best = {k: max(r[k]["rate"] for r in rounds) for k in rounds[0] if k != "_skipped"}
    startup = {k: min(r[k]["startup"] for r in rounds) for k in rounds[0] if k != "_skipped"}
    n, reps = ctx.sizes.pg_rows, ctx.sizes.repeat
    how = f"{n:,} rows already in the slot, best of {reps}" if reps > 1 else f"{n:,} rows already in the slot"
    raw = ("pg_recvlogical", best["raw"])
    dbz = ("Debezium", best["dbz"])
    results = [
        Result("pg_null_rate", "Postgres -> null sink", best["null"], "rows/s", *raw, Target(">=", 0.7), how),
        Result(
            "pg_null_process_rate",
            "Postgres -> null, decode_process: on",
            best["process"],
            "rows/s",
            "same, at the defaults",
            best["null"],
            note=how + "; decoding in a second process from the start (the default, auto, splits only "
            "with 4+ usable CPUs)",
        ),
        Result("pg_file_rate", "Postgres -> file", best["file"], "rows/s", *raw, note=how),
        Result("pg_kafka_rate", "Postgres -> Kafka", best["kafka"], "rows/s", *dbz, Target(">=", 1.5), how),
        Result(
            "pg_fanout_rate", "Postgres -> Kafka + file (fan-out)", best["fanout"], "rows/s", *dbz, note=how
        ),
    ]
    if "otel" in best:
        results.append(
            Result(
                "pg_null_otel_rate",
                "Postgres -> null, opentelemetry on",
                best["otel"],
                "rows/s",
                "same, opentelemetry off",
                best["null"],
                note=how,
            )
        )
    else:
        results.append(
            Result(
                "pg_null_otel_rate",
                "Postgres -> null, opentelemetry on",
                None,
                "rows/s",
                skipped=skipped["otel"],
            )
        )
    if "adaptive" in best:
        results.append(
            Result(
                "pg_kafka_adaptive_rate",
                "Postgres -> Kafka, batch_optimization",
                best["adaptive"],
                "rows/s",
                "same, default batching",
                best["kafka"],
                note=how,
            )
        )
    else:
        results.append(
            Result(
                "pg_kafka_adaptive_rate",
                "Postgres -> Kafka, batch_optimization",
                None,
                "rows/s",
                skipped=skipped["adaptive"],
            )
        )
    results.append(
        Result(
            "pg_kafka_startup",
            "start-up to first record in Kafka",
            startup["kafka"],
            "s",
            "Debezium connector",
            startup["dbz"],
            note="`cdc-logs run` process start -> its first record's LogAppendTime; Debezium: connector "
            "created in the already running worker -> its first record (no JVM start-up in it)",
        )
    )
    results.append(
        Result(
            "pg_null_startup",
            "start-up to first change in the null sink",
            startup["null"],
            "s",
            note="process start -> the discard sink's first write",
        )
    )
    return results
