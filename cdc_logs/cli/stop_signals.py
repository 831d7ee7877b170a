"""SIGINT/SIGTERM turned into a graceful stop, done off the signal handler.

A Python signal handler runs on the main thread between two bytecodes, possibly while that very
thread holds a lock: structlog's print lock in the middle of a log line, the pipeline status lock, a
reader's connection lock. A handler that logs or stops a pipeline then waits forever for a lock its
own thread holds (seen: `cdc-logs run` hung after SIGTERM landed while it logged "source started").
So the handler only writes the signal number to a pipe, which takes no Python lock; a watcher thread
reads it and calls `on_stop`, where taking locks is safe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[str], None]) -> Iterator[None]:
    """Call `on_stop(signal name)` on a watcher thread for every SIGINT/SIGTERM while inside."""
    read_end, write_end = os.pipe()

    def handler(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):  # a full pipe: enough stop requests are queued already
            os.write(write_end, bytes([signum]))

    def watch() -> None:
        while True:
            try:
                data = os.read(read_end, 16)
            except OSError:
                return
            if not data:  # write end closed: the block ended
                return
            for signum in data:
                on_stop(signal.Signals(signum).name)

    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        os.close(write_end)
        watcher.join(timeout=5)
        os.close(read_end)
