"""Filter: keep or drop events by table (glob patterns), op, or a column condition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
