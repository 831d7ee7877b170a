"""Pure arithmetic of the benchmarks: percentiles, the open-loop schedule, rates. No I/O, unit-tested."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).

    An empty sequence has no percentile: that is an error, not 0 (a latency run that measured nothing
    must not look fast)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def intended_times(t0: float, rate: float, duration_s: float, per_commit: int) -> list[float]:
    """When each commit of an open-loop load is due: commit k at t0 + k * per_commit / rate.

    The schedule is fixed before the run and never moves: a commit that is late (the database or the
    machine stalled) is sent at once and its changes' latency is still measured from its intended time,
    so a stall shows in the percentiles instead of silently thinning the load (coordinated omission)."""
    if rate <= 0 or per_commit <= 0 or duration_s <= 0:
        raise ValueError("rate, per_commit and duration_s must be positive")
    commits = round(duration_s * rate / per_commit)
    step = per_commit / rate
    return [t0 + k * step for k in range(commits)]


def row_intended(t0: float, rate: float, per_commit: int, row: int) -> float:
    """Intended commit time of 1-based row `row` of the schedule (rows 1..per_commit are commit 0)."""
    return t0 + ((row - 1) // per_commit) * per_commit / rate


def rate_between(count: int, first_s: float, last_s: float) -> float:
    """Rows per second from the first row's arrival to the last one's.

    The first row opens the window, so `count - 1` intervals fit in it; with clocks in milliseconds
    a window under 1 ms is taken as 1 ms (never a division by zero)."""
    if count < 2:
        raise ValueError("a rate needs at least two rows")
    return (count - 1) / max(0.001, last_s - first_s)
