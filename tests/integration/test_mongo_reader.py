"""The MongoDB reader against the stack's server: mongo-java-server 1.47 (a wire-compatible server with
collection change streams and resume tokens; docs/stack.md).

What mongo-java-server cannot show (sessions and transactions, database and deployment streams,
`updateDescription`, pre-images, `ns` in events, lost history) is tested on recorded mongod change
documents in tests/unit/test_mongo_convert.py. Its update events carry the update specification as
`documentKey` and, unless the lookup finds the document, the `$set` fields as `fullDocument`: the
updates here `$set` the `_id` too (a no-op on a real server) so the event names its document.
Every collection is unique and dropped afterwards.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat
from cdc_logs.position import MongoResumeToken
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.mongo.reader import MongoReader
from tests.integration.mongo_support import drop_and_trim

pymongo = pytest.importorskip("pymongo")

DB = "cdc_it"


def next_second() -> None:
    """Wait for the next wall-clock second. mongo-java-server gives no postBatchResumeToken, so a
    stream's start point is the aggregate's operationTime, which the stack's launcher gives at second
    resolution (t, 0): changes of that very second come again (at-least-once). Writes made before it
    stay out of a stream started after this."""
    time.sleep(1.02 - time.time() % 1)


@pytest.fixture
def coll(mongo_uri: str, unique_name: str) -> Iterator[Any]:
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    collection = client[DB][unique_name]
    try:
        yield collection
    finally:
        drop_and_trim(client, DB, collection.name)
        client.close()


def test_tail_prints_insert_update_delete(mongo_uri: str, coll: Any) -> None:
    """The issue's done-when: `cdc-logs tail --source mongo ... --format json --limit 3`."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cdc_logs", "tail", "--source", "mongo", "--dsn", mongo_uri),
            *("--collection", f"{DB}.{coll.name}", "--format", "json", "--limit", "3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while "mongodb streaming" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        coll.insert_one({"_id": 1, "email": "a@x", "n": 5})
        coll.update_one({"_id": 1}, {"$set": {"_id": 1, "email": "b@x", "n": 6}})
        coll.delete_one({"_id": 1})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [e["op"] for e in lines] == ["c", "u", "d"]
    # Debezium's MongoDB shape: documents as relaxed Extended JSON text.
    assert lines[0]["before"] is None and orjson.loads(lines[0]["after"]) == {
        "_id": 1,
        "email": "a@x",
        "n": 5,
    }
    assert orjson.loads(lines[1]["after"]) == {"_id": 1, "email": "b@x", "n": 6}
    # No pre-images on this server: the delete's `before` is the document key (Extended JSON text), so
    # the line alone names the deleted document (Debezium's connector puts it in the Kafka key only).
    assert lines[2]["after"] is None and orjson.loads(lines[2]["before"]) == {"_id": 1}
    # in every event, null unless the server describes an update (mongo-java-server never does)
    assert [e["updateDescription"] for e in lines] == [None, None, None]
    ords = [e["source"]["ord"] for e in lines]
    assert ords == sorted(ords) and len(set(ords)) == 3
    for e in lines:
        src = e["source"]
        assert src["connector"] == "mongodb" and src["db"] == DB and src["collection"] == coll.name
        assert src["snapshot"] == "false" and src["ts_ms"] > 1_600_000_000_000
        assert src["lsid"] is None and src["txnNumber"] is None and e["transaction"] is None


class Collector:
    def __init__(self, reader: MongoReader, start: Any = None) -> None:
        self.reader, self.items, self.error = reader, [], None  # type: ignore[var-annotated]
        self.committed: MongoResumeToken | None = None
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, start: Any) -> None:
        try:
            for item in self.reader.stream(start):
                self.items.append(item)
                if item is not None and item.boundary:
                    self.committed = item.position  # type: ignore[assignment]
        except BaseException as exc:
            self.error = exc

    def events(self) -> list[ChangeEvent]:
        return [i for i in list(self.items) if isinstance(i, ChangeEvent)]

    def wait(self, count: int, limit: float = 20) -> None:
        deadline = time.monotonic() + limit
        while len(self.events()) < count:
            assert self.error is None, repr(self.error)
            assert time.monotonic() < deadline, f"{len(self.events())} of {count} events"
            time.sleep(0.05)

    def streaming(self) -> None:
        deadline = time.monotonic() + 20
        while not any(isinstance(i, Heartbeat) or i is None for i in list(self.items)):
            assert self.error is None and time.monotonic() < deadline
            time.sleep(0.05)

    def stop(self) -> None:
        self.reader.stop()
        self._thread.join(20)
        self.reader.close()


