"""File sink against the real filesystem: fsync, rotation, torn lines (the contract suite runs it
through tests/contract/sinks/file.py)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from cdc_logs.errors import CdcError
from cdc_logs.sinks.file import FileSink
from tests.helpers import make_event


def test_rotation_keeps_every_line_in_order(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.jsonl", max_bytes=2048)
    sink.open()
    for start in range(0, 100, 10):
        sink.write([make_event(n) for n in range(start, start + 10)])
    sink.close()
    segments = sink.segments()
    assert len(segments) >= 3
    names = [p.name for p in segments]
    assert names == sorted(names)
    seen = [
        orjson.loads(line)["source"]["seq"]
        for p in [*segments, sink.path]
        for line in p.read_bytes().splitlines()
    ]
    assert seen == list(range(100))
    assert all(p.stat().st_size <= 2048 + 1024 for p in segments)


def test_rotation_prunes_old_segments(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.jsonl", max_bytes=1024, max_files=2)
    sink.open()
    for n in range(40):
        sink.write([make_event(n)])
    sink.close()
    assert len(sink.segments()) == 2


def test_write_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = FileSink(tmp_path / "c.jsonl")
    sink.open()
    sink.write([make_event(1)])
    assert synced, "write() returned without fsync"
    sink.close()


def test_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = FileSink(blocker / "sub" / "c.jsonl")
    with pytest.raises(CdcError) as err:
        sink.open()
    assert "destination.path" in (err.value.hint or "")


def test_a_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    sink = FileSink(path)
    sink.open()
    sink.write([make_event(1), make_event(2)])
    sink.close()
    with open(path, "ab") as fh:
        fh.write(b'{"before":null,"aft')  # killed mid-write
    sink = FileSink(path)
    sink.open()
    sink.write([make_event(3)])
    sink.close()
    assert [orjson.loads(line)["source"]["seq"] for line in path.read_bytes().splitlines()] == [1, 2, 3]


def test_schemas_writes_the_jsonconverter_form(tmp_path: Path) -> None:
    from cdc_logs.schema import Column, TableSchema

    event = make_event(1)
    columns = (Column("id", "int64", optional=False, key=True), Column("v", "int64"))
    event.schema = TableSchema("db", "main", "t", columns)
    sink = FileSink(tmp_path / "s.jsonl", schemas=True)
    sink.open()
    sink.write([event])
    with pytest.raises(CdcError, match="no table schema"):
        sink.write([make_event(2)])  # an event nothing describes is refused, not written half-described
    sink.close()
    (line,) = sink.path.read_bytes().splitlines()
    record = orjson.loads(line)
    assert record["payload"] == orjson.loads(event.to_json())
    assert record["schema"]["name"] == "p.main.t.Envelope"
    after = {f["field"]: f for f in record["schema"]["fields"]}["after"]
    assert [f["field"] for f in after["fields"]] == ["id", "v"]
