"""Garbage-collector thresholds for a running pipeline.

A pipeline keeps tens of thousands of events alive (the reader queue, the batch in flight), each a
handful of container objects, and allocates a dozen more per change. With CPython's default
thresholds (700, 10, 10) the collector ran every ~50 events and scanned the live queue over and
over: ~20% of the CPU of Postgres -> discard in the profile (benchmarks.md, Profile). Change events hold no
reference cycles, so reference counting frees them and the collector finds nothing; collecting the
young generation every 10,000 allocations instead cut the CPU per event by ~20-25%.

Only ever raises the first threshold (an embedding application that set a higher one keeps it).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune_for_streaming() -> None:
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:  # 0: the collector was disabled on purpose; leave it
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
