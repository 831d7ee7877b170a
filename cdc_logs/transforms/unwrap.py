"""Unwrap: flattened rows instead of the envelope, as Debezium's ExtractNewRecordState writes them.

The record value becomes the row after the change (`after`); a delete is dropped, turned into a null
value (a tombstone), or rewritten to the row before it with `__deleted: "true"`, as
`delete_tombstone_handling_mode` says (Debezium 3's `delete.tombstone.handling.mode`, same names and
default). A rewritten delete that carries only the key (Postgres' default replica
identity) has the table's other columns as nulls, as Debezium's record does.
`add_fields` copies envelope fields into the row (`op`, `ts_ms`, `source.ts_ms`, `lsn`,
`table`, ...) and `add_headers` into Kafka headers, named as Debezium names them (`__op`,
`__source_ts_ms`, `__lsn`). Truncates are dropped and logical decoding messages (op m) pass as
envelopes, as the SMT does.

What changes is what sinks *write*, not the event: the transform attaches a `Flattening` to the event
and `ChangeEvent.to_json()` (every JSON sink), `connect_schema.envelope_record()` (Kafka and file with
`schemas: true`, whose schema is the row struct plus the added fields, as Debezium's), the Kafka sink
(null values, tombstones, headers) and its Avro encoder render it from the event's current rows,
so transforms after unwrap (rename, mask) still apply. Sinks that apply rows by key (sql,
redis_cache) keep applying the change itself by op and key: the added fields are not columns and a
rewritten delete is still a delete there (docs/transforms.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.transforms.base import Transform

MODES = ("drop", "tombstone", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone")
DELETED = "__deleted"
_ENVELOPE_FIELDS = frozenset({"op", "ts_ms", "ts_us", "ts_ns"})
_TRANSACTION_FIELDS = frozenset({"id", "total_order", "data_collection_order"})
_FIELD = re.compile(r"^(?:(source|transaction)\.)?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?$")


@dataclass(frozen=True, slots=True)
class FieldRef:
    """One `add_fields` / `add_headers` entry: where the value is, and the name it gets. Named as
    Debezium's FieldReference does: `op`/`ts_ms` are the envelope's, `id`/`total_order`/
    `data_collection_order` the transaction block's, any other bare name the source block's;
    `<prefix><name>`, or `<prefix><struct>_<name>` when the struct was spelled out; `a:B` renames."""

    struct: str | None  # None: the envelope itself
    field: str
    name: str

    @classmethod
    def parse(cls, text: str, prefix: str) -> FieldRef:
        match = _FIELD.match(text.strip())
        if match is None:
            raise ValueError(
                f"{text!r} is not a field reference: write `op`, `ts_ms`, a source field (`lsn`, "
                "`source.ts_ms`) or a transaction field (`transaction.id`), optionally `:NEW_NAME`"
            )
        struct, field, rename = match.groups()
        if struct is None:
            implied = (
                None
                if field in _ENVELOPE_FIELDS
                else "transaction"
                if field in _TRANSACTION_FIELDS
                else "source"
            )
            name = prefix + field
        else:
            implied, name = struct, f"{prefix}{struct}_{field}"
        return cls(implied, field, rename or name)

    def value(self, event: ChangeEvent) -> tuple[bool, Any]:
        """(present, value): a field the event's block does not have is left out (Debezium adds only
        fields its schema has); a null transaction block gives null."""
        if self.struct is None:
            if self.field == "op":
                return True, event.op.value
            if self.field == "ts_ms":
                return True, event.ts_ms
            return False, None
        if self.struct == "transaction":
            tx = event.transaction
            return True, (tx.to_dict()[self.field] if tx is not None else None)
        src = event.source.to_dict()
        return (True, src[self.field]) if self.field in src else (False, None)


@dataclass(frozen=True, slots=True)
class Flattening:
    """How one unwrap renders an event (shared by every event it flattens)."""

    mode: str
    fields: tuple[FieldRef, ...] = ()
    headers: tuple[FieldRef, ...] = ()

    @property
    def rewrite(self) -> bool:
        return self.mode in ("rewrite", "rewrite-with-tombstone")

    def keeps_tombstone(self) -> bool:
        """Whether the tombstone a Kafka sink writes after a delete stays (Debezium's SMT drops the
        connector's tombstone except in rewrite-with-tombstone)."""
        return self.mode == "rewrite-with-tombstone"

    def null_has_schema(self) -> bool:
        """tombstone mode nulls the value but keeps the row schema (with `schemas: true` Debezium's
        JsonConverter writes `{"schema": <row>, "payload": null}`); delete-to-tombstone writes a
        real tombstone."""
        return self.mode == "tombstone"

    def value(self, event: ChangeEvent) -> dict[str, Any] | None:
        """The record value: the row, or None for a null value."""
        if event.op is Op.DELETE:
            if not self.rewrite:
                return None
            row = _deleted_row(event)
            row[DELETED] = "true"
        else:
            row = dict(event.after or {})
            if self.rewrite:
                row[DELETED] = "false"
        for ref in self.fields:
            present, value = ref.value(event)
            if present:
                row[ref.name] = value
        return row

    def header_values(self, event: ChangeEvent) -> list[tuple[str, str]]:
        """`add_headers` as (name, text): Connect's SimpleHeaderConverter writes values as text."""
        out = []
        for ref in self.headers:
            present, value = ref.value(event)
            if present and value is not None:
                out.append((ref.name, str(value).lower() if isinstance(value, bool) else str(value)))
        return out


def _deleted_row(event: ChangeEvent) -> dict[str, Any]:
    """The row a rewritten delete writes. A delete that carries only the key (Postgres' default replica
    identity, a key change's delete half) gets the table's other columns as nulls, in table order, as
    Debezium's record has them (its before struct has every column); a whole old row is written as is."""
    before = dict(event.before or {})
    schema = event.schema
    if schema is None or not before or event.key is None or not set(before) <= set(event.key):
        return before
    if set(before) == {c.name for c in schema.columns}:
        return before
    return {c.name: before.get(c.name) for c in schema.columns}


class UnwrapTransform(Transform):
    def __init__(self, flattening: Flattening) -> None:
        self.flattening = flattening

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        if event.op is Op.MESSAGE:
            return event  # not a row change: the SMT passes it on as it is
        if event.op is Op.TRUNCATE:
            return None  # the SMT drops truncates: there is no row to write
        if event.op is Op.DELETE and self.flattening.mode == "drop":
            return None
        event.flat = self.flattening
        event.encoded = None
        return event


#: (Debezium 2's delete.handling.mode, drop.tombstones) -> Debezium 3's delete.tombstone.handling.mode.
#: drop + false left only the connector's tombstone: the stream delete-to-tombstone writes.
_DEBEZIUM_2 = {
    ("drop", True): "drop",
    ("drop", False): "delete-to-tombstone",
    ("none", True): "tombstone",
    ("rewrite", True): "rewrite",
    ("rewrite", False): "rewrite-with-tombstone",
}


def _refs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (part.strip() for part in value.split(",")) if v]
    return list(value)


