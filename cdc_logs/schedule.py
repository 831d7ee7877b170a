"""Cron scheduling for `sync.mode: cron` that follows the wall clock, jumps included.

The wait for the next run is taken in short slices, and the time left is recomputed from the wall
clock after each one, so:

* the clock jumping back (an NTP correction, a VM restored from a snapshot) does not make a run
  start early: it starts when the clock shows the scheduled time;
* the clock jumping forward past the scheduled time (or the machine waking from sleep) starts the
  run at once, not after the originally computed delay;
* slots missed while a run was still going, or jumped over, are skipped: the next run is the first
  slot after *now*, never a burst of catch-up runs (each run drains everything new anyway). Skipped
  slots are logged.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)

Clock = Callable[[], dt.datetime]


class CronSchedule:
    def __init__(self, expression: str, *, now: Clock = dt.datetime.now, slice_s: float = 5.0) -> None:
        self.expression = expression
        self.now = now
        self.slice_s = slice_s
        self._last: dt.datetime | None = None

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        from croniter import croniter  # loaded by `cdc-logs run`'s module, used only with a schedule

        result: dt.datetime = croniter(self.expression, moment).get_next(dt.datetime)
        return result

    def next_run(self) -> dt.datetime:
        """The first slot after now (missed ones skipped and logged)."""
        now = self.now()
        upcoming = self.next_after(now)
        if self._last is not None:
            due = self.next_after(self._last)
            if due < now:
                skipped = 0
                while due < now and skipped < 10_000:
                    skipped += 1
                    due = self.next_after(due)
                log.warning("cron slots skipped (a run overran, or the clock jumped)", skipped=skipped)
        return upcoming

    def wait(self, until: dt.datetime, stop: threading.Event) -> bool:
        """Wait until the wall clock reaches `until`; False when stopped first."""
        while True:
            left = (until - self.now()).total_seconds()
            if left <= 0:
                self._last = until
                return True
            if stop.wait(min(left, self.slice_s)):
                return False
