"""Decoded pgoutput messages -> ChangeEvents in Debezium's Postgres shape. Pure: no I/O.

`EventBuilder` keeps the relation cache (one row converter per relation, rebuilt when a new Relation
arrives, e.g. after DDL) and the open transaction (id, ordering counters, commit time). Catalog work
it cannot do itself (the primary key from pg_index, user types from pg_type) comes in through two
callables, so this module is unit-tested on captured bytes without a server.

Envelope rules (docs/sources/postgres.md):
  * `before`: None for inserts and for updates that sent no old row (REPLICA IDENTITY DEFAULT or
    USING INDEX when the identity did not change); the identity columns only for a 'K' old row
    (DEFAULT: the primary key; USING INDEX: the index columns); the whole old row for FULL ('O').
  * `after`: the new row without unchanged TOAST columns, which are listed in `unchanged` instead.
  * `key`: the primary key columns (from pg_index, not the replica identity flags), else the replica
    identity columns when they are all present, else None.
  * an update that changes the primary key is a delete of the old key then a create of the new one,
    as Debezium emits it (when the old row carries the key: DEFAULT or FULL identity).
  * `source`: connector postgresql, db, schema, table, ts_ms = commit time, txId, lsn (of the change),
    xmin (always null); `transaction.id` is "<xid>:<commit LSN>".
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo, Transaction, now_ms
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position
from cdc_logs.readers.postgres.pgoutput import (
    Delete,
    Insert,
    LogicalMessage,
    Relation,
    Truncate,
    TupleValue,
    Type,
    Update,
)
from cdc_logs.readers.postgres.schema import ColumnFacts, table_schema
from cdc_logs.readers.postgres.types import RowConverter, TypeRegistry, split_unchanged
from cdc_logs.readers.postgres.walproto import pg_to_unix_ms
from cdc_logs.schema import TableSchema

CONNECTOR = "postgresql"
KeyLookup = Callable[[Relation], tuple[str, ...]]
TypeLearner = Callable[[Relation], None]
FactsLookup = Callable[[Relation], dict[str, ColumnFacts]]  # catalog.column_facts


@dataclass(slots=True)
class _Rel:
    relation: Relation
    key: tuple[str, ...]  # primary key columns
    identity: tuple[str, ...]  # replica identity columns as the Relation flags them
    converter: RowConverter | None = None
    schema: TableSchema | None = None
    facts: dict[str, ColumnFacts] | None = None
    qualified: str = ""  # relation.qualified_name, once (a property formatting a string per call)


@dataclass(slots=True)
class TxState:
    xid: int
    commit_lsn: int
    ts_ms: int
    id: str
    total: int = 0
    per_table: dict[str, int] = field(default_factory=dict)

    def next(self, table: str) -> Transaction:
        self.total += 1
        n = self.per_table.get(table, 0) + 1
        self.per_table[table] = n
        return Transaction(self.id, self.total, n)


class EventBuilder:
    """Builds envelopes for one source; see the module docstring."""

    def __init__(
        self,
        *,
        pipeline: str,
        db: str,
        registry: TypeRegistry | None = None,
        binary: bool = False,
        key_lookup: KeyLookup | None = None,
        learn_types: TypeLearner | None = None,
        facts_lookup: FactsLookup | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.db = db
        self.registry = registry or TypeRegistry()
        self.binary = binary
        self._key_lookup = key_lookup
        self._learn_types = learn_types
        self._facts_lookup = facts_lookup
        self._rels: dict[int, _Rel] = {}
        self._types: dict[int, Type] = {}  # the Type messages seen, for export_state
        self.tx: TxState | None = None

    # -- schema ------------------------------------------------------------------------------------
    def on_type(self, msg: Type) -> None:
        self._types[msg.oid] = msg
        self.registry.learn_type(msg)

    def export_state(self) -> list[Any]:
        """What this builder learned from the stream (Type and Relation messages, and each relation's
        key and column facts as looked up then), for a builder in the decode process to start from."""
        rels = [(r.relation, r.key, r.identity, r.facts) for r in self._rels.values()]
        return [list(self._types.values()), rels]

    def schemas(self) -> list[TableSchema]:
        """The table schemas made so far (one per relation whose changes were converted)."""
        return [r.schema for r in self._rels.values() if r.schema is not None]

    def import_state(self, state: list[Any]) -> None:
        """Start from another builder's `export_state()`; user types are looked up again (catalog)."""
        types, rels = state
        for msg in types:
            self.on_type(msg)
        for relation, key, identity, facts in rels:
            if self._learn_types is not None:
                self._learn_types(relation)
            self._rels[relation.oid] = _Rel(
                relation, key, identity, facts=facts, qualified=relation.qualified_name
            )

    def on_relation(self, msg: Relation) -> None:
        """A (new) description of a relation: drop its converter, look up its key again."""
        if self._learn_types is not None:
            self._learn_types(msg)
        identity = tuple(c.name for c in msg.columns if c.is_key)
        key = self._key_lookup(msg) if self._key_lookup is not None else identity
        facts = self._facts_lookup(msg) if self._facts_lookup is not None else None
        self._rels[msg.oid] = _Rel(msg, key, identity, facts=facts, qualified=msg.qualified_name)

    def relation(self, oid: int) -> Relation:
        """The Relation message last seen for `oid`."""
        return self._rel(oid).relation

    def known(self, oid: int) -> bool:
        return oid in self._rels

    def _rel(self, oid: int) -> _Rel:
        rel = self._rels.get(oid)
        if rel is None:
            raise CdcError(
                ErrorKind.DECODE,
                f"pgoutput: a change for relation {oid} arrived before its Relation message",
                "restart the reader (the server sends Relation messages again on a new connection)",
            )
        if rel.converter is None:
            rel.converter = self.registry.row_converter(rel.relation, binary=self.binary)
            rel.schema = table_schema(self.registry, rel.relation, rel.key, self.db, rel.facts)
        return rel

    # -- transactions ------------------------------------------------------------------------------
    def begin(self, xid: int, commit_lsn: int, commit_ts: int) -> TxState:
        self.tx = TxState(xid, commit_lsn, pg_to_unix_ms(commit_ts), f"{xid}:{commit_lsn}")
        return self.tx

    def end(self) -> None:
        self.tx = None

    def _source(self, rel: Relation, lsn: int, ts_ms: int, xid: int | None) -> SourceInfo:
        return SourceInfo(
            CONNECTOR,
            self.pipeline,
            self.db,
            rel.name,
            schema=rel.namespace,
            ts_ms=ts_ms,
            extra={"txId": xid, "lsn": lsn, "xmin": None},
        )

    def change(self, msg: Insert | Update | Delete, lsn: int) -> list[ChangeEvent]:
        """The events of one row change of the open transaction: one, or two for an update of the
        primary key (position and boundary are set by the caller)."""
        tx = self.tx
        if tx is None:
            raise CdcError(ErrorKind.DECODE, "pgoutput: a row change outside a transaction")
        rel = self._rel(msg.relation_oid)
        conv = rel.converter
        assert conv is not None
        before: dict[str, Any] | None = None
        after: dict[str, Any] | None = None
        unchanged: tuple[str, ...] = ()
        if type(msg) is Insert:
            op = Op.CREATE
            after = conv.convert(msg.new)
        elif type(msg) is Update:
            op = Op.UPDATE
            after, unchanged = split_unchanged(conv.convert(msg.new))
            if msg.old is not None:
                before = self._old_row(rel, msg.old_kind, msg.old)
        else:
            assert type(msg) is Delete
            op = Op.DELETE
            before = self._old_row(rel, msg.old_kind, msg.old)
        relation = rel.relation
        event = ChangeEvent(
            op=op,
            source=self._source(relation, lsn, tx.ts_ms, tx.xid),
            before=before,
            after=after,
            key=_key(rel, after if after is not None else before),
            ts_ms=now_ms(),
            transaction=tx.next(rel.qualified),
            unchanged=unchanged,
            boundary=False,
            schema=rel.schema,
        )
        if op is Op.UPDATE and before is not None and rel.key:
            return self._split_key_change(rel, event)
        return [event]

    def _split_key_change(self, rel: _Rel, event: ChangeEvent) -> list[ChangeEvent]:
        """An update that changed the primary key, as Debezium emits it: a delete of the old key, then a
        create of the new one (sinks that apply rows by key would otherwise keep the old row).
        A USING INDEX old row without the primary key columns cannot tell, and stays an update."""
        before, after, tx = event.before, event.after, self.tx
        assert before is not None and after is not None and tx is not None
        if not all(c in before for c in rel.key) or all(before[c] == after[c] for c in rel.key):
            return [event]
        delete = ChangeEvent(
            op=Op.DELETE,
            source=event.source,
            before=before,
            key={c: before[c] for c in rel.key},
            ts_ms=event.ts_ms,
            transaction=event.transaction,
            boundary=False,
            schema=event.schema,
            key_change=True,
        )
        create = ChangeEvent(
            op=Op.CREATE,
            source=event.source,
            after=after,
            key=event.key,
            ts_ms=event.ts_ms,
            transaction=tx.next(rel.qualified),
            unchanged=event.unchanged,
            boundary=False,
            schema=event.schema,
            key_change=True,
        )
        return [delete, create]

    def _old_row(self, rel: _Rel, kind: str | None, values: tuple[TupleValue, ...]) -> dict[str, Any]:
        assert rel.converter is not None
        row, _ = split_unchanged(rel.converter.convert(values))
        if kind == "K":  # only the identity columns were sent; the others are placeholders, not NULLs
            return {c: row[c] for c in rel.identity if c in row}
        return row

    def truncate(self, msg: Truncate, lsn: int) -> list[ChangeEvent]:
        """One event per truncated relation, before and after null (Debezium's op "t")."""
        tx = self.tx
        if tx is None:
            raise CdcError(ErrorKind.DECODE, "pgoutput: Truncate outside a transaction")
        events = []
        for oid in msg.relation_oids:
            rel = self._rel(oid)
            relation = rel.relation
            events.append(
                ChangeEvent(
                    op=Op.TRUNCATE,
                    source=self._source(relation, lsn, tx.ts_ms, tx.xid),
                    ts_ms=now_ms(),
                    transaction=tx.next(relation.qualified_name),
                    boundary=False,
                    schema=rel.schema,
                )
            )
        return events

    def message(self, msg: LogicalMessage, lsn: int, commit_ts_ms: int | None = None) -> ChangeEvent:
        """pg_logical_emit_message as op "m" ({"prefix", "content": base64}); in the open transaction
        when transactional, else on its own."""
        tx = self.tx if msg.transactional else None
        ts = tx.ts_ms if tx is not None else (commit_ts_ms or now_ms())
        source = SourceInfo(
            CONNECTOR,
            self.pipeline,
            self.db,
            "",
            schema="",
            ts_ms=ts,
            extra={"txId": tx.xid if tx else None, "lsn": lsn, "xmin": None},
        )
        return ChangeEvent(
            op=Op.MESSAGE,
            source=source,
            key={"prefix": msg.prefix},
            ts_ms=now_ms(),
            transaction=tx.next("") if tx is not None else None,
            content={"prefix": msg.prefix, "content": base64.b64encode(msg.content).decode("ascii")},
            boundary=tx is None,
        )

    # -- snapshot ----------------------------------------------------------------------------------
    def snapshot_row(
        self,
        relation: Relation,
        converter: RowConverter,
        key: tuple[str, ...],
        values: list[str | None],
        *,
        lsn: int,
        ts_ms: int,
        marker: str,
        position: Position | None,
        boundary: bool,
        schema: TableSchema | None = None,
    ) -> ChangeEvent:
        row = converter.convert(values)
        source = self._source(relation, lsn, ts_ms, None)
        source.snapshot = marker
        return ChangeEvent(
            op=Op.READ,
            source=source,
            after=row,
            key={c: row[c] for c in key} if key else None,
            ts_ms=now_ms(),
            position=position,
            boundary=boundary,
            schema=schema,
        )


def _key(rel: _Rel, row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    # Without a primary key, a USING INDEX identity is a key; FULL's "identity" (every column) is not.
    # A KeyError is a column the row does not carry (once per event: no generator, no second lookup).
    if rel.key:
        try:
            return {c: row[c] for c in rel.key}
        except KeyError:
            pass
    if rel.identity and rel.relation.replica_identity == "i":
        try:
            return {c: row[c] for c in rel.identity}
        except KeyError:
            pass
    return None
