"""`capture: log | poll | auto` for the Postgres and MySQL/MariaDB sources.

`log` is the source's own log reader (pgoutput, the binlog). `poll` is the SQLAlchemy polling reader
(readers/polling) built from the same source config: the same database and tables, with the cursor
columns of `poll:` (global, and per table). `auto` runs the source's doctor checks when the source
opens and takes the log when the ones log capture needs pass (Postgres: wal_level=logical, the
REPLICATION privilege and a replication login, a free slot and WAL sender; MySQL/MariaDB: log_bin,
binlog_format=ROW, full row images and metadata, server_id, REPLICATION SLAVE/CLIENT), and polls
otherwise, naming the checks that failed.

Polling cannot see everything the log does, and says so loudly: a warning at start-up and, in
`/ready`'s details, `capture` with the mode and its caveats (deletes are invisible without a
soft-delete column; changes between two polls collapse into the last state; `incrementing` sees no
updates). A position stored by one mode cannot be resumed by the other (the offset store refuses a
position of another server identity, naming `offsets reset`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from cdc_logs.configmodel import ConfigModel
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import Position
from cdc_logs.readers.base import Reader, SnapshotProgress, StreamItem
from cdc_logs.readers.checks import Check, warn

log = get_logger(__name__)

CaptureMode = Literal["log", "poll", "auto"]
CAPTURE_DESCRIPTION = (
    "How changes are captured: log (the database's change log, the default), poll (query the tables "
    "through SQLAlchemy with the cursor columns of `poll`: sees no deletes without a soft-delete column "
    "and no intermediate states between polls), or auto (the log when the doctor's checks for it pass, "
    "polling otherwise; the choice and polling's caveats are logged as a warning and shown in /ready's "
    "details). `capture_mode` (the seed's name, `wal`/`binlog`/`polling`) is accepted too."
)


class PollTableSettings(ConfigModel):
    """The polling cursor of one table (or, at the top of `poll`, of every table)."""

    mode: Literal["timestamp", "incrementing", "timestamp+incrementing"] | None = Field(
        None,
        description="The watermark, as the poll source's: timestamp, incrementing or timestamp+incrementing. "
        "Default: from the columns given (both: timestamp+incrementing).",
        examples=["timestamp+incrementing"],
    )
    timestamp_column: str | None = Field(
        None, description="Modification-time column set on every insert and update.", examples=["updated_at"]
    )
    incrementing_column: str | None = Field(
        None, description="Strictly increasing id column.", examples=["id"]
    )
    soft_delete_column: str | None = Field(
        None,
        description="A row whose value here is not NULL/false/0 is emitted as a delete; without it polling "
        "sees no deletes.",
        examples=["deleted_at"],
    )
    key_columns: list[str] | None = Field(
        None, description="Event key columns. Default: the primary key.", examples=[["id"]]
    )
    query: str | None = Field(
        None,
        description="A custom SELECT polled instead of the table, as the poll source's `query` (:last_sync "
        "and :last_id are bound); per table only (`poll.tables[name].query`). The seed's `query:` at the "
        "top of a postgresql source lands here.",
        examples=["SELECT event_id, created_at, payload FROM event_store WHERE created_at > :last_sync"],
    )


class PollSettings(PollTableSettings):
    """`poll:` of a log source: the cursor for `capture: poll` (and `auto` when it polls)."""

    tables: dict[str, PollTableSettings] = Field(
        default_factory=dict,
        description="Per-table cursors, by the name in `tables`, overriding the ones above field by field.",
        examples=[{"public.users": {"incrementing_column": "user_id", "mode": "incrementing"}}],
    )
    interval_ms: int = Field(1000, ge=1, description="Milliseconds between polls.", examples=[5000])
    safety_lag_ms: int = Field(
        0, ge=0, description="As the poll source's safety_lag_ms (late-committing rows).", examples=[5000]
    )

    @model_validator(mode="after")
    def _query_per_table(self) -> PollSettings:
        if self.query is not None:
            raise ValueError("poll.query belongs to one table: set it as poll.tables[<table>].query")
        return self


def capture_alias(data: Any) -> Any:
    """The seed's `capture_mode: wal | polling` as `capture`."""
    if isinstance(data, dict) and "capture_mode" in data and "capture" not in data:
        data = dict(data)
        value = str(data.pop("capture_mode")).lower()
        data["capture"] = {"wal": "log", "binlog": "log", "polling": "poll"}.get(value, value)
    return data


def polled_tables(tables: list[str], poll: PollSettings | None) -> list[Any]:
    """The source's tables as `PolledTable`s; ValueError naming a table without a cursor column."""
    from cdc_logs.readers.polling.query import PolledTable

    base = poll or PollSettings()
    out = []
    for name in tables:
        own = base.tables.get(name) or base.tables.get(name.split(".")[-1]) or PollTableSettings()
        pick: dict[str, Any] = {
            f: getattr(own, f) if getattr(own, f) is not None else getattr(base, f)
            for f in ("mode", "timestamp_column", "incrementing_column", "soft_delete_column", "key_columns")
        }
        ts, inc = pick["timestamp_column"], pick["incrementing_column"]
        mode = pick["mode"] or (
            "timestamp+incrementing" if ts and inc else "timestamp" if ts else "incrementing" if inc else None
        )
        if mode is None or ("timestamp" in mode and not ts) or ("incrementing" in mode and not inc):
            raise ValueError(
                f"capture by polling needs a cursor column for {name}: set poll.timestamp_column and/or "
                f"poll.incrementing_column (or poll.tables[{name!r}])"
            )
        out.append(
            PolledTable(
                name=name,
                mode=mode,
                timestamp_column=ts,
                incrementing_column=inc,
                key_columns=tuple(pick["key_columns"]) if pick["key_columns"] else None,
                soft_delete_column=pick["soft_delete_column"],
                query=own.query,
            )
        )
    return out


