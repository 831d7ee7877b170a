"""Mask PII columns in before/after: hash (salted SHA-256), mask (a pattern), or delete the column.

The key is hashed when it holds a masked column (whatever the strategy, so rows stay distinct), so the
plain value never leaves the pipeline.
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

    def _hash(self, value: Any) -> Any:
        return None if value is None else hashlib.sha256(self.salt + str(value).encode()).hexdigest()

    def _mask(self, value: Any) -> Any:
        if value is None or self.strategy == "hash":
            return self._hash(value)
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
            # Key columns are always hashed: a constant mask would make distinct rows collide in keyed
            # sinks (compaction, upserts), and a key column cannot be deleted.
            event.key = {k: (self._hash(v) if k in self.fields else v) for k, v in event.key.items()}
        return event