def _reader(uri: str, name: str, **kw: Any) -> MongoReader:
    reader = MongoReader(
        uri, collections=[f"{DB}.{name}"], database=None, pipeline_name="it", document_format="json",
        max_await_ms=100, **kw,
    )  # fmt: skip
    reader.open()
    return reader


def test_snapshot_then_stream_then_resume_from_the_committed_token(mongo_uri: str, coll: Any) -> None:
    coll.insert_many([{"_id": i, "v": i} for i in range(1, 6)])
    next_second()
    first = Collector(_reader(mongo_uri, coll.name, snapshot=True))
    try:
        first.wait(5)
        coll.insert_one({"_id": 6, "v": 6})
        coll.update_one({"_id": 2}, {"$set": {"_id": 2, "v": 20}})
        first.wait(7)
    finally:
        first.stop()
    events = first.events()
    assert [e.source.snapshot for e in events[:5]] == ["first", "true", "true", "true", "last"]
    assert [e.after for e in events[:5]] == [{"_id": i, "v": i} for i in range(1, 6)]
    assert [(e.op.value, e.key) for e in events[5:]] == [("c", {"_id": 6}), ("u", {"_id": 2})]
    assert events[6].after == {"_id": 2, "v": 20}
    assert ContractChecker().check_all(first.items) == []
    beat = first.items[0]
    assert isinstance(beat, Heartbeat) and beat.position.snapshot_pending  # type: ignore[attr-defined]
    committed = first.committed
    assert isinstance(committed, MongoResumeToken) and committed.token and not committed.snapshot_pending

    # Changes made while no reader runs arrive after a restart from the committed token, once.
    coll.delete_one({"_id": 3})
    coll.insert_one({"_id": 7, "v": 7})
    second = Collector(_reader(mongo_uri, coll.name, snapshot=True), committed)
    try:
        second.wait(2)
        time.sleep(0.5)  # nothing more may come
    finally:
        second.stop()
    again = second.events()
    assert [(e.op.value, e.key) for e in again] == [("d", {"_id": 3}), ("c", {"_id": 7})]
    assert again[0].before == {"_id": 3}  # json format: the key stands in for the missing pre-image


def test_a_drop_is_logged_and_the_stream_goes_on(mongo_uri: str, coll: Any) -> None:
    coll.insert_one({"_id": 0})
    next_second()
    reader = _reader(mongo_uri, coll.name, snapshot=False)
    collector = Collector(reader)
    try:
        collector.streaming()
        coll.drop()
        coll.insert_one({"_id": 1, "v": 1})  # the collection made again: captured again
        collector.wait(1)
    finally:
        collector.stop()
    assert [(e.op.value, e.key) for e in collector.events()] == [("c", {"_id": 1})]
    beats = [i for i in collector.items if isinstance(i, Heartbeat)]
    assert len(beats) >= 2  # the start point, then the drop's own position


def test_a_position_from_another_server_is_refused(mongo_uri: str, coll: Any) -> None:
    from cdc_logs.errors import CdcError, ErrorKind

    reader = _reader(mongo_uri, coll.name)
    try:
        with pytest.raises(CdcError) as exc:
            next(iter(reader.stream(MongoResumeToken("rs:other:1", token="6b0000000000000001", ts=1, inc=1))))
    finally:
        reader.close()
    assert exc.value.kind is ErrorKind.SERVER_MISMATCH and "offsets reset" in exc.value.hint


