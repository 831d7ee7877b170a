"""Incremental snapshots while the stream flows: the watermark algorithm (DBLog) Debezium uses. No I/O.

Shared by the Postgres and MySQL/MariaDB readers; each reader does the I/O (writing watermarks,
selecting chunks, building events) and feeds what its log says to `IncrementalSnapshots`:

1. A snapshot starts from a signal (`execute-snapshot` in the signal table, read from the log like
   any change), or at start-up for tables added to the config. Its tables form a queue; the first
   `parallel` of them are read together, chunk by chunk (one after another with the default 1).
2. A chunk: the reader writes a low watermark to the log, selects the next `chunk_size` rows of each
   active table in primary-key order (keys after the last finished chunk, up to the table's largest
   key when its snapshot began), keeps them in the window buffer (`Window.add`), then writes a high
   watermark.
3. The stream goes on. When it reaches the low watermark the window opens: from then on a stream
   change of a buffered key removes that row from the buffer (the change is newer than or as new as
   what the select saw, and goes out as itself). A truncate of a table drops its buffered rows.
4. At the high watermark the window closes: the rows left are emitted as `op: r` with
   `source.snapshot: "incremental"`, ordered before the high watermark's own resume point. The
   state then records the chunk's last key, and that resume point carries it (positions'
   `incremental` field): the checkpoint commits it only once the rows before it are durable, so a
   restart continues from the last finished chunk and never skips one.

Watermarks carry a chunk id; a watermark of another id (an older run's, replayed after a restart, or
written by Debezium into a shared signal table) is ignored. A restart resumes with the state of the
committed position and reads its next chunk again with a new id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)

R = TypeVar("R")
T = TypeVar("T")

# Signal types, as Debezium names them (its signal table rows and its own watermarks).
EXECUTE_SNAPSHOT = "execute-snapshot"
STOP_SNAPSHOT = "stop-snapshot"
WINDOW_OPEN = "snapshot-window-open"
WINDOW_CLOSE = "snapshot-window-close"
_IGNORED_SIGNALS = {"log", "pause-snapshot", "resume-snapshot", "schema-changes"}


@dataclass(slots=True)
class TableProgress:
    """One table's place in the snapshot. Keys are lists of JSON values (the reader's key text)."""

    table: str
    where: str | None = None  # additional condition (SQL), from the signal
    last: list[Any] | None = None  # key of the last row of the last finished chunk (None: none yet)
    maximum: list[Any] | None = None  # largest key when the table's snapshot began
    started: bool = False  # maximum was read (None then means: the table was empty)
    rows: int = 0  # rows emitted so far

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.table, "n": self.rows}
        if self.where:
            out["w"] = self.where
        if self.last is not None:
            out["k"] = self.last
        if self.started:
            out["m"] = self.maximum
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableProgress:
        return cls(
            table=str(data["t"]),
            where=data.get("w"),
            last=data.get("k"),
            maximum=data.get("m"),
            started="m" in data,
            rows=int(data.get("n", 0)),
        )


@dataclass(slots=True)
class SnapshotState:
    """What a committed position says about the running snapshot: its id and the table queue."""

    id: str
    tables: list[TableProgress] = field(default_factory=list)

    def encode(self) -> str:
        return orjson.dumps({"id": self.id, "q": [t.to_json() for t in self.tables]}).decode()

    @classmethod
    def decode(cls, text: str) -> SnapshotState | None:
        if not text:
            return None
        try:
            data = orjson.loads(text)
            return cls(str(data["id"]), [TableProgress.from_json(t) for t in data["q"]])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CdcError(
                ErrorKind.DECODE,
                f"the stored position's incremental snapshot state is not valid ({exc})",
                "inspect it with `cdc-logs offsets show`; `cdc-logs offsets set` without the "
                "`incremental` field drops the snapshot (send it again with `cdc-logs snapshot`)",
            ) from exc


@dataclass(slots=True)
class Signal:
    """A signal table row: Debezium's (id, type, data)."""

    id: str
    type: str
    data: dict[str, Any]


def parse_signal(row: dict[str, Any]) -> Signal:
    """A signal row as read from the log; `data` is JSON text (empty or NULL: {})."""
    raw = row.get("data")
    data: Any = {}
    if raw not in (None, ""):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
    if not isinstance(data, dict):
        raise CdcError(
            ErrorKind.DECODE,
            f"signal {row.get('id')!r} ({row.get('type')}): its data is not a JSON object",
            'write data as JSON, e.g. {"data-collections": ["public.orders"], "type": "incremental"}',
        )
    return Signal(str(row.get("id") or ""), str(row.get("type") or ""), data)


