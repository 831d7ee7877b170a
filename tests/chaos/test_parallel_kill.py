"""sync.parallelism through a real pipeline: Postgres (pgoutput) -> SQL apply into Postgres with 3
workers, under killkit's random workload (inserts, many updates per key, deletes, primary-key moves,
rolled-back transactions), SIGKILLed at random moments and restarted.

The target table has triggers logging every row write the workers make into an audit table, in the
workers' own transactions. Judged per key (the workers write concurrently, so only per-key order is
promised): each key's audited writes are exactly its committed changes, in commit order (each worker
has its own replay markers, so a replayed batch is skipped, not applied twice); nothing lost, nothing
from a rolled-back transaction; the target equals the source; every worker wrote; the committed
position after the last SIGTERM covers every change. Seed in CDC_CHAOS_SEED (printed).
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.chaos.killkit import Committed, Ident, Postgres, Runs, Workload, apply, seed
from tests.integration.conftest import require_env

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

WORKERS = 3
KILLS = 3


class PgTarget:
    """The SQL sink's Postgres target table with an audit trigger (as killkit.SqlTarget for SQLite)."""

    def __init__(self, dsn: str, uid: str) -> None:
        self.dsn = dsn
        self.table = f"kpt_{uid}"
        self.audit_table = f"kpa_{uid}"
        self.applied = f"cdc_applied_{uid}"
        t, a = self.table, self.audit_table
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v BIGINT)")
            db.execute(f"CREATE TABLE {a} (seq BIGSERIAL PRIMARY KEY, op TEXT, id INTEGER, v BIGINT)")
            db.execute(f"""
                CREATE FUNCTION {a}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                  IF TG_OP = 'DELETE' THEN INSERT INTO {a} (op, id, v) VALUES ('d', OLD.id, NULL); RETURN OLD;
                  ELSIF TG_OP = 'INSERT' THEN INSERT INTO {a} (op, id, v) VALUES ('c', NEW.id, NEW.v);
                  ELSE INSERT INTO {a} (op, id, v) VALUES ('u', NEW.id, NEW.v); END IF;
                  RETURN NEW; END $$""")
            db.execute(
                f"CREATE TRIGGER {a}_t AFTER INSERT OR UPDATE OR DELETE ON {t} "
                f"FOR EACH ROW EXECUTE FUNCTION {a}_fn()"
            )

    def destination(self) -> dict[str, Any]:
        return {"name": "apply", "type": "postgresql", "url": self.dsn, "schema": "public",
                "table": self.table, "applied_table": self.applied}  # fmt: skip

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as db:
            return list(db.execute(sql).fetchall())

    def audit(self) -> list[Ident]:
        rows = self.query(f"SELECT op, id, v FROM {self.audit_table} ORDER BY seq")
        return [("d", i) if op == "d" else (op, i, v) for op, i, v in rows]

    def state(self) -> dict[int, int]:
        return {int(i): int(v) for i, v in self.query(f"SELECT id, v FROM {self.table}")}

    def workers(self) -> set[str]:
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            return {r[0] for r in self.query(f"SELECT DISTINCT sink FROM {self.applied}")}
        return set()

    def cleanup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as db:
            for name in (self.table, self.audit_table, self.applied):
                db.execute(f"DROP TABLE IF EXISTS {name}")
            db.execute(f"DROP FUNCTION IF EXISTS {self.audit_table}_fn()")


@pytest.mark.parametrize("field", [None, "v"], ids=["by-key", "by-changing-column"])
def test_parallel_sql_apply_keeps_key_order_through_kills(tmp_path: Path, field: str | None) -> None:
    """by-key: the default, each row on one worker. by-changing-column: partition_field v, which every
    update changes, so rows move between workers all the time (barriers, markers per worker)."""
    dsn = require_env("CDC_PG_DSN")
    chosen = seed()
    print(f"CDC_CHAOS_SEED={chosen}")
    rng = random.Random(chosen)
    uid = uuid.uuid4().hex[:10]
    source = Postgres(dsn, uid)
    with contextlib.ExitStack() as cleanup:
        source.create({})
        cleanup.callback(source.cleanup)
        target = PgTarget(dsn, uid)
        cleanup.callback(target.cleanup)
        committed = Committed({})
        workload = Workload(source, committed, random.Random(rng.random()), pause_s=0.002)
        name = f"par-{uid}"
        config = {
            "name": name,
            "source": source.source(snapshot=False, chunk=1000),
            "destination": target.destination(),
            "offsets": {"type": "sqlite", "path": str(tmp_path / "offsets.db")},
            "sync": {
                "batch": {"max_events": 60, "max_wait_ms": 20},
                "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 500},
                "dead_letters": {"enabled": False},
                "parallelism": {
                    "enabled": True,
                    "worker_count": WORKERS,
                    "partition_strategy": "hash",
                    "partition_field": field,
                },
            },
        }
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        runs = Runs(tmp_path, path, name)
        cleanup.callback(runs.close)
        runs.start()
        runs.wait("the first run has its start point", lambda: source.ready(runs))
        workload.start()
        cleanup.callback(workload.stop_event.set)
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 2.5))
            runs.kill()
            runs.start()
        time.sleep(1.0)
        workload.stop()
        sentinel_id, sentinel_v = workload.next_id(), workload.next_v()
        session = source.session()
        try:
            session.begin()
            session.execute(f"INSERT INTO {source.table} (id, v) VALUES (%s, %s)", (sentinel_id, sentinel_v))
            with committed.lock:
                session.commit()
                committed.add([("c", sentinel_id, sentinel_v)])
        finally:
            session.close()
        runs.wait("the target holds the last change", lambda: sentinel_id in target.state(), timeout=120)
        runs.stop()

        audit = target.audit()
        print(
            f"{committed.transactions} transactions, {len(committed.events)} changes, "
            f"{workload.rollbacks} rollbacks, {len(audit)} audited writes, {KILLS} kills"
        )
        want: dict[int, list[Ident]] = {}
        for event in committed.events:
            want.setdefault(event[1], []).append(event)
        got: dict[int, list[Ident]] = {}
        for event in audit:
            got.setdefault(event[1], []).append(event)
        assert len(committed.events) > 300, "the workload was too small to mean anything"
        assert max(len(v) for v in want.values()) >= 3, "no key had several changes"
        bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not bad, f"{len(bad)} keys differ (got, committed), e.g. {list(bad.items())[:3]}"
        assert set(got) == set(want), f"writes for keys never changed: {sorted(set(got) - set(want))[:5]}"
        assert target.state() == source.state() == apply({}, committed.events)
        assert target.workers() == {f"{name}/apply#{i}of{WORKERS}" for i in range(WORKERS)}
        last = runs.committed_position()
        assert last is not None and last["type"] == "pg_lsn"
        # The final position covers the sentinel's commit: a restart would deliver nothing again.
        with psycopg.connect(dsn, autocommit=True) as db:
            confirmed = db.execute(
                "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                (source.slot,),
            ).fetchone()
        assert confirmed is not None and int(confirmed[0]) >= int(last["lsn"]) > 0
