"""Filter: keep or drop events by table (glob patterns), op, column values, or an expression on fields
(transforms/expression.py: parsed with `ast`, never evaluated by Python)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import Transform, table_matches
from cdc_logs.transforms.expression import compile_expression


class FilterTransform(Transform):
    def __init__(
        self,
        *,
        include_tables: Sequence[str] = (),
        exclude_tables: Sequence[str] = (),
        ops: Sequence[str] = (),
        where: dict[str, Any] | None = None,
        expression: str | None = None,
    ) -> None:
        self.expression = compile_expression(expression) if expression else None
        self.include_tables = list(include_tables)
        self.exclude_tables = list(exclude_tables)
        self.ops = {op for op in ops}
        self.where = dict(where or {})

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        if self.ops and event.op.value not in self.ops:
            return None
        if self.include_tables and not table_matches(self.include_tables, event):
            return None
        if self.exclude_tables and table_matches(self.exclude_tables, event):
            return None
        if self.where:
            row = event.row or {}
            if any(row.get(column) != value for column, value in self.where.items()):
                return None
        if self.expression is not None and not self.expression(event):
            return None
        return event


class FilterParams(ConfigModel):
    """What a filter keeps; an event must pass every condition given."""

    include_tables: list[str] = Field(
        default_factory=list,
        description="Keep only events of these tables: glob patterns matched against schema.table, db.table "
        "and the bare table name. Default: every table.",
        examples=[["public.orders", "public.order_*"]],
    )
    exclude_tables: list[str] = Field(
        default_factory=list,
        description="Drop events of these tables (glob patterns, matched as in include_tables).",
        examples=[["*.audit_*"]],
    )
    ops: list[Literal["c", "u", "d", "r", "t", "m"]] = Field(
        default_factory=list,
        description="Keep only these ops (c create, u update, d delete, r snapshot read, t truncate, m "
        "message). Default: all.",
        examples=[["c", "u", "d"]],
    )
    where: dict[str, Any] | None = Field(
        None,
        description="Keep only events whose row (after, or before for a delete) has these column values, "
        "compared for equality. Default: no condition.",
        examples=[{"region": "eu"}],
    )
    expression: str | None = Field(
        None,
        description="Keep only events for which this expression is true (docs/transforms.md): Python "
        "syntax over op, before, after, key, row, source, ts_ms, table, schema, db, e.g. "
        "`op in ('c', 'u') and after.amount >= 100`; comparisons, in, and/or/not, literals and the "
        "functions lower, upper, len, startswith, endswith, contains. Parsed with `ast` and checked "
        "against that list when the config is read (an error names the column), never run by Python's "
        "eval. A missing field is null. Default: no expression.",
        examples=["op != 'd' and after.amount >= 100"],
    )

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_expression(value)
        return value


class FilterTransformConfig(ConfigModel):
    """Keep or drop events by table, op, or column values."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "filter", "params": {"exclude_tables": ["*.audit_*"], "ops": ["c", "u", "d"]}}
            ]
        }
    )

    type: Literal["filter"] = Field(description="Selects this transform.")
    params: FilterParams = Field(
        default_factory=FilterParams,
        description="What to keep. A dropped event's position still advances the checkpoint.",
    )


@registry.transform(FilterTransformConfig)
def build(cfg: FilterTransformConfig) -> FilterTransform:
    return FilterTransform(**cfg.params.model_dump())
