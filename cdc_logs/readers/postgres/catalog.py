"""Catalog lookups on a normal connection: captured tables, their keys, replica identity, user types.

pgoutput's Relation message flags the *replica identity* columns, which are the primary key only
under REPLICA IDENTITY DEFAULT; the event key is always the primary key (as Debezium's), read here
from pg_index. Tables are named `schema.table` (or `table`, resolved through the search_path) and
resolved with to_regclass, so quoting follows SQL rules: `public."MixedCase"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.postgres.connection import map_error
from cdc_logs.readers.postgres.pgoutput import Relation, RelationColumn
from cdc_logs.readers.postgres.schema import ColumnFacts
from cdc_logs.readers.postgres.types import PG_TYPE_QUERY, TypeRegistry

_NO_FACTS = ColumnFacts()
IDENTITY_NAMES = {"d": "DEFAULT", "f": "FULL", "i": "USING INDEX", "n": "NOTHING"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    typmod: int
    type_sql: str  # format_type(): used to cast key values back in keyset queries
    facts: ColumnFacts = _NO_FACTS  # NOT NULL, default, enum labels: for the table schema


@dataclass(frozen=True, slots=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    replica_identity: str  # 'd' / 'f' / 'i' / 'n'
    primary_key: tuple[str, ...]
    identity_columns: tuple[str, ...]  # the replica identity index's columns ('d' -> the primary key)
    columns: tuple[Column, ...]
    sql_name: str  # format('%I.%I'): the name as SQL (and pg_publication_tables) writes it

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def relation(self) -> Relation:
        """A Relation equivalent to the one pgoutput sends, for converting snapshot rows."""
        ident = set(self.identity_columns) if self.replica_identity != "f" else {c.name for c in self.columns}
        cols = tuple(
            RelationColumn(1 if c.name in ident else 0, c.name, c.type_oid, c.typmod) for c in self.columns
        )
        return Relation(None, self.oid, self.schema, self.name, self.replica_identity, cols)

    def facts(self) -> dict[str, ColumnFacts]:
        return {c.name: c.facts for c in self.columns}

    def identity_problem(self) -> str | None:
        """Why UPDATE/DELETE on this table would fail or lose the old row once it is published."""
        if self.replica_identity == "n":
            return "REPLICA IDENTITY NOTHING: updates and deletes cannot be published"
        if self.replica_identity == "d" and not self.primary_key:
            return "no primary key and REPLICA IDENTITY DEFAULT: updates and deletes cannot be published"
        return None


_TABLE_QUERY = """
SELECT c.oid, n.nspname, c.relname, c.relreplident, c.relkind, format('%%I.%%I', n.nspname, c.relname),
  coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
  coalesce((SELECT array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = c.oid AND i.indisreplident), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = %s
"""

# What pgoutput's Relation message does not say and Debezium's schema does: NOT NULL, the default
# expression, an enum's labels (in sort order).
_FACTS = """a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
  (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid)"""

_COLUMNS_QUERY = f"""
SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), {_FACTS}
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""

