"""Cron mode under clock jumps: runs follow the wall clock and missed slots are skipped, not replayed
as a burst (issue: hostile input, bad-input suite)."""

from __future__ import annotations

import datetime as dt
import threading

from cdc_logs.schedule import CronSchedule


class FakeClock:
    """Wall time that moves with the (fake) waits, and jumps when told."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t


class Ticking(threading.Event):
    """A stop event whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock, jumps: dict[int, dt.timedelta] | None = None) -> None:
        super().__init__()
        self.clock, self.jumps, self.waits = clock, jumps or {}, 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.clock.t += dt.timedelta(seconds=timeout or 0)
        self.clock.t += self.jumps.get(self.waits, dt.timedelta(0))
        return False


T0 = dt.datetime(2026, 12, 5, 10, 0, 0)


def test_a_run_starts_when_the_wall_clock_reaches_the_slot() -> None:
    clock = FakeClock(T0)
    schedule = CronSchedule("*/5 * * * *", now=clock, slice_s=5)
    slot = schedule.next_run()
    assert slot == dt.datetime(2026, 12, 5, 10, 5)
    assert schedule.wait(slot, Ticking(clock)) and clock.t == slot


def test_a_clock_jumping_back_does_not_start_the_run_early() -> None:
    clock = FakeClock(T0)
    schedule = CronSchedule("*/5 * * * *", now=clock, slice_s=5)
    slot = schedule.next_run()
    # One minute into the wait the clock is set back by an hour: the run waits for 10:05 on the clock.
    assert schedule.wait(slot, Ticking(clock, {12: dt.timedelta(hours=-1)}))
    assert clock.t >= slot


def test_a_clock_jumping_forward_starts_the_run_at_once_and_skips_the_missed_slots() -> None:
    clock = FakeClock(T0)
    schedule = CronSchedule("*/5 * * * *", now=clock, slice_s=5)
    slot = schedule.next_run()
    stop = Ticking(clock, {1: dt.timedelta(hours=2)})  # the machine slept two hours
    assert schedule.wait(slot, stop) and stop.waits == 1, "started right after the jump"
    following = schedule.next_run()
    assert following == dt.datetime(2026, 12, 5, 12, 5), "the first slot after now, not 10:10, 10:15..."


def test_a_stop_ends_the_wait() -> None:
    clock = FakeClock(T0)
    schedule = CronSchedule("0 * * * *", now=clock)
    stop = threading.Event()
    stop.set()
    assert not schedule.wait(schedule.next_run(), stop)