def test_doctor_checks_the_source(mongo_uri: str, coll: Any) -> None:
    coll.insert_one({"_id": 1})
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", "--source", "mongo", "--dsn", mongo_uri,
         "--collection", f"{DB}.{coll.name}", "--collection", f"{DB}.{coll.name}_missing"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   change stream: opened on" in result.stdout
    assert "replica set:" in result.stdout
    # the window in hours, its first entry as an ISO time (not epoch seconds)
    assert re.search(r"oplog window: [\d.]+ h of oplog \(first entry \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, last "
                     r"entry [\d.]+ [sh] ago\)", result.stdout), result.stdout  # fmt: skip
    assert f"ok   collection {DB}.{coll.name}: pre- and post-images off" in result.stdout
    assert f"collection {DB}.{coll.name}_missing: does not exist (yet)" in result.stdout
    # (no server at all: tests/unit/test_mongo_convert.py, with a shorter timeout)
    for dsn in (f"{mongo_uri.rstrip('/')}/?replicaSet=rs0",):
        wrong = subprocess.run(
            [sys.executable, "-m", "cdc_logs", "doctor", "--source", "mongo", "--dsn", dsn],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert wrong.returncode == 1 and "FAIL connection" in wrong.stdout, wrong.stdout
        assert "check the server address" in wrong.stdout and "reconnects" not in wrong.stdout
    assert "remove replicaSet= from the URI" in wrong.stdout  # mongo-java-server is no replica set member


def test_a_missing_collection_is_said_when_the_reader_opens(mongo_uri: str, unique_name: str) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        reader = _reader(mongo_uri, f"{unique_name}_missing")
        reader.close()
    said = [e for e in logs if e["event"] == "mongodb collection does not exist (yet)"]
    assert [e["collection"] for e in said] == [f"{DB}.{unique_name}_missing"], logs


def test_doctor_checks_the_stored_resume_token_of_a_pipeline(
    mongo_uri: str, coll: Any, tmp_path: Any
) -> None:
    """`cdc-logs run` stores a resume token; `doctor -c` resumes a stream from it to check it."""
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: mgdoc_{coll.name}
source: {{type: mongodb, uri: "{mongo_uri}", collections: [{DB}.{coll.name}], snapshot: false}}
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
sync: {{mode: continuous}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while "mongodb streaming" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None
        coll.insert_one({"_id": 1})
        while not out.exists() or not out.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # the checkpoint follows the file
    finally:
        proc.terminate()
        proc.wait(30)
    shown = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "offsets", "show", "-c", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert "mongo" in shown.stdout, shown.stdout + shown.stderr
    result = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "doctor", "-c", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert "ok   stored position:" in result.stdout and "can be resumed" in result.stdout, result.stdout


def test_unset_and_replace_clear_the_column_in_the_sql_target(
    mongo_uri: str, coll: Any, tmp_path: Any
) -> None:
    """document_format: json into the SQL apply sink: a field removed by $unset or by a replace is
    NULL in the target row, not the value it had."""
    import sqlalchemy as sa

    from cdc_logs.sinks.sql_apply.apply import SqlSink

    url = f"sqlite:///{tmp_path / 'target.db'}"
    sink = SqlSink(url, target_schema=None, auto_create=True)
    next_second()
    collector = Collector(_reader(mongo_uri, coll.name, snapshot=False))
    engine = sa.create_engine(url)
    try:
        collector.streaming()
        coll.insert_one({"_id": 1, "name": "Anne", "phone": "555", "n": 1})
        coll.update_one({"_id": 1}, {"$set": {"_id": 1}, "$unset": {"phone": ""}})
        # An update's row is the document looked up when the server sends the change (updateLookup,
        # as Debezium's change-stream capture): the replace waits until the update has arrived, or the
        # lookup may already see the replaced document.
        collector.wait(2)
        coll.replace_one({"_id": 1}, {"_id": 1, "n": 2})
        collector.wait(3)
        events = collector.events()
        sink.write(events[:2])
        with engine.connect() as conn:
            assert [
                tuple(r) for r in conn.execute(sa.text(f"SELECT _id, name, phone, n FROM {coll.name}"))
            ] == [(1, "Anne", None, 1)]
        sink.write(events[2:])
        with engine.connect() as conn:
            assert [
                tuple(r) for r in conn.execute(sa.text(f"SELECT _id, name, phone, n FROM {coll.name}"))
            ] == [(1, None, None, 2)]
    finally:
        collector.stop()
        sink.close()
        engine.dispose()
