"""PollingReader through real SQLAlchemy against real SQLite files: modes, boundaries, resume, limits."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark, decode
from cdc_logs.readers.polling.connection import server_identity
from cdc_logs.readers.polling.convert import decode_mark, encode_mark
from cdc_logs.readers.polling.query import PolledTable
from cdc_logs.readers.polling.reader import PollingReader

FAST = {"poll_interval_s": 0.01, "idle_tick_s": 0.05}
T1, T2, T3 = "2024-05-01 10:00:00", "2024-05-01 10:00:01", "2024-05-01 10:00:02"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, amount NUMERIC(10, 2),
                                 note TEXT, deleted BOOLEAN NOT NULL DEFAULT 0, payload BLOB);
            CREATE TABLE events (event_id INTEGER, created_at TEXT, kind TEXT);
            """
        )
    return path


def write(db: Path, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(sql, rows) if rows is not None else conn.execute(sql)


def insert_orders(db: Path, rows: list[tuple[int, str]]) -> None:
    write(db, "INSERT INTO orders (id, updated_at, amount, note) VALUES (?, ?, 9.5, 'n')", rows)


def reader(db: Path, tables: list[Any] | None = None, **kwargs: Any) -> PollingReader:
    options = {"pipeline_name": "p", "timestamp_column": "updated_at", "incrementing_column": "id", **FAST}
    options.update(kwargs)
    r = PollingReader(f"sqlite:///{db}", tables or ["orders"], **options)
    r.open()
    return r


def collect(r: PollingReader, start: Any = None) -> list[ChangeEvent]:
    """Events up to the first idle tick (everything currently visible)."""
    out = []
    for item in r.stream(start):
        if item is None:
            break
        assert isinstance(item, ChangeEvent)
        out.append(item)
    return out


def ids(events: list[ChangeEvent]) -> list[int]:
    return [e.row["id"] for e in events]  # type: ignore[index]


def test_incrementing_mode_values_and_resume(db: Path) -> None:
    write(
        db,
        "INSERT INTO orders (id, updated_at, amount, note, payload) VALUES (?, ?, ?, ?, ?)",
        [(i, T1, "12.25", f"it's ü{i}", b"\x00\x01") for i in range(1, 6)],
    )
    r = reader(db, mode="incrementing", batch_size=2)
    got = collect(r)
    assert ids(got) == [1, 2, 3, 4, 5]
    first = got[0]
    assert first.op is Op.CREATE and first.before is None and first.key == {"id": 1}
    # The event contract: values in the envelope's encodings, described by the schema.
    assert first.after == {
        "id": 1,
        "updated_at": int((dt.datetime(2024, 5, 1, 10) - dt.datetime(1970, 1, 1)).total_seconds()) * 10**6,
        "amount": "12.25",
        "note": "it's ü1",
        "deleted": False,
        "payload": b"\x00\x01",
    }
    assert first.schema is not None
    assert first.schema.column("updated_at").semantic == "io.debezium.time.MicroTimestamp"  # type: ignore[union-attr]
    assert first.schema.column("amount").source_type == "DECIMAL"  # type: ignore[union-attr]
    src = first.source.to_dict()
    assert (src["connector"], src["name"], src["db"], src["table"]) == ("polling", "p", "shop.db", "orders")
    assert all(e.boundary for e in got)
    assert got[-1].position == Watermark(server=r.server_identity(), values=("orders", None, 5))
    r.close()
    insert_orders(db, [(6, T2), (7, T2)])
    again = reader(db, mode="incrementing")
    assert ids(collect(again, decode(got[-1].position.encode()))) == [6, 7]  # type: ignore[union-attr]
    again.close()


def test_timestamp_mode_reads_a_shared_timestamp_whole(db: Path) -> None:
    insert_orders(db, [(i, T1) for i in range(1, 6)] + [(6, T2)])
    r = reader(db, mode="timestamp", batch_size=2)
    got = collect(r)
    r.close()
    # LIMIT 2 cuts the five rows at T1: they are still all read, each once.
    assert ids(got) == [1, 2, 3, 4, 5, 6]
    # Resuming from "ts > T1" is only safe once every T1 row is out: only then is it a boundary.
    assert [e.boundary for e in got] == [False, False, False, False, True, True]
    assert got[4].position.values == ("orders", f"s:{T1}", None)  # type: ignore[union-attr]
    insert_orders(db, [(7, T3)])
    again = reader(db, mode="timestamp", batch_size=2)
    assert ids(collect(again, got[4].position)) == [6, 7]
    again.close()


def test_timestamp_incrementing_resume_inside_a_timestamp_and_op_guess(db: Path) -> None:
    insert_orders(db, [(i, T1) for i in range(1, 6)])
    r = reader(db, mode="timestamp+incrementing", batch_size=2)
    got = collect(r)
    r.close()
    assert ids(got) == [1, 2, 3, 4, 5] and all(e.boundary for e in got)
    assert {e.op for e in got} == {Op.CREATE}
    mid = got[2].position
    assert mid is not None and mid.values == ("orders", f"s:{T1}", 3)
    write(db, f"UPDATE orders SET updated_at = '{T2}', note = 'changed' WHERE id = 2")
    insert_orders(db, [(6, T2)])
    again = reader(db, mode="timestamp+incrementing", batch_size=2)
    resumed = collect(again, mid)
    again.close()
    # (T1, 3) resumes at ids 4 and 5 of T1, then T2. Row 2 was seen before: an update; 6 is new.
    assert [(e.row["id"], e.op) for e in resumed] == [  # type: ignore[index]
        (4, Op.CREATE),
        (5, Op.CREATE),
        (2, Op.UPDATE),
        (6, Op.CREATE),
    ]
    assert resumed[2].after["note"] == "changed" and resumed[2].before is None  # type: ignore[index]


def test_soft_delete_column(db: Path) -> None:
    insert_orders(db, [(1, T1), (2, T1)])
    r = reader(db, soft_delete_column="deleted")
    stream = r.stream(None)
    first = [next(stream), next(stream)]
    write(db, f"UPDATE orders SET deleted = 1, updated_at = '{T2}' WHERE id = 1")
    later = []
    for item in stream:
        if item is not None:
            later.append(item)
        elif later:
            break
    r.close()
    assert [e.op for e in first] == [Op.CREATE, Op.CREATE]  # type: ignore[union-attr]
    (deleted,) = later
    assert deleted.op is Op.DELETE and deleted.after is None and deleted.key == {"id": 1}  # type: ignore[union-attr]
    assert deleted.before["deleted"] is True  # type: ignore[union-attr,index]


def test_custom_query_in_the_seed_shape(db: Path) -> None:
    rows = [(1, T1, "a"), (2, T1, "b"), (3, T2, "c")]
    write(db, "INSERT INTO events VALUES (?, ?, ?)", rows)
    table = PolledTable(
        "events",
        query="SELECT event_id, created_at, kind FROM events WHERE created_at > :last_sync "
        "ORDER BY created_at",
        key_columns=("event_id",),
    )
    r = reader(db, [table], mode="timestamp", timestamp_column="created_at", incrementing_column=None)
    got = collect(r)
    r.close()
    assert [(e.key, e.after) for e in got] == [
        ({"event_id": i}, {"event_id": i, "created_at": ts, "kind": k}) for i, ts, k in rows
    ]
    write(db, "INSERT INTO events VALUES (4, ?, 'd')", [(T3,)])
    again = reader(db, [table], mode="timestamp", timestamp_column="created_at")
    assert [e.key for e in collect(again, got[-1].position)] == [{"event_id": 4}]
    again.close()


def test_a_value_its_column_cannot_hold_is_dead_lettered_and_its_neighbours_delivered(tmp_path: Path) -> None:
    """SQLite keeps any value in any column. Text that is not a date in a DATETIME column stopped the
    stream with a bare ValueError (SQLAlchemy parsed it mid-batch), text that is not UTF-8 with a
    CONNECTION error retried forever, and a BOOLEAN of 2 became true. Now that row is an Undecodable
    naming the column (never the value), in its place; the rows around it are delivered."""
    path = tmp_path / "typed.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME, flag BOOLEAN, note TEXT)")
        conn.execute("INSERT INTO t VALUES (1, '2024-05-01 10:00:00', 1, 'ok')")
        conn.execute("INSERT INTO t VALUES (2, 'next tuesday', 0, 'Jane')")
        conn.execute("INSERT INTO t VALUES (3, NULL, 2, 'ok')")
        conn.execute("INSERT INTO t VALUES (4, NULL, 0, CAST(x'4a616ee9' AS TEXT))")
        conn.execute("INSERT INTO t VALUES (5, '2024-05-01T10:00:00+02:00', 0, 'ok')")
    r = PollingReader(
        f"sqlite:///{path}", ["t"], pipeline_name="p", mode="incrementing", incrementing_column="id", **FAST
    )
    r.open()
    items = []
    for item in r.stream(None):
        if item is None:
            break
        items.append(item)
    r.close()
    assert [type(i).__name__ for i in items] == [
        "ChangeEvent",
        "Undecodable",
        "Undecodable",
        "Undecodable",
        "ChangeEvent",
    ]
    reasons = [i.reason for i in items[1:4]]
    assert reasons == [
        "column 'at': text that is not an ISO-8601 timestamp in a timestamp column",
        "column 'flag': an integer in a boolean (0 or 1) column",
        "column 'note': text that is not valid UTF-8 in a text column",
    ]
    assert all("Jane" not in r and "tuesday" not in r for r in reasons)
    assert [i.position.values for i in items] == [("t", None, n) for n in range(1, 6)]
    assert items[4].after["at"] == 1714550400000000  # an offset is an instant: µs since the epoch in UTC


