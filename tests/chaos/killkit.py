"""Pieces of the kill tests (test_kill_paths.py): the source databases, the workload that records
exactly what it committed, the sinks read back independently of cdc-logs, the run/kill loop, and the
judge.

Every change is identifiable. The captured table is `(id int primary key, v bigint)`; ids are never
reused and every insert or update writes a `v` no other change wrote, so each change has one identity
that every reader must deliver:

    insert -> ("c", id, v)    update -> ("u", id, v)    delete -> ("d", id)
    update of the primary key (a "move") -> ("d", old_id), ("c", new_id, v)
    snapshot row -> ("r", id, v)

The workload keeps, in commit order, the identities of every transaction it committed (`Committed`);
rolled-back transactions are never there, and their `v` values must never reach a sink.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
import pymysql
import pytest

Ident = tuple[Any, ...]


def ident(envelope: dict[str, Any]) -> Ident:
    """The identity of one envelope (module docstring)."""
    op = envelope["op"]
    if op == "d":
        return ("d", int(envelope["before"]["id"]))
    return (op, int(envelope["after"]["id"]), int(envelope["after"]["v"]))


# -- what the workload committed -------------------------------------------------------------------
class Committed:
    """The identities of every committed change, in commit order (transactions contiguous)."""

    def __init__(self, initial: dict[int, int]) -> None:
        self.initial = dict(initial)  # rows that exist before any pipeline runs (id -> v)
        self.events: list[Ident] = []
        self.index: dict[Ident, int] = {}
        self.tx_first: list[int] = []  # tx_first[i]: index of the first event of event i's transaction
        self.transactions = 0
        self.rolled_back_v: set[int] = set()
        self.lock = threading.Lock()  # held around COMMIT + add: commit order == list order

    def add(self, events: Sequence[Ident]) -> None:
        first = len(self.events)
        for event in events:
            assert event not in self.index, f"workload bug: {event} committed twice"
            self.index[event] = len(self.events)
            self.events.append(event)
            self.tx_first.append(first)
        self.transactions += 1

    def state_at(self, n: int) -> dict[int, int]:
        """The table after the first `n` committed changes."""
        state = dict(self.initial)
        apply(state, self.events[:n])
        return state


def apply(state: dict[int, int], events: Sequence[Ident]) -> dict[int, int]:
    for event in events:
        if event[0] == "d":
            state.pop(event[1], None)
        else:
            state[event[1]] = event[2]
    return state


# -- source databases ------------------------------------------------------------------------------
class Session:
    """One connection of the workload: explicit transactions, `%s` placeholders."""

    def __init__(self, conn: Any, begin: str = "BEGIN") -> None:
        self.conn = conn
        self._begin = begin

    def sql(self, text: str) -> str:
        return text

    def execute(self, text: str, params: Sequence[Any] = ()) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(self.sql(text), tuple(params))
        finally:
            cur.close()

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        try:
            cur.executemany(self.sql(text), [tuple(r) for r in rows])
        finally:
            cur.close()

    def begin(self) -> None:
        self.execute(self._begin)

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class SqliteSession(Session):
    def sql(self, text: str) -> str:
        return text.replace("%s", "?")


class Database:
    """A source database holding the captured table; subclasses per reader."""

    name = ""
    table = ""
    # A transaction of several changes is one unit: a restart resumes at a transaction start only.
    # (SQLite: every change is its own resume point.)
    multi_event_tx = True
    # A killed snapshot resumes from its last committed chunk (else it starts over).
    snapshot_resumes = False
    # The stream after the snapshot starts where the first attempt began (Postgres: the slot's
    # consistent point; SQLite: the consumer's pinned id), so the snapshot may be fresher than the
    # stream's start (else the snapshot is the table exactly as of the stream's start).
    stream_from_first_attempt = False

    def create(self, rows: dict[int, int]) -> None:
        session = self.session()
        try:
            session.execute(f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, v BIGINT)")
            if rows:
                session.begin()
                self.bulk_insert(session, sorted(rows.items()))
                session.commit()
        finally:
            session.close()

    def bulk_insert(self, session: Session, rows: Sequence[tuple[int, int]]) -> None:
        """Insert `rows` in this order (the order their events must come out in)."""
        sql = f"INSERT INTO {self.table} (id, v) VALUES (%s, %s)"
        for start in range(0, len(rows), 5000):
            session.executemany(sql, rows[start : start + 5000])

    def session(self) -> Session:
        raise NotImplementedError

    def state(self) -> dict[int, int]:
        session = self.session()
        try:
            cur = session.conn.cursor()
            cur.execute(f"SELECT id, v FROM {self.table}")
            return {int(i): int(v) for i, v in cur.fetchall()}
        finally:
            session.close()

    def source(self, *, snapshot: bool, chunk: int) -> dict[str, Any]:
        raise NotImplementedError

    def ready(self, run: Runs) -> bool:
        """The run has fixed its start point: changes committed from now on reach it."""
        return run.committed_position() is not None

    def coordinate(self, envelope: dict[str, Any]) -> Any:
        """Where a streamed change sits in the source's log, from its envelope (ascending in commit
        order), to compare with committed positions."""
        raise NotImplementedError

    def resumes_at(self, position: dict[str, Any], coordinate: Any) -> bool | None:
        """Whether a run resuming from committed `position` delivers the change at `coordinate`
        (None: the position is not a streaming one, e.g. a snapshot in progress)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class Postgres(Database):
    name = "postgres"
    snapshot_resumes = True
    stream_from_first_attempt = True

    def __init__(self, dsn: str, uid: str) -> None:
        self.dsn = dsn
        self.table = f"kp_{uid}"
        self.slot = f"cdc_logs_kp_{uid}"  # the publication takes the slot's name

    def session(self) -> Session:
        return Session(psycopg.connect(self.dsn, autocommit=True))

    def bulk_insert(self, session: Session, rows: Sequence[tuple[int, int]]) -> None:
        session.execute(
            f"INSERT INTO {self.table} (id, v) SELECT i, v FROM unnest(%s::int[], %s::bigint[])"
            " WITH ORDINALITY AS r(i, v, n) ORDER BY n",
            ([i for i, _ in rows], [v for _, v in rows]),
        )

    def source(self, *, snapshot: bool, chunk: int) -> dict[str, Any]:
        return {
            "type": "pg",
            "dsn": self.dsn,
            "tables": [f"public.{self.table}"],
            "slot": self.slot,
            "snapshot": snapshot,
            "snapshot_chunk_rows": chunk,
            "heartbeat_interval_ms": 500,
            "status_interval_ms": 500,
            # Transactions past 64kB of changes are streamed by the server while still in progress.
            "logical_decoding_work_mem": "64kB",
        }

    def coordinate(self, envelope: dict[str, Any]) -> Any:
        return int(envelope["transaction"]["id"].split(":")[1])  # "<xid>:<commit LSN>"

    def resumes_at(self, position: dict[str, Any], coordinate: Any) -> bool | None:
        if position["type"] != "pg_lsn":
            return None
        return bool(coordinate >= position["lsn"])  # the position is a commit's *end* LSN

    def streamed_transactions(self) -> int:
        """How many transactions the server streamed to the slot while they were in progress."""
        with psycopg.connect(self.dsn, autocommit=True) as db:
            row = db.execute(
                "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def cleanup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as db:
            # A walsender can take a moment to go (or a run being stopped may reconnect once): end
            # whoever holds the slot and drop it until it is gone, and say so if it never goes.
            for _ in range(100):
                row = db.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
                ).fetchone()
                if not row:
                    break
                if row[0]:
                    db.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                with contextlib.suppress(psycopg.errors.ObjectInUse):
                    db.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"replication slot {self.slot} could not be dropped after the test")
            db.execute(f'DROP PUBLICATION IF EXISTS "{self.slot}"')
            db.execute(f"DROP TABLE IF EXISTS {self.table}")


