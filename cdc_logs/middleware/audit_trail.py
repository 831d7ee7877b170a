"""`audit_trail` middleware: an append-only, hash-chained, optionally signed log of every change.

Each change of a batch becomes one record of the audit log (audit_log.py: format and verification;
audit_writer.py: segments, fsync, crash recovery), fsync'd before the batch goes on to the sinks. The
stage's checkpointed state is the log's committed head (record number and hash) plus the change ids
still awaiting their replay, so a restart never logs a committed change twice (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import need
from cdc_logs.middleware import audit_log as fmt
from cdc_logs.middleware.audit_writer import AuditWriter
from cdc_logs.stages import BatchStage, StageContext
from cdc_logs.transforms.base import table_matches

LEVELS = ("full", "changes", "metadata")
COMMITTED_FILE = "committed.json"  # the last committed head, for a start whose state is gone


def change_id(event: ChangeEvent) -> str:
    """What identifies a change whoever reads it again: op, source block (without the version and
    the processing time), key, before and after. A replay of the same change has the same id."""
    source = event.source.to_dict()
    source.pop("version", None)
    body = {"op": event.op.value, "source": source, "key": event.key, "before": event.before,
            "after": event.after, "message": event.content}  # fmt: skip
    return hashlib.sha256(fmt.canonical(body)).hexdigest()


def record_body(event: ChangeEvent, level: str, cid: str) -> dict[str, Any]:
    """The audit record of one change at `level` (full: both images; changes: changed fields only;
    metadata: who/what/where without values)."""
    source = event.source.to_dict()
    source.pop("version", None)
    body: dict[str, Any] = {
        "change": cid,
        "op": event.op.value,
        "table": event.source.qualified_table,
        "source": source,
        "key": event.key,
        "ts_ms": event.ts_ms,
        "level": level,
    }
    if event.transaction is not None:
        body["transaction"] = event.transaction.id
    if level == "full":
        body["before"], body["after"] = event.before, event.after
        if event.content is not None:
            body["message"] = event.content
    elif level == "changes":
        body["changes"] = changed_fields(event)
    return body


def changed_fields(event: ChangeEvent) -> dict[str, dict[str, Any]]:
    """{column: {"old": ..., "new": ...}}: every column of an insert or snapshot row (new only),
    the columns an update changed (old and new; new only without a before image), none for a delete
    (its key says which row went)."""
    if event.op in (Op.CREATE, Op.READ):
        return {k: {"new": v} for k, v in (event.after or {}).items()}
    if event.op == Op.UPDATE:
        before, after = event.before, event.after or {}
        if before is None:
            return {k: {"new": v} for k, v in after.items()}
        out: dict[str, dict[str, Any]] = {}
        for name, value in after.items():
            if name in event.unchanged:
                continue
            if name not in before or fmt.canonical(before[name]) != fmt.canonical(value):
                out[name] = {"old": before.get(name), "new": value}
        return out
    return {}


class AuditTrailStage(BatchStage):
    stateful = True

    def __init__(self, params: AuditTrailParams) -> None:
        self.params = params
        self.name = "audit_trail"
        self.private_key = load_private_key(params.private_key_file) if params.digital_signature else None
        self.writer: AuditWriter | None = None
        self.pending: Counter[str] = Counter()
        self.skipped = 0

    def open(self, context: StageContext) -> None:
        directory = Path(self.params.directory) if self.params.directory else context.directory
        self.writer = AuditWriter(
            directory,
            private_key=self.private_key,
            immutable=self.params.immutable_log,
            max_records=self.params.max_segment_records,
            max_bytes=self.params.max_segment_bytes,
            pipeline=context.pipeline,
        )
        state = context.state
        committed: tuple[int, str] | None
        unmatched: list[str] = []
        if state:
            committed = (int(state["records"]), str(state["head"]))
            unmatched = list(state.get("unmatched") or [])
        else:
            committed = _last_committed(directory)
        self.pending = self.writer.recover(committed)
        self.pending.update(unmatched)

    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        assert self.writer is not None, "open() first"
        bodies = []
        for event in batch:
            if self.params.tables and not table_matches(self.params.tables, event):
                continue
            cid = change_id(event)
            if self.pending[cid] > 0:  # logged before a crash, not committed then: not twice
                self.pending[cid] -= 1
                if not self.pending[cid]:
                    del self.pending[cid]
                self.skipped += 1
                continue
            bodies.append(record_body(event, self.params.audit_level, cid))
        self.writer.write(bodies)  # fsync'd before the sinks get the batch
        return batch

    def snapshot(self) -> Any:
        assert self.writer is not None
        return {
            "segment": self.writer.segment,
            "records": self.writer.seq,
            "head": self.writer.head,
            "unmatched": list(self.pending.elements()),
        }

    def committed(self) -> None:
        # Only a hint for a start without state (offsets reset): no fsync needed.
        if self.writer is None:
            return
        path = self.writer.directory / COMMITTED_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"records": self.writer.seq, "head": self.writer.head}))
        os.replace(tmp, path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _last_committed(directory: Path) -> tuple[int, str] | None:
    """The head a previous run committed, when the checkpointed state is gone (offsets reset): records
    after it were never committed; replayed changes before it are logged again (a new capture)."""
    try:
        data = orjson.loads((directory / COMMITTED_FILE).read_bytes())
        return int(data["records"]), str(data["head"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def load_private_key(path: str | None) -> Any:
    """The Ed25519 private key of a PEM file (never printed)."""
    need("cryptography", "audit", "audit_trail digital_signature")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    hint = "create a key pair with `cdc-logs audit keygen --out DIR` and set private_key_file"
    if not path:
        raise CdcError(ErrorKind.CONFIG, "audit_trail digital_signature needs private_key_file", hint)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CdcError(
            ErrorKind.CONFIG, f"audit_trail private_key_file {path} cannot be read: {exc.strerror}", hint
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CdcError(
            ErrorKind.CONFIG,
            f"audit_trail private_key_file {path} is not an unencrypted PEM private key",
            hint,
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CdcError(ErrorKind.CONFIG, f"audit_trail private_key_file {path} is not an Ed25519 key", hint)
    return key


class AuditTrailParams(ConfigModel):
    """What the audit log records, where, and how it is protected (the seed's names)."""

    audit_level: Literal["full", "changes", "metadata"] = Field(
        "full",
        description="full: every change with its before and after images; changes: the changed columns "
        "only (old and new values; all columns of an insert, none of a delete); metadata: who, what and "
        "where (table, key, op, source position, times) without column values. The seed names only full.",
        examples=["changes"],
    )
    immutable_log: bool = Field(
        True,
        description="Sealed segments are made read-only (mode 0444) and the writer only ever appends.",
        examples=[True],
    )
    digital_signature: bool = Field(
        False,
        description="Sign each segment with Ed25519 when it is sealed (needs private_key_file and the "
        "`cryptography` package: pip install 'cdc-logs[audit]').",
        examples=[True],
    )
    private_key_file: str | None = Field(
        None,
        description="PEM file of the Ed25519 private key (unencrypted, mode 0600); `cdc-logs audit keygen` "
        "makes one. Never printed. Required with digital_signature when the pipeline runs (`config validate` "
        "accepts the seed's example without it).",
        examples=["/etc/cdc/audit-signing.pem"],
    )
    directory: str | None = Field(
        None,
        description="Where the log's segments go. Default: the stage's folder in sync.state_dir "
        "(<state_dir>/audit_trail).",
        examples=["/var/lib/cdc/audit"],
    )
    max_segment_records: int = Field(
        100_000, ge=1, description="A segment is sealed after this many records.", examples=[10000]
    )
    max_segment_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="A segment is sealed once it holds this many bytes.",
        examples=[16777216],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Only changes of these tables are logged (glob patterns). Default: every table.",
        examples=[["public.accounts", "public.ledger*"]],
    )


class AuditTrailConfig(ConfigModel):
    """An append-only, hash-chained (and optionally signed) log of every change, written before the
    sinks get it; `cdc-logs audit verify` checks it (docs/audit.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "audit_trail",
                    "params": {
                        "audit_level": "full",
                        "immutable_log": True,
                        "digital_signature": True,
                        "private_key_file": "/etc/cdc/audit-private.pem",
                    },
                }
            ]
        }
    )

    type: Literal["audit_trail"] = Field(description="Selects the audit trail middleware.")
    params: AuditTrailParams = Field(
        default_factory=lambda: AuditTrailParams(), description="What is logged, where, and how it is signed."
    )

    def check_files(self) -> None:
        """What `config validate` checks besides the config: a private_key_file given is a readable,
        unencrypted Ed25519 PEM private key (the key itself is never printed)."""
        if self.params.private_key_file:
            load_private_key(self.params.private_key_file)


@registry.transform(AuditTrailConfig)
def build(cfg: AuditTrailConfig) -> AuditTrailStage:
    return AuditTrailStage(cfg.params)