def test_non_finite_floats_are_strings_in_tables_and_in_queries(db: Path) -> None:
    """JSON has no NaN or infinity: the envelope wrote them as null, losing the value."""
    write(db, "CREATE TABLE f (id INTEGER PRIMARY KEY, x REAL)")
    write(db, "INSERT INTO f VALUES (1, 9e999), (2, -9e999), (3, 1.5)")
    r = reader(db, ["f"], mode="incrementing", incrementing_column="id")
    assert [e.after["x"] for e in collect(r)] == ["Infinity", "-Infinity", 1.5]  # type: ignore[index]
    r.close()
    query = PolledTable("q", query="SELECT id, x FROM f", mode="incrementing", incrementing_column="id")
    q = reader(db, [query])
    assert [e.after["x"] for e in collect(q)] == ["Infinity", "-Infinity", 1.5]  # type: ignore[index]
    q.close()


def test_no_snapshot_starts_after_the_newest_row(db: Path) -> None:
    insert_orders(db, [(1, T1), (2, T2)])
    r = reader(db, snapshot=False)
    stream = r.stream(None)
    assert next(stream) is None  # nothing: existing rows are skipped
    insert_orders(db, [(3, T3)])
    item = next(i for i in stream if i is not None)
    r.close()
    assert isinstance(item, ChangeEvent) and item.key == {"id": 3}


