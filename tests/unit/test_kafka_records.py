"""The Kafka sink's per-table caches give every record what the per-record rules give it.

The sink remembers a table's topic and which position fields a source block carries (issue 15: that
work was a tenth of the sink's time per record). These tests compare the cached path with the rules
written out per record, on events whose tables, ops and source blocks change from record to record,
so a cache keyed too coarsely (a topic reused for another table or op, a header kept or dropped
wrongly) shows as a difference. No broker: only the record parts are built.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.position import BinlogPosition, Lsn, Watermark
from cdc_logs.sinks.kafka import KafkaSink
from cdc_logs.sinks.routing import POSITION_FIELDS, position_headers, render


def reference_topic(template: str, prefix: str | None, event: ChangeEvent) -> str:
    """The documented rule, per record: render the template, forbidden characters -> _, 249 max."""
    return re.sub(r"[^a-zA-Z0-9._-]", "_", render(template, event, prefix))[:249]


def reference_headers(event: ChangeEvent) -> list[tuple[str, str]]:
    """op, the encoded position, then every POSITION_FIELDS entry the source block holds (not None)."""
    headers = [("op", event.op._value_)]
    if event.position is not None:
        headers.append(("position", event.position.bare().encode()))
    extra = event.source.extra
    headers += [(name, str(extra[name])) for name in POSITION_FIELDS if extra.get(name) is not None]
    return headers


SOURCES = [
    ("postgresql", "app", "shop", "public", "orders"),
    ("postgresql", "app", "shop", "public", "order lines"),  # a forbidden character
    ("postgresql", "app", "shop", "sales", "orders"),  # same table, other schema
    ("postgresql", "other", "shop", "public", "orders"),  # another source.name ({prefix} default)
    ("mariadb", "app", "inventory", None, "orders"),  # no schema: {schema} is the db
    ("mysql", "app", "inventory", None, "orders"),  # same names, another connector
    ("postgresql", "app", "shop", "public", "t" * 300),  # cut at 249
]
EXTRAS: list[dict[str, Any]] = [
    {"txId": 7, "lsn": 1234, "xmin": None},
    {"lsn": 99, "txId": None},  # another key order, a None to drop
    {"server_id": 1, "gtid": "0-1-42", "file": "mariadb-bin.000003", "pos": 4567, "row": 2},
    {"gtid": None, "file": "mariadb-bin.000003", "pos": 0, "row": 0, "thread": 12},
    {"scn": "123456", "commit_scn": "123460", "change_id": "x"},
    {},
]
POSITIONS = [
    Lsn("srv", 10, 5, event=2),
    Lsn("srv", 10, 0, incremental='{"t":1}', captured=("public.orders",)),
    BinlogPosition(server="mariadb:server_id=1,domain_id=0", file="mariadb-bin.000003", pos=7, gtid="0-1-42"),
    Watermark(server="db", values=(1, "a")),
    None,
]


def events() -> list[ChangeEvent]:
    out = []
    ops = [Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ, Op.MESSAGE, Op.TRUNCATE]
    combos = itertools.product(SOURCES, ops, range(len(EXTRAS)), range(len(POSITIONS)))
    for (connector, name, db, schema, table), op, extra, position in combos:
        source = SourceInfo(connector, name, db, table, schema=schema, extra=dict(EXTRAS[extra]))
        out.append(ChangeEvent(op, source, after={"id": 1}, key={"id": 1}, position=POSITIONS[position]))
    return out


@pytest.mark.parametrize(
    ("template", "prefix"),
    [
        ("{prefix}.{schema}.{table}", None),
        ("{prefix}.{schema}.{table}", "fixed"),
        ("cdc.{db}.{table}.{op}", None),
        ("{connector}-{table}", None),
        ("one_topic", None),
    ],
)
def test_cached_topics_are_the_rendered_ones(template: str, prefix: str | None) -> None:
    sink = KafkaSink("127.0.0.1:1", topic_template=template, prefix=prefix)
    # twice through, interleaved: the second pass is served from the cache
    for event in events() * 2:
        assert sink.topic_for(event) == reference_topic(template, prefix, event)


def test_headers_are_the_per_record_rule() -> None:
    for event in events() * 2:
        assert position_headers(event) == reference_headers(event)