@dataclass(slots=True)
class Window(Generic[R]):
    """One chunk in flight: its rows by (table, key id), in the order they were read."""

    id: str
    open: bool = False
    rows: dict[str, dict[bytes, R]] = field(default_factory=dict)
    ends: dict[str, tuple[list[Any] | None, bool]] = field(default_factory=dict)  # last key, exhausted

    def add(self, table: str, key: bytes, row: R) -> None:
        self.rows.setdefault(table, {})[key] = row

    def end(self, table: str, last: list[Any] | None, exhausted: bool) -> None:
        """The select of `table` returned; `last` is the key of its last row (even if later removed)."""
        self.rows.setdefault(table, {})
        self.ends[table] = (last, exhausted)


class IncrementalSnapshots(Generic[R]):
    """The state machine; see the module docstring. `captured`: tables the reader streams."""

    def __init__(self, *, chunk_size: int = 1024, parallel: int = 1, captured: Iterable[str] = ()) -> None:
        if chunk_size < 1 or parallel < 1:
            raise ValueError("chunk_size and parallel must be at least 1")
        self.chunk_size = chunk_size
        self.parallel = parallel
        self.captured = set(captured)
        self.state: SnapshotState | None = None
        self.window: Window[R] | None = None
        self.finished = 0  # snapshots completed by this instance (for logs and tests)

    # -- state ---------------------------------------------------------------------------------------
    def resume(self, text: str) -> None:
        """Take over the state of the position a run resumes from."""
        self.state = SnapshotState.decode(text)
        self.window = None
        if self.state is not None:
            self._drop_uncaptured(self.state.tables)
            log.info(
                "incremental snapshot resumes",
                id=self.state.id,
                tables=[t.table for t in self.state.tables],
            )
            self._finish_if_empty()

    def encoded(self) -> str:
        return self.state.encode() if self.state is not None else ""

    @property
    def running(self) -> bool:
        return self.state is not None

    def active(self) -> list[TableProgress]:
        return self.state.tables[: self.parallel] if self.state is not None else []

    def chunk_due(self) -> bool:
        """A snapshot runs and no chunk is in flight: the reader should read the next one now."""
        return self.state is not None and self.window is None

    # -- signals -------------------------------------------------------------------------------------
    def execute(
        self, signal_id: str, tables: list[str], conditions: dict[str, str] | None = None
    ) -> list[str]:
        """Queue `tables` (already resolved names); returns those added. A running snapshot grows."""
        conditions = conditions or {}
        progress = [TableProgress(t, where=conditions.get(t)) for t in tables]
        self._drop_uncaptured(progress)
        if self.state is None:
            self.state = SnapshotState(signal_id or uuid.uuid4().hex)
        queued = {t.table for t in self.state.tables}
        added = [p for p in progress if p.table not in queued]
        self.state.tables.extend(added)
        self._finish_if_empty()
        if added:
            log.info("incremental snapshot queued", id=signal_id, tables=[p.table for p in added])
        return [p.table for p in added]

    def stop(self, tables: list[str] | None) -> list[str]:
        """Remove `tables` (None: all) from the running snapshot; returns those removed."""
        if self.state is None:
            return []
        names = {t.table for t in self.state.tables} if tables is None else set(tables)
        removed = [t.table for t in self.state.tables if t.table in names]
        self.state.tables = [t for t in self.state.tables if t.table not in names]
        if self.window is not None:
            for name in removed:
                self.window.rows.pop(name, None)
                self.window.ends.pop(name, None)
        if removed:
            log.info("incremental snapshot stopped", tables=removed)
        self._finish_if_empty()
        return removed

    def resolve(self, patterns: list[str]) -> list[str]:
        """Signal `data-collections` to captured table names: exact names, else regular expressions
        matched against the captured tables (as Debezium reads them). Unmatched: a CdcError."""
        out: list[str] = []
        for pattern in patterns:
            name = str(pattern).strip()
            if name in self.captured:
                matches = [name]
            else:
                try:
                    regex = re.compile(name)
                except re.error:
                    matches = []
                else:
                    matches = sorted(t for t in self.captured if regex.fullmatch(t))
            if not matches:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"incremental snapshot of {name!r}: no captured table has that name",
                    f"name tables the source captures ({', '.join(sorted(self.captured)) or 'none'}); "
                    "add a new table to the source's `tables` first",
                )
            out.extend(m for m in matches if m not in out)
        return out

    # -- the window ----------------------------------------------------------------------------------
    def begin(self) -> Window[R]:
        """A new chunk: the reader writes the low watermark with `window.id`, reads, then the high one."""
        if self.state is None:
            raise CdcError(ErrorKind.USAGE, "no incremental snapshot runs")
        self.window = Window(uuid.uuid4().hex)
        return self.window

    def abandon(self) -> None:
        """The chunk could not be read (an error): it is read again, with a new id."""
        self.window = None

    def watermark(self, chunk_id: str, opening: bool) -> list[R] | None:
        """A watermark reached the stream. Opening: the window starts deduplicating. Closing: returns
        the rows to emit (in read order) and advances the state; None when the id is not ours."""
        window = self.window
        if window is None or chunk_id != window.id:
            return None  # an older run's watermark, or another tool's: not this window
        if opening:
            window.open = True
            return None
        if not window.open:
            # The close came before the open: the log order is broken (never on a sane server).
            raise CdcError(
                ErrorKind.INTERNAL,
                f"incremental snapshot chunk {chunk_id}: the high watermark came before the low one",
                "restart the pipeline: the snapshot resumes from its last finished chunk",
            )
        self.window = None
        out: list[R] = []
        assert self.state is not None
        for progress in list(self.state.tables):
            if progress.table not in window.ends:
                continue
            rows = list(window.rows.get(progress.table, {}).values())
            out.extend(rows)
            last, exhausted = window.ends[progress.table]
            progress.rows += len(rows)
            if last is not None:
                progress.last = last
            if exhausted:
                self.state.tables.remove(progress)
                log.info("incremental snapshot: table done", table=progress.table, rows=progress.rows)
        self._finish_if_empty()
        return out

    def changed(self, table: str, key: bytes | None) -> None:
        """A stream change of `table` with key id `key` (None: no key) passed through the log."""
        window = self.window
        if window is None or not window.open or key is None:
            return
        rows = window.rows.get(table)
        if rows:
            rows.pop(key, None)

    def truncated(self, table: str) -> None:
        window = self.window
        if window is not None and window.open and table in window.rows:
            window.rows[table].clear()

    # -- internals -----------------------------------------------------------------------------------
    def _drop_uncaptured(self, tables: list[TableProgress]) -> None:
        if not self.captured:
            return
        for progress in list(tables):
            if progress.table not in self.captured:
                tables.remove(progress)
                log.warning(
                    "incremental snapshot: table is not captured by this source; left out",
                    table=progress.table,
                    fix="add it to the source's `tables` (and the publication), then snapshot it",
                )

    def _finish_if_empty(self) -> None:
        if self.state is not None and not self.state.tables:
            log.info("incremental snapshot finished", id=self.state.id)
            self.state = None
            self.window = None
            self.finished += 1


