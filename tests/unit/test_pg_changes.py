"""ChangeStream + EventBuilder on replication traffic captured from a real Postgres (no server needed).

The captures (tests/fixtures/pgoutput, see scripts/capture_pgoutput.py) hold every replica identity,
TOAST, truncates, logical messages, savepoint rollbacks and streamed transactions that commit and
abort. Replayed through the reader's pipeline-facing half, the envelopes must match the manifest:
ops, before/after, unchanged TOAST, keys, one boundary per transaction at its commit end LSN.
"""

from __future__ import annotations

import base64
import copy
import struct
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op
from cdc_logs.position import Lsn
from cdc_logs.readers.postgres.changes import HEARTBEAT_PREFIX, ChangeStream
from cdc_logs.readers.postgres.convert import EventBuilder
from cdc_logs.readers.postgres.pgoutput import Relation
from cdc_logs.readers.postgres.txbuffer import StreamBuffers
from cdc_logs.readers.postgres.types import TypeRegistry
from cdc_logs.readers.postgres.walproto import XLogData, parse_copy_data

from .test_pgoutput import MANIFEST, frames, jsonable

SERVER = "7000000000000000001"
PRIMARY_KEYS = {
    "all_types": ("id",),
    "toast_default": ("id",),
    "toast_full": ("id",),
    "ri_default": ("id",),
    "ri_index": ("id",),
    "big": ("id",),
}
IDENTITY = {"ri_index": ("code",)}  # USING INDEX; the others with a 'K' row use the primary key
CAPTURES = [c for c in ("v1", "v2", "v2-binary") if c in MANIFEST["captures"]]


def replay(capture: str, *, memory: int = 1 << 20) -> list[ChangeEvent | Heartbeat]:
    registry = TypeRegistry()
    registry.learn_pg_types(
        (t["oid"], t["name"], t["typtype"], t["typcategory"], t["typbasetype"], t["typtypmod"], t["typelem"],
         t["typdelim"])
        for t in MANIFEST["types"]
    )  # fmt: skip

    def key_lookup(relation: Relation) -> tuple[str, ...]:
        return PRIMARY_KEYS.get(relation.name, ())

    builder = EventBuilder(
        pipeline="p",
        db="capdb",
        registry=registry,
        binary=MANIFEST["captures"][capture]["binary"],
        key_lookup=key_lookup,
    )
    stream = ChangeStream(builder, StreamBuffers(memory), SERVER)
    out: list[ChangeEvent | Heartbeat] = []
    for frame in frames(capture):
        msg = parse_copy_data(frame)
        if isinstance(msg, XLogData):
            out.extend(stream.feed(msg.wal_start, msg.payload))
    assert not stream.in_flight
    return out


def transactions(items: list[ChangeEvent | Heartbeat]) -> list[list[ChangeEvent]]:
    """Events grouped by transaction id, in order; each group must end with its only boundary."""
    groups: list[list[ChangeEvent]] = []
    current: list[ChangeEvent] = []
    for item in items:
        if not isinstance(item, ChangeEvent) or item.transaction is None:
            assert not current, "an event outside a transaction arrived mid-transaction"
            continue
        if current:
            assert item.transaction.id == current[0].transaction.id  # type: ignore[union-attr]
        current.append(item)
        if item.boundary:
            groups.append(current)
            current = []
    assert not current, "a transaction without a boundary"
    return groups


def expected_before(change: dict[str, Any]) -> dict[str, Any] | None:
    if "old" not in change:
        return None
    if change["old_kind"] == "O":
        return change["old"]
    table = change["table"].split(".")[1]
    identity = IDENTITY.get(table, PRIMARY_KEYS.get(table, ()))
    return {k: v for k, v in change["old"].items() if k in identity}


def rows(group: list[ChangeEvent]) -> list[dict[str, Any]]:
    """The manifest's shape for the row changes of one transaction."""
    out: list[dict[str, Any]] = []
    for e in group:
        if e.op is Op.MESSAGE:
            continue
        if e.op is Op.TRUNCATE:
            out.append({"op": "t", "table": e.source.qualified_table})
            continue
        change: dict[str, Any] = {"op": e.op.value, "table": e.source.qualified_table}
        if e.after is not None:
            change["new"] = {k: jsonable(v) for k, v in e.after.items()}
        change["before"] = {k: jsonable(v) for k, v in e.before.items()} if e.before is not None else None
        if e.unchanged:
            change["unchanged"] = list(e.unchanged)
        out.append(change)
    return out


