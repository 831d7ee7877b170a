"""Rename tables and columns on the way out (e.g. to match a target schema)."""

from __future__ import annotations

from typing import Any

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