def signal_tables(signal: Signal) -> tuple[list[str] | None, dict[str, str], str]:
    """(data-collections or None, additional conditions by table, snapshot type) of a signal."""
    data = signal.data
    collections = data.get("data-collections")
    if collections is not None and (
        not isinstance(collections, list) or not all(isinstance(c, str) for c in collections)
    ):
        raise CdcError(
            ErrorKind.DECODE,
            f"signal {signal.id!r}: data-collections must be a list of table names",
            'e.g. {"data-collections": ["public.orders"], "type": "incremental"}',
        )
    conditions: dict[str, str] = {}
    # A condition that cannot be read refuses the whole signal: snapshotting the table unfiltered
    # instead could send rows the user meant to keep out.
    example = '"additional-conditions": [{"data-collection": "public.orders", "filter": "id > 100"}]'
    items = data.get("additional-conditions")
    if items is not None and not isinstance(items, list):
        raise CdcError(
            ErrorKind.DECODE, f"signal {signal.id!r}: additional-conditions must be a list", example
        )
    for item in items or []:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("data-collection"), str)
            and item["data-collection"].strip()
            and isinstance(item.get("filter"), str)
            and item["filter"].strip()
        ):
            raise CdcError(
                ErrorKind.DECODE,
                f"signal {signal.id!r}: additional-conditions item {item!r} is not "
                '{"data-collection": TABLE, "filter": SQL}',
                example,
            )
        conditions[item["data-collection"].strip()] = item["filter"]
    single = data.get("additional-condition")
    if single is not None and not isinstance(single, str):
        raise CdcError(
            ErrorKind.DECODE, f"signal {signal.id!r}: additional-condition must be SQL text", example
        )
    if single and collections:  # Debezium 1.x: one condition for all
        for name in collections:
            conditions.setdefault(name, str(data["additional-condition"]))
    kind = str(data.get("type") or "incremental").lower()
    return collections, conditions, kind


