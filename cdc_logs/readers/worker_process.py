"""A reader's helper process, both ends: spawn it, talk to it in frames (readers/wire.py), end it.

One Python thread cannot read a log, decode it, convert values, build envelopes, and run the
pipeline and its sinks faster than one core allows (the GIL). A reader with a backlog moves its
decoding into a child process of its own (Postgres: readers/postgres/decode_process.py; MySQL and
MariaDB: readers/mysql/decode_process.py), so the machine's second core does that part.

The parent end (`WorkerProcess`): the child is `python -m <module>` with frames on its stdin and
stdout. Writes go through a writer thread, so the reader never blocks on a full pipe while the
child blocks writing to it too; reads are non-blocking, and `wait()` waits on the child's stdout
together with another descriptor (the reader's own socket). A child that ends without a word is a
CONNECTION error (retried: the pipeline reopens the reader and resumes from its last commit).

The child end (`serve()`): frames get stdout's pipe to themselves (anything else printed to stdout
goes to stderr); its first message sets its logs up as the reader's process has them (level, format,
the secrets to mask; it shares that process's stderr). SIGINT and SIGTERM are ignored, because the
reader decides when to stop: it closes stdin, which also happens when the reader's process dies,
however it died.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability import logging as cdc_logging
from cdc_logs.observability import redact
from cdc_logs.readers.wire import Frames, frame, unframe


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; a container's limit set that way counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


DIED_HINT = (
    "the pipeline reopens the source and resumes from its last commit; if it repeats, set decode_process: off"
)

# Both pipes, enlarged from Linux's 64 KiB (up to fs.pipe-max-size, 1 MiB by default, for any user):
# the child decodes ahead while this process is busy (e.g. writing a batch to the sink) instead of
# blocking after ~150 rows, and a burst of raw messages for it does not stall the writer thread.
PIPE_BYTES = 1 << 20


class WorkerProcess:
    """The parent's end of a child process speaking frames; see the module docstring."""

    def __init__(self, module: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self.fileno = self._proc.stdout.fileno()
        os.set_blocking(self.fileno, False)
        for pipe in (self.fileno, self._proc.stdin.fileno()):
            with contextlib.suppress(OSError, AttributeError):  # a smaller pipe only waits more often
                fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._frames = Frames()
        self._writes: queue.Queue[bytes | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name=f"{module}-writer", daemon=True)
        self._writer.start()
        # First, the child logs as this process does: the same level and format, the same secrets masked.
        self.send(("setup", {"log": cdc_logging.current(), "secrets": list(redact.known())}))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def send(self, message: Any) -> None:
        """Queue one message for the child (never blocks)."""
        self._writes.put(frame(message))

    def receive(self, limit: int = 1 << 30) -> Iterator[Any]:
        """The messages that have arrived, without waiting; stops early once `limit` were given (the
        rest waits in the pipe: a big transaction's items keep coming while they are read). Raises
        CONNECTION when the child has ended."""
        given = 0
        while given < limit:
            try:
                data = os.read(self.fileno, 1 << 20)
            except BlockingIOError:
                return
            if not data:
                raise self._died()
            for body in self._frames.feed(data):
                given += 1
                yield unframe(body)

    def wait(self, timeout: float, also: int | None = None) -> bool:
        """Wait up to `timeout` for the child to write, or for descriptor `also` to be readable; True
        when the child has something."""
        fds = [self.fileno] if also is None else [self.fileno, also]
        ready, _, _ = select.select(fds, [], [], timeout)
        return self.fileno in ready

    def _died(self) -> CdcError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(1.0)
        reason = f"the decode process ended unexpectedly (exit code {self._proc.returncode})"
        return CdcError(ErrorKind.CONNECTION, reason, DIED_HINT)

    def _write_loop(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        while True:
            data = self._writes.get()
            if data is None:
                break
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                break  # the child is gone: the reader sees its stdout end
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def close(self) -> None:
        """End the child: stdin closes (it exits on EOF); killed if it does not within a moment."""
        self._writes.put(None)
        self._writer.join(2.0)
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(2.0)
        with contextlib.suppress(OSError):
            assert self._proc.stdout is not None
            self._proc.stdout.close()


# -- the child's end ----------------------------------------------------------------------------------
class Channel:
    """The child's stdout, for frames only (see `serve`)."""

    def __init__(self) -> None:
        self._fd = os.dup(1)
        os.dup2(2, 1)  # a log line or a library's print goes to stderr, where it cannot break a frame
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        data = frame(message)
        with self._lock:  # whole frames, also from several threads
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]


def serve(handle: Callable[[Channel, Any], None]) -> int:
    """The child's main loop: every message from stdin to `handle(channel, message)`, until stdin ends.
    A CdcError (or any other failure) goes back as ("error", kind, message, hint), and the child ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = Channel()
    frames = Frames()
    try:
        while True:
            data = os.read(0, 1 << 16)
            if not data:
                return 0  # the reader closed stdin (or died): done
            for body in frames.feed(data):
                message = unframe(body)
                if message[0] == "setup":
                    _setup(message[1])
                else:
                    handle(channel, message)
    except CdcError as exc:
        channel.send(("error", exc.kind._value_, exc.message, exc.hint))
    except Exception as exc:  # a decode bug must reach the reader with its name, not end us silently
        reason = f"the decode process failed: {type(exc).__name__}: {exc}"
        channel.send(("error", ErrorKind.INTERNAL._value_, reason, "rerun with --debug and report it"))
    return 0


def _setup(settings: dict[str, Any]) -> None:
    level, fmt = settings["log"]
    cdc_logging.configure(level, fmt)
    cdc_logging.install_stderr()
    for secret in settings["secrets"]:
        redact.register(secret)


def error_of(message: tuple[Any, ...]) -> CdcError:
    """The CdcError of an ("error", kind, message, hint) message."""
    _, kind, text, hint = message
    return CdcError(ErrorKind(kind), text, hint)