class UnwrapParams(ConfigModel):
    """ExtractNewRecordState's options, in snake_case (the dotted Debezium names are accepted too)."""

    model_config = ConfigDict(populate_by_name=True)

    delete_tombstone_handling_mode: Literal[
        "drop", "tombstone", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone"
    ] = Field(
        "tombstone",
        alias="delete.tombstone.handling.mode",
        description="What becomes of deletes, as Debezium 3's option: drop (no record); tombstone (a null "
        "value, Debezium's default; with `schemas: true` the value is `{schema: row, payload: null}`); "
        'rewrite (the row before the delete with `__deleted: "true"`, every other row '
        '`__deleted: "false"`); rewrite-with-tombstone (rewrite, and the Kafka sink\'s tombstone after '
        "the delete stays); delete-to-tombstone (a true null record). Except in rewrite-with-tombstone "
        "the Kafka sink writes no extra tombstone after a delete, as the SMT drops the connector's. "
        "Debezium 2's `delete_handling_mode` (none|drop|rewrite) and `drop_tombstones` (default true) are "
        "accepted instead and mapped: none -> tombstone, drop -> drop, rewrite -> rewrite; with "
        "drop_tombstones false, rewrite -> rewrite-with-tombstone, drop -> delete-to-tombstone.",
        examples=["rewrite"],
    )
    add_fields: list[str] = Field(
        default_factory=list,
        alias="add.fields",
        description="Envelope fields added to the row, named `<prefix><field>` as Debezium names them: "
        "`op`, `ts_ms`, a source field (`lsn`, `table`, `db`, `txId`, `gtid`, ... or `source.ts_ms` -> "
        "`__source_ts_ms`), a transaction field (`transaction.id` -> `__transaction_id`); `field:NAME` "
        "names it yourself. A field the event's source does not have is left out. A comma-separated "
        "string is accepted too.",
        examples=[["op", "source.ts_ms", "table", "lsn"]],
    )
    add_fields_prefix: str = Field(
        "__",
        alias="add.fields.prefix",
        description="Prefix of the added fields' names (Debezium's default `__`).",
        examples=["cdc_"],
    )
    add_headers: list[str] = Field(
        default_factory=list,
        alias="add.headers",
        description="Envelope fields added as record headers, referenced as in add_fields, values as "
        "text. Only the Kafka sink writes them; other sinks have no per-record headers for them.",
        examples=[["op", "source.ts_ms"]],
    )
    add_headers_prefix: str = Field(
        "__",
        alias="add.headers.prefix",
        description="Prefix of the added headers' names (Debezium's default `__`).",
        examples=["cdc_"],
    )

    @model_validator(mode="before")
    @classmethod
    def _debezium_2(cls, data: Any) -> Any:
        """Debezium 2's `delete.handling.mode` (none|drop|rewrite) and `drop.tombstones` (default
        true), as the issue and older connector configs name them, mapped onto the 3.x mode."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        names = ("delete_handling_mode", "delete.handling.mode", "drop_tombstones", "drop.tombstones")
        old = {k: data.pop(k) for k in names if k in data}
        if not old:
            return data
        if "delete_tombstone_handling_mode" in data or "delete.tombstone.handling.mode" in data:
            raise ValueError(
                "give delete_tombstone_handling_mode or Debezium 2's delete_handling_mode, not both"
            )
        handling = str(old.get("delete_handling_mode", old.get("delete.handling.mode", "drop")))
        drop = old.get("drop_tombstones", old.get("drop.tombstones", True))
        drop = drop if isinstance(drop, bool) else str(drop).lower() == "true"
        mode = _DEBEZIUM_2.get((handling, drop))
        if mode is None:
            raise ValueError(
                f"delete_handling_mode {handling!r} with drop_tombstones {str(drop).lower()} has no "
                "Debezium 3 equivalent (none + false wrote two null records per delete); use "
                "delete_tombstone_handling_mode: tombstone"
                if handling == "none"
                else f"delete_handling_mode must be none, drop or rewrite, not {handling!r}"
            )
        data["delete_tombstone_handling_mode"] = mode
        return data

    @field_validator("add_fields", "add_headers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _refs(value)

    def flattening(self) -> Flattening:
        fields = tuple(FieldRef.parse(f, self.add_fields_prefix) for f in self.add_fields)
        headers = tuple(FieldRef.parse(f, self.add_headers_prefix) for f in self.add_headers)
        names = [f.name for f in fields]
        if len(set(names)) != len(names) or DELETED in names:
            raise ValueError(f"add_fields gives two fields one name: {names}")
        return Flattening(self.delete_tombstone_handling_mode, fields, headers)


class UnwrapTransformConfig(ConfigModel):
    """Flatten events to the row after the change, as Debezium's ExtractNewRecordState does."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "unwrap",
                    "params": {
                        "delete_tombstone_handling_mode": "rewrite",
                        "add_fields": ["op", "source.ts_ms"],
                    },
                }
            ]
        }
    )

    type: Literal["unwrap", "extract_new_record_state"] = Field(
        description="Selects this transform; `extract_new_record_state` is an alias."
    )
    params: UnwrapParams = Field(default_factory=UnwrapParams, description="The SMT's options.")

    @field_validator("params")
    @classmethod
    def _refs_parse(cls, params: UnwrapParams) -> UnwrapParams:
        params.flattening()  # a bad field reference is a config error, at validation
        return params


@registry.transform(UnwrapTransformConfig)
def build(cfg: UnwrapTransformConfig) -> UnwrapTransform:
    return UnwrapTransform(cfg.params.flattening())
