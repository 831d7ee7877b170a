"""One contract test suite for the offset stores (sqlite, file, memory); postgres needs a server."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.offsets.base import OffsetStore, StoredOffset
from cdc_logs.offsets.file import FileOffsetStore
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.offsets.sqlite import SqliteOffsetStore
from cdc_logs.position import BinlogPosition, Lsn, Position, Watermark

SERVER = "7301234567890123456"
OTHER = "7309999999999999999"

Opener = Callable[[], OffsetStore]


def lsn(n: int, server: str = SERVER) -> Lsn:
    return Lsn(server, n)


@pytest.fixture(params=["sqlite", "file", "memory"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test; for persistent stores each call is a fresh instance on the same file."""
    opened: list[OffsetStore] = []
    memory = MemoryOffsetStore()

    def open_store() -> OffsetStore:
        store: OffsetStore
        if kind == "sqlite":
            store = SqliteOffsetStore(tmp_path / "state" / "offsets.db")
        elif kind == "file":
            store = FileOffsetStore(tmp_path / "state" / "offsets.json")
        else:
            store = memory
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> OffsetStore:
    return opener()


# ------------------------------------------------------------------------------------- contract
def test_empty_store(store: OffsetStore) -> None:
    assert store.load("p", "pg") is None
    assert store.list() == []
    assert store.list("p") == []
    assert store.delete("p") == 0
    assert store.resume_position("p", "pg", SERVER) is None


def test_save_then_load(store: OffsetStore) -> None:
    before = int(time.time() * 1000)
    store.save("p", "pg", lsn(100))
    after = int(time.time() * 1000)
    stored = store.load("p", "pg")
    assert stored is not None
    assert stored.pipeline == "p"
    assert stored.source == "pg"
    assert stored.position == lsn(100).encode()
    assert stored.server == SERVER
    assert before <= stored.updated_ms <= after
    assert stored.decoded() == lsn(100)


@pytest.mark.parametrize(
    "position",
    [
        Lsn(SERVER, 2**64 - 1),
        BinlogPosition(SERVER, "mysql-bin.000010", 4, gtid="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        Watermark(SERVER, ("2024-01-01T00:00:00", 17)),
    ],
    ids=["lsn-max", "binlog", "watermark"],
)
def test_every_position_type_is_stored_exactly(store: OffsetStore, position: Position) -> None:
    store.save("p", "src", position)
    stored = store.load("p", "src")
    assert stored is not None
    assert stored.decoded().to_dict() == position.to_dict()


def test_overwrite_keeps_one_row(store: OffsetStore) -> None:
    store.save("p", "pg", lsn(1))
    store.save("p", "pg", lsn(2))
    stored = store.load("p", "pg")
    assert stored is not None
    assert stored.decoded() == lsn(2)
    assert len(store.list()) == 1


def test_overwrite_may_change_server(store: OffsetStore) -> None:
    """`offsets set` after a reset may store a position from the new server."""
    store.save("p", "pg", lsn(1))
    store.save("p", "pg", lsn(2, server=OTHER))
    stored = store.load("p", "pg")
    assert stored is not None
    assert stored.server == OTHER


def test_pipelines_and_sources_are_isolated(store: OffsetStore) -> None:
    store.save("a", "pg", lsn(1))
    store.save("a", "mysql", BinlogPosition(SERVER, "mysql-bin.000001", 4))
    store.save("b", "pg", lsn(2))
    store.save("ab", "pg", lsn(3))  # a pipeline whose name has `a` as a prefix
    assert store.load("a", "pg").decoded() == lsn(1)  # type: ignore[union-attr]
    assert store.load("b", "pg").decoded() == lsn(2)  # type: ignore[union-attr]
    assert store.load("b", "mysql") is None
    assert [(o.pipeline, o.source) for o in store.list("a")] == [("a", "mysql"), ("a", "pg")]
    assert store.delete("a") == 2
    assert store.load("a", "pg") is None
    assert store.load("ab", "pg") is not None
    assert [(o.pipeline, o.source) for o in store.list()] == [("ab", "pg"), ("b", "pg")]


def test_delete_one_source(store: OffsetStore) -> None:
    store.save("p", "pg", lsn(1))
    store.save("p", "mysql", lsn(2))
    assert store.delete("p", "pg") == 1
    assert store.delete("p", "pg") == 0
    assert store.load("p", "pg") is None
    assert store.load("p", "mysql") is not None


def test_list_is_sorted_by_pipeline_then_source(store: OffsetStore) -> None:
    for pipeline, source in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "b")]:
        store.save(pipeline, source, lsn(1))
    assert [(o.pipeline, o.source) for o in store.list()] == [("a", "b"), ("a", "y"), ("b", "a"), ("b", "z")]
    assert all(isinstance(o, StoredOffset) for o in store.list())


