"""Rename tables and columns on the way out (e.g. to match a target schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import SchemaReshaper, Transform


class RenameTransform(Transform):
    def __init__(
        self, *, tables: dict[str, str] | None = None, columns: dict[str, str] | None = None
    ) -> None:
        self.tables = dict(tables or {})
        self.columns = dict(columns or {})
        self._reshape = SchemaReshaper()

    def _row(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None or not self.columns:
            return row
        return {self.columns.get(k, k): v for k, v in row.items()}

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        src = event.source
        new_table = self.tables.get(src.qualified_table) or self.tables.get(src.table)
        if new_table:
            src.table = new_table
        event.before = self._row(event.before)
        event.after = self._row(event.after)
        event.key = self._row(event.key)
        if self.columns and event.unchanged:
            event.unchanged = tuple(self.columns.get(c, c) for c in event.unchanged)
        if new_table or self.columns:
            self._reshape(event, table=new_table, rename=self.columns)
        return event


class RenameParams(ConfigModel):
    """Table and column renames, old name: new name."""

    tables: dict[str, str] = Field(
        default_factory=dict,
        description="Table renames, old: new; an old name is schema.table (or db.table) or a bare table "
        "name, the qualified one tried first. The new name replaces source.table only.",
        examples=[{"users": "customers", "public.orders": "sales_orders"}],
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column renames in every table, old: new, in before, after, the key and `unchanged`.",
        examples=[{"email_address": "email"}],
    )


class RenameTransformConfig(ConfigModel):
    """Rename tables and columns (in before, after, the key and `unchanged`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "rename", "params": {"tables": {"users": "customers"}}}]}
    )

    type: Literal["rename"] = Field(description="Selects this transform.")
    params: RenameParams = Field(default_factory=RenameParams, description="The renames.")


@registry.transform(RenameTransformConfig)
def build(cfg: RenameTransformConfig) -> RenameTransform:
    return RenameTransform(**cfg.params.model_dump())
