"""readers/wire.py: items survive the trip to a decode process and back field for field, frames split
correctly however the bytes arrive, and a table schema keeps one identity per version."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Transaction, Undecodable
from cdc_logs.errors import CdcError
from cdc_logs.position import Lsn
from cdc_logs.readers.postgres.changes import WindowMark
from cdc_logs.readers.wire import Frames, ItemDecoder, ItemEncoder, frame, unframe
from cdc_logs.schema import Column, TableSchema


def _schema(version: int = 1) -> TableSchema:
    columns = (Column("id", "int4", key=True, optional=False), Column("v", "text"))
    return TableSchema("db", "public", "t", columns, version=version)


def _event(n: int, schema: TableSchema | None, **kw: object) -> ChangeEvent:
    source = SourceInfo(
        "postgresql", "p", "db", "t", schema="public", ts_ms=5, extra={"txId": 9, "lsn": n, "xmin": None}
    )
    fields: dict[str, object] = {
        "before": {"id": n, "v": None},
        "after": {"id": n, "v": "é\x00", "arr": [1, [2, None]], "f": 1.5, "b": True},
        "key": {"id": n},
        "ts_ms": 7,
        "transaction": Transaction("9:100", n, n),
        "unchanged": ("big",),
        "position": Lsn("sys", 100, 50 + n, event=1),
        "boundary": False,
        "schema": schema,
        "key_change": n % 2 == 0,
    }
    fields.update(kw)
    return ChangeEvent(Op.UPDATE, source, **fields)  # type: ignore[arg-type]


def _trip(
    items: list[object], decoder: ItemDecoder | None = None, encoder: ItemEncoder | None = None
) -> list[object]:
    encoder = encoder or ItemEncoder()
    decoder = decoder or ItemDecoder()
    body = frame(("items", 1, [encoder.encode(i) for i in items]))  # type: ignore[arg-type]
    frames = Frames().feed(body)
    assert len(frames) == 1
    return [decoder.decode(data) for data in unframe(frames[0])[2]]


def _same(a: object, b: object) -> None:
    assert type(a) is type(b)
    if isinstance(a, ChangeEvent):
        assert isinstance(b, ChangeEvent)
        assert a == b  # dataclass equality: every compared field
        assert a.to_json() == b.to_json()
        assert a.key_change == b.key_change
        assert (a.schema is None) == (b.schema is None)
    else:
        assert a == b


def test_every_item_kind_comes_back_equal() -> None:
    schema = _schema()
    items: list[object] = [
        _event(1, schema),
        _event(2, schema, before=None, transaction=None, unchanged=()),
        _event(3, None, content={"prefix": "app", "content": "eA=="}, position=Lsn("sys", 300)),
        Heartbeat(Lsn("sys", 400)),
        Undecodable(
            Lsn("sys", 100, 60, event=2), "public.t", "column v: invalid", boundary=False, raw=b"[1]"
        ),
        WindowMark("chunk-1", True, Lsn("sys", 100, 70, event=1), Lsn("sys", 100, 70, event=1)),
    ]
    back = _trip(items)
    for a, b in zip(items, back, strict=True):
        _same(a, b)


def test_one_schema_object_per_version_and_the_readers_own_object_after_a_switch() -> None:
    v1, v2 = _schema(1), _schema(2)
    encoder, decoder = ItemEncoder(), ItemDecoder()
    first = _trip([_event(1, v1), _event(2, v1)], decoder, encoder)
    second = _trip([_event(3, v1), _event(4, v2)], decoder, encoder)  # v1 is sent once, then by number
    got = [e.schema for e in first + second]  # type: ignore[attr-defined]
    assert got[0] is got[1] is got[2] and got[3] is not got[0]
    assert got[3].version == 2 and got[0].columns == v1.columns
    known = _schema(1)  # what the reader made before the process took over: an equal, other object
    switched = _trip([_event(5, _schema(1))], ItemDecoder([known]))
    assert switched[0].schema is known  # type: ignore[attr-defined]


def test_a_value_marshal_cannot_carry_falls_back_to_pickle_for_its_frame() -> None:
    odd = _event(1, None, after={"id": 1, "amount": Decimal("12.50")})
    body = frame(("items", 1, [ItemEncoder().encode(odd)]))
    assert body[4:5] == b"P"
    assert frame(("items", 1, [ItemEncoder().encode(_event(2, None))]))[4:5] == b"M"
    back = _trip([odd])
    _same(odd, back[0])


def test_frames_split_correctly_however_the_bytes_arrive() -> None:
    messages = [("feed", n, [(n, bytes([n]) * n)]) for n in range(1, 60)]
    stream = b"".join(frame(m) for m in messages)
    for step in (1, 3, 7, 4096):
        frames = Frames()
        got = []
        for at in range(0, len(stream), step):
            got += [unframe(b) for b in frames.feed(stream[at : at + step])]
        assert got == messages and not frames.partial


def test_an_unknown_codec_or_kind_is_an_error_not_a_guess() -> None:
    with pytest.raises(CdcError, match="unknown codec"):
        unframe(b"Zxx")
    with pytest.raises(CdcError, match="unknown kind"):
        ItemDecoder().decode(("q",))


def test_an_unpickled_schema_has_this_processes_fingerprint(tmp_path: Path) -> None:
    """String hashes differ between processes: a schema pickled in another one (the decode process, a
    fan-out spool written before a restart) must key the same caches as an equal schema made here."""
    blob = tmp_path / "schema.pickle"
    code = (
        "import pickle, sys; from tests.unit.test_reader_wire import _schema; "
        "open(sys.argv[1], 'wb').write(pickle.dumps(_schema()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code, str(blob)], check=True, env=env, cwd=root)
    other = pickle.loads(blob.read_bytes())
    assert other.fingerprint == _schema().fingerprint
    assert other.column("id") is not None and other.key == ("id",)


def test_every_readers_position_type_comes_back_equal_with_its_state() -> None:
    from cdc_logs.position import BinlogPosition, Position

    positions: list[Position] = [
        Lsn("sys", 100, 50, event=3),
        Lsn("sys", 100, incremental='{"t":1}', captured=("public.a", "public.b")),
        BinlogPosition(
            "mariadb:server_id=1,domain_id=0", file="b.000001", pos=4, gtid="0-1-42", flavor="mariadb"
        ),
        BinlogPosition("mysql:uuid", file="b.1", pos=9, gtid="uuid:1-5", event=2, snapshot_pending=True),
    ]
    items = [Heartbeat(p) for p in positions]
    items.append(
        Undecodable(positions[2], "db.t", "bad", raw=b"x", hint="fix it", origin={"topic": "t", "offset": 3})
    )
    back = _trip(items)
    for a, b in zip(items, back, strict=True):
        _same(a, b)
        assert type(a.position) is type(b.position) and a.position.__dict__ == b.position.__dict__  # type: ignore[attr-defined]
