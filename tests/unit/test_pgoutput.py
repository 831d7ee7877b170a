"""pgoutput decoder and walsender framing, on bytes captured from a real Postgres (no server needed).

The captures in tests/fixtures/pgoutput/ come from scripts/capture_pgoutput.py; manifest.json lists
the workload's committed changes with their expected converted values. A small reference consumer
here replays each capture the way a reader must (stream buffers, subtransaction aborts, two-phase)
and the result must equal the manifest for every protocol version and format.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.postgres import pgoutput as po
from cdc_logs.readers.postgres.types import RowConverter, TypeRegistry, split_unchanged
from cdc_logs.readers.postgres.walproto import (
    PG_EPOCH_UNIX_US,
    Keepalive,
    XLogData,
    parse_copy_data,
    pg_now,
    pg_to_unix_ms,
    standby_status_update,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pgoutput"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
CAPTURES = sorted(MANIFEST["captures"])


def frames(name: str) -> list[bytes]:
    data = (FIXTURES / MANIFEST["captures"][name]["file"]).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(data)
    return out


def messages(name: str) -> Iterator[po.Message]:
    decoder = po.Decoder()
    for frame in frames(name):
        msg = parse_copy_data(frame)
        if isinstance(msg, XLogData):
            yield decoder.decode(msg.payload)
    assert not decoder.in_stream


_ALL: dict[str, list[po.Message]] = {}


def all_messages(name: str) -> list[po.Message]:
    if name not in _ALL:
        _ALL[name] = list(messages(name))
    return _ALL[name]


def payloads(name: str) -> list[tuple[bytes, bool]]:
    """(payload, in_stream) for every XLogData of a capture."""
    out, in_stream = [], False
    for frame in frames(name):
        if frame[:1] != b"w":
            continue
        payload = frame[25:]
        out.append((payload, in_stream))
        if payload[:1] == b"S":
            in_stream = True
        elif payload[:1] == b"E":
            in_stream = False
    return out


# ---- a reference consumer ----------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$hex": value.hex()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


@dataclass
class Tx:
    xid: int
    changes: list[tuple[int | None, dict[str, Any]]] = field(default_factory=list)  # (subxid, change)
    messages: list[dict[str, Any]] = field(default_factory=list)
    origin: dict[str, Any] | None = None
    streamed: bool = False
    gid: str | None = None
    aborted_subxids: list[int] = field(default_factory=list)


class Replayer:
    """Rebuilds committed transactions from decoded messages, as the reader has to."""

    def __init__(self, registry: TypeRegistry, binary: bool) -> None:
        self.registry = registry
        self.binary = binary
        self.relations: dict[int, po.Relation] = {}
        self.converters: dict[int, RowConverter] = {}
        self.current: Tx | None = None
        self.streams: dict[int, Tx] = {}
        self.prepared: dict[str, Tx] = {}
        self.stream_xid: int | None = None
        self.events: list[dict[str, Any]] = []
        self.aborted: list[dict[str, Any]] = []

    def row(self, oid: int, values: tuple[po.TupleValue, ...]) -> dict[str, Any]:
        conv = self.converters.get(oid)
        if conv is None:
            conv = self.converters[oid] = self.registry.row_converter(self.relations[oid], binary=self.binary)
        return {k: jsonable(v) for k, v in conv.convert(values).items()}

    def table(self, oid: int) -> str:
        return self.relations[oid].qualified_name

    def target(self, xid: int | None) -> Tx:
        if self.stream_xid is not None:
            return self.streams.setdefault(self.stream_xid, Tx(self.stream_xid, streamed=True))
        assert self.current is not None, "change outside a transaction"
        return self.current

    def emit(self, tx: Tx) -> None:
        event: dict[str, Any] = {"kind": "tx", "xid": tx.xid, "changes": [c for _, c in tx.changes]}
        if tx.messages:
            event["messages"] = tx.messages
        if tx.origin:
            event["origin"] = tx.origin
        if tx.gid:
            event["gid"] = tx.gid
        event["streamed"] = tx.streamed
        event["aborted_subxids"] = tx.aborted_subxids
        self.events.append(event)

    def feed(self, msg: po.Message) -> None:
        if isinstance(msg, po.Begin):
            self.current = Tx(msg.xid)
        elif isinstance(msg, po.BeginPrepare):
            self.current = Tx(msg.xid, gid=msg.gid)
        elif isinstance(msg, po.Commit):
            assert self.current is not None
            self.emit(self.current)
            self.current = None
        elif isinstance(msg, po.Prepare):
            assert self.current is not None and self.current.gid == msg.gid
            self.prepared[msg.gid] = self.current
            self.current = None
        elif isinstance(msg, po.CommitPrepared):
            tx = self.prepared.pop(msg.gid)
            assert tx.xid == msg.xid
            self.emit(tx)
        elif isinstance(msg, po.RollbackPrepared):
            tx = self.prepared.pop(msg.gid)
            self.aborted.append({"xid": tx.xid, "gid": msg.gid})
        elif isinstance(msg, po.Origin):
            tx = self.target(None)
            tx.origin = {"name": msg.name, "lsn": msg.commit_lsn}
        elif isinstance(msg, po.Relation):
            self.relations[msg.oid] = msg
            self.converters.pop(msg.oid, None)
        elif isinstance(msg, po.Type):
            self.registry.learn_type(msg)
        elif isinstance(msg, po.Insert):
            self.target(msg.xid).changes.append(
                (
                    msg.xid,
                    {
                        "op": "c",
                        "table": self.table(msg.relation_oid),
                        "new": self.row(msg.relation_oid, msg.new),
                    },
                )
            )
        elif isinstance(msg, po.Update):
            new, unchanged = split_unchanged(self.row(msg.relation_oid, msg.new))
            change: dict[str, Any] = {"op": "u", "table": self.table(msg.relation_oid), "new": new}
            if msg.old is not None:
                change["old"] = self.row(msg.relation_oid, msg.old)
                change["old_kind"] = msg.old_kind
            if unchanged:
                change["unchanged"] = list(unchanged)
            self.target(msg.xid).changes.append((msg.xid, change))
        elif isinstance(msg, po.Delete):
            change = {
                "op": "d",
                "table": self.table(msg.relation_oid),
                "old": self.row(msg.relation_oid, msg.old),
            }
            change["old_kind"] = msg.old_kind
            self.target(msg.xid).changes.append((msg.xid, change))
        elif isinstance(msg, po.Truncate):
            tables = [self.table(oid) for oid in msg.relation_oids]
            change = {
                "op": "t",
                "tables": tables,
                "cascade": msg.cascade,
                "restart_identity": msg.restart_identity,
            }
            self.target(msg.xid).changes.append((msg.xid, change))
        elif isinstance(msg, po.LogicalMessage):
            record = {
                "transactional": msg.transactional,
                "prefix": msg.prefix,
                "content_hex": msg.content.hex(),
            }
            if msg.transactional:
                self.target(msg.xid).messages.append(record)
            else:
                self.events.append({"kind": "message", **record})
        elif isinstance(msg, po.StreamStart):
            self.stream_xid = msg.xid
            if msg.first_segment:
                assert msg.xid not in self.streams
        elif isinstance(msg, po.StreamStop):
            self.stream_xid = None
        elif isinstance(msg, po.StreamCommit):
            self.emit(self.streams.pop(msg.xid))
        elif isinstance(msg, po.StreamAbort):
            tx = self.streams[msg.xid]
            if msg.whole_transaction:
                del self.streams[msg.xid]
                self.aborted.append({"xid": msg.xid})
            else:
                tx.changes = [(sub, c) for sub, c in tx.changes if sub != msg.subxid]
                tx.aborted_subxids.append(msg.subxid)
        elif isinstance(msg, po.StreamPrepare):
            tx = self.streams.pop(msg.xid)
            tx.gid = msg.gid
            self.prepared[msg.gid] = tx
        else:  # pragma: no cover
            raise AssertionError(f"unexpected {msg!r}")


def registry_for(with_pg_type: bool) -> TypeRegistry:
    registry = TypeRegistry()
    if with_pg_type:
        columns = ("oid", "name", "typtype", "typcategory", "typbasetype", "typtypmod", "typelem", "typdelim")
        rows = [tuple(t[k] for k in columns) for t in MANIFEST["types"]]
        registry.learn_pg_types(rows)
    return registry


def replay(name: str, with_pg_type: bool = True) -> Replayer:
    replayer = Replayer(registry_for(with_pg_type), MANIFEST["captures"][name]["binary"])
    for msg in all_messages(name):
        replayer.feed(msg)
    assert not replayer.streams and not replayer.prepared and replayer.current is None
    return replayer


def expected_events(name: str) -> list[dict[str, Any]]:
    out = []
    for ev in MANIFEST["events"]:
        if ev["kind"] == "aborted":
            continue
        out.append(ev)
    return out


# ---- tests on the captures ---------------------------------------------------------------------


def test_fixtures_are_small_and_cover_the_versions() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 2_000_000
    versions = {c["proto_version"] for c in MANIFEST["captures"].values()}
    assert {1, 2, 3} <= versions
    assert any(c["binary"] for c in MANIFEST["captures"].values())


@pytest.mark.parametrize("name", CAPTURES)
def test_every_frame_decodes(name: str) -> None:
    counts: dict[str, int] = {}
    n_frames = 0
    for frame in frames(name):
        n_frames += 1
        msg = parse_copy_data(frame)
        counts[type(msg).__name__] = counts.get(type(msg).__name__, 0) + 1
        if isinstance(msg, Keepalive):
            assert msg.wal_end > 0 and msg.send_time > 0
    assert n_frames == MANIFEST["captures"][name]["frames"]
    kinds = {type(m).__name__ for m in all_messages(name)}
    assert {"Begin", "Commit", "Relation", "Type", "Insert", "Update", "Delete", "Truncate"} <= kinds
    assert {"LogicalMessage", "Origin"} <= kinds
    if MANIFEST["captures"][name]["streaming"]:
        assert {"StreamStart", "StreamStop", "StreamCommit", "StreamAbort"} <= kinds
    else:
        assert not kinds & {"StreamStart", "StreamStop", "StreamCommit", "StreamAbort"}
    if MANIFEST["captures"][name]["two_phase"]:
        assert {"BeginPrepare", "Prepare", "CommitPrepared", "RollbackPrepared", "StreamPrepare"} <= kinds


@pytest.mark.parametrize("name", CAPTURES)
def test_decoded_workload_matches_manifest(name: str) -> None:
    replayer = replay(name)
    got = [e for e in replayer.events if e.get("prefix") != "capture"]  # the capture's end marker
    want = expected_events(name)
    assert len(got) == len(want), [e.get("label") for e in want]
    for g, w in zip(got, want, strict=True):
        label = w.get("label", w["kind"])
        assert g["kind"] == w["kind"], label
        if w["kind"] == "message":
            assert g == {k: w[k] for k in ("kind", "transactional", "prefix", "content_hex")}
            continue
        assert g["xid"] == w["xid"], label
        assert g.get("messages", []) == w.get("messages", []), label
        assert g.get("origin") == w.get("origin"), label
        assert len(g["changes"]) == len(w["changes"]), label
        for i, (gc, wc) in enumerate(zip(g["changes"], w["changes"], strict=True)):
            if MANIFEST["captures"][name]["binary"] and wc.get("new", {}).get("c_point"):
                # types without a converter pass through as raw bytes in binary format (point: 2 x float8)
                wc = {**wc, "new": {**wc["new"], "c_point": {"$hex": struct.pack(">dd", 1.5, 2).hex()}}}
            assert gc == wc, f"{label}: change {i}"
        if MANIFEST["captures"][name]["streaming"] and w.get("streamed"):
            assert g["streamed"], label
            assert g["aborted_subxids"] == w.get("aborted_subxids", []), label
        if MANIFEST["captures"][name]["two_phase"]:
            assert g.get("gid") == w.get("gid"), label
    aborted = [a["xid"] for a in replayer.aborted]
    want_aborted = [e["xid"] for e in MANIFEST["events"] if e["kind"] == "aborted"]
    if MANIFEST["captures"][name]["two_phase"]:
        assert aborted == want_aborted
    elif MANIFEST["captures"][name]["streaming"]:
        assert aborted == want_aborted[:1]  # the large rollback; a rolled-back PREPARE never shows
    else:
        assert aborted == []


@pytest.mark.parametrize("name", CAPTURES)
def test_domains_enums_and_user_arrays_resolve_from_type_messages_alone(name: str) -> None:
    """Without pg_type rows: the Type message of a domain names its base type, so it still converts."""
    replayer = replay(name, with_pg_type=False)
    first = replayer.events[0]["changes"][0]["new"]
    if MANIFEST["captures"][name]["binary"]:
        assert first["c_posint"] == 42
        assert first["c_mood"] == {"$hex": b"happy".hex()}  # binary enum: unknown without pg_type
    else:
        assert first["c_posint"] == 42
        assert first["c_mood"] == "happy"
        assert first["c_mood_arr"] == ["sad", "happy"]


def test_type_message_of_a_domain_names_its_base_type() -> None:
    types = [m for m in all_messages("v1") if isinstance(m, po.Type)]
    by_oid = {t["oid"]: t for t in MANIFEST["types"]}
    posint = next(t for t in types if by_oid.get(t.oid, {}).get("name") == "posint")
    assert (posint.namespace, posint.name) == ("pg_catalog", "int4")
    mood = next(t for t in types if by_oid.get(t.oid, {}).get("name") == "mood")
    assert (mood.namespace, mood.name) == ("cap", "mood")


def test_replica_identity_in_relation_messages() -> None:
    rels = {m.name: m for m in all_messages("v1") if isinstance(m, po.Relation)}
    assert rels["ri_default"].replica_identity == po.REPLICA_IDENTITY_DEFAULT
    assert [c.is_key for c in rels["ri_default"].columns] == [True, False, False]
    assert rels["ri_full"].replica_identity == po.REPLICA_IDENTITY_FULL
    assert all(c.is_key for c in rels["ri_full"].columns)  # FULL flags every column, not the primary key
    assert rels["ri_index"].replica_identity == po.REPLICA_IDENTITY_INDEX
    assert [c.name for c in rels["ri_index"].columns if c.is_key] == ["code"]
    assert rels["ri_nothing"].replica_identity == po.REPLICA_IDENTITY_NOTHING
    assert not any(c.is_key for c in rels["ri_nothing"].columns)
    assert rels["all_types"].qualified_name == "cap.all_types"
    typmods = {c.name: c.type_modifier for c in rels["all_types"].columns}
    assert typmods["c_time3"] == 3 and typmods["c_tstz0"] == 0 and typmods["c_bit"] == 10
    assert typmods["c_numeric_s"] == ((10 << 16) | 2) + 4 and typmods["c_text"] == -1


def test_unchanged_toast_is_a_distinct_marker() -> None:
    for name in CAPTURES:
        updates = [m for m in all_messages(name) if isinstance(m, po.Update) and po.UNCHANGED in m.new]
        assert len(updates) == 2, name  # one per toast table, DEFAULT and FULL
        for upd in updates:
            assert upd.new[1] is po.UNCHANGED and upd.new[0] is not None
            if upd.old is not None:  # REPLICA IDENTITY FULL: the old row arrives whole, detoasted
                assert upd.old_kind == "O" and isinstance(upd.old[1], str | bytes) and len(upd.old[1]) == 3500


def test_stream_messages_carry_xids() -> None:
    msgs = all_messages("v2")
    subtx = next(e for e in MANIFEST["events"] if e.get("aborted_subxids"))
    top, (sub,) = subtx["xid"], subtx["aborted_subxids"]
    in_block: int | None = None
    dml_xids: set[int] = set()
    for m in msgs:
        if isinstance(m, po.StreamStart):
            in_block = m.xid
        elif isinstance(m, po.StreamStop):
            in_block = None
        elif isinstance(m, po.Insert):
            assert (m.xid is None) == (in_block is None)
            if in_block == top:
                assert m.xid is not None
                dml_xids.add(m.xid)
    assert top in dml_xids and sub in dml_xids
    assert len(dml_xids) == 3  # the top transaction, the rolled-back savepoint, the savepoint re-opened after
    aborts = [m for m in msgs if isinstance(m, po.StreamAbort)]
    assert [(a.xid, a.subxid) for a in aborts][-1] == (top, sub)
    assert aborts[0].whole_transaction and aborts[0].abort_lsn is None


def test_decoding_is_repeatable_and_messages_are_frozen() -> None:
    payload, in_stream = payloads("v1")[1]
    a = po.decode_message(payload, in_stream=in_stream)
    assert a == po.decode_message(memoryview(bytearray(payload)), in_stream=in_stream)
    with pytest.raises(AttributeError):
        a.xid = 1  # type: ignore[misc,union-attr]


# ---- synthetic messages (forms the captures cannot contain on PG 15) ---------------------------


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def test_stream_abort_v4_with_lsn_and_timestamp() -> None:
    msg = po.decode_message(b"A" + struct.pack(">IIQq", 7, 9, 0x1_0000_0010, 123456), in_stream=False)
    assert msg == po.StreamAbort(7, 9, 0x1_0000_0010, 123456)
    assert not msg.whole_transaction
    with pytest.raises(CdcError):
        po.decode_message(b"A" + struct.pack(">IIQ", 7, 9, 1), in_stream=False)


def test_messages_inside_a_stream_take_an_xid() -> None:
    typ = po.decode_message(b"Y" + struct.pack(">II", 5, 16400) + cstr("") + cstr("int4"), in_stream=True)
    assert typ == po.Type(5, 16400, "pg_catalog", "int4")
    m = po.decode_message(
        b"M" + struct.pack(">IBQ", 5, 1, 99) + cstr("p") + struct.pack(">i", 2) + b"hi", in_stream=True
    )
    assert m == po.LogicalMessage(5, True, 99, "p", b"hi")
    t = po.decode_message(b"T" + struct.pack(">IiBII", 5, 2, 3, 10, 11), in_stream=True)
    assert t == po.Truncate(5, 3, (10, 11)) and t.cascade and t.restart_identity
    d = po.decode_message(
        b"D" + struct.pack(">II", 5, 10) + b"O" + struct.pack(">h", 1) + b"n", in_stream=True
    )
    assert d == po.Delete(5, 10, "O", (None,))


def test_binary_and_null_columns_and_update_forms() -> None:
    tup = (
        struct.pack(">h", 4)
        + b"b"
        + struct.pack(">i", 2)
        + b"\x00\x01"
        + b"n"
        + b"u"
        + b"t"
        + struct.pack(">i", 0)
    )
    ins = po.decode_message(b"I" + struct.pack(">I", 3) + b"N" + tup, in_stream=False)
    assert ins == po.Insert(None, 3, (b"\x00\x01", None, po.UNCHANGED, ""))
    key = struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + b"1"
    upd = po.decode_message(b"U" + struct.pack(">I", 3) + b"K" + key + b"N" + key, in_stream=False)
    assert upd == po.Update(None, 3, "K", ("1",), ("1",))


def test_two_phase_messages() -> None:
    head = struct.pack(">QQqI", 1, 2, 3, 4) + cstr("g")
    assert po.decode_message(b"b" + head, in_stream=False) == po.BeginPrepare(1, 2, 3, 4, "g")
    body = struct.pack(">BQQqI", 0, 1, 2, 3, 4) + cstr("g")
    assert po.decode_message(b"P" + body, in_stream=False) == po.Prepare(0, 1, 2, 3, 4, "g")
    assert po.decode_message(b"K" + body, in_stream=False) == po.CommitPrepared(0, 1, 2, 3, 4, "g")
    assert po.decode_message(b"p" + body, in_stream=False) == po.StreamPrepare(0, 1, 2, 3, 4, "g")
    rb = struct.pack(">BQQqqI", 0, 1, 2, 3, 4, 5) + cstr("g")
    assert po.decode_message(b"r" + rb, in_stream=False) == po.RollbackPrepared(0, 1, 2, 3, 4, 5, "g")


def test_unchanged_marker_is_a_singleton_without_truth_value() -> None:
    import copy
    import pickle

    assert po.UnchangedToast() is po.UNCHANGED
    assert copy.deepcopy(po.UNCHANGED) is po.UNCHANGED
    assert pickle.loads(pickle.dumps(po.UNCHANGED)) is po.UNCHANGED
    assert repr(po.UNCHANGED) == "UNCHANGED"
    with pytest.raises(TypeError):
        bool(po.UNCHANGED)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"Z\x00", "unknown"),
        (b"B" + b"\x00" * 10, "Begin"),
        (b"I" + struct.pack(">I", 1) + b"X", "expected 'N'"),
        (
            b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 99) + b"ab",
            "runs past",
        ),
        (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"q", "unknown column kind"),
        (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", -1), "negative column count"),
        (
            b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + b"\xff",
            "UTF-8",
        ),
        (b"R" + struct.pack(">I", 1) + b"public", "unterminated"),
        (b"T" + struct.pack(">iB", 1_000_000_000, 0), "runs past"),
        (b"C" + b"\x00" * 25 + b"extra", "trailing"),
        (b"E" + b"x", "trailing"),
    ],
)
def test_corrupt_input_raises_decode_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(CdcError) as info:
        po.decode_message(data, in_stream=False)
    assert info.value.kind is ErrorKind.DECODE
    assert fragment in info.value.message
    if data:
        assert "offset" in info.value.message


def test_decoder_checks_stream_nesting() -> None:
    decoder = po.Decoder()
    start = b"S" + struct.pack(">IB", 1, 1)
    decoder.decode(start)
    with pytest.raises(CdcError):
        decoder.decode(start)
    decoder = po.Decoder()
    with pytest.raises(CdcError):
        decoder.decode(b"E")


# ---- walsender framing -------------------------------------------------------------------------


def test_copy_data_framing() -> None:
    x = parse_copy_data(b"w" + struct.pack(">QQq", 1, 2, 3) + b"E")
    assert isinstance(x, XLogData) and (x.wal_start, x.wal_end, x.send_time, bytes(x.payload)) == (
        1,
        2,
        3,
        b"E",
    )
    k = parse_copy_data(b"k" + struct.pack(">QqB", 10, 20, 1))
    assert k == Keepalive(10, 20, True)
    for bad in (b"", b"w\x00", b"k" + b"\x00" * 5, b"x123"):
        with pytest.raises(CdcError) as info:
            parse_copy_data(bad)
        assert info.value.kind is ErrorKind.DECODE


def test_standby_status_update_bytes() -> None:
    msg = standby_status_update(0x10, 0x20, 0x30, clock=1234, reply_requested=True)
    assert msg == b"r" + struct.pack(">QQQqB", 0x10, 0x20, 0x30, 1234, 1)
    assert len(standby_status_update(1, 1, 1)) == 34
    with pytest.raises(CdcError):
        standby_status_update(-1, 0, 0)
    assert abs(pg_to_unix_ms(pg_now()) - (pg_now() + PG_EPOCH_UNIX_US) // 1000) < 5_000


# ---- fuzzing -----------------------------------------------------------------------------------

CORPUS = [p for name in CAPTURES for p in payloads(name)[:400:3]]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_decode_error(data: bytes, in_stream: bool) -> None:
    try:
        po.decode_message(data, in_stream=in_stream)
    except CdcError as exc:
        assert exc.kind is ErrorKind.DECODE


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_random_bytes(data: bytes, in_stream: bool) -> None:
    decode_or_decode_error(data, in_stream)


@FUZZ
@given(st.binary(max_size=60), st.sampled_from(sorted(set(b"BCORYIUDTMSEcAbPKrp"))), st.booleans())
def test_fuzz_random_bodies_of_every_type(body: bytes, kind: int, in_stream: bool) -> None:
    decode_or_decode_error(bytes([kind]) + body, in_stream)


@FUZZ
@given(st.sampled_from(CORPUS), st.data())
def test_fuzz_mutated_and_truncated_captures(sample: tuple[bytes, bool], data: st.DataObject) -> None:
    payload, in_stream = sample
    cut = data.draw(st.integers(0, len(payload)))
    decode_or_decode_error(payload[:cut], in_stream)
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    decode_or_decode_error(bytes(mutated), in_stream)
    decode_or_decode_error(payload, not in_stream)  # the wrong stream state must not crash either


@FUZZ
@given(st.binary(max_size=40))
def test_fuzz_copy_data(data: bytes) -> None:
    try:
        parse_copy_data(data)
    except CdcError as exc:
        assert exc.kind is ErrorKind.DECODE
