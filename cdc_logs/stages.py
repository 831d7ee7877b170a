"""Batch stages: middleware that sees whole batches and may keep state checkpointed with the positions.

A per-event transform (transforms/base.py) maps one change to one change or none. Some middleware
needs more: windows over many changes (IoT aggregation), a log written beside the sinks (the audit
trail), control totals per batch (financial validation). Those are `BatchStage`s. The pipeline runs
them on each batch after the per-event transforms, in config order, before any sink gets the batch;
a stage may drop events, change them or add events of its own (an aggregate, an alert).

State and the checkpoint rule. A stateful stage's state must match the committed positions exactly:
state that already counts a batch whose position was not committed counts it twice after the replay;
state that lags the committed position never sees the skipped changes. So after each batch the runner
takes a snapshot of every stateful stage (`snapshot()`), and before the pipeline saves positions it
writes the snapshot taken at the same sequence number to the state directory, tagged with the
positions about to be committed (atomically: temp file, fsync, rename). Two generations are kept: a
crash between the state write and the offset save leaves the offset store at the previous positions,
whose generation is still there. On start the runner restores the generation whose tag equals the
committed positions; if none does (the offsets were reset or set by hand), stages start empty and a
warning says so.

The pipeline only commits positions up to the newest snapshot's sequence number (`commit_limit`), so
that a fan-out sink's acknowledgement in the middle of a batch cannot commit past the state.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)

STATE_FORMAT = 1


@dataclass(slots=True)
class StageContext:
    """What a stage gets when the pipeline opens it."""

    pipeline: str
    #: The state this stage saved with the committed positions, as JSON data (None: start empty).
    state: Any
    #: Directory this stage may keep its own files in (created; inside the pipeline's state dir).
    directory: Path
    #: Park an event with a reason in the dead-letter destination (durably, before returning).
    #: None when dead letters are off: then a stage that refuses an event must raise a CdcError.
    dead_letter: Callable[[str, Sequence[ChangeEvent], CdcError], Path] | None = None
    #: "metrics": the pipeline's Metrics (observability/metrics.py), when the pipeline gives it.
    extra: dict[str, Any] = field(default_factory=dict)


class BatchStage(ABC):
    """Middleware over whole batches (see the module docstring)."""

    #: Unique within a pipeline (names the stage's state and its directory); set by the builder.
    name: str = "stage"
    #: True when `snapshot()` returns state that must be checkpointed with the positions.
    stateful: bool = False

    def open(self, context: StageContext) -> None:  # noqa: B027 - optional hook
        """Called once before the first batch; restore from `context.state` here."""

    @abstractmethod
    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        """The batch as the sinks should get it (the same list, changed, or a new one)."""

    def snapshot(self) -> Any:
        """The state after the last `process` call (stateful stages only), as JSON-serializable data
        (orjson types: dicts, lists, str, int, float, bool, None). It is serialized at once, so it may
        share objects with the live state."""
        return None

    def committed(self) -> None:  # noqa: B027 - optional hook
        """Every batch processed so far is in every sink and its positions are committed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """The pipeline is stopping."""


class StageRunner:
    """Runs the pipeline's batch stages and keeps their state in step with the committed positions."""

    def __init__(self, stages: Sequence[BatchStage], state_dir: str | Path | None, pipeline: str) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise CdcError(ErrorKind.CONFIG, f"batch middleware names must be unique, got {names}")
        self.stages = list(stages)
        self.pipeline = pipeline
        self.stateful = [s for s in self.stages if s.stateful]
        if self.stateful and state_dir is None:
            raise CdcError(
                ErrorKind.CONFIG,
                f"middleware {[s.name for s in self.stateful]} keeps state, but no state directory is set",
                "set sync.state_dir",
            )
        self.state_dir = Path(state_dir) if state_dir is not None else None
        # (seq, {stage name: state}) per processed batch not yet committed, oldest first.
        self._snapshots: deque[tuple[int, dict[str, bytes]]] = deque()  # state as JSON bytes

    def __bool__(self) -> bool:
        return bool(self.stages)

    # -- start -----------------------------------------------------------------------------------
    def open(
        self,
        committed: Mapping[str, str | None],
        dead_letter: Callable[[str, Sequence[ChangeEvent], CdcError], Path] | None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Restore each stage from the generation saved with `committed` (source -> encoded position)."""
        states = self._restore(dict(committed)) if self.stateful else {}
        for stage in self.stages:
            directory = (self.state_dir or Path(".cdc-logs") / f"{self.pipeline}.state") / stage.name
            directory.mkdir(parents=True, exist_ok=True)
            context = StageContext(
                self.pipeline, states.get(stage.name), directory, dead_letter, dict(extra or {})
            )
            stage.open(context)

    def _generations(self) -> list[Path]:
        assert self.state_dir is not None
        return sorted(self.state_dir.glob("stages.*.json"), reverse=True)

    def _restore(self, committed: dict[str, str | None]) -> dict[str, Any]:
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        found = self._generations()
        for path in found:
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                log.warning("unreadable middleware state generation skipped", path=str(path), error=str(exc))
                continue
            if data.get("format") != STATE_FORMAT:
                continue
            tag = data.get("positions", {})
            if all(tag.get(source) == position for source, position in committed.items()):
                return dict(data["stages"])
        if found or any(p is not None for p in committed.values()):
            log.warning(
                "middleware state does not match the committed positions; stateful middleware starts "
                "empty (the offsets were reset or set by hand, or the state directory is new)",
                stages=[s.name for s in self.stateful],
                state_dir=str(self.state_dir),
            )
        return {}

    # -- per batch -------------------------------------------------------------------------------
    def process(self, batch: list[ChangeEvent], seq: int) -> list[ChangeEvent]:
        """Run every stage on a batch whose last sequence number is `seq`; snapshot the state."""
        for stage in self.stages:
            batch = stage.process(batch)
        if self.stateful:
            self._snapshots.append((seq, {s.name: orjson.dumps(s.snapshot()) for s in self.stateful}))
        return batch

    def commit_limit(self, durable_seq: int) -> int | None:
        """The highest sequence number positions may be committed up to when every sink holds
        `durable_seq`: the newest snapshot at or below it (None: no stateful stage, no limit)."""
        if not self.stateful:
            return None
        limit = 0
        for seq, _ in self._snapshots:
            if seq > durable_seq:
                break
            limit = seq
        return limit

    def before_commit(self, limit: int, positions: Mapping[str, str | None]) -> None:
        """Persist the snapshot taken at sequence number `limit` (commit_limit), tagged with the
        positions about to be committed."""
        if not self.stateful:
            return
        taken: dict[str, bytes] | None = None
        while self._snapshots and self._snapshots[0][0] <= limit:
            taken = self._snapshots.popleft()[1]
        if taken is None:
            return
        assert self.state_dir is not None
        body = {
            "format": STATE_FORMAT,
            "positions": dict(positions),
            "stages": {name: orjson.Fragment(state) for name, state in taken.items()},
        }
        previous = self._generations()
        number = int(previous[0].name.split(".")[1]) + 1 if previous else 1
        _write_atomically(self.state_dir / f"stages.{number:012d}.json", orjson.dumps(body))
        for old in previous[1:]:  # keep the newest older generation: the offsets may still be at it
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def after_commit(self) -> None:
        for stage in self.stages:
            stage.committed()

    def close(self) -> None:
        for stage in self.stages:
            try:
                stage.close()
            except Exception as exc:
                log.warning("closing middleware failed", middleware=stage.name, error=str(exc))


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