def caveats(tables: list[Any]) -> list[str]:
    """What polling these tables cannot see."""
    out = ["changes between two polls collapse into the row's last state (intermediate states are lost)"]
    blind = [t.name for t in tables if not t.soft_delete_column]
    if blind:
        out.append(f"deletes are not seen in {', '.join(blind)} (no soft_delete_column)")
    inserts_only = [t.name for t in tables if t.mode == "incrementing"]
    if inserts_only:
        out.append(f"updates are not seen in {', '.join(inserts_only)} (incrementing cursor only)")
    out.append("truncates, schema changes and transaction boundaries are not seen")
    return out


def capture_checks(
    mode: CaptureMode,
    log_checks: Callable[[], list[Check]],
    poll_checks: Callable[[], list[Check]],
    tables: list[Any],
    needed: frozenset[str],
) -> list[Check]:
    """`cdc-logs doctor` for a source with `capture: poll | auto`: poll runs the polling checks; auto
    runs the log's and, when one log capture needs fails, shows it as a warning (auto will poll)
    followed by the polling checks. Either way a warning lists what polling cannot see."""
    said = warn(
        "capture",
        f"capture: {mode} polls: " + "; ".join(caveats(tables)),
        "use capture: log for every change",
    )
    if mode == "poll":
        return [*poll_checks(), said]
    checks = log_checks()
    failed = [c for c in checks if not c.ok and c.name in needed and c.name != "connect"]
    if not failed:
        return [*checks, Check("capture", True, "capture: auto reads the change log (its checks pass)")]
    softened = [warn(c.name, c.detail, c.fix or "") if c in failed else c for c in checks]
    return [*softened, *poll_checks(), said]


class CaptureReader(Reader):
    """The reader a `capture:` setting chose (auto: chosen at the first open from the doctor's checks),
    with the choice and polling's caveats for /ready (`capture_info`)."""

    def __init__(
        self,
        mode: CaptureMode,
        *,
        source: str,
        log_reader: Callable[[], Reader],
        poll_reader: Callable[[], Reader],
        tables: Callable[[], list[Any]],
        checks: Callable[[], list[Check]],
        needed: frozenset[str],
    ) -> None:
        self.mode = mode
        self.source = source
        self._log_reader = log_reader
        self._poll_reader = poll_reader
        self._tables = tables
        self._checks = checks
        self._needed = needed
        self.inner: Reader | None = None
        self.chosen: str | None = None
        self.reasons: list[str] = []
        self.caveats: list[str] = []
        self._lock = threading.Lock()
        self._tentative = False  # auto chose the log only because the checks could not connect
        self._serialize_early = False

    def _choose(self) -> Reader:
        with self._lock:
            if self.inner is not None:
                return self.inner
            mode = self.mode
            if mode == "auto":
                failed = [c for c in self._checks() if not c.ok and c.name in self._needed]
                unreachable = [c for c in failed if c.name == "connect"]
                if unreachable:
                    # Neither way can read it now: the log reader's open reports why (classified, and
                    # retried if it can be); the choice is made again at the next open.
                    mode = "log"
                    self._tentative = True
                else:
                    mode = "poll" if failed else "log"
                    self.reasons = [f"{c.name}: {c.detail}" for c in failed]
            self.chosen = mode
            if mode == "poll":
                self.caveats = caveats(self._tables())
                self.inner = self._poll_reader()
                log.warning(
                    "capturing by polling: some changes will not be seen",
                    source=self.source,
                    capture=self.mode,
                    # capture: poll has no failed check to name: the config chose it.
                    because=self.reasons or [f"capture: {self.mode} is set in the config"],
                    cannot_see=self.caveats,
                )
            else:
                self.inner = self._log_reader()
                if self.mode == "auto":
                    log.info("capturing from the change log", source=self.source, capture="auto")
            if self._serialize_early:
                self.inner.serialize_early()
            # The chosen reader's own attributes (heartbeat interval, connector) are read through us.
            return self.inner

    def serialize_early(self) -> None:
        self._serialize_early = True
        if self.inner is not None:
            self.inner.serialize_early()

    def capture_info(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "chosen": self.chosen,
            "because": self.reasons,
            "cannot_see": self.caveats,
        }

    def open(self) -> None:
        reader = self._choose()
        try:
            reader.open()
        except BaseException:
            if self._tentative:  # chosen without the checks: decide again once the server answers
                with contextlib.suppress(Exception):
                    reader.close()
                self.inner, self.chosen, self._tentative = None, None, False
            raise
        self._tentative = False

    def server_identity(self) -> str:
        return self._choose().server_identity()

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        return self._choose().stream(start)

    def commit(self, position: Position) -> None:
        self._choose().commit(position)

    def snapshot_progress(self) -> list[SnapshotProgress]:
        return self.inner.snapshot_progress() if self.inner is not None else []

    def stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)
