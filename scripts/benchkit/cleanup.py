"""Everything a bench run creates is registered here as it is created and removed at the end, in
reverse order, even when a case fails or the run is interrupted (Ctrl-C, SIGTERM).

Each undo step runs on its own: one that fails is printed and the others still run.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType


class Cleanup:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, undo: Callable[[], None]) -> None:
        self._steps.append((what, undo))

    def run(self) -> None:
        while self._steps:
            what, undo = self._steps.pop()
            try:
                undo()
            except Exception:
                print(f"cleanup: {what} failed:\n{traceback.format_exc()}", file=sys.stderr)

    def __enter__(self) -> Cleanup:
        # SIGTERM ends the run like Ctrl-C does: the `finally` blocks and this cleanup run.
        def _term(_sig: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        # Python leaves SIGINT ignored when it started ignored (a background job): Ctrl-C / kill -INT
        # must still end the run through the clean-up.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        # A second Ctrl-C during cleanup would leave things behind: hold it off until done.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.run()
        finally:
            signal.signal(signal.SIGINT, old)
