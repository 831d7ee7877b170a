"""Rename tables and columns on the way out (e.g. to match a target schema).

A column rename onto a name the table already has (or two columns renamed to one name) would lose
one of the two columns: the transform stops the run with a CONFIG error naming the table and both
columns, at the first event of such a table (the renames apply to every table, so only the table's
columns tell; `config validate` cannot know them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.schema import renamed_onto
from cdc_logs.transforms.base import SchemaReshaper, Transform


class RenameTransform(Transform):
    def __init__(
        self, *, tables: dict[str, str] | None = None, columns: dict[str, str] | None = None
    ) -> None:
        self.tables = dict(tables or {})
        self.columns = dict(columns or {})
        self._reshape = SchemaReshaper()

    def _row(self, row: dict[str, Any] | None, table: str) -> dict[str, Any] | None:
        if row is None or not self.columns:
            return row
        out = {self.columns.get(k, k): v for k, v in row.items()}
        if len(out) < len(row):  # two columns got one name: never keep one silently
            renamed_onto(table, list(row), self.columns)
        return out

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        src = event.source
        new_table = self.tables.get(src.qualified_table) or self.tables.get(src.table)
        # The schema first (it has every column, where a row may carry only some: a key-only
        # `before`), and before the table's new name, so that a refusal names the source table.
        if new_table or self.columns:
            self._reshape(event, table=new_table, rename=self.columns)
        table = src.qualified_table
        if new_table:
            src.table = new_table
        event.before = self._row(event.before, table)
        event.after = self._row(event.after, table)
        event.key = self._row(event.key, table)
        if self.columns and event.unchanged:
            event.unchanged = tuple(self.columns.get(c, c) for c in event.unchanged)
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
        description="Column renames in every table, old: new, in before, after, the key and `unchanged`. "
        "A rename onto a column a table already has (or two columns onto one name) stops the run with "
        "a config error naming the table and both columns, as one of them would be lost.",
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