_FACTS_QUERY = f"""
SELECT a.attname, {_FACTS}
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


def _facts(not_null: Any, default: Any, labels: Any) -> ColumnFacts:
    return ColumnFacts(bool(not_null), None if default is None else str(default), tuple(labels or ()))


def _rows(conn: psycopg.Connection[Any], query: str, params: Any, doing: str) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(query, params).fetchall()
    except psycopg.Error as exc:
        raise map_error(exc, doing) from exc


#: to_regclass's refusals of the name itself (invalid_name, syntax_error): the user's to fix.
_BAD_NAME_STATES = ("42602", "42601")


def table_oid(conn: psycopg.Connection[Any], name: str) -> int:
    try:
        rows = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchall()
    except psycopg.Error as exc:
        if getattr(exc, "sqlstate", None) in _BAD_NAME_STATES:
            reason = str(exc).strip().splitlines()[0]
            raise CdcError(
                ErrorKind.USAGE,
                f"table name {name!r} is not a valid SQL name ({reason})",
                "a name is schema.table with SQL's quoting: double-quote a part that has spaces, dots, "
                "capitals or other characters, e.g. --table 'public.\"my table\"' (in YAML: "
                "tables: ['public.\"my table\"'])",
            ) from exc
        raise map_error(exc, f"looking up table {name!r}") from exc
    if not rows or rows[0][0] is None:
        raise CdcError(
            ErrorKind.NOT_FOUND,
            f"table {name!r} does not exist (or is not visible to this user)",
            'check --table / `tables:` (schema.table; quote mixed case: public."MyTable")',
        )
    return int(rows[0][0])


def table_info(conn: psycopg.Connection[Any], oid: int) -> TableInfo:
    rows = _rows(conn, _TABLE_QUERY, (oid,), f"reading the catalog of table {oid}")
    if not rows:
        raise CdcError(
            ErrorKind.NOT_FOUND, f"table with oid {oid} no longer exists", "check the captured tables"
        )
    oid_, schema, name, ident, kind, sql_name, pk, ident_cols = rows[0]
    if kind not in ("r", "p"):
        raise CdcError(
            ErrorKind.CONFIG,
            f"{schema}.{name} is not a table (relkind {kind!r}); views cannot be captured",
            "capture the underlying tables instead",
        )
    columns = tuple(
        Column(str(r[0]), int(r[1]), int(r[2]), str(r[3]), _facts(r[4], r[5], r[6]))
        for r in _rows(conn, _COLUMNS_QUERY, (oid,), f"reading the columns of {schema}.{name}")
    )
    identity = tuple(pk) if ident == "d" else tuple(ident_cols)
    return TableInfo(
        int(oid_), str(schema), str(name), str(ident), tuple(pk), identity, columns, str(sql_name)
    )


def resolve_tables(conn: psycopg.Connection[Any], names: Iterable[str]) -> list[TableInfo]:
    """TableInfo for each name, in order, without duplicates."""
    out: list[TableInfo] = []
    seen: set[int] = set()
    for name in names:
        oid = table_oid(conn, name)
        if oid not in seen:
            seen.add(oid)
            out.append(table_info(conn, oid))
    return out


def publication_tables(conn: psycopg.Connection[Any], publication: str) -> list[str]:
    rows = _rows(
        conn,
        "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = %s "
        "ORDER BY 1",
        (publication,),
        f"listing the tables of publication {publication!r}",
    )
    return [str(r[0]) for r in rows]


def primary_key(conn: psycopg.Connection[Any], oid: int) -> tuple[str, ...]:
    rows = _rows(
        conn,
        "SELECT a.attname FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.ord",
        (oid,),
        f"reading the primary key of table {oid}",
    )
    return tuple(str(r[0]) for r in rows)


def column_facts(conn: psycopg.Connection[Any], oid: int) -> dict[str, ColumnFacts]:
    """NOT NULL, default and enum labels of each column of a table (once per Relation message)."""
    rows = _rows(conn, _FACTS_QUERY, (oid,), f"reading the column facts of table {oid}")
    return {str(r[0]): _facts(r[1], r[2], r[3]) for r in rows}


def learn_types(conn: psycopg.Connection[Any], registry: TypeRegistry, relation: Relation) -> None:
    """Teach the registry the user types a relation uses (domains, enums, arrays of them)."""
    for _ in range(8):  # a domain over an enum over ... : each round resolves one level
        unknown = registry.unknown_oids(relation)
        if not unknown:
            return
        rows = _rows(conn, PG_TYPE_QUERY, (unknown,), "reading pg_type")
        registry.learn_pg_types(rows)
        chained = [int(r[4]) for r in rows if r[2] == "d"] + [int(r[6]) for r in rows if int(r[6] or 0)]
        if chained:
            registry.learn_pg_types(_rows(conn, PG_TYPE_QUERY, (chained,), "reading pg_type"))
        learned = set(unknown) - set(registry.unknown_oids(relation))
        if not learned:
            return  # the rest are base types with a text fallback (point, ranges, ...)
