"""Name templates shared by the sinks: topics, streams, subjects, routing keys, cache keys.

A template is a Python format string over a fixed set of fields, checked when the sink is built so a
typo fails at config time rather than on the first event:

  {prefix}     the sink's `prefix`, else the event's `source.name` (the pipeline name, as Debezium's
               `topic.prefix`)
  {db}         source database
  {schema}     source schema; the database when the source has no schemas (MySQL), as Debezium names
               topics `prefix.db.table` there
  {table}      source table (or collection)
  {op}         c / u / d / r / t / m
  {connector}  postgresql, mysql, ...

Templates that address a row (the Redis cache's `key_pattern`) may also name the row's columns.

A logical decoding message (op `m`) has no table: it goes where Debezium puts it, `<prefix>.message`.
Its template is the table's with the table part replaced by `message` (`{schema}<sep>{table}` or
`{db}<sep>{table}`, else `{table}`): `{prefix}.{schema}.{table}` gives `<prefix>.message`,
`{prefix}/{schema}/{table}` `<prefix>/message`, `{prefix}.{schema}.{table}.{op}` `<prefix>.message.m`;
a template without `{table}` (one fixed topic) is used as it is.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind

EVENT_FIELDS = frozenset({"prefix", "db", "schema", "table", "op", "connector"})
DEBEZIUM_TOPIC = "{prefix}.{schema}.{table}"


def template_fields(template: str) -> list[str]:
    """The field names a template uses; raises CONFIG on a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise CdcError(ErrorKind.CONFIG, f"bad name template {template!r}: {exc}") from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or not name.isidentifier() or spec or conversion:
            raise CdcError(
                ErrorKind.CONFIG,
                f"bad name template {template!r}: placeholders are plain names like {{table}}",
                f"use only {sorted(EVENT_FIELDS)}",
            )
        names.append(name)
    return names


def check_template(template: str, what: str, extra: Iterable[str] = ()) -> None:
    """Fail at build time when `template` names a field it cannot be filled from."""
    allowed = EVENT_FIELDS | set(extra)
    unknown = [n for n in template_fields(template) if n not in allowed]
    if unknown:
        raise CdcError(
            ErrorKind.CONFIG,
            f"{what} {template!r} names unknown field(s) {unknown}",
            f"use {sorted(allowed)}",
        )


def event_fields(event: ChangeEvent, prefix: str | None) -> dict[str, str]:
    source = event.source
    return {
        "prefix": prefix or source.name,
        "db": source.db,
        "schema": source.schema if source.schema is not None else source.db,
        "table": source.table,
        "op": event.op._value_,
        "connector": source.connector,
    }


_TABLE_PART = re.compile(r"\{(?:schema|db)\}[^{}]?\{table\}|\{table\}")


@functools.lru_cache(maxsize=256)
def message_template(template: str) -> str:
    """The template for op `m` events (no table): the table part of `template` becomes `message`,
    as Debezium names its message topic `<prefix>.message`."""
    return _TABLE_PART.sub("message", template, count=1)


def render(
    template: str, event: ChangeEvent, prefix: str | None, row: Mapping[str, Any] | None = None
) -> str:
    """Fill `template` from the event (and, when given, the row's columns; event fields win)."""
    if event.op is Op.MESSAGE:
        template = message_template(template)
    fields: dict[str, Any] = {}
    if row:
        fields.update({k: _text(v) for k, v in row.items()})
    fields.update(event_fields(event, prefix))
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise CdcError(
            ErrorKind.SINK_REJECTED,
            f"cannot fill {template!r} for {source_label(event)}: the row has no column {exc.args[0]!r}",
            "name only columns every row carries (a delete may carry only the key columns unless the "
            "table's replica identity is FULL)",
        ) from exc


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def source_label(event: ChangeEvent) -> str:
    return event.source.qualified_table


def position_text(event: ChangeEvent) -> str | None:
    """The event's source position as text (the offset store's encoding), or None."""
    return event.position.bare().encode() if event.position is not None else None


#: source-block fields worth copying into message headers, as text.
POSITION_FIELDS = ("lsn", "txId", "gtid", "file", "pos", "row", "scn", "commit_scn", "change_id")


#: the POSITION_FIELDS a source block's extra keys hold, in POSITION_FIELDS order, per key tuple
_HEADER_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _header_fields(keys: tuple[str, ...]) -> tuple[str, ...]:
    names = _HEADER_FIELDS.get(keys)
    if names is None:
        if len(_HEADER_FIELDS) >= 256:  # a source with ever-changing extra keys: stay bounded
            _HEADER_FIELDS.clear()
        names = _HEADER_FIELDS[keys] = tuple(name for name in POSITION_FIELDS if name in keys)
    return names


def position_headers(event: ChangeEvent) -> list[tuple[str, str]]:
    """(name, text) pairs for headers: op, the encoded position, and the source's own coordinates."""
    headers = [("op", event.op._value_)]
    position = event.position
    if position is not None:
        headers.append(("position", position.bare().encode()))  # = position_text(event)
    extra = event.source.extra
    # Which of the nine POSITION_FIELDS a source block holds is the same for all of its events: looked
    # up once per set of keys (testing all nine per record was a third of the headers' cost).
    for name in _header_fields(tuple(extra)):
        value = extra[name]
        if value is not None:
            headers.append((name, str(value)))
    return headers