def manifest_rows(event: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in copy.deepcopy(event["changes"]):  # the manifest is shared with test_pgoutput: never mutate it
        if c["op"] == "t":
            out.extend({"op": "t", "table": t} for t in c["tables"])
            continue
        before = expected_before(c)
        key = PRIMARY_KEYS.get(c["table"].split(".")[1], ())
        has_key = bool(before and key and all(k in before for k in key))
        if c["op"] == "u" and has_key and any(before[k] != c["new"][k] for k in key):  # type: ignore[index]
            out.append({"op": "d", "table": c["table"], "before": before})  # delete + create, like Debezium
            out.append({"op": "c", "table": c["table"], "new": c["new"], "before": None})
            continue
        change: dict[str, Any] = {"op": c["op"], "table": c["table"]}
        if "new" in c:
            change["new"] = c["new"]
        change["before"] = before
        if c.get("unchanged"):
            change["unchanged"] = c["unchanged"]
        out.append(change)
    return out


@pytest.mark.parametrize("capture", CAPTURES)
def test_envelopes_match_the_manifest(capture: str) -> None:
    items = replay(capture)
    groups = transactions(items)
    expected = [e for e in MANIFEST["events"] if e["kind"] == "tx"]
    got, want = [rows(g) for g in groups], [manifest_rows(e) for e in expected]
    if MANIFEST["captures"][capture]["binary"]:
        # a type without a converter (point) passes through as raw bytes in binary format (documented)
        for tx in (*got, *want):
            for change in tx:
                change.get("new", {}).pop("c_point", None)
    # Prepared transactions show up at COMMIT PREPARED, like any commit (two_phase is not requested).
    assert got == want
    for group, event in zip(groups, expected, strict=True):
        assert {e.source.extra["txId"] for e in group} == {event["xid"]}
        assert [e.transaction.total_order for e in group] == list(range(1, len(group) + 1))  # type: ignore[union-attr]
        last = group[-1]
        assert isinstance(last.position, Lsn) and last.position.server == SERVER
        assert last.transaction is not None and last.transaction.id.startswith(f"{event['xid']}:")
        assert all(not e.boundary for e in group[:-1])
    ends = [g[-1].position.lsn for g in groups]  # type: ignore[union-attr]
    assert ends == sorted(ends)


@pytest.mark.parametrize("capture", CAPTURES)
def test_aborted_transactions_leave_nothing(capture: str) -> None:
    items = replay(capture)
    aborted = {e["xid"] for e in MANIFEST["events"] if e["kind"] == "aborted"}
    xids = {i.source.extra["txId"] for i in items if isinstance(i, ChangeEvent)}
    assert not aborted & xids


def test_a_streamed_transaction_spilled_to_disk_comes_out_whole() -> None:
    assert [rows(g) for g in transactions(replay("v2", memory=0))] == [
        rows(g) for g in transactions(replay("v2"))
    ]


@pytest.mark.parametrize("capture", CAPTURES)
def test_logical_messages_become_events(capture: str) -> None:
    items = replay(capture)
    messages = [i for i in items if isinstance(i, ChangeEvent) and i.op is Op.MESSAGE]
    by_prefix = {m.content["prefix"]: m for m in messages}  # type: ignore[index]
    tx = by_prefix["cap-tx"]
    assert tx.transaction is not None and not tx.boundary
    assert base64.b64decode(tx.content["content"]) == b"hello tx"  # type: ignore[index]
    nontx = by_prefix["cap-nontx"]
    assert nontx.transaction is None and nontx.boundary and isinstance(nontx.position, Lsn)
    assert base64.b64decode(nontx.content["content"]) == bytes.fromhex("00ff01")  # type: ignore[index]
    assert nontx.to_dict()["message"]["prefix"] == "cap-nontx"


def test_unchanged_toast_is_listed_never_sent() -> None:
    updates = [
        i
        for i in replay("v1")
        if isinstance(i, ChangeEvent)
        and i.op is Op.UPDATE
        and i.source.table == "toast_default"
        and i.unchanged
    ]
    assert updates and all("big" not in u.after for u in updates)  # type: ignore[operator]
    assert updates[0].to_dict()["unchanged"] == ["big"]


def message_payload(prefix: str, content: bytes, lsn: int, transactional: bool = False) -> bytes:
    return (
        b"M"
        + struct.pack(">BQ", 1 if transactional else 0, lsn)
        + prefix.encode()
        + b"\0"
        + struct.pack(">i", len(content))
        + content
    )


def test_heartbeat_messages_are_heartbeats_not_events() -> None:
    stream = ChangeStream(EventBuilder(pipeline="p", db="d"), StreamBuffers(), SERVER)
    out = list(stream.feed(0, message_payload(HEARTBEAT_PREFIX, b"slot", 0x1234)))
    assert len(out) == 1 and isinstance(out[0], Heartbeat)
    assert out[0].position == Lsn(SERVER, 0x1234)
    assert stream.last_boundary == 0x1234


def test_messages_off_drops_user_messages() -> None:
    stream = ChangeStream(EventBuilder(pipeline="p", db="d"), StreamBuffers(), SERVER, messages=False)
    assert list(stream.feed(0, message_payload("app", b"x", 10))) == []


def test_table_filter_drops_other_tables_and_their_boundary() -> None:
    items = replay("v1")
    assert any(isinstance(i, ChangeEvent) and i.source.table == "big" for i in items)
    registry = TypeRegistry()
    builder = EventBuilder(pipeline="p", db="d", registry=registry, key_lookup=lambda r: ("id",))
    stream = ChangeStream(builder, StreamBuffers(), SERVER, tables={"cap.big"})
    out = []
    for frame in frames("v1"):
        msg = parse_copy_data(frame)
        if isinstance(msg, XLogData):
            out.extend(stream.feed(msg.wal_start, msg.payload))
    events = [i for i in out if isinstance(i, ChangeEvent) and i.op is not Op.MESSAGE]
    assert events and {e.source.table for e in events} == {"big"}
    on_big = [
        e for e in MANIFEST["events"] if e["kind"] == "tx" and e["changes"][0].get("table") == "cap.big"
    ]
    assert sum(e.boundary for e in events) == len(on_big)  # one boundary per transaction on cap.big
    assert len(events) == sum(len(e["changes"]) for e in on_big)


def test_a_row_that_cannot_be_converted_is_held_in_its_place_for_the_dead_letter_file() -> None:
    """An int4 column whose text is not a number: the row becomes an Undecodable at its own position
    inside the transaction, the rows around it are delivered, and no value reaches the message."""
    from cdc_logs.envelope import Undecodable
    from cdc_logs.readers.contract import ContractChecker
    from cdc_logs.readers.postgres.pgoutput import Begin, Commit, Insert, RelationColumn

    builder = EventBuilder(pipeline="p", db="db", key_lookup=lambda r: ("id",))
    stream = ChangeStream(builder, StreamBuffers(1 << 20), SERVER)
    columns = (RelationColumn(1, "id", 23, -1), RelationColumn(0, "n", 23, -1))
    msgs: list[Any] = [
        Relation(None, 16400, "public", "t", "d", columns),
        Begin(0x500, 0, 77),
        Insert(None, 16400, ("1", "10")),
        Insert(None, 16400, ("2", "secret-not-a-number")),
        Insert(None, 16400, ("3", "30")),
        Commit(0, 0x500, 0x530, 0),
    ]
    items: list[Any] = []
    for lsn, msg in enumerate(msgs, 0x400):
        items.extend(stream._handle(msg, lsn))
    assert [type(i).__name__ for i in items] == ["ChangeEvent", "Undecodable", "ChangeEvent"]
    bad = items[1]
    assert isinstance(bad, Undecodable) and bad.table == "public.t" and "'n'" in bad.reason
    assert "secret" not in bad.reason and bad.raw is not None and b"secret-not-a-number" in bad.raw
    assert items[2].boundary and items[2].position == Lsn(SERVER, 0x530)
    assert ContractChecker().check_all(items) == []


def test_incremental_snapshot_watermarks_are_window_marks_not_events() -> None:
    """A transactional cdc-logs-isnap message alone in its transaction: a WindowMark keeping its own
    place (for the chunk rows) and carrying the transaction's end as its resume point, also with
    `messages: false`."""
    import orjson

    from cdc_logs.readers.postgres.changes import WATERMARK_PREFIX, WindowMark

    stream = ChangeStream(EventBuilder(pipeline="p", db="d"), StreamBuffers(), SERVER, messages=False)
    begin = b"B" + struct.pack(">QqI", 0x2000, 0, 7)
    commit = b"C" + struct.pack(">BQQq", 0, 0x2000, 0x2040, 0)
    content = orjson.dumps({"id": "chunk-1", "open": False})
    out = [
        *stream.feed(0x1F00, begin),
        *stream.feed(0x1F80, message_payload(WATERMARK_PREFIX, content, 0x1F80, transactional=True)),
        *stream.feed(0x2000, commit),
    ]
    assert len(out) == 1 and isinstance(out[0], WindowMark)
    mark = out[0]
    assert (mark.chunk, mark.opening, mark.boundary) == ("chunk-1", False, True)
    assert mark.at == Lsn(SERVER, 0x2000, 0x1F80, event=1)
    assert mark.position == Lsn(SERVER, 0x2040) and stream.last_boundary == 0x2040
