"""Rename tables and columns on the way out (e.g. to match a target schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import Transform


class RenameTransform(Transform):
    def __init__(
        self, *, tables: dict[str, str] | None = None, columns: dict[str, str] | None = None
    ) -> None:
        self.tables = dict(tables or {})
        self.columns = dict(columns or {})

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
        return event


class RenameParams(ConfigModel):
    tables: dict[str, str] = Field(
        default_factory=dict, description="table renames, old: new", examples=[{"users": "customers"}]
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="column renames in every table, old: new",
        examples=[{"email_address": "email"}],
    )


class RenameTransformConfig(ConfigModel):
    """Rename tables and columns (in before, after, the key and `unchanged`)."""

    type: Literal["rename"]
    params: RenameParams = Field(default_factory=RenameParams, description="the renames")


@registry.transform(RenameTransformConfig)
def build(cfg: RenameTransformConfig) -> RenameTransform:
    return RenameTransform(**cfg.params.model_dump())
