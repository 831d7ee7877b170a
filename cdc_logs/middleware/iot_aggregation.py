"""iot_aggregation: tumbling or sliding event-time windows per group, emitted as events of a derived
table when the watermark passes them (docs/iot.md).

Per event, in source order: its time (the source's commit time, or a row field) puts it in its
window(s) of its group (table + group_by values); then the table's watermark becomes the greatest
event time seen minus `allowed_lateness`, and every open window whose end is at or below the watermark
is emitted, right after the event that closed it, as an op "c" event of `<table>_agg` keyed by
(group, window_start, window_end). An event whose window the watermark already closed is late: dropped
and counted (a warning with the running count), dead-lettered, or (late_data: update, within the
horizon) folded into the kept window and the aggregate re-emitted as an op "u" (or, when that group's
window was never opened, the table's watermark having passed it, emitted as an op "c").
Because each event is handled alone and in order, the output does not depend on how the pipeline cut
batches; with the state checkpointed with the positions (stages.py), a crash and restart emit the
same aggregates, each window's once past the committed positions (a sink may see the replayed
uncommitted ones again, identical and under the same key, as it sees every replayed event).

Only inserts and snapshot rows (op "c", "r") are readings; updates and deletes pass through
unaggregated (an emitted aggregate cannot take a change back), with a warning per table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.middleware.iotbase import (
    BadValue,
    check_field_name,
    check_group_spec,
    check_output_table,
    derived_event,
    derived_table,
    event_time_ms,
    field_kind,
    group_column,
    group_column_name,
    group_value,
    log_point,
    number_column,
    numeric,
    numeric_fields,
    output_value,
    parse_duration,
    selected,
    time_fields,
)
from cdc_logs.middleware.windows import (
    FieldAcc,
    Window,
    check_function,
    column_suffix,
    percentile_of,
    window_starts,
)
from cdc_logs.observability.logging import get_logger
from cdc_logs.schema import Column, Semantic, TableSchema
from cdc_logs.stages import BatchStage, StageContext

log = get_logger(__name__)

STATE_VERSION = 1
#: time_window / slide at most: a day of one-minute slides (each reading is folded into every window).
MAX_WINDOWS_PER_READING = 1440
_TIME_COLUMN = ("int64", Semantic.TIMESTAMP, "TIMESTAMP")  # epoch ms: the SQL sink makes it a timestamp
_READINGS = (Op.CREATE, Op.READ)

# (table, group values as JSON text, window start)
WindowKey = tuple[str, str, int]


class IotAggregationStage(BatchStage):
    stateful = True

    def __init__(
        self,
        *,
        window_ms: int,
        slide_ms: int,
        functions: Sequence[str],
        fields: Sequence[str],
        group_by: Sequence[str],
        event_time_field: str | None,
        lateness_ms: int,
        late_data: str,
        update_horizon_ms: int,
        output_table: str,
        pass_through: bool,
        tables: Sequence[str],
    ) -> None:
        self.window_ms, self.slide_ms = window_ms, slide_ms
        self.functions = [f for f in dict.fromkeys(functions) if f != "count"]  # count: always a column
        self.fields = list(fields)
        self.group_by = list(group_by)
        self.event_time_field = event_time_field
        self.lateness_ms = lateness_ms
        self.late_data = late_data
        self.update_horizon_ms = update_horizon_ms
        self.output_table = output_table
        self.pass_through = pass_through
        self.tables = list(tables)
        self.keep_values = any(percentile_of(f) is not None for f in self.functions)
        self._dead_letter: Any = None
        self._metrics: Any = None  # observability.metrics.Metrics, when the pipeline gives it
        self._schemas: dict[tuple[Any, ...], TableSchema] = {}
        self._warned: set[tuple[str, str]] = set()
        self.bad = 0  # readings dead-lettered by this process (logged with the running count)
        self._reset()

    def _reset(self) -> None:
        self.windows: dict[WindowKey, Window] = {}  # open windows (and, late_data update, kept closed ones)
        self.watermarks: dict[str, int] = {}  # per table
        self.kinds: dict[str, dict[str, str]] = {}  # table -> value field -> decimal|int|float
        self.late = 0  # late events dropped (or dead-lettered), since the state began
        self._next_close: dict[str, int] = {}

    # -- state -----------------------------------------------------------------------------------
    def open(self, context: StageContext) -> None:
        self._dead_letter = context.dead_letter
        self._metrics = context.extra.get("metrics")
        if self.late_data == "dead_letter" and context.dead_letter is None:
            raise CdcError(
                ErrorKind.CONFIG,
                "iot_aggregation late_data: dead_letter needs dead letters, which are off",
                "set sync.dead_letters, or late_data: drop",
            )
        self._reset()
        state = context.state
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise CdcError(
                ErrorKind.CONFIG,
                f"iot_aggregation state has version {state.get('version')}, this cdc-logs reads "
                f"{STATE_VERSION}",
                "run the cdc-logs version that wrote it, or remove the state directory to start the "
                "windows empty",
            )
        self.watermarks = {k: int(v) for k, v in state["watermarks"].items()}
        self.kinds = {k: dict(v) for k, v in state["kinds"].items()}
        self.late = int(state["late"])
        for table, group, start, window in state["windows"]:
            self.windows[(table, group, int(start))] = Window.from_json(window)
        for table, _, start in self.windows:
            self._note_open(table, start)

    def snapshot(self) -> Any:
        return {
            "version": STATE_VERSION,
            "watermarks": self.watermarks,
            "kinds": self.kinds,
            "late": self.late,
            "windows": [[t, g, s, w.to_json()] for (t, g, s), w in self.windows.items()],
        }

    # -- per batch -------------------------------------------------------------------------------
    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        out: list[ChangeEvent] = []
        for event in batch:
            if not selected(self.tables, event):
                out.append(event)
                continue
            if self.pass_through:
                out.append(event)
            if event.op not in _READINGS:
                self._warn_once(event, "updates and deletes are not readings: passed through unaggregated")
                continue
            try:
                self._add(event, out)  # fails before it emits anything
            except BadValue as exc:
                # Only its aggregation is refused: the reading itself stays in the batch (pass_through),
                # so a misspelled field does not remove every row from the replica.
                self._bad(event, str(exc))
        return out

    def _add(self, event: ChangeEvent, out: list[ChangeEvent]) -> None:
        table = event.source.qualified_table
        t = event_time_ms(event, self.event_time_field)
        group = orjson.dumps([group_value(event, g) for g in self.group_by]).decode()
        values = self._values(event, table)
        watermark = self.watermarks.get(table)
        late: list[int] = []
        for start in window_starts(t, self.window_ms, self.slide_ms):
            key = (table, group, start)
            # The watermark is per table: a window closed by other groups' readings may never have
            # been emitted for this group (a device that went quiet, then uploads its buffer).
            closed = watermark is not None and start + self.window_ms <= watermark
            window = self.windows.get(key)
            if closed and (self.late_data != "update" or not self._kept(start, watermark or 0)):
                late.append(start)
                continue
            if window is None:
                window = self.windows[key] = Window()
                if not closed:
                    self._note_open(table, start)
            self._fold(window, values)
            if closed:  # late_data: update, within the horizon: emit (op c) or re-emit (op u) it
                out.append(self._emit(event, key, window))
                if self._metrics is not None:
                    self._metrics.middleware_late_event(self.name, "updated")
        if late:
            self._late(event, table, t, late)
        mark = t - self.lateness_ms
        if watermark is None or mark > watermark:
            self.watermarks[table] = mark
            if mark >= self._next_close.get(table, mark + 1):
                self._close(event, table, mark, out)

    def _values(self, event: ChangeEvent, table: str) -> dict[str, Any]:
        row = event.row or {}
        kinds = self.kinds.get(table)
        if kinds is None:
            names = self.fields or numeric_fields(
                event, {*self.group_by, *time_fields(event, self.event_time_field)}
            )
            if not names:
                raise BadValue("the row has no numeric field to aggregate (set iot_aggregation fields)")
            # Fixed at a table's first reading (and kept in the state): the output table's columns.
            kinds = self.kinds[table] = {name: field_kind(event, name, row.get(name)) for name in names}
        values: dict[str, Any] = {}
        for name, kind in kinds.items():
            if name not in row:
                raise BadValue(f"the row has no value field {name!r}")
            values[name] = None if row[name] is None else numeric(row[name], kind, name)
        return values

    def _fold(self, window: Window, values: dict[str, Any]) -> None:
        window.count += 1
        for name, value in values.items():
            acc = window.fields.get(name)
            if acc is None:
                acc = window.fields[name] = FieldAcc(values=[] if self.keep_values else None)
            if value is not None:
                acc.add(value)

    def _kept(self, start: int, watermark: int) -> bool:
        return start + self.window_ms + self.update_horizon_ms > watermark

    def _note_open(self, table: str, start: int) -> None:
        end = start + self.window_ms
        if table not in self._next_close or end < self._next_close[table]:
            self._next_close[table] = end

    def _close(self, trigger: ChangeEvent, table: str, watermark: int, out: list[ChangeEvent]) -> None:
        """Emit every window of `table` the watermark has passed, oldest first (then by group)."""
        due = sorted(
            (
                k
                for k, w in self.windows.items()
                if k[0] == table and w.emitted is None and k[2] + self.window_ms <= watermark
            ),
            key=lambda k: (k[2], k[1]),
        )
        for key in due:
            out.append(self._emit(trigger, key, self.windows[key]))
        # Drop what no late event can change any more; the next window to close.
        nxt: int | None = None
        for key in [k for k in self.windows if k[0] == table]:
            window = self.windows[key]
            if window.emitted is not None and not (
                self.late_data == "update" and self._kept(key[2], watermark)
            ):
                del self.windows[key]
            elif window.emitted is None:
                end = key[2] + self.window_ms
                nxt = end if nxt is None or end < nxt else nxt
        if nxt is None:
            self._next_close.pop(table, None)
        else:
            self._next_close[table] = nxt

    def _emit(self, trigger: ChangeEvent, key: WindowKey, window: Window) -> ChangeEvent:
        table, group, start = key
        kinds = self.kinds[table]
        group_values = orjson.loads(group)
        columns: list[Column] = [
            group_column(trigger, g, v) for g, v in zip(self.group_by, group_values, strict=True)
        ]
        row: dict[str, Any] = {
            group_column_name(g): v for g, v in zip(self.group_by, group_values, strict=True)
        }
        columns += [
            Column(n, *_TIME_COLUMN, optional=False, key=True) for n in ("window_start", "window_end")
        ]
        row["window_start"], row["window_end"] = start, start + self.window_ms
        columns.append(Column("count", "int64", None, "BIGINT", optional=False))
        row["count"] = window.count
        for name, kind in kinds.items():
            acc = window.fields.get(name) or FieldAcc()
            for function in self.functions:
                column = f"{name}_{column_suffix(function)}"
                out_kind = kind
                if kind == "int" and function == "sum":
                    out_kind = "decimal"  # exact: a sum of BIGINTs does not fit a BIGINT
                elif kind == "int" and function not in ("min", "max"):
                    out_kind = "float"  # an average or an interpolated percentile of integers
                columns.append(number_column(column, out_kind))
                value = acc.result(function, kind)
                if isinstance(value, float) and not math.isfinite(value):
                    # A float sum (or average) beyond 1.8e308: JSON has no infinity, and sinks would
                    # disagree (NULL in a file, Infinity in SQL): NULL everywhere, and said so.
                    self._warn_once(trigger, f"{column} overflowed a double: emitted as NULL")
                    value = None
                row[column] = (
                    str(value) if out_kind == "decimal" and isinstance(value, int) else output_value(value)
                )
        before = window.emitted
        window.emitted = row
        return derived_event(
            trigger,
            derived_table(self.output_table, trigger),
            columns,
            row,
            self._schemas,
            maker=self.name,
            op=Op.UPDATE if before is not None else Op.CREATE,
            before=before,
        )

    # -- bad and late input ------------------------------------------------------------------------
    def _late(self, event: ChangeEvent, table: str, t: int, starts: list[int]) -> None:
        self.late += 1
        reason = (
            f"late reading: event time {t} is in window(s) starting {starts} (of {self.window_ms} ms) "
            f"that the watermark of {table} ({self.watermarks.get(table)}, allowed_lateness "
            f"{self.lateness_ms} ms) already closed"
            + (
                f", more than update_horizon ({self.update_horizon_ms} ms) ago"
                if self.late_data == "update"
                else ""
            )
        )
        if self.late_data == "dead_letter":
            self._dead_letter(self.name, [event], CdcError(ErrorKind.DECODE, reason, _LATE_HINT))
        if self._metrics is not None:
            action = "dead_lettered" if self.late_data == "dead_letter" else "dropped"
            self._metrics.middleware_late_event(self.name, action)
        if log_point(self.late):
            log.warning(
                "late readings " + ("dead-lettered" if self.late_data == "dead_letter" else "dropped"),
                middleware=self.name,
                late_total=self.late,
                last=reason,
            )

    def _bad(self, event: ChangeEvent, reason: str) -> None:
        delivered = " (the reading itself was delivered: only its aggregation is missing)"
        error = CdcError(
            ErrorKind.DECODE,
            f"{self.name}: a change of {event.source.qualified_table} cannot be aggregated: {reason}"
            + (delivered if self.pass_through else ""),
            "fix the row, or the middleware's fields / group_by / event_time_field",
        )
        if self._dead_letter is None:
            raise error
        self._dead_letter(self.name, [event], error)
        self.bad += 1
        if log_point(self.bad):
            log.warning(
                "readings not aggregated, dead-lettered",
                middleware=self.name,
                total=self.bad,
                last=error.message,
            )

    def _warn_once(self, event: ChangeEvent, what: str) -> None:
        table = event.source.qualified_table
        if (table, what) not in self._warned:
            self._warned.add((table, what))
            log.warning(what, middleware=self.name, table=table)


_LATE_HINT = "raise allowed_lateness if readings arrive this late, or use late_data: update"


class IotAggregationParams(ConfigModel):
    """Windows, functions, fields and groups of iot_aggregation (docs/iot.md)."""

    time_window: str = Field(
        description="Window size: a number and a unit, ms s m h d (at most 366d). Windows are aligned to "
        "the Unix epoch (UTC).",
        examples=["5m"],
    )
    slide: str | None = Field(
        None,
        description="Sliding windows: a new window starts every `slide` (at most time_window, which it must "
        "divide; time_window / slide at most 1440). Default: tumbling (slide = time_window).",
        examples=["1m"],
    )
    aggregation_functions: list[str] = Field(
        default_factory=lambda: ["avg", "min", "max"],
        min_length=1,
        description="Per value field: avg, min, max, sum, count, median, p50/p95/p99 or percentile_N "
        "(linear interpolation). Each gives a column `<field>_<function>` (median: `_p50`, percentile_99.9: "
        "`_p99_9`, sum of an integer column: NUMERIC); "
        "`count` (rows in the window) is always a column. Decimals stay exact.",
        examples=[["avg", "min", "max", "p95"]],
    )
    fields: list[str] = Field(
        default_factory=list,
        description="The value fields (columns of the row) to aggregate; NULLs are not counted. Seed: "
        "value_field(s). Default: every numeric column of a table's first reading, except key, group_by "
        "and event-time columns (event_time_field, or a bus source's watermark column).",
        examples=[["temperature", "humidity"]],
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="Group windows by these row fields, or `$topic` (an MQTT/bus event's topic), `$topic.N` "
        "(its N-th segment, from 0: sensors/+/temperature -> `$topic.1` is the device), `$table`. "
        "Windows are always per source table too. Default: per table only.",
        examples=[["sensor_id"]],
    )
    event_time_field: str | None = Field(
        None,
        description="The row field holding the reading's time (a timestamp column, ISO-8601 text or epoch "
        "ms). Default: the change's source commit time (source.ts_ms).",
        examples=["measured_at"],
    )
    allowed_lateness: str = Field(
        "0s",
        description="Watermark delay: a table's watermark is its greatest event time seen minus this; a "
        "window is emitted once the watermark reaches its end. Seed: watermark_delay.",
        examples=["30s"],
    )
    late_data: Literal["drop", "dead_letter", "update"] = Field(
        "drop",
        description="A reading whose window the table's watermark already closed: drop (counted, logged "
        "with the running count), dead_letter (to sync.dead_letters with the reason), update (within "
        "update_horizon after the window closed: fold it in and re-emit the aggregate as op u, or emit it "
        "as op c when the group had no reading in it; later ones are dropped).",
        examples=["dead_letter"],
    )
    update_horizon: str | None = Field(
        None,
        description="late_data update: how long after it closed a window is kept for late readings. "
        "Default: one time_window.",
        examples=["10m"],
    )
    output_table: str = Field(
        "{table}_agg",
        description="The derived table the aggregates are events of ({table}, {schema}, {db} are the "
        "source's; other placeholders, and a name that is the source table itself, are refused). Its "
        "key: the group_by columns, window_start, window_end.",
        examples=["{table}_5m"],
    )
    pass_through: bool = Field(
        True,
        description="Keep the readings themselves in the batch (false: sinks get only the aggregates and "
        "the events of tables outside `tables`).",
        examples=[False],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Aggregate only these tables (glob patterns on schema.table, db.table or table); "
        "others pass through. Default: every table.",
        examples=[["public.readings"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (
                ("value_field", "fields"),
                ("value_fields", "fields"),
                ("watermark_delay", "allowed_lateness"),
            ):
                if alias in data:
                    if name in data:
                        raise ValueError(f"{alias!r} repeats {name!r}; give it once")
                    value = data.pop(alias)
                    data[name] = [value] if name == "fields" and isinstance(value, str) else value
            if isinstance(data.get("group_by"), str):
                data["group_by"] = [data["group_by"]]
        return data

    @field_validator("group_by")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return [check_group_spec(g) for g in value]

    @field_validator("output_table")
    @classmethod
    def _output_table(cls, value: str) -> str:
        return check_output_table(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        return [check_field_name(f, "fields:") for f in value]

    @field_validator("event_time_field")
    @classmethod
    def _time_field(cls, value: str | None) -> str | None:
        return None if value is None else check_field_name(value, "event_time_field")

    @field_validator("aggregation_functions")
    @classmethod
    def _functions(cls, value: list[str]) -> list[str]:
        return [check_function(str(f).lower()) for f in value]

    @field_validator("time_window", "slide", "allowed_lateness", "update_horizon")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _windows(self) -> IotAggregationParams:
        size = parse_duration(self.time_window)
        if size <= 0:
            raise ValueError("time_window must be positive")
        if self.slide is not None:
            slide = parse_duration(self.slide)
            if slide <= 0 or slide > size or size % slide:
                raise ValueError("slide must be positive, at most time_window, and divide it")
            if size // slide > MAX_WINDOWS_PER_READING:
                raise ValueError(
                    f"time_window / slide is {size // slide}: each reading would be in that many windows "
                    f"(state and time grow with it); at most {MAX_WINDOWS_PER_READING}: a longer slide"
                )
        if self.update_horizon is not None and self.late_data != "update":
            raise ValueError("update_horizon is used only with late_data: update; remove it or set that")
        return self


class IotAggregationConfig(ConfigModel):
    """Tumbling or sliding event-time windows with a watermark: avg/min/max/sum/count/percentiles per
    group, emitted as events of a derived table (batch middleware, state checkpointed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "iot_aggregation",
                    "params": {"time_window": "5m", "aggregation_functions": ["avg", "min", "max"]},
                }
            ]
        }
    )

    type: Literal["iot_aggregation"] = Field(description="Selects this middleware.")
    params: IotAggregationParams = Field(description="Windows, functions, fields and groups.")


@registry.transform(IotAggregationConfig)
def build(cfg: IotAggregationConfig) -> IotAggregationStage:
    p = cfg.params
    size = parse_duration(p.time_window)
    return IotAggregationStage(
        window_ms=size,
        slide_ms=parse_duration(p.slide) if p.slide is not None else size,
        functions=p.aggregation_functions,
        fields=p.fields,
        group_by=p.group_by,
        event_time_field=p.event_time_field,
        lateness_ms=parse_duration(p.allowed_lateness),
        late_data=p.late_data,
        update_horizon_ms=parse_duration(p.update_horizon) if p.update_horizon is not None else size,
        output_table=p.output_table,
        pass_through=p.pass_through,
        tables=p.tables,
    )