class Mariadb(Database):
    name = "mariadb"
    stream_from_first_attempt = True

    def __init__(self, dsn: str, uid: str) -> None:
        self.dsn = dsn
        parts = urlsplit(dsn)
        self.db = parts.path.lstrip("/") or "test"
        self.args = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "database": self.db,
            "autocommit": True,
        }
        self.table = f"km_{uid}"

    def session(self) -> Session:
        return Session(pymysql.connect(**self.args))

    def source(self, *, snapshot: bool, chunk: int) -> dict[str, Any]:
        return {
            "type": "mariadb",
            "dsn": self.dsn,
            "tables": [f"{self.db}.{self.table}"],
            "snapshot": snapshot,
            "snapshot_chunk_rows": chunk,
            "heartbeat_interval_ms": 500,
        }

    @staticmethod
    def _file_pos(file: str, pos: int) -> tuple[int, int]:
        return (int(file.rpartition(".")[2]), int(pos))

    def coordinate(self, envelope: dict[str, Any]) -> Any:
        return self._file_pos(envelope["source"]["file"], envelope["source"]["pos"])

    def resumes_at(self, position: dict[str, Any], coordinate: Any) -> bool | None:
        if position["type"] != "binlog" or position.get("event"):
            return None
        return bool(coordinate > self._file_pos(position["file"], position["pos"]))  # after its end

    def cleanup(self) -> None:
        session = self.session()
        try:
            session.execute(f"DROP TABLE IF EXISTS {self.table}")
        finally:
            session.close()


