"""Filter: keep or drop events by table (glob patterns), op, or a column condition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import Transform, table_matches


class FilterTransform(Transform):
    def __init__(
        self,
        *,
        include_tables: Sequence[str] = (),
        exclude_tables: Sequence[str] = (),
        ops: Sequence[str] = (),
        where: dict[str, Any] | None = None,
    ) -> None:
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
        return event


class FilterParams(ConfigModel):
    include_tables: list[str] = Field(
        default_factory=list,
        description="keep only events of these tables (glob patterns on schema.table, db.table or table)",
        examples=[["public.orders", "public.order_*"]],
    )
    exclude_tables: list[str] = Field(
        default_factory=list,
        description="drop events of these tables (glob patterns)",
        examples=[["*.audit_*"]],
    )
    ops: list[Literal["c", "u", "d", "r", "t", "m"]] = Field(
        default_factory=list, description="keep only these ops (empty: all)", examples=[["c", "u", "d"]]
    )
    where: dict[str, Any] | None = Field(
        None, description="keep only rows whose columns equal these values", examples=[{"region": "eu"}]
    )


class FilterTransformConfig(ConfigModel):
    """Keep or drop events by table, op, or column values."""

    type: Literal["filter"]
    params: FilterParams = Field(default_factory=FilterParams, description="what to keep")


@registry.transform(FilterTransformConfig)
def build(cfg: FilterTransformConfig) -> FilterTransform:
    return FilterTransform(**cfg.params.model_dump())
