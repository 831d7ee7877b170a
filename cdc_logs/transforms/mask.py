"""Mask PII columns in before/after: hash (salted SHA-256), mask (a pattern), or delete the column.

The key is masked too when it holds a masked column, so the plain value never leaves the pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from cdc_logs.envelope import ChangeEvent
from cdc_logs.transforms.base import Transform, table_matches

STRATEGIES = ("hash", "mask", "delete")


class MaskTransform(Transform):
    def __init__(
        self,
        *,
        fields: Sequence[str],
        strategy: str = "hash",
        pattern: str = "****",
        salt: str = "",
        tables: Sequence[str] = (),
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
        self.fields = frozenset(fields)
        self.strategy = strategy
        self.pattern = pattern
        self.salt = salt.encode()
        self.tables = list(tables)

    def _mask(self, value: Any) -> Any:
        if value is None:
            return None
        if self.strategy == "hash":
            return hashlib.sha256(self.salt + str(value).encode()).hexdigest()
        return self.pattern

    def _row(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None or self.fields.isdisjoint(row):
            return row
        if self.strategy == "delete":
            return {k: v for k, v in row.items() if k not in self.fields}
        return {k: (self._mask(v) if k in self.fields else v) for k, v in row.items()}

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        if self.tables and not table_matches(self.tables, event):
            return event
        event.before = self._row(event.before)
        event.after = self._row(event.after)
        if event.key is not None and not self.fields.isdisjoint(event.key):
            event.key = {k: (self._mask(v) if k in self.fields else v) for k, v in event.key.items()}
        return event