class Sqlite(Database):
    name = "sqlite"
    multi_event_tx = False
    stream_from_first_attempt = True

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "source.db"
        self.table = "t"

    def session(self) -> Session:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return SqliteSession(conn, "BEGIN IMMEDIATE")

    def source(self, *, snapshot: bool, chunk: int) -> dict[str, Any]:
        return {"type": "sqlite", "path": str(self.path), "tables": [self.table], "snapshot": snapshot,
                "poll_interval_ms": 20}  # fmt: skip

    def ready(self, run: Runs) -> bool:
        # The reader registers its consumer when it opens: from then on the triggers keep its changes.
        return "source started" in run.log_text()

    def coordinate(self, envelope: dict[str, Any]) -> Any:
        return int(envelope["source"]["change_id"])

    def resumes_at(self, position: dict[str, Any], coordinate: Any) -> bool | None:
        return bool(coordinate > position["values"][0])


# -- the workload ----------------------------------------------------------------------------------
class Workload:
    """The application: small random transactions (1-5 changes: insert, update, delete, and now and
    then an update of the primary key; 5% rolled back) on one connection, from a thread. Each commit
    happens under `Committed.lock` and is recorded right away, so `Committed` is in commit order."""

    def __init__(self, db: Database, committed: Committed, rng: random.Random, *, pause_s: float = 0.006):
        self.db = db
        self.committed = committed
        self.rng = rng
        self.pause_s = pause_s
        self.live: dict[int, int] = dict(committed.initial)
        start = max([0, *committed.initial, *committed.initial.values()]) + 1
        self._ids = itertools.count(start)
        self._vs = itertools.count(start)
        self._counter_lock = threading.Lock()
        self.session = db.session()
        self.turn = threading.Lock()  # one transaction at a time on `session`
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="workload", daemon=True)
        self.rollbacks = 0

    def next_id(self) -> int:
        with self._counter_lock:
            return next(self._ids)

    def next_v(self) -> int:
        with self._counter_lock:
            return next(self._vs)

    # -- statements and the identities they produce
    def _run(self, session: Session, kind: str, *args: int) -> list[Ident]:
        t = self.db.table
        if kind == "insert":
            i, v = args
            session.execute(f"INSERT INTO {t} (id, v) VALUES (%s, %s)", (i, v))
            return [("c", i, v)]
        if kind == "update":
            i, v = args
            session.execute(f"UPDATE {t} SET v = %s WHERE id = %s", (v, i))
            return [("u", i, v)]
        if kind == "delete":
            (i,) = args
            session.execute(f"DELETE FROM {t} WHERE id = %s", (i,))
            return [("d", i)]
        old, new, v = args
        session.execute(f"UPDATE {t} SET id = %s, v = %s WHERE id = %s", (new, v, old))
        return [("d", old), ("c", new, v)]

    def _commit(self, session: Session, events: list[Ident]) -> None:
        with self.committed.lock:
            session.commit()
            self.committed.add(events)

    def _random_tx(self) -> None:
        model = dict(self.live)
        session = self.session
        events: list[Ident] = []
        session.begin()
        for _ in range(self.rng.randint(1, 5)):
            pick = self.rng.random()
            if not model or pick < 0.4:
                i, v = self.next_id(), self.next_v()
                events += self._run(session, "insert", i, v)
                model[i] = v
            elif pick < 0.75:
                i, v = self.rng.choice(list(model)), self.next_v()
                events += self._run(session, "update", i, v)
                model[i] = v
            elif pick < 0.92:
                i = self.rng.choice(list(model))
                events += self._run(session, "delete", i)
                del model[i]
            else:
                old, new, v = self.rng.choice(list(model)), self.next_id(), self.next_v()
                events += self._run(session, "move", old, new, v)
                del model[old]
                model[new] = v
        if self.rng.random() < 0.05:
            session.rollback()
            self.rollbacks += 1
            self.committed.rolled_back_v.update(e[2] for e in events if e[0] != "d")
            return
        self._commit(session, events)
        self.live = model

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set():
                with self.turn:
                    self._random_tx()
                time.sleep(self.rng.uniform(0, self.pause_s))
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the workload did not stop"
        if self.error is not None:
            raise AssertionError(f"the workload failed: {self.error!r}") from self.error
        self.session.close()

    def delete_now(self, ids: Sequence[int]) -> list[int]:
        """Delete those of `ids` that still exist, in one transaction (from the test's thread)."""
        with self.turn:
            gone = [i for i in ids if i in self.live]
            if not gone:
                return []
            self.session.begin()
            events: list[Ident] = []
            for i in gone:
                events += self._run(self.session, "delete", i)
            self._commit(self.session, events)
            for i in gone:
                del self.live[i]
            return gone

    def big_transaction(self, rows: int, *, statements: int = 10, pause_s: float = 0.15) -> list[Ident]:
        """One transaction of `rows` inserts (in `statements` statements, `pause_s` apart, so that it
        stays open while the server streams it), then updates, moves and deletes of some of those
        rows; on its own connection, concurrently with the small transactions."""
        session = self.db.session()
        try:
            new = [(self.next_id(), self.next_v()) for _ in range(rows)]
            model = dict(new)
            events: list[Ident] = [("c", i, v) for i, v in new]
            session.begin()
            step = -(-rows // statements)
            for start in range(0, rows, step):
                self.db.bulk_insert(session, new[start : start + step])
                time.sleep(pause_s)
            rng = random.Random(self.rng.random())
            for i in rng.sample(list(model), max(1, rows // 100)):
                v = self.next_v()
                events += self._run(session, "update", i, v)
                model[i] = v
            for i in rng.sample(list(model), max(1, rows // 500)):
                new_id, v = self.next_id(), self.next_v()
                events += self._run(session, "move", i, new_id, v)
                del model[i]
                model[new_id] = v
            for i in rng.sample(list(model), max(1, rows // 200)):
                events += self._run(session, "delete", i)
                del model[i]
            self._commit(session, events)
            with self.turn:
                self.live.update(model)
            return events
        finally:
            session.close()


# -- sinks, read back without cdc-logs -------------------------------------------------------------
class FileLog:
    """The file sink's JSON lines, read as they grow: complete lines only (a line torn by a kill is
    cut off by the next run when it opens the file)."""

    def __init__(self, path: Path, coordinate: Any) -> None:
        self.path = path
        self.coordinate = coordinate
        self.events: list[Ident] = []
        self.markers: list[str] = []  # source.snapshot of each line ("first"/"true"/"last"/"false")
        self.coordinates: list[Any] = []  # Database.coordinate of each streamed line (None: snapshot)
        self._offset = 0

    def poll(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return len(self.events)
        for line in data[: end + 1].splitlines():
            envelope = orjson.loads(line)
            event = ident(envelope)
            self.events.append(event)
            self.markers.append(str(envelope["source"].get("snapshot", "false")))
            self.coordinates.append(None if event[0] == "r" else self.coordinate(envelope))
        self._offset += end + 1
        return len(self.events)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test only (append-only file, fsync always), stopped and started at will:
    the shared stack's Redis is never touched."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def up(self) -> bool:
        return self.proc is not None

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=30)

    def start(self) -> None:
        import redis

        assert self.proc is None
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        self.close()
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def length(self, stream: str) -> int:
        return int(self.client().xlen(stream))

    def entries(self, stream: str) -> list[tuple[int, Ident]]:
        """(entry time in ms, identity) of every entry, in stream order."""
        out = []
        for entry_id, fields in self.client().xrange(stream):
            out.append((int(entry_id.split(b"-")[0]), ident(orjson.loads(fields[b"value"]))))
        return out

    @staticmethod
    def entries_from(raw: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> list[Ident]:
        return [ident(orjson.loads(fields[b"value"])) for _, fields in raw]


class SqlTarget:
    """The SQL apply sink's SQLite target file. The target table (created here, not by the sink) has
    triggers that log every row write the sink makes into `audit`, in the sink's own transactions:
    the audit is the sequence of changes the sink applied, so a replay it re-applied would show."""

    TABLE = "kt"

    def __init__(self, path: Path) -> None:
        self.path = path
        t = self.TABLE
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.executescript(f"""
                CREATE TABLE {t} (id INTEGER PRIMARY KEY, v BIGINT);
                CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT, id INTEGER, v INTEGER);
                CREATE TRIGGER {t}_i AFTER INSERT ON {t} BEGIN
                  INSERT INTO audit (op, id, v) VALUES ('c', NEW.id, NEW.v); END;
                CREATE TRIGGER {t}_u AFTER UPDATE ON {t} BEGIN
                  INSERT INTO audit (op, id, v) VALUES ('u', NEW.id, NEW.v); END;
                CREATE TRIGGER {t}_d AFTER DELETE ON {t} BEGIN
                  INSERT INTO audit (op, id, v) VALUES ('d', OLD.id, NULL); END;
            """)

    def destination(self) -> dict[str, Any]:
        return {"name": "apply", "type": "sqlite", "url": f"sqlite:///{self.path}", "table": self.TABLE}

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=60)) as conn:
            return list(conn.execute(sql))

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM audit")[0][0])

    def audit(self) -> list[Ident]:
        rows = self._query("SELECT op, id, v FROM audit ORDER BY seq")
        return [("d", i) if op == "d" else (op, i, v) for op, i, v in rows]

    def state(self) -> dict[int, int]:
        return {int(i): int(v) for i, v in self._query(f"SELECT id, v FROM {self.TABLE}")}

    def state_of(self, key: int) -> int | None:
        rows = self._query(f"SELECT v FROM {self.TABLE} WHERE id = {int(key)}")
        return int(rows[0][0]) if rows else None


# -- the pipeline process ----------------------------------------------------------------------------
@dataclass
class Kill:
    """What the sinks held the instant a run was killed."""

    at_ms: int
    file_lines: int
    sql_count: int | None = None
    during: str = ""  # what the run was doing ("snapshot", "large transaction", "redis down", ...)
    position: dict[str, Any] | None = None  # the committed source position, from the offset store


@dataclass
class Runs:
    """`python -m cdc_logs run -c pipeline.yaml`, started again after every SIGKILL."""

    tmp: Path
    config: Path
    pipeline: str
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    kills: list[Kill] = field(default_factory=list)

    def log_path(self, n: int | None = None) -> Path:
        return self.tmp / f"run{self.runs if n is None else n}.log"

    def log_text(self, n: int | None = None) -> str:
        path = self.log_path(n)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        # stderr to a file, not a pipe: nobody reads a pipe while the test sleeps, and a full one blocks
        with self.log_path().open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdc_logs", "run", "-c", str(self.config)],
                cwd=self.tmp,
                stdout=subprocess.DEVNULL,
                stderr=err,
                # The judge and the waits read info lines: never inherit a quieter level.
                env={**os.environ, "CDC_LOG_LEVEL": "info", "CDC_LOG_FORMAT": "console"},
            )

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(
                f"run {self.runs} exited by itself (code {self.proc.returncode}) instead of running on:\n"
                + self.log_text()[-3000:],
                pytrace=False,
            )

    def kill(self) -> int:
        """SIGKILL the current run; the time of death in ms (epoch)."""
        self.check_alive()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return int(time.time() * 1000)

    def stop(self) -> None:
        """SIGTERM: the run delivers what it holds, commits and exits 0."""
        self.check_alive()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.close()
            pytest.fail("the last run did not stop on SIGTERM:\n" + self.log_text()[-3000:], pytrace=False)
        assert self.proc.returncode == 0, self.log_text()[-3000:]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def committed_position(self) -> dict[str, Any] | None:
        """The source position the offset store holds for this pipeline (decoded JSON), if any."""
        path = self.tmp / "offsets.db"
        if not path.exists():
            return None
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            try:
                row = conn.execute(
                    "SELECT position FROM cdc_offsets WHERE pipeline = ?", (self.pipeline,)
                ).fetchone()
            except sqlite3.OperationalError:  # the table is not there yet
                return None
        return orjson.loads(row[0]) if row else None

    def wait(self, what: str, predicate: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting until {what}:\n" + self.log_text()[-3000:], pytrace=False)
            time.sleep(0.02)


# -- the judge ---------------------------------------------------------------------------------------
@dataclass
class Replay:
    """A run started again from an earlier point: `depth` events the log already held came again."""

    line: int  # first line of the replay in the log
    to: int  # index (in commit order) the replay started at
    depth: int


def progress(committed: Committed, log: Sequence[Ident], ends: Sequence[int], start: int = 0) -> list[int]:
    """For each prefix log[:end] (ends ascending): how many changes from `start` on it holds without a
    gap, i.e. the largest n with committed.events[start:n] all in it."""
    seen: set[Ident] = set()
    out, line, n = [], 0, start
    for end in ends:
        seen.update(log[line:end])
        line = max(line, end)
        while n < len(committed.events) and committed.events[n] in seen:
            n += 1
        out.append(n)
    return out


def floor_for(committed: Committed, held: int, slack: int) -> int:
    """The earliest change a restart may resume at when every sink held the first `held` changes: the
    start of the transaction `slack` changes earlier (the batch whose commit was in flight)."""
    if held - slack <= 0:
        return 0
    return committed.tx_first[held - slack]


def judge_stream(
    name: str,
    log: Sequence[Ident],
    committed: Committed,
    *,
    resumes: dict[int, int | None],
    start: int = 0,
    first_line: int = 0,
    tx_aligned: bool = True,
) -> list[Replay]:
    """The streamed changes in `log` (from `first_line` on) against the commit order.

    `resumes`: first log line of each run after a kill -> the commit index that run must start at
    (the first change after the position committed when the previous run was killed; None: not
    known). Passes when the log, read in order, is committed.events[start:] with replays only: every
    line is either the next change not delivered yet, or a replay, which begins only where a run
    begins, at a transaction's first change (`tx_aligned`), and then goes on in commit order; and
    every run starts exactly at its committed position. Hence no change is lost or made up, per-key
    (indeed global) order holds, and a replay only ever repeats a suffix of what was delivered.
    """
    events = committed.events
    high = start - 1  # the highest commit index delivered so far
    prev: int | None = None
    replays: list[Replay] = []
    for line in range(first_line, len(log)):
        event = log[line]
        i = committed.index.get(event)
        if i is None:
            rolled_back = len(event) > 2 and event[2] in committed.rolled_back_v
            raise AssertionError(
                f"{name}: line {line} is {event}, which no committed transaction wrote"
                + (" (a rolled-back transaction)" if rolled_back else "")
            )
        expected = resumes.get(line)
        if expected is not None:
            assert i == expected, (
                f"{name}: the run writing from line {line} on starts at change {i} {event}, but the "
                f"position committed before it says change {expected} "
                f"{events[expected] if expected < len(events) else None}"
            )
        if i == high + 1:
            high = i
        elif i <= high:
            if prev is None or i != prev + 1:  # a replay begins here
                assert line in resumes, (
                    f"{name}: line {line} goes back from change {prev} to {i} ({event}) in the middle "
                    "of a run: only a restart may replay"
                )
                assert not tx_aligned or committed.tx_first[i] == i, (
                    f"{name}: the replay at line {line} resumes inside a transaction, at {event}"
                )
                replays.append(Replay(line, i, high + 1 - i))
        else:
            raise AssertionError(
                f"{name}: change {events[high + 1]} (commit index {high + 1}) is missing: line {line} "
                f"jumps to {event} (index {i})"
            )
        prev = i
    assert high == len(events) - 1, (
        f"{name}: changes from {events[high + 1]} on (commit index {high + 1} of {len(events)}) never arrived"
    )
    return replays


def check_key_order(name: str, log: Sequence[Ident], committed: Committed, start: int = 0) -> None:
    """Per key, the first occurrences of its changes are its changes in commit order."""
    expected: dict[int, list[Ident]] = {}
    for event in committed.events[start:]:
        expected.setdefault(event[1], []).append(event)
    got: dict[int, list[Ident]] = {}
    seen: set[Ident] = set()
    for event in log:
        if event[0] != "r" and event not in seen:
            seen.add(event)
            got.setdefault(event[1], []).append(event)
    for key, changes in expected.items():
        assert got.get(key) == changes, f"{name}: key {key}: got {got.get(key)}, committed {changes}"


def check_exact(name: str, log: Sequence[Ident], committed: Committed, start: int = 0) -> None:
    """A sink with a replay guard holds every change exactly once, in commit order."""
    want = committed.events[start:]
    if list(log) == want:
        return
    seen: set[Ident] = set()
    dups = []
    for event in log:
        if event in seen:
            dups.append(event)
        seen.add(event)
    missing = [e for e in want if e not in seen]
    same = (n for n, (a, b) in enumerate(zip(log, want, strict=False)) if a != b)
    first = next(same, min(len(log), len(want)))
    raise AssertionError(
        f"{name}: {len(log)} entries for {len(want)} changes: {len(dups)} duplicates (e.g. {dups[:5]}), "
        f"{len(missing)} missing (e.g. {missing[:5]}); first difference at entry {first}: "
        f"{log[first] if first < len(log) else None} instead of {want[first] if first < len(want) else None}"
    )


def seed() -> int:
    value = os.environ.get("CDC_CHAOS_SEED", "").strip()
    return int(value) if value else random.SystemRandom().randrange(1, 10**9)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a run's decode process: readers/worker_process.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def ended(pid: int) -> bool:
    """The process is gone, or a zombie (it has ended; its parent has not reaped it)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
