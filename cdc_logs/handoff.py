"""A bounded queue from the reader threads to the pipeline's main thread, cheap per item.

`queue.Queue` takes a lock and notifies a condition on every put and get; with one event per item and
two threads contending for the GIL, that was the largest single cost of the pipeline in the profile
(benchmarks.md, Profile). Here an item is a `deque.append` (atomic under the GIL) and the consumer is woken
only when it is actually waiting, and a producer only when the queue was full and it is waiting for
room. Same interface as far as the pipeline uses it: `put(item, timeout)` raising `queue.Full`,
`get(timeout)` raising `queue.Empty`, `empty()`, `qsize()`.

Many producers, ONE consumer (the main loop). The waiting flags are set before the re-check of the
deque and tested after the append/pop, so a wake-up is never lost: either the re-check sees the item
(room), or the other side sees the flag.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, maxsize)
        self._items: deque[T] = deque()
        self._ready = threading.Event()  # set by a producer when the consumer waits for an item
        self._room = threading.Event()  # set by the consumer when a producer waits for room
        self._consumer_waiting = False
        self._producer_waiting = False

    def put(self, item: T, timeout: float | None = None) -> None:
        items = self._items
        if len(items) >= self.maxsize:
            self._wait_for_room(timeout)
        items.append(item)
        if self._consumer_waiting:
            self._ready.set()

    def _wait_for_room(self, timeout: float | None) -> None:
        while len(self._items) >= self.maxsize:
            self._room.clear()
            self._producer_waiting = True
            if len(self._items) < self.maxsize:
                return
            if not self._room.wait(timeout) and len(self._items) >= self.maxsize:
                raise queue.Full

    def get(self, timeout: float | None = None) -> T:
        items = self._items
        try:
            item = items.popleft()
        except IndexError:
            item = self._wait_for_item(timeout)
        if self._producer_waiting:
            self._producer_waiting = False
            self._room.set()
        return item

    def _wait_for_item(self, timeout: float | None) -> T:
        items = self._items
        self._ready.clear()
        self._consumer_waiting = True
        try:
            if not items:
                self._ready.wait(timeout)
            try:
                return items.popleft()
            except IndexError:
                raise queue.Empty from None
        finally:
            self._consumer_waiting = False

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
