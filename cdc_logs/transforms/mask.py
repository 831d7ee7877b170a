"""Mask PII columns in before/after: hash (salted SHA-256), mask (a pattern), or delete the column.

The key is hashed when it holds a masked column (whatever the strategy, so rows stay distinct), so the
plain value never leaves the pipeline.

`hash` is pseudonymization, not anonymization: the same value always gives the same hash (joins and
upserts keep working), and whoever knows the salt can test a guess. So the salt is a secret: it comes
from the environment (`${PII_SALT}`) or a file (`salt_file`), never reaches output (it is registered
with the redaction every output goes through), and without one `config validate` and `run` warn that
short values can be recovered by hashing candidates (pipeline_options.warnings).
`retention_period_days` (the seed's gdpr_compliance) is not about events: it bounds how long cdc-logs
keeps what it stores itself (dead letters, spool, audit log), see retention.py; build.py reads it from
the built transform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability import redact
from cdc_logs.schema import TableSchema
from cdc_logs.transforms.base import SchemaReshaper, Transform, table_matches

STRATEGIES = ("hash", "mask", "delete", "drop")  # drop (the word) is delete (the seed's)


class MaskTransform(Transform):
    def __init__(
        self,
        *,
        fields: Sequence[str],
        strategy: str = "hash",
        pattern: str = "****",
        salt: str = "",
        tables: Sequence[str] = (),
        retention_days: float | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
        self.fields = frozenset(fields)
        self.strategy = "delete" if strategy == "drop" else strategy
        self.retention_days = retention_days  # read by build.py (retention.py), not used per event
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
    strategy: Literal["hash", "mask", "delete", "drop"] = Field(
        "hash",
        description="hash: hex SHA-256 of salt + value (pseudonymization: equal values hash alike, and "
        "whoever has the salt can test guesses); mask: replace by `pattern`; delete (or drop, the same): "
        "remove the column. Key columns are always hashed (a constant or a missing key would merge rows). "
        "Seed: anonymization_strategy.",
        examples=["mask"],
    )
    pattern: str = Field(
        "****",
        description="The replacement value for strategy mask (NULL stays NULL). Seed: mask_pattern.",
        examples=["***-**-****"],
    )
    salt: SecretStr = Field(
        SecretStr(""),
        description="Secret prefix hashed with every value (strategy hash, and masked key columns); give it "
        "from the environment, never in the file, and never change it (hashes would change). Default: "
        "none (gdpr_compliance: `config validate` and `run` warn): equal values then hash alike in every "
        "pipeline and short values can be recovered by hashing candidates. Never shown in output.",
        examples=["${PII_SALT}"],
    )
    salt_file: str | None = Field(
        None,
        description="A file holding the salt instead (e.g. a mounted secret; one trailing newline is "
        "ignored). Give `salt` or `salt_file`, not both.",
        examples=["/run/secrets/pii_salt"],
    )
    retention_period_days: float | None = Field(
        None,
        gt=0,
        description="Days cdc-logs keeps what it stores itself: dead-letter records older are removed, "
        "undelivered fan-out spool data older is kept and reported (never deleted), and other registered "
        "files (the audit log) older are removed; checked at start and hourly (docs/operations.md, "
        "Retention). Not about the events: set the destination's own retention for those. Default: "
        "kept until removed by hand.",
        examples=[365],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Only events of these tables are masked (glob patterns on schema.table, db.table or "
        "table). Default: every table.",
        examples=[["public.users", "crm.*"]],
    )

    @field_validator("salt")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        redact.register(value.get_secret_value())  # from the moment the config is read, not only at build
        return value

    @model_validator(mode="before")
    @classmethod
    def _seed_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged: dict[str, Any] = {}
        for key, value in data.items():
            name = _ALIASES.get(str(key), str(key))
            if name == "fields" and "fields" in merged:
                merged["fields"] = [*merged["fields"], *value]  # pii_fields + mask_fields: mask both
            elif name in merged:
                raise ValueError(f"{key!r} repeats {name!r}; give it once")
            else:
                merged[name] = value
        if merged.get("salt") and merged.get("salt_file"):
            raise ValueError("give salt or salt_file, not both")
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

    def check_files(self) -> None:
        """What `config validate` checks besides the config: a salt_file given is readable and not
        empty (its content is never printed)."""
        if self.params.salt_file is not None:
            _salt(self.params)


def _salt(params: MaskParams) -> str:
    if params.salt_file is None:
        return params.salt.get_secret_value()
    try:
        salt = Path(params.salt_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"cannot read the salt file {params.salt_file}: "
            f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
            "give a readable file holding the salt (as text), or the salt itself in `salt` from the "
            "environment",
        ) from exc
    salt = salt[:-1] if salt.endswith("\n") else salt
    if not salt:
        raise CdcError(ErrorKind.CONFIG, f"the salt file {params.salt_file} is empty", "put the salt in it")
    return salt


@registry.transform(MaskTransformConfig)
def build(cfg: MaskTransformConfig) -> MaskTransform:
    p = cfg.params
    salt = _salt(p)
    redact.register(salt)  # a secret: never in a log line, an error or a plan
    return MaskTransform(
        fields=p.fields,
        strategy=p.strategy,
        pattern=p.pattern,
        salt=salt,
        tables=p.tables,
        retention_days=p.retention_period_days,
    )
