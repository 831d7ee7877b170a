"""anomaly_detection: score each reading's value(s) per group with a streaming detector (robust
z-score, EWMA, or isolation forest with scikit-learn; detectors.py) and emit an event of a derived
table (`<table>_anomalies`) for each anomalous one, right after the reading (docs/iot.md).

Per event, in source order, so the result does not depend on batch boundaries; the detectors' state
(rolling windows, EWMA moments, the forest's training values) is checkpointed with the positions
(stages.py), so a restart scores the replayed readings exactly as an uninterrupted run would. With
`flag_field`, each reading of an aggregated table also gets a boolean column saying whether any of its
values was anomalous. Only inserts and snapshot rows (op "c", "r") are readings.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.middleware.detectors import (
    Detector,
    Ewma,
    IsolationForestDetector,
    RobustZScore,
    require_sklearn,
)
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
    selected,
    time_fields,
)
from cdc_logs.observability.logging import get_logger
from cdc_logs.schema import Column, Semantic, TableSchema
from cdc_logs.stages import BatchStage, StageContext

log = get_logger(__name__)

STATE_VERSION = 1
_READINGS = (Op.CREATE, Op.READ)
_DEFAULT_THRESHOLD = {"zscore": 3.5, "ewma": 3.0, "isolation_forest": 0.05}


@dataclass(slots=True)
class _Reading:
    t: int
    groups: list[Any]
    items: list[tuple[str, str, str, float]]  # (detector key, field, kind, value)


class AnomalyStage(BatchStage):
    stateful = True

    def __init__(
        self,
        *,
        algorithm: str,
        threshold: float,
        fields: Sequence[str],
        group_by: Sequence[str],
        event_time_field: str | None,
        window_size: int,
        min_samples: int,
        alpha: float,
        retrain_every: int,
        output_table: str,
        flag_field: str | None,
        tables: Sequence[str],
    ) -> None:
        if algorithm == "isolation_forest":
            require_sklearn()
        self.algorithm, self.threshold = algorithm, threshold
        self.fields, self.group_by = list(fields), list(group_by)
        self.event_time_field = event_time_field
        self.window_size, self.min_samples = window_size, min_samples
        self.alpha, self.retrain_every = alpha, retrain_every
        self.output_table, self.flag_field, self.tables = output_table, flag_field, list(tables)
        self._dead_letter: Any = None
        self._schemas: dict[tuple[Any, ...], TableSchema] = {}
        self._flagged: dict[TableSchema, TableSchema] = {}
        self.detectors: dict[str, Detector] = {}  # JSON [table, group, field] -> detector
        self.kinds: dict[str, dict[str, str]] = {}
        self.bad = 0  # readings dead-lettered by this process (logged with the running count)

    def _detector(self, state: Any = None) -> Detector:
        if self.algorithm == "zscore":
            return RobustZScore(self.window_size, self.min_samples, self.threshold, state)
        if self.algorithm == "ewma":
            return Ewma(self.alpha, self.min_samples, self.threshold, state)
        return IsolationForestDetector(
            self.window_size, self.min_samples, self.threshold, self.retrain_every, state
        )

    def open(self, context: StageContext) -> None:
        self._dead_letter = context.dead_letter
        self.detectors, self.kinds = {}, {}
        state = context.state
        if not state:
            return
        if state.get("version") != STATE_VERSION or state.get("algorithm") != self.algorithm:
            log.warning(
                "anomaly_detection state is of another version or algorithm: the detectors start empty",
                middleware=self.name,
            )
            return
        self.kinds = {k: dict(v) for k, v in state["kinds"].items()}
        self.detectors = {k: self._detector(v) for k, v in state["detectors"].items()}

    def snapshot(self) -> Any:
        return {
            "version": STATE_VERSION,
            "algorithm": self.algorithm,
            "kinds": self.kinds,
            "detectors": {k: d.to_json() for k, d in self.detectors.items()},
        }

    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        # Two passes: the readings' values first, then each detector scores all of its values of the
        # batch at once (the isolation forest scores a run in one call: per value it costs ~20 ms),
        # then the output in order. Each detector still sees its values one by one in source order.
        plan: list[tuple[ChangeEvent, _Reading | None]] = []
        values: dict[str, list[float]] = {}
        for event in batch:
            if event.op not in _READINGS or not selected(self.tables, event):
                plan.append((event, None))
                continue
            try:
                reading = self._reading(event)
            except BadValue as exc:
                self._bad(event, str(exc))  # its scoring is refused; the reading itself is delivered
                plan.append((event, None))
                continue
            plan.append((event, reading))
            for item in reading.items:
                values.setdefault(item[0], []).append(item[3])
        scores: dict[str, Iterator[tuple[float, bool] | None]] = {}
        for key, xs in values.items():
            detector = self.detectors.get(key)
            if detector is None:
                detector = self.detectors[key] = self._detector()
            scores[key] = iter(detector.score_many(xs))
        out: list[ChangeEvent] = []
        for event, planned in plan:
            out.append(event)
            if planned is None:
                continue
            found = []
            for key, name, kind, _ in planned.items:
                scored = next(scores[key])
                if scored is not None and scored[1]:
                    raw = (event.row or {})[name]
                    found.append(self._anomaly(event, planned.groups, name, kind, raw, scored[0], planned.t))
            if self.flag_field is not None:
                self._flag(event, bool(found))
            out.extend(found)
        return out

    def _reading(self, event: ChangeEvent) -> _Reading:
        """The values a reading gives its detectors (BadValue before any detector learns one)."""
        table = event.source.qualified_table
        row = event.row or {}
        t = event_time_ms(event, self.event_time_field)
        groups = [group_value(event, g) for g in self.group_by]
        kinds = self.kinds.get(table)
        if kinds is None:
            exclude = {*self.group_by, *time_fields(event, self.event_time_field)}
            if self.flag_field:
                exclude.add(self.flag_field)
            names = self.fields or numeric_fields(event, exclude)
            if not names:
                raise BadValue("the row has no numeric field to score (set anomaly_detection fields)")
            if self.flag_field and self.flag_field in row:
                # Checked at a table's first reading: the flag would overwrite the row's own data.
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"anomaly_detection flag_field {self.flag_field!r} is a column of "
                    f"{table}: the flag would overwrite its data",
                    "name flag_field after a column the table does not have (e.g. is_anomaly)",
                )
            kinds = self.kinds[table] = {n: field_kind(event, n, row.get(n)) for n in names}
        items = []
        for name, kind in kinds.items():
            if name not in row:
                raise BadValue(f"the row has no value field {name!r}")
            if row[name] is not None:
                key = orjson.dumps([table, groups, name]).decode()
                items.append((key, name, kind, float(numeric(row[name], kind, name))))
        return _Reading(t, groups, items)

    def _anomaly(
        self, event: ChangeEvent, groups: list[Any], name: str, kind: str, value: Any, score: float, t: int
    ) -> ChangeEvent:
        columns = [group_column(event, g, v) for g, v in zip(self.group_by, groups, strict=True)]
        row: dict[str, Any] = {group_column_name(g): v for g, v in zip(self.group_by, groups, strict=True)}
        columns += [
            Column("field", "string", None, "TEXT", optional=False, key=True),
            Column("event_time", "int64", Semantic.TIMESTAMP, "TIMESTAMP", optional=False, key=True),
            # The reading's own key: the rows of one transaction share source.ts_ms (the default event
            # time), and without it their anomalies would overwrite each other in keyed sinks.
            Column("source_key", "string", None, "TEXT", optional=False, key=True),
            number_column("value", kind),
            Column("score", "float64", None, "DOUBLE PRECISION"),
            Column("method", "string", None, "TEXT"),
            Column("threshold", "float64", None, "DOUBLE PRECISION"),
        ]
        row.update(
            field=name,
            event_time=t,
            source_key=orjson.dumps(event.key, option=orjson.OPT_SORT_KEYS).decode() if event.key else "",
            value=value if kind == "decimal" else float(value),
            score=score if math.isfinite(score) else None,  # JSON has no infinity: NULL = "infinitely far"
            method=self.algorithm,
            threshold=self.threshold,
        )
        table = derived_table(self.output_table, event)
        return derived_event(event, table, columns, row, self._schemas, maker=self.name)

    def _flag(self, event: ChangeEvent, anomalous: bool) -> None:
        assert self.flag_field is not None
        if event.after is not None:
            event.after = {**event.after, self.flag_field: anomalous}
            event.encoded = None  # the pipeline serialized the batch before the stages (its size)
        schema = event.schema
        if schema is not None and schema.column(self.flag_field) is None:
            flagged = self._flagged.get(schema)
            if flagged is None:
                column = Column(self.flag_field, "boolean", None, "BOOLEAN")
                flagged = TableSchema(
                    schema.db,
                    schema.schema,
                    schema.table,
                    (*schema.columns, column),
                    version=zlib.crc32(f"{schema.version}:flag:{self.flag_field}".encode()),  # as reshaped()
                )
                self._flagged[schema] = flagged  # held: its id cannot be reused
            event.schema = flagged

    def _bad(self, event: ChangeEvent, reason: str) -> None:
        error = CdcError(
            ErrorKind.DECODE,
            f"{self.name}: a change of {event.source.qualified_table} cannot be scored: {reason} (the "
            "reading itself was delivered: only its scoring is missing)",
            "fix the row, or the middleware's fields / group_by / event_time_field",
        )
        if self._dead_letter is None:
            raise error
        self._dead_letter(self.name, [event], error)
        self.bad += 1
        if log_point(self.bad):
            log.warning(
                "readings not scored, dead-lettered", middleware=self.name, total=self.bad, last=error.message
            )


class AnomalyParams(ConfigModel):
    """Method, threshold, fields and groups of anomaly_detection (docs/iot.md)."""

    algorithm: Literal["zscore", "ewma", "isolation_forest"] = Field(
        "zscore",
        description="zscore: robust z-score (median/MAD) over the last window_size values; ewma: "
        "exponentially weighted mean/variance (alpha); isolation_forest: scikit-learn's, trained on the "
        "last window_size values and retrained every retrain_every (needs `pip install 'cdc-logs[iot]'`).",
        examples=["ewma"],
    )
    threshold: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="zscore/ewma: a value whose score (|z|) is above it is anomalous (default 3.5 / 3). "
        "isolation_forest: the contamination, the share of the training window the model calls "
        "anomalous, in (0, 0.5] (default 0.05).",
        examples=[0.1],
    )
    fields: list[str] = Field(
        default_factory=list,
        description="Value fields scored, each on its own. Seed: value_field(s). Default: every numeric "
        "column of a table's first reading, except key, group_by and event-time columns (event_time_field, "
        "or a bus source's watermark column).",
        examples=[["temperature"]],
    )
    group_by: list[str] = Field(
        default_factory=list,
        description="One detector per group (and table and field): row fields, `$topic`, `$topic.N` "
        "(the topic's N-th segment), `$table`. Default: per table.",
        examples=[["$topic.1"]],
    )
    event_time_field: str | None = Field(
        None,
        description="The row field with the reading's time (written as event_time). Default: source.ts_ms. "
        "Give it here too: anomaly_detection does not take iot_aggregation's.",
        examples=["measured_at"],
    )
    window_size: int = Field(
        100, ge=3, description="Values in the rolling window (zscore, isolation_forest).", examples=[256]
    )
    min_samples: int = Field(
        10, ge=1, description="Values learnt per detector before any is scored.", examples=[30]
    )
    alpha: float = Field(
        0.1, gt=0, lt=1, description="ewma: the weight of the newest value.", examples=[0.05]
    )
    retrain_every: int = Field(
        100, ge=1, description="isolation_forest: retrain after this many new values.", examples=[500]
    )
    output_table: str = Field(
        "{table}_anomalies",
        description="The derived table anomalies are events of ({table}, {schema}, {db}). Columns: the "
        "group_by columns, field, event_time, source_key (the reading's key as JSON, '' when keyless) "
        "(together the key), value, score, method, threshold.",
        examples=["sensor_alerts"],
    )
    flag_field: str | None = Field(
        None,
        description="Also add this boolean column to every scored reading: true when one of its values "
        "was anomalous; a column the table already has is refused. Default: readings are not changed.",
        examples=["is_anomaly"],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Score only these tables (glob patterns); default: every table.",
        examples=[["public.readings"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("value_field", "value_fields"):
                if alias in data:
                    if "fields" in data:
                        raise ValueError(f"{alias!r} repeats 'fields'; give it once")
                    value = data.pop(alias)
                    data["fields"] = [value] if isinstance(value, str) else value
            if isinstance(data.get("group_by"), str):
                data["group_by"] = [data["group_by"]]
            if data.get("algorithm") in ("z_score", "robust_zscore"):
                data["algorithm"] = "zscore"
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

    @model_validator(mode="after")
    def _check(self) -> AnomalyParams:
        if self.flag_field is not None and self.flag_field in {
            *self.fields,
            *self.group_by,
            self.event_time_field,
        }:
            raise ValueError(f"flag_field {self.flag_field!r} names a field the middleware reads")
        if self.algorithm == "isolation_forest" and self.threshold is not None and self.threshold > 0.5:
            raise ValueError("isolation_forest threshold is the contamination: at most 0.5")
        if self.min_samples > self.window_size and self.algorithm != "ewma":
            raise ValueError("min_samples cannot exceed window_size")
        # A setting of another algorithm would be silently ignored: refused, naming whose it is.
        for name, owners in (
            ("alpha", ("ewma",)),
            ("retrain_every", ("isolation_forest",)),
            ("window_size", ("zscore", "isolation_forest")),
        ):
            if name in self.model_fields_set and self.algorithm not in owners:
                raise ValueError(
                    f"{name} is a setting of algorithm {' / '.join(owners)}, not {self.algorithm}: remove it"
                )
        return self


class AnomalyConfig(ConfigModel):
    """Streaming anomaly detection per group (robust z-score, EWMA, isolation forest): anomalies are
    emitted as events of a derived table (batch middleware, state checkpointed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "anomaly_detection", "params": {"algorithm": "isolation_forest", "threshold": 0.1}}
            ]
        }
    )

    type: Literal["anomaly_detection"] = Field(description="Selects this middleware.")
    params: AnomalyParams = Field(
        default_factory=AnomalyParams, description="Method, threshold, fields, groups."
    )

    def check_extras(self) -> None:
        """What `config validate` checks besides the config: the isolation forest's scikit-learn."""
        if self.params.algorithm == "isolation_forest":
            require_sklearn()


@registry.transform(AnomalyConfig)
def build(cfg: AnomalyConfig) -> AnomalyStage:
    p = cfg.params
    return AnomalyStage(
        algorithm=p.algorithm,
        threshold=p.threshold if p.threshold is not None else _DEFAULT_THRESHOLD[p.algorithm],
        fields=p.fields,
        group_by=p.group_by,
        event_time_field=p.event_time_field,
        window_size=p.window_size,
        min_samples=p.min_samples,
        alpha=p.alpha,
        retrain_every=p.retrain_every,
        output_table=p.output_table,
        flag_field=p.flag_field,
        tables=p.tables,
    )