def stamp_start(
    items: Generator[Any, None, T], captured: tuple[str, ...], streamable: Callable[[Any], bool]
) -> Generator[Any, None, T]:
    """The items a reader yields before its stream (the start heartbeat, the initial snapshot's last
    row): a resume point the stream can start from (`streamable`) carries the captured tables too.
    Without this the first run of a new slot that delivers nothing else (`one_time`, no heartbeats)
    stores a position without them, and a table added later is never snapshotted."""
    while True:
        try:
            item = next(items)
        except StopIteration as done:
            return done.value
        position = getattr(item, "position", None)
        if captured and getattr(item, "boundary", False) and position is not None and streamable(position):
            item.position = position.with_state(position.incremental, captured)
        yield item


def warn_without_captured(captured: tuple[str, ...], stored: tuple[str, ...]) -> None:
    """snapshot_new_tables is on but the stored position names no captured tables (written before it
    was turned on, or by an older version): tables added since cannot be told apart."""
    if captured and not stored:
        log.warning(
            "snapshot_new_tables: the stored position does not list the captured tables, so tables "
            "added before this start are not snapshotted (from now on they are recorded)",
            fix="snapshot a table added since the last run with `cdc-logs snapshot TABLE -c pipeline.yaml`",
        )


def key_id(key: dict[str, Any] | None) -> bytes | None:
    """The identity of a row's key for the window buffer: same for a stream event and a chunk row."""
    if key is None:
        return None
    from cdc_logs.envelope import dumps

    return dumps(list(key.values()))


def key_text(values: Iterable[Any]) -> list[Any]:
    """Key values as stored in the state (JSON): ints as they are, anything else as text."""
    return [
        v if isinstance(v, int) and not isinstance(v, bool) else (None if v is None else str(v))
        for v in values
    ]


def ignored_signal(kind: str) -> bool:
    """Signal types this reader reads but does not act on (window markers of others, logs...)."""
    return kind in _IGNORED_SIGNALS or kind in (WINDOW_OPEN, WINDOW_CLOSE)


def on_signal(snapshots: IncrementalSnapshots[R], signal: Signal) -> list[R] | None:
    """Act on one signal row read from the log; returns the rows to emit when it closed our window.

    A signal that cannot be acted on (unknown table, unsupported type) is logged as an error naming
    the signal and the fix, and the stream goes on: one bad row in the signal table must not stop
    the capture of every table."""
    kind = signal.type
    try:
        if kind in (WINDOW_OPEN, WINDOW_CLOSE):
            chunk = signal.id.rsplit("-", 1)[0] if signal.id.endswith(("-open", "-close")) else signal.id
            return snapshots.watermark(chunk, kind == WINDOW_OPEN)
        if kind == EXECUTE_SNAPSHOT:
            collections, conditions, snap_type = signal_tables(signal)
            if snap_type != "incremental":
                raise CdcError(
                    ErrorKind.UNSUPPORTED,
                    f"signal {signal.id!r}: snapshot type {snap_type!r} is not supported",
                    'use "type": "incremental"',
                )
            if not collections:
                raise CdcError(
                    ErrorKind.DECODE,
                    f"signal {signal.id!r}: execute-snapshot names no data-collections",
                    'e.g. {"data-collections": ["public.orders"], "type": "incremental"}',
                )
            if signal.data.get("surrogate-key"):
                log.warning(
                    "signal: surrogate-key is not supported; the primary key orders the chunks",
                    signal=signal.id,
                )
            tables = snapshots.resolve(collections)
            resolved = {}
            for name, condition in conditions.items():
                for table in snapshots.resolve([name]):
                    if table not in tables:
                        raise CdcError(
                            ErrorKind.DECODE,
                            f"signal {signal.id!r}: a condition for {table}, which data-collections "
                            "does not name",
                            "name the table in data-collections too, or drop its condition",
                        )
                    resolved[table] = condition
            queued = {t.table for t in snapshots.state.tables} if snapshots.state else set()
            snapshots.execute(signal.id, tables, resolved)
            for table in tables:
                if table not in queued:
                    continue
                if table in resolved:
                    log.warning(
                        "incremental snapshot: table already queued, conditions not applied",
                        signal=signal.id,
                        table=table,
                        fix="stop its snapshot (`cdc-logs snapshot --stop TABLE`), then send it again "
                        "with the conditions",
                    )
                else:
                    log.info("incremental snapshot: table already queued", signal=signal.id, table=table)
        elif kind == STOP_SNAPSHOT:
            collections, _, _ = signal_tables(signal)
            snapshots.stop(snapshots.resolve(collections) if collections else None)
        elif kind not in _IGNORED_SIGNALS:
            raise CdcError(
                ErrorKind.UNSUPPORTED,
                f"signal {signal.id!r}: unknown type {kind!r}",
                "cdc-logs acts on execute-snapshot and stop-snapshot (type incremental)",
            )
    except CdcError as exc:
        log.error("signal refused", signal=signal.id, type=kind, error=exc.message, fix=exc.hint)
    return None
