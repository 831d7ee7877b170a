"""Transform contract and the helper that runs a chain of them."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Sequence

from cdc_logs.envelope import ChangeEvent


class Transform(ABC):
    @abstractmethod
    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        """Return the event (possibly changed) or None to drop it."""


def apply_all(transforms: Sequence[Transform], event: ChangeEvent) -> ChangeEvent | None:
    for transform in transforms:
        result = transform.apply(event)
        if result is None:
            return None
        event = result
    return event


def table_matches(patterns: Sequence[str], event: ChangeEvent) -> bool:
    """Match `schema.table`, `db.table` or bare `table` against glob patterns."""
    src = event.source
    names = {src.table, f"{src.db}.{src.table}"}
    if src.schema:
        names.add(f"{src.schema}.{src.table}")
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)