def test_safety_lag_holds_back_recent_rows(db: Path) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    insert_orders(db, [(1, T1), (2, now)])
    r = reader(db, safety_lag_s=60)
    assert ids(collect(r)) == [1]  # row 2 is younger than the lag: left for a later poll
    r.close()


def test_several_tables_share_one_position(db: Path) -> None:
    insert_orders(db, [(1, T1)])
    write(db, "INSERT INTO events VALUES (1, ?, 'a')", [(T1,)])
    events_table = PolledTable("events", mode="incrementing", incrementing_column="event_id")
    r = reader(db, ["orders", events_table])
    got = collect(r)
    r.close()
    assert [e.source.table for e in got] == ["orders", "events"]
    assert got[-1].position.values == ("orders", f"s:{T1}", 1, "events", None, 1)  # type: ignore[union-attr]
    insert_orders(db, [(2, T2)])
    write(db, "INSERT INTO events VALUES (2, ?, 'b')", [(T2,)])
    again = reader(db, ["orders", events_table])
    assert [(e.source.table, e.key) for e in collect(again, got[-1].position)] == [
        ("orders", {"id": 2}),
        ("events", {"event_id": 2}),
    ]
    again.close()


def test_configuration_errors(db: Path) -> None:
    with pytest.raises(CdcError) as err:
        reader(db, ["missing"])
    assert err.value.kind is ErrorKind.NOT_FOUND and "'missing'" in err.value.message
    with pytest.raises(CdcError) as err:
        reader(db, timestamp_column="modified")
    assert err.value.kind is ErrorKind.CONFIG and "'modified'" in err.value.message
    with pytest.raises(CdcError) as err:
        reader(db, mode="newest")
    assert err.value.kind is ErrorKind.CONFIG and "timestamp+incrementing" in (err.value.hint or "")
    with pytest.raises(CdcError) as err:
        reader(db, mode="timestamp", timestamp_column=None)
    assert err.value.kind is ErrorKind.CONFIG and "timestamp_column" in (err.value.hint or "")
    with pytest.raises(CdcError) as err:
        reader(db, mode="timestamp", timestamp_column="id", safety_lag_s=5)  # an INTEGER column
    assert err.value.kind is ErrorKind.CONFIG
    with pytest.raises(CdcError) as err:
        PollingReader("not a url", ["t"], pipeline_name="p")
    assert err.value.kind is ErrorKind.CONFIG


def test_resume_refuses_another_server(db: Path, tmp_path: Path) -> None:
    r = reader(db)
    with pytest.raises(CdcError) as err:
        collect(r, Watermark(server="sqlite:///elsewhere.db", values=("orders", None, 1)))
    r.close()
    assert err.value.kind is ErrorKind.SERVER_MISMATCH


def test_server_identity_has_no_credentials(tmp_path: Path) -> None:
    url = sa.make_url("postgresql+psycopg://app:s3cret@db.example:5432/shop")
    assert server_identity(url) == "postgresql://db.example:5432/shop"
    assert server_identity(sa.make_url("mysql+pymysql://u:p@h/shop")) == "mysql://h/shop"
    assert (
        server_identity(sa.make_url(f"sqlite:///{tmp_path}/../x.db")) == f"sqlite:///{tmp_path.parent}/x.db"
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        7,
        2.5,
        "2024-05-01 10:00:00",
        "dt:looks-tagged",
        dt.datetime(2024, 5, 1, 10, 0, 0, 123456),
        dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2024, 5, 1),
        Decimal("12.50"),
        uuid.UUID(int=5),
        b"\x00\xff",
    ],
)
def test_watermark_values_round_trip(value: Any) -> None:
    position = Watermark(server="s", values=("t", encode_mark(value), None))
    back = decode(position.encode())
    assert isinstance(back, Watermark)
    restored = decode_mark(back.values[1])
    assert restored == value and type(restored) is type(value)


def test_stop_interrupts_a_waiting_stream(db: Path) -> None:
    r = reader(db, poll_interval_s=30, idle_tick_s=30)
    done = threading.Event()

    def run() -> None:
        for _ in r.stream(None):
            pass
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.1)
    r.stop()
    assert done.wait(2)
    thread.join()
    r.close()
