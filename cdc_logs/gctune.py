"""Garbage-collector thresholds for a running pipeline.

A pipeline keeps tens of thousands of events alive (the reader queue, the batch in flight), each a
handful of container objects, and allocates a dozen more per change. With CPython's default
thresholds (700, 10, 10) the collector ran every ~50 events and scanned the live queue over and
over: ~20% of the CPU of Postgres -> discard in the profile (benchmarks.md, Profile). Change events hold no
reference cycles, so reference counting frees them and the collector finds nothing; collecting the
young generation every 10,000 allocations instead cut the CPU per event by ~20-25%. At 10,000 a
young collection still came every ~500 Postgres changes and found most of them alive (a batch holds
5,000 until its write returns), scanning and promoting them; at 50,000 most are freed by reference
counting before the next one: GC time per 100,000 changes (gc.callbacks, Postgres -> Kafka)
0.13-0.16 s -> 0.05 s, -> discard 0.11 -> 0.06 s. (MariaDB gained nothing from it: each binlog event
was a reference cycle only the collector freed, now broken in readers/mysql/connection.py.)

Only ever raises the first threshold (an embedding application that set a higher one keeps it).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_for_streaming() -> None:
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:  # 0: the collector was disabled on purpose; leave it
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
