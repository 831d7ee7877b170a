"""Transform contract, the helper that runs a chain of them, and `SchemaReshaper`, which keeps an
event's table schema in step with what a transform did to its rows (sinks type columns and decode
values by the schema: a renamed timestamp column must still be known as one)."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence

from cdc_logs.envelope import ChangeEvent
from cdc_logs.schema import TableSchema


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


class SchemaReshaper:
    """One reshaped schema per source schema version and change (cached: events of one table version
    share one schema object, which sinks and the Connect/Avro encoders cache by)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, str | None], TableSchema] = {}

    def __call__(
        self,
        event: ChangeEvent,
        *,
        table: str | None = None,
        rename: Mapping[str, str] | None = None,
        as_text: Collection[str] = (),
        drop: Collection[str] = (),
        derive: Callable[[TableSchema], tuple[Collection[str], Collection[str]] | None] | None = None,
    ) -> None:
        """`derive(schema)` -> (as_text, drop), or None to keep the schema: worked out once per table
        version, not per event."""
        schema = event.schema
        if schema is None:
            return
        key = (schema.fingerprint, schema.version, table)
        reshaped = self._cache.get(key)
        if reshaped is None:
            changes = derive(schema) if derive is not None else (as_text, drop)
            if changes is None:
                reshaped = schema
            else:
                reshaped = schema.reshaped(table=table, rename=rename, as_text=changes[0], drop=changes[1])
            self._cache[key] = reshaped
        event.schema = reshaped
