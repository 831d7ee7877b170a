"""Stop signals are handled on a watcher thread, never inside the signal handler: a handler that took
a lock the interrupted main thread held (structlog's print lock while logging) hung `cdc-logs run`."""

from __future__ import annotations

import os
import signal
import threading
import time

from cdc_logs.cli.stop_signals import stop_signals


def test_a_signal_while_the_main_thread_holds_a_lock_is_handled_once_it_lets_go() -> None:
    lock = threading.Lock()  # stands for the logger's lock the main thread holds mid-line
    handled: list[tuple[str, bool, bool]] = []
    done = threading.Event()

    def on_stop(name: str) -> None:
        got = lock.acquire(timeout=2)  # inside the handler, on the main thread, this would time out
        handled.append((name, got, threading.current_thread() is threading.main_thread()))
        if got:
            lock.release()
        done.set()

    with stop_signals(on_stop):
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the handler runs here, between two bytecodes of this thread
        assert done.wait(5)
    assert handled == [("SIGTERM", True, False)]


def test_every_signal_is_passed_on_and_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    names: list[str] = []
    seen = threading.Semaphore(0)

    def on_stop(name: str) -> None:
        names.append(name)
        seen.release()

    with stop_signals(on_stop):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen.acquire(timeout=5) and seen.acquire(timeout=5)
    assert sorted(names) == ["SIGINT", "SIGTERM"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
