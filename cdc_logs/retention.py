"""Retention of what cdc-logs itself keeps on disk (`retention_period_days` of `gdpr_compliance`).

Owners register what they keep; `Retention.start()` makes a pass at once and then every `interval_s`
(an hour) on a thread of its own, until `close()`. Three kinds of target:

- `records(directory, pattern, what)`: JSON-lines files whose records carry `ts_ms` (the dead letters,
  deadletter.py). Records older than the retention are removed: a file whose last write is older goes
  whole; otherwise it is rewritten without them (a temporary file, fsync, rename) while holding the lock
  its writers take, so no append is lost. A line that cannot be dated is kept (and said so).
- `files(directory, pattern, what, keep_newest=1, before_remove=None)`: whole files older than the
  retention (by mtime, the time of their last write) are removed, except the `keep_newest` newest
  matches (the one being appended to). `before_remove(paths)` is called first with what is about to go;
  if it raises, nothing is removed this pass. Meant for the audit log's segments: the audit module
  registers its directory and, in `before_remove`, records what the chain loses (e.g. the last hash of
  the last removed segment, so `audit verify` can start from the oldest kept segment).
- `expired(what, select)`: the owner decides what is past the retention: `select(cutoff)` (`cutoff` a
  UTC datetime) returns the paths to remove, which are removed, logged and counted like `files`. For
  the audit log: `retention.expired("audit", lambda cutoff: expired_segments(audit_dir, cutoff))`
  with cdc_logs/middleware/audit_log.py's `expired_segments` (sealed segments, oldest first,
  contiguous, never the newest), registered in build.py's `retention()`.
- `guard(directory, pattern, what, hint)`: files that hold data not yet delivered (the fan-out spool).
  They are never removed; one older than the retention is reported, loudly and at every pass until it
  is gone: an error in the log, the gauge `cdc_logs_retention_overdue_files{what}`, and /ready failing
  with the reason (PipelineStatus.condition).

The log says what was removed with counts and file names, never contents. A pass that fails (a
directory that cannot be read) is logged as an error and makes /ready fail until a pass succeeds: the
retention is a promise made to someone, not an optimisation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from cdc_logs.deadletter import _lock_for
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.status import PipelineStatus

log = get_logger(__name__)

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class _Target:
    kind: str  # records | files | expired | guard
    directory: Path
    pattern: str
    what: str
    keep_newest: int = 0
    before_remove: Callable[[list[Path]], None] | None = None
    hint: str = ""
    select: Callable[[dt.datetime], Sequence[Path]] | None = None


class Retention:
    """Prunes what cdc-logs keeps past `days`; see the module docstring."""

    def __init__(
        self,
        days: float,
        *,
        metrics: Metrics | None = None,
        status: PipelineStatus | None = None,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.days = days
        self.metrics = metrics or Metrics.disabled()
        self.status = status
        self.interval_s = interval_s
        self._clock = clock
        self._targets: list[_Target] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- registration ---------------------------------------------------------------------------
    def records(self, directory: str | Path, pattern: str, what: str) -> None:
        self._targets.append(_Target("records", Path(directory), pattern, what))

    def files(
        self,
        directory: str | Path,
        pattern: str,
        what: str,
        *,
        keep_newest: int = 1,
        before_remove: Callable[[list[Path]], None] | None = None,
    ) -> None:
        self._targets.append(_Target("files", Path(directory), pattern, what, keep_newest, before_remove))

    def expired(self, what: str, select: Callable[[dt.datetime], Sequence[Path]]) -> None:
        self._targets.append(_Target("expired", Path("."), "", what, select=select))

    def guard(self, directory: str | Path, pattern: str, what: str, hint: str) -> None:
        self._targets.append(_Target("guard", Path(directory), pattern, what, hint=hint))

    @property
    def targets(self) -> Sequence[tuple[str, Path, str, str]]:
        return [(t.kind, t.directory, t.pattern, t.what) for t in self._targets]

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        """A pass now, then one every `interval_s` on a daemon thread."""
        self.run_once()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def run_once(self) -> dict[str, int]:
        """One pass over every target; returns, by `what`, records or files removed (guards: overdue)."""
        cutoff = self._clock() - self.days * DAY_S
        done: dict[str, int] = {}
        failed: list[str] = []
        for target in self._targets:
            try:
                if target.kind == "records":
                    done[target.what] = done.get(target.what, 0) + self._records(target, cutoff)
                elif target.kind == "files":
                    done[target.what] = done.get(target.what, 0) + self._files(target, cutoff)
                elif target.kind == "expired":
                    done[target.what] = done.get(target.what, 0) + self._expired(target, cutoff)
                else:
                    done[target.what] = self._guard(target, cutoff)
            except Exception as exc:  # one target's failure must not stop the others, nor the pipeline
                failed.append(f"{target.what} in {target.directory}: {type(exc).__name__}: {exc}")
                log.error("retention: pass failed", what=target.what, directory=str(target.directory),
                          error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        if self.status is not None:
            reason = None
            if failed:
                reason = f"the retention pass failed ({'; '.join(failed)}); data may be kept too long"
            self.status.condition("retention (pass)", reason)
        return done

    def _matches(self, target: _Target) -> list[Path]:
        if not target.directory.is_dir():
            return []
        return sorted(p for p in target.directory.glob(target.pattern) if p.is_file())

    # -- records ----------------------------------------------------------------------------------
    def _records(self, target: _Target, cutoff: float) -> int:
        removed = 0
        for path in self._matches(target):
            removed += _prune_records(path, cutoff, target.what)
        if removed:
            self.metrics.retention(target.what, removed=removed, unit="records")
        return removed

    # -- files ------------------------------------------------------------------------------------
    def _files(self, target: _Target, cutoff: float) -> int:
        found = sorted(((p.stat().st_mtime, p) for p in self._matches(target)), reverse=True)
        old = [p for mtime, p in found[target.keep_newest :] if mtime < cutoff]
        if not old:
            return 0
        old.sort()
        if target.before_remove is not None:
            target.before_remove(list(old))
        return self._remove(target.what, old)

    def _expired(self, target: _Target, cutoff: float) -> int:
        assert target.select is not None
        old = list(target.select(dt.datetime.fromtimestamp(cutoff, dt.UTC)))
        return self._remove(target.what, old) if old else 0

    def _remove(self, what: str, paths: list[Path]) -> int:
        """Remove whole files (in the order given), then make the removals durable."""
        for path in paths:
            path.unlink(missing_ok=True)
        for directory in {p.parent for p in paths}:
            _sync_dir(directory)
        log.info("retention: files removed", what=what, directory=str(paths[0].parent),
                 files=len(paths), first=paths[0].name, last=paths[-1].name, days=self.days)  # fmt: skip
        self.metrics.retention(what, removed=len(paths), unit="files")
        return len(paths)

    # -- guards -----------------------------------------------------------------------------------
    def _guard(self, target: _Target, cutoff: float) -> int:
        overdue = []
        for path in self._matches(target):
            with contextlib.suppress(FileNotFoundError):  # delivered meanwhile: removed by its owner
                mtime = path.stat().st_mtime
                if mtime < cutoff:
                    overdue.append(mtime)
        self.metrics.retention(target.what, overdue=len(overdue))
        reason = None
        if overdue:
            age_days = (self._clock() - min(overdue)) / DAY_S
            reason = (
                f"{len(overdue)} {target.what} file(s) in {target.directory} hold data not yet delivered "
                f"that is older than retention_period_days {self.days:g} (the oldest {age_days:.1f} days); "
                f"they are kept, never deleted: {target.hint}"
            )
            log.error("retention: undelivered data older than the retention is kept", what=target.what,
                      directory=str(target.directory), files=len(overdue), oldest_days=round(age_days, 1),
                      retention_days=self.days, fix=target.hint)  # fmt: skip
        if self.status is not None:
            self.status.condition(f"retention ({target.what})", reason)
        return len(overdue)


def _prune_records(path: Path, cutoff: float, what: str) -> int:
    """Remove the records of one JSON-lines file dated (`ts_ms`) before `cutoff`; returns how many."""
    cutoff_ms = cutoff * 1000
    tmp = path.with_name(f".{path.name}.retention-tmp")
    with _lock_for(path):  # the writers' lock: no append can land between the read and the rename
        tmp.unlink(missing_ok=True)  # left by a pass that was killed mid-rewrite: it holds old records
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return 0
        if mtime < cutoff:  # last written before the cutoff: every record in it is older
            with open(path, "rb") as fh:
                count = sum(1 for line in fh if line.strip())
            path.unlink()
            _sync_dir(path.parent)
            if count:
                log.info("retention: dead-letter file removed", what=what, file=str(path), records=count)
            return count
        removed = kept = undated = 0
        with open(path, "rb") as src, open(tmp, "wb") as out:
            for line in src:
                if not line.strip():
                    continue
                ts = _ts_ms(line)
                if ts is not None and ts < cutoff_ms:
                    removed += 1
                    continue
                undated += ts is None
                kept += 1
                out.write(line if line.endswith(b"\n") else line + b"\n")
            if removed:
                out.flush()
                os.fsync(out.fileno())
        if not removed:
            tmp.unlink()
        elif kept == 0:
            tmp.unlink()
            path.unlink()
            _sync_dir(path.parent)
        else:
            os.replace(tmp, path)
            _sync_dir(path.parent)
    if undated:
        log.warning("retention: records without a date are kept", what=what, file=str(path), records=undated)
    if removed:
        log.info("retention: dead letters removed", what=what, file=str(path), records=removed, kept=kept)
    return removed


def _ts_ms(line: bytes) -> float | None:
    try:
        value = orjson.loads(line).get("ts_ms")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sync_dir(directory: Path) -> None:
    """A removal or rename is durable once its directory is."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
