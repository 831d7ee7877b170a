"""The open-loop load generator of the latency case, run as its own process (no GIL shared with the
bench's Kafka consumer):

    python -m benchkit.loadgen DSN TABLE T0 RATE DURATION_S PER_COMMIT FIRST_ID

Commit k inserts rows FIRST_ID + k*PER_COMMIT ... (PER_COMMIT rows) and is due at T0 + k*PER_COMMIT/RATE
(Unix time, stats.intended_times). It sleeps until a commit is due and never waits for anything
downstream (4 connections take the commits in turn, so one slow commit does not delay the next
ones); a late commit goes out at once and keeps its intended time, so the latency measured from
that time includes the stall (no coordinated omission). Prints one JSON line: commits, rows, and how
late the commits were (ms: p50, p99, max) - large values mean the generator itself could not keep up.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import psycopg

from benchkit.stats import intended_times, percentile

LANES = 4  # connections committing in turn


def main(argv: list[str]) -> int:
    dsn, table, t0, rate, duration, per_commit, first = argv
    per = int(per_commit)
    schedule = intended_times(float(t0), float(rate), float(duration), per)
    late: list[float] = []
    statement = (
        f"INSERT INTO {table} SELECT g, 'name ' || g, g * 1.25, now() "
        "FROM generate_series(%s::int, %s::int) g"
    )

    def committer(lane: int) -> None:
        # Commit k belongs to lane k % LANES: one slow commit (a WAL flush) does not hold up the next ones.
        with psycopg.connect(dsn, autocommit=True) as db:
            for k in range(lane, len(schedule), LANES):
                wait = schedule[k] - time.time()
                if wait > 0:
                    time.sleep(wait)
                lo = int(first) + k * per
                db.execute(statement, (lo, lo + per - 1))
                late.append((time.time() - schedule[k]) * 1000)

    threads = [threading.Thread(target=committer, args=(lane,)) for lane in range(LANES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                "commits": len(schedule),
                "rows": len(schedule) * per,
                "late_ms_p50": round(percentile(late, 50), 2),
                "late_ms_p99": round(percentile(late, 99), 2),
                "late_ms_max": round(max(late), 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