def test_resume_position_same_server(store: OffsetStore) -> None:
    store.save("p", "pg", lsn(77))
    assert store.resume_position("p", "pg", SERVER) == lsn(77)


def test_resume_position_refuses_another_server(store: OffsetStore) -> None:
    store.save("p", "pg", lsn(77))
    with pytest.raises(CdcError) as info:
        store.resume_position("p", "pg", OTHER)
    err = info.value
    assert err.kind is ErrorKind.SERVER_MISMATCH
    assert err.directive is Directive.OPERATOR
    assert SERVER in err.message
    assert OTHER in err.message
    assert err.hint and "offsets reset" in err.hint and "--source pg" in err.hint


def test_concurrent_saves_do_not_corrupt(opener: Opener) -> None:
    store = opener()
    threads_n, saves = 6, 25
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for n in range(1, saves + 1):
                store.save("p", f"src{i}", lsn(n))
                store.save("p", "shared", lsn(i * 1000 + n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for view in (store, opener()):  # also as a fresh instance reads it back
        rows = {o.source: o for o in view.list("p")}
        assert set(rows) == {f"src{i}" for i in range(threads_n)} | {"shared"}
        for i in range(threads_n):
            assert rows[f"src{i}"].decoded() == lsn(saves)
        shared = rows["shared"].decoded()
        assert isinstance(shared, Lsn)
        assert shared.lsn % 1000 == saves  # some thread's last save, not a torn or mixed value


# --------------------------------------------------------------------------- persistent stores
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_durable_across_reopen(opener: Opener) -> None:
    first = opener()
    first.save("p", "pg", lsn(5))
    first.save("p", "mysql", lsn(6))
    first.delete("p", "mysql")
    first.close()
    again = opener()
    assert again.resume_position("p", "pg", SERVER) == lsn(5)
    assert again.load("p", "mysql") is None


def test_sqlite_store_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SqliteOffsetStore(path)
    store.save("p", "pg", lsn(1))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
        assert conn.execute("SELECT position FROM cdc_offsets").fetchone()[0] == lsn(1).encode()
    finally:
        conn.close()
    # synchronous is per connection: the store's own must be FULL (2) for a committed offset to survive
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()


def test_sqlite_store_creates_parent_directories(tmp_path: Path) -> None:
    store = SqliteOffsetStore(tmp_path / "x" / "y" / "o.db")
    store.save("p", "pg", lsn(1))
    store.close()
    assert (tmp_path / "x" / "y" / "o.db").exists()


def test_file_store_leaves_no_tmp_and_writes_valid_json(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path / "o.json")
    for n in range(5):
        store.save("p", "pg", lsn(n))
    store.save("p", "mysql", lsn(1))
    store.delete("p", "mysql")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]
    data = orjson.loads((tmp_path / "o.json").read_bytes())
    assert set(data) == {"p/pg"}
    assert data["p/pg"]["server"] == SERVER
    assert data["p/pg"]["position"] == lsn(4).encode()


def test_file_store_source_names_may_contain_slashes(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path / "o.json")
    store.save("p", "db/users", lsn(3))
    assert [(o.pipeline, o.source) for o in store.list()] == [("p", "db/users")]
    assert store.load("p", "db/users") is not None
    assert store.delete("p") == 1


def test_memory_store_is_not_shared_between_instances() -> None:
    one, two = MemoryOffsetStore(), MemoryOffsetStore()
    one.save("p", "pg", lsn(1))
    assert two.load("p", "pg") is None


def test_resume_refusal_happens_before_decoding(tmp_path: Path) -> None:
    """A mismatched server is refused even when the stored text is not a position we can read."""
    path = tmp_path / "o.json"
    path.write_bytes(orjson.dumps({"p/pg": {"position": "garbage", "server": SERVER, "updated_ms": 1}}))
    store = FileOffsetStore(path)
    with pytest.raises(CdcError) as info:
        store.resume_position("p", "pg", OTHER)
    assert info.value.kind is ErrorKind.SERVER_MISMATCH
    with pytest.raises(CdcError) as info:
        store.resume_position("p", "pg", SERVER)
    # An unreadable stored position is for an operator to fix (exit 3), with the commands that do it.
    assert info.value.kind is ErrorKind.POSITION_LOST
    assert "offsets set" in (info.value.hint or "") and "offsets reset" in (info.value.hint or "")


# -- damaged stores: a clear operator error naming the fix, never a traceback or a silent reset ----
def _committed_sqlite(path: Path) -> None:
    store = SqliteOffsetStore(path)
    store.save("p", "pg", lsn(42))
    store.close()


def _committed_file(path: Path) -> None:
    FileOffsetStore(path).save("p", "pg", lsn(42))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "malformed"),
        (lambda p: p.write_bytes(b"garbage\n" * 100), "not a database"),
        (lambda p: p.write_bytes(b""), "empty"),
    ],
    ids=["truncated", "overwritten", "emptied"],
)
def test_a_damaged_sqlite_store_names_the_fix(
    tmp_path: Path, damage: Callable[[Path], None], problem: str
) -> None:
    path = tmp_path / "o.db"
    _committed_sqlite(path)
    for extra in (path.with_name("o.db-wal"), path.with_name("o.db-shm")):
        extra.unlink(missing_ok=True)
    damage(path)
    with pytest.raises(CdcError) as info:
        SqliteOffsetStore(path).list("p")
    err = info.value
    assert err.kind is ErrorKind.POSITION_LOST and err.exit_code == 3
    assert f"the offset store {path} is damaged" in err.message and problem in err.message
    assert "restore" in (err.hint or "") and "move it away" in (err.hint or "")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not valid JSON"),  # truncated mid-document
        (b"", "empty"),
        (b"[1, 2]", "not an offsets document"),
        (b'{"p/pg": {"position": 5}}', "not an offsets document"),
        (b'{"p/pg": {"position": "x", "server": "s"}}', "not an offsets document"),
    ],
    ids=["truncated", "empty", "list", "wrong-field-type", "missing-field"],
)
def test_a_damaged_file_store_names_the_fix(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "o.json"
    _committed_file(path)
    path.write_bytes(path.read_bytes()[:40] if content is None else content)
    damaged = path.read_bytes()
    for call in (lambda s: s.load("p", "pg"), lambda s: s.list("p"), lambda s: s.save("p", "pg", lsn(1))):
        with pytest.raises(CdcError) as info:
            call(FileOffsetStore(path))
        assert info.value.kind is ErrorKind.POSITION_LOST
        assert problem in info.value.message
    assert path.read_bytes() == damaged, "a save must not replace the damaged file: the operator decides"


def test_a_new_sqlite_store_appears_whole(tmp_path: Path) -> None:
    """Created under another name and linked into place: an empty file at the store's path can only
    be a truncated store (refused above), never a first run killed while creating it."""
    path = tmp_path / "state" / "o.db"
    store = SqliteOffsetStore(path)
    try:
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("o.db-")) == ["o.db"]
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM cdc_offsets").fetchone() == (0,)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("garbage", "not JSON"),
        ("[1]", "not a JSON object"),
        ("{}", "no position type"),
        ('{"type": "nope"}', "unknown position type 'nope' (known: binlog, kafka, "),
        ('{"type": "watermark"}', "missing field 'server'"),
        ('{"type": "pg_lsn", "server": "s", "lsn": "x"}', "field 'lsn' must be"),
    ],
)
def test_an_unreadable_stored_position_says_why_in_a_few_words(text: str, problem: str) -> None:
    with pytest.raises(CdcError) as info:
        StoredOffset("p", "pg", text, SERVER, 1).decoded()
    assert info.value.kind is ErrorKind.POSITION_LOST
    assert info.value.message.startswith(f"the committed position of p/pg is unreadable: {problem}")
