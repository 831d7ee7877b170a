"""One running pipeline per (offset store, pipeline name).

Two `cdc-logs run` of the same pipeline would both read the source, deliver every change twice and
overwrite each other's offsets. `run` (and `offsets set|reset`, which must not move a running
pipeline) take this lock first; the second one is refused (`LOCKED`, exit 3) naming the holder.

* sqlite / file offset stores: an exclusive `flock` on `<store path>.<pipeline>.lock`, which holds the
  holder's pid, host and start time, and once its HTTP endpoints are up their address (`http`:
  host:port, for `cdc-logs status`; never a secret). The kernel releases a flock when its process
  dies, also on `kill -9`, so a stale lock needs no clean-up: the next run takes it over (and logs
  whose it was).
* postgres offset store: a session-level advisory lock (`pg_try_advisory_lock`) on a hash of the
  offsets table and the pipeline name, held by a connection of its own; the server releases it when
  that connection ends. Its `application_name` carries the holder's pid and host, so a refused run can
  name them. It records no HTTP address: `status` then finds the service at `--url` or at the
  config's `health_checks`.

`tail` keeps its offsets in memory and takes no lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)

_FIX = (
    "stop it first (two runs of one pipeline deliver every change twice); "
    "to run a second copy on purpose, give it another `name` or another offsets store"
)


class PipelineLocked(CdcError):
    """LOCKED, with the holder (`pid N on host (started ...)`), so a caller can word its own fix."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(ErrorKind.LOCKED, message, _FIX)
        self.holder = holder


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    text = f"pid {pid}" if pid else "another process"
    if holder.get("host"):
        text += f" on {holder['host']}"
    if holder.get("started"):
        text += f" (started {holder['started']})"
    return text


class PipelineLock:
    """Held while a pipeline runs; `release()` (or leaving the `with` block) lets it go."""

    def advertise(self, http: str) -> None:
        """Record where the holder serves its HTTP endpoints (`host:port`), where `status` can read it.
        Only lock files can; the Postgres advisory lock records nothing."""

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> PipelineLock:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()


class FileLock(PipelineLock):
    """`flock` on a lock file next to a sqlite/file offset store."""

    def __init__(self, path: str | Path, pipeline: str) -> None:
        self.path = Path(path)
        self.pipeline = pipeline
        self._fd: int | None = None
        self._holder: dict[str, Any] = {}

    @staticmethod
    def path_for(store: str | Path, pipeline: str) -> Path:
        store = Path(store)
        return store.with_name(f"{store.name}.{pipeline}.lock")

    def acquire(self) -> FileLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CdcError(
                ErrorKind.PERMISSION,
                f"cannot create the pipeline lock {self.path}: {exc.strerror}",
                "the offsets directory must be writable by the user running cdc-logs",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd, wait_s=0.5)
            os.close(fd)
            raise PipelineLocked(
                f"pipeline {self.pipeline!r} is already running: {_describe(holder)} holds {self.path}",
                _describe(holder),
            ) from None
        except OSError as exc:
            os.close(fd)
            raise CdcError(
                ErrorKind.PERMISSION,
                f"cannot lock {self.path}: {exc.strerror}",
                "keep the offsets store on a local file system (flock)",
            ) from exc
        previous = self._read_holder(fd)
        if previous.get("pid"):
            # The kernel released it: its holder died without letting go (kill -9, a crash, power loss).
            log.info(
                "took over the pipeline lock of a run that did not exit cleanly", previous=_describe(previous)
            )
        self._fd = fd
        self._holder = _holder()
        self._write(self._holder)
        return self

    def _write(self, holder: dict[str, Any]) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, orjson.dumps(holder), 0)

    def advertise(self, http: str) -> None:
        if self._fd is not None:
            self._holder = {**self._holder, "http": http}
            self._write(self._holder)

    @staticmethod
    def recorded(path: Path) -> dict[str, Any]:
        """What the lock file at `path` says of its holder ({} when there is none or it is empty: not
        running, or stopped cleanly). Read without locking: a reader must never block a run. After a
        `kill -9` it still names the dead holder, so a caller must treat it as a hint."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            return FileLock._read_holder(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _read_holder(fd: int, wait_s: float = 0.0) -> dict[str, Any]:
        """The holder recorded in the lock file ({} when empty: a clean release, or a holder that has
        only just taken it and not written yet, which `wait_s` waits for)."""
        deadline = time.monotonic() + wait_s
        while True:
            raw = os.pread(fd, 4096, 0)
            if raw:
                with contextlib.suppress(orjson.JSONDecodeError):
                    data = orjson.loads(raw)
                    if isinstance(data, dict):
                        return data
            if time.monotonic() >= deadline:
                return {}
            time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # a clean exit: the next run has nothing to take over
            os.close(fd)  # closing the only descriptor releases the flock


_KEEPALIVES = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


def advisory_key(table: str, pipeline: str) -> int:
    """The bigint advisory-lock key of (offsets table, pipeline)."""
    digest = hashlib.blake2b(f"cdc-logs:{table}:{pipeline}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLock(PipelineLock):
    """A session-level advisory lock in the offsets database, on a connection of its own."""

    def __init__(self, dsn: str, table: str, pipeline: str) -> None:
        self.dsn = dsn
        self.table = table
        self.pipeline = pipeline
        self.key = advisory_key(table, pipeline)
        self._conn: Any = None

    def acquire(self) -> PostgresLock:
        from cdc_logs.offsets.postgres import connect_offsets_db

        holder = _holder()
        app = f"cdc-logs pid={holder['pid']} host={holder['host']}"[:63]
        # Server-side keepalives: the server notices a holder whose host vanished (and frees the lock)
        # within about a minute, not after the system's two-hour default.
        conn = connect_offsets_db(self.dsn, application_name=app, options=_KEEPALIVES)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]
            if not got:
                who = self._holder(conn)
                raise PipelineLocked(
                    f"pipeline {self.pipeline!r} is already running: {who} holds its lock "
                    f"in the offsets database (table {self.table})",
                    who,
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return self

    def _holder(self, conn: Any) -> str:
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        row = conn.execute(
            "SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s "
            "AND l.objid::bigint = %s AND l.objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return "another session"
        backend, app, client, started = row
        fields = dict(part.split("=", 1) for part in (app or "").split()[1:] if "=" in part)
        if (app or "").startswith("cdc-logs ") and fields.get("pid"):
            who = f"pid {fields['pid']} on {fields.get('host', '?')}"
        else:
            who = f"postgres session {backend}" + (f" ({app})" if app else "")
        if client:
            who += f", connected from {client}"
        if started is not None:
            who += f" (started {started.isoformat(timespec='seconds')})"
        return who

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            with contextlib.suppress(Exception):
                conn.close()
