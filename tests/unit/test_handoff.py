"""The reader -> main loop handoff (cdc_logs/handoff.py): order, bounds, timeouts, no lost wake-ups."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from cdc_logs.handoff import Handoff


def test_fifo_and_empty() -> None:
    h: Handoff[int] = Handoff(10)
    assert h.empty()
    for i in range(5):
        h.put(i)
    assert h.qsize() == 5
    assert [h.get(0) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(queue.Empty):
        h.get(0.01)


def test_full_times_out_then_room_is_given() -> None:
    h: Handoff[int] = Handoff(2)
    h.put(1)
    h.put(2)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        h.put(3, timeout=0.05)
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, h.get).start()
    h.put(3, timeout=5)  # woken by the get, well before the timeout
    assert [h.get(0), h.get(0)] == [2, 3]


def test_many_producers_one_consumer_lose_nothing() -> None:
    h: Handoff[tuple[int, int]] = Handoff(7)  # small: producers wait for room often
    n, producers = 5000, 3

    def produce(p: int) -> None:
        for i in range(n):
            while True:
                try:
                    h.put((p, i), timeout=0.2)
                    break
                except queue.Full:
                    continue

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    got: dict[int, list[int]] = {p: [] for p in range(producers)}
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < n * producers and time.monotonic() < deadline:
        try:
            p, i = h.get(0.2)
        except queue.Empty:
            continue
        got[p].append(i)
    for t in threads:
        t.join()
    assert all(got[p] == list(range(n)) for p in range(producers))  # each producer's order kept
    assert h.empty()
