"""Mask PII columns in before/after: hash (salted SHA-256), mask (a pattern), or delete the column.

The key is hashed when it holds a masked column (whatever the strategy, so rows stay distinct), so the
plain value never leaves the pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.schema import TableSchema
from cdc_logs.transforms.base import SchemaReshaper, Transform, table_matches

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
        self._reshape = SchemaReshaper()

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
        self._reshape(event, derive=self._schema_changes)
        return event

    def _schema_changes(self, schema: TableSchema) -> tuple[frozenset[str], frozenset[str]] | None:
        """(columns now text, columns gone) for one table version: masked values are text (a hash or
        the pattern) whatever the column was; deleted ones are gone, but a key column is hashed."""
        masked = self.fields.intersection(c.name for c in schema.columns)
        if not masked:
            return None
        if self.strategy == "delete":
            keys = frozenset(schema.key)
            return masked & keys, masked - keys
        return masked, frozenset()


# The seed proposal's names for the same parameters (data_masking / gdpr_compliance).
_ALIASES = {
    "mask_fields": "fields",
    "pii_fields": "fields",
    "anonymization_strategy": "strategy",
    "mask_pattern": "pattern",
}


class MaskParams(ConfigModel):
    """Which columns a mask transform replaces, and how (the seed's parameter names are accepted)."""

    fields: list[str] = Field(
        min_length=1,
        description="Columns to mask, in before, after and the key, in every table of `tables`. The seed's "
        "mask_fields and pii_fields are accepted (both: both lists).",
        examples=[["email", "ssn"]],
    )
    strategy: Literal["hash", "mask", "delete"] = Field(
        "hash",
        description="hash: hex SHA-256 of salt + value; mask: replace by `pattern`; delete: drop the column. "
        "Key columns are always hashed (a constant or a missing key would merge rows). Seed: "
        "anonymization_strategy.",
        examples=["mask"],
    )
    pattern: str = Field(
        "****",
        description="The replacement value for strategy mask (NULL stays NULL). Seed: mask_pattern.",
        examples=["***-**-****"],
    )
    salt: str = Field(
        "",
        description="Prefix hashed with every value (strategy hash, and masked key columns). Default: none, "
        "so equal values hash alike in every pipeline and short values can be guessed by hashing "
        "candidates: set one, from the environment.",
        examples=["${PII_SALT}"],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Only events of these tables are masked (glob patterns on schema.table, db.table or "
        "table). Default: every table.",
        examples=[["public.users", "crm.*"]],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "retention_period_days" in data:
            raise ValueError(
                "retention_period_days is not supported: cdc-logs keeps no data of its own; "
                "set retention on the destination"
            )
        merged: dict[str, Any] = {}
        for key, value in data.items():
            name = _ALIASES.get(str(key), str(key))
            if name == "fields" and "fields" in merged:
                merged["fields"] = [*merged["fields"], *value]  # pii_fields + mask_fields: mask both
            elif name in merged:
                raise ValueError(f"{key!r} repeats {name!r}; give it once")
            else:
                merged[name] = value
        return merged


class MaskTransformConfig(ConfigModel):
    """Mask PII columns: hash, replace with a pattern, or delete (the seed's data_masking and
    gdpr_compliance)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "mask", "params": {"fields": ["email", "phone"], "salt": "${PII_SALT}"}}]
        }
    )

    type: Literal["mask", "data_masking", "gdpr_compliance"] = Field(
        description="Selects this transform; `data_masking` and `gdpr_compliance` (the seed's names) are "
        "aliases."
    )
    params: MaskParams = Field(description="Which columns, and how.")


@registry.transform(MaskTransformConfig)
def build(cfg: MaskTransformConfig) -> MaskTransform:
    return MaskTransform(**cfg.params.model_dump())
