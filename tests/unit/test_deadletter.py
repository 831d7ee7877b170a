"""The one dead-letter record format (cdc_logs/deadletter.py): what a record holds, that it reads back
whole, that bytes survive, that reasons are redacted while the data is kept, and that the writer keeps
lines whole under concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from cdc_logs import deadletter
from cdc_logs.deadletter import DeadLetterDir, DeadLetterRecord, DeadLetterWriter, Stage
from cdc_logs.envelope import Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability import redact
from cdc_logs.position import KafkaOffsets, Watermark
from tests.helpers import SERVER, make_event

SECRET = "Hunter2-canary-7f3a"

COMMON = {"format_version", "ts_ms", "stage", "component", "kind", "reason", "hint", "position", "table",
          "key", "envelope", "raw", "origin"}  # fmt: skip


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    redact.forget_all()


def test_a_refused_event_holds_what_a_replay_needs_and_reads_back_whole(tmp_path: Path) -> None:
    event = make_event(7)
    error = CdcError(ErrorKind.SINK_REJECTED, "value out of range", "widen the column")
    path = DeadLetterDir(tmp_path).write("warehouse", [event], error)
    assert path == tmp_path / "warehouse.deadletter.jsonl"
    (line,) = path.read_bytes().splitlines()
    data = orjson.loads(line)
    assert set(data) == COMMON and data["format_version"] == 1
    assert data["stage"] == "sink" and data["component"] == "warehouse" and data["kind"] == "sink_rejected"
    assert data["reason"] == "value out of range" and data["hint"] == "widen the column"
    assert data["envelope"] == orjson.loads(event.to_json()), "the whole envelope, as the sink got it"
    assert data["key"] == {"id": 7} and data["table"] == "main.t"
    assert data["position"] == orjson.loads(Watermark(SERVER, (7,)).encode()), "as stored offsets"
    assert data["raw"] is None and data["origin"] == {}
    (record,) = deadletter.read(path)
    assert record.position == event.position and record.envelope == data["envelope"]
    assert record.to_dict() == data, "a record reads back to exactly what was written"


def test_raw_bytes_are_text_when_utf8_else_base64_and_read_back_unchanged(tmp_path: Path) -> None:
    position = KafkaOffsets("cluster", (("app.public.orders:0", 6),), "app.public.orders:0")
    binary = b"\x00\xff caf\xe9"
    item = Undecodable(
        position,
        "app.public.orders",
        "value is not JSON",
        raw=binary,
        origin={"topic": "app.public.orders", "partition": 0, "offset": 5, "key": b'{"id": 1}'},
    )
    path = DeadLetterDir(tmp_path).write_undecodable("debezium", item)
    assert path.name == "debezium.undecodable.jsonl"
    data = orjson.loads(path.read_bytes())
    assert data["stage"] == "source" and data["kind"] == "decode" and data["envelope"] is None
    assert data["raw"]["encoding"] == "base64" and data["raw"]["data"] != binary.decode("latin-1")
    assert data["origin"]["key"] == {"encoding": "utf-8", "data": '{"id": 1}'}, "readable when it is text"
    assert data["hint"] == deadletter.UNDECODABLE_HINT
    (record,) = deadletter.read(path)
    assert record.raw == binary and record.origin["key"] == b'{"id": 1}' and record.origin["offset"] == 5
    assert record.position == position
    assert deadletter.encode_bytes("café".encode()) == {"encoding": "utf-8", "data": "café"}


def test_reasons_are_redacted_but_the_data_is_kept_as_it_is(tmp_path: Path) -> None:
    redact.register(SECRET)
    event = make_event(1)
    assert event.after is not None
    event.after["note"] = f"the customer wrote {SECRET}"  # data: kept, it is what a replay sends
    error = CdcError(
        ErrorKind.SINK_REJECTED,
        f"HTTP 400 from https://hook:{SECRET}@example.com/x: echo password={SECRET}",
        f"check token={SECRET}",
    )
    path = DeadLetterWriter(tmp_path / "hook.jsonl").write([deadletter.refused("hook", event, error)])
    data = orjson.loads(path.read_bytes())
    assert SECRET not in data["reason"] and "***" in data["reason"] and "example.com" in data["reason"]
    assert SECRET not in data["hint"]
    assert data["envelope"]["after"]["note"] == f"the customer wrote {SECRET}"


def test_concurrent_writers_of_one_file_keep_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "shared.jsonl"
    error = CdcError(ErrorKind.SINK_REJECTED, "refused")

    def write(n: int) -> None:
        writer = DeadLetterWriter(path)  # a writer each: the lock is the file's, not the object's
        for i in range(20):
            writer.write([deadletter.refused(f"s{n}", make_event(n * 100 + i), error)] * 3)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = list(deadletter.read(path))
    assert len(records) == 4 * 20 * 3
    for n in range(4):
        mine = [r.envelope["source"]["seq"] for r in records if r.component == f"s{n}" and r.envelope]
        assert mine == [n * 100 + i for i in range(20) for _ in range(3)], "in order per writer"


def test_an_unknown_format_version_is_refused() -> None:
    with pytest.raises(ValueError, match="format_version"):
        DeadLetterRecord.from_dict({"sink": "old", "reason": "x", "envelope": {}})
    record = DeadLetterRecord(Stage.SINK, "s", ErrorKind.SINK_REJECTED, "r", ts_ms=1)
    assert DeadLetterRecord.from_json(record.to_json()) == record
