"""Postgres ownership: cdc-logs never drops or alters a publication or slot it did not create.

Against the stack's real Postgres (CDC_PG_DSN): `tail --publication EXISTING` leaves the publication
exactly as it was (same oid, tables, operations, comment); a publication that lacks a captured table
is refused, not altered; a `tail` killed with SIGKILL leaves its own publication behind, the next
start drops it, and user publications with look-alike names survive.

Every test uses unique names (other suites share the server) and removes what it made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

psycopg = pytest.importorskip("psycopg")

from cdc_logs.errors import CdcError, ErrorKind  # noqa: E402
from cdc_logs.readers.postgres import ownership, slots  # noqa: E402
from cdc_logs.readers.postgres.reader import PostgresReader  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def db(pg_dsn: str) -> Iterator[Any]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def made(db: Any) -> Iterator[dict[str, list[str]]]:
    """Tables and publications a test made (names listed here are dropped at the end)."""
    objects: dict[str, list[str]] = {"tables": [], "publications": []}
    yield objects
    for pub in objects["publications"]:
        db.execute(f'DROP PUBLICATION IF EXISTS "{pub}"')
    for table in objects["tables"]:
        db.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDC_DSN", raising=False)
    monkeypatch.setenv("CDC_LOG_LEVEL", "warning")


def table(db: Any, made: dict[str, list[str]], name: str) -> str:
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    made["tables"].append(name)
    return f"public.{name}"


def publication_state(db: Any, name: str) -> Any:
    """Everything Postgres records about a publication: its row (oid included), tables, comment."""
    row = db.execute(
        "SELECT oid, pubname, pubowner, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, "
        "pubviaroot, obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    tables = db.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1, 2", (name,)
    ).fetchall()
    return row, tables


def tail_cmd(pg_dsn: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cdc_logs", "tail", "--source", "pg", "--dsn", pg_dsn, "--format", "json",
            *args]  # fmt: skip


def wait_streaming(db: Any, proc: subprocess.Popen[bytes], pattern: str) -> None:
    """Until the tail's temporary slot is active (its publication exists by then)."""
    deadline = time.monotonic() + 30
    while not db.execute(
        "SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE %s AND active", (pattern,)
    ).fetchone():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "tail never started streaming"
        time.sleep(0.1)
    time.sleep(0.3)  # START_REPLICATION follows the slot creation


def test_tail_uses_an_existing_publication_as_it_is(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    other = table(db, made, f"{unique_name}_other")
    pub = f"user_pub_{unique_name}"
    db.execute(f"CREATE PUBLICATION {pub} FOR TABLE {t}, {other} WITH (publish = 'insert, update')")
    db.execute(f"COMMENT ON PUBLICATION {pub} IS 'owned by the application team'")
    made["publications"].append(pub)
    before = publication_state(db, pub)

    proc = subprocess.Popen(
        tail_cmd(pg_dsn, "--table", t, "--publication", pub, "--limit", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_streaming(db, proc, f"cdc_logs_tail_{proc.pid}_%")
        assert publication_state(db, pub) == before, "tail changed the publication while running"
        db.execute(f"INSERT INTO {t} VALUES (1, 'a')")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert [orjson.loads(line)["after"] for line in out.splitlines()] == [{"id": 1, "v": "a"}]
    assert publication_state(db, pub) == before, "tail dropped, recreated or altered the user's publication"


def test_a_publication_missing_a_table_is_refused_not_altered(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    missing = table(db, made, f"{unique_name}_new")
    pub = f"user_pub_{unique_name}"
    db.execute(f"CREATE PUBLICATION {pub} FOR TABLE {t}")
    made["publications"].append(pub)
    before = publication_state(db, pub)

    # tail (temporary slot) with the user's publication
    result = subprocess.run(
        tail_cmd(pg_dsn, "--table", t, "--table", missing, "--publication", pub, "--limit", "1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"publication {pub!r} does not publish {missing}" in result.stderr
    assert f"ALTER PUBLICATION {pub} ADD TABLE {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert publication_state(db, pub) == before

    # a persistent reader (a named slot, as `run` uses) with the user's publication: same answer
    reader = PostgresReader(
        pg_dsn, [t, missing], pipeline_name="p", slot=f"cdc_logs_{unique_name}", publication=pub
    )
    with pytest.raises(CdcError) as err:
        reader.open()
    assert err.value.kind is ErrorKind.CONFIG
    assert publication_state(db, pub) == before
    assert not db.execute(
        "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (f"cdc_logs_{unique_name}",)
    ).fetchone()


def test_own_publication_is_marked_and_grows_with_the_table_list(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    added = table(db, made, f"{unique_name}_more")
    slot = f"cdc_logs_{unique_name}"
    made["publications"].append(slot)
    reader = PostgresReader(pg_dsn, [t], pipeline_name="p", slot=slot)
    try:
        reader.open()
    finally:
        reader.close()
    (row, tables) = publication_state(db, slot)
    assert tables == [("public", unique_name)]
    assert row[-1].startswith("cdc-logs:owned"), row[-1]  # the marker in COMMENT ON PUBLICATION
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        info = slots.get_publication(conn, slot)
    assert info is not None and info.owner == "cdc-logs"
    listed = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "publications", "list", "--json", "--dsn", pg_dsn],
        capture_output=True,
        timeout=60,
    )
    assert next(p for p in orjson.loads(listed.stdout) if p["name"] == slot)["owner"] == "cdc-logs"
    reader = PostgresReader(pg_dsn, [t, added], pipeline_name="p", slot=slot)
    try:
        reader.open()  # our own publication: the new table is added
    finally:
        reader.close()
    assert publication_state(db, slot)[1] == [("public", unique_name), ("public", f"{unique_name}_more")]
    assert publication_state(db, slot)[0][0] == row[0], "kept, not recreated"


def test_tail_killed_with_sigkill_leaves_its_publication_and_the_next_start_removes_only_that(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    proc = subprocess.Popen(tail_cmd(pg_dsn, "--table", t), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pattern = f"cdc_logs_tail_{proc.pid}_%"
    try:
        wait_streaming(db, proc, pattern)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    leftover = [
        r[0] for r in db.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", (pattern,))
    ]
    assert len(leftover) == 1, "a killed tail cannot drop its publication itself"
    made["publications"].extend(leftover)
    # The temporary slot goes with the killed process's session.
    deadline = time.monotonic() + 30
    while db.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE %s", (pattern,)).fetchone():
        assert time.monotonic() < deadline, "the temporary slot outlived its session"
        time.sleep(0.1)

    # Look-alikes the user made: the tail naming scheme, with and without comments of their own.
    look_alikes = [
        f"cdc_logs_tail_{proc.pid}_{unique_name[:6]}",
        f"cdc_logs_tail_{unique_name}",
        f"cdc_logs_{unique_name}_x",
    ]
    for name in look_alikes:
        db.execute(f"CREATE PUBLICATION {name} FOR TABLE {t}")
        made["publications"].append(name)
    db.execute(f"COMMENT ON PUBLICATION {look_alikes[1]} IS 'cdc-logs tail for debugging (kept by hand)'")
    db.execute(f"COMMENT ON PUBLICATION {look_alikes[2]} IS 'cdc-logs:owned by someone else''s copy'")
    states = {name: publication_state(db, name) for name in look_alikes}

    second = subprocess.Popen(
        tail_cmd(pg_dsn, "--table", t, "--limit", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_streaming(db, second, f"cdc_logs_tail_{second.pid}_%")
        db.execute(f"INSERT INTO {t} VALUES (1, 'a')")
        out, err = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, err.decode()[-2000:]
    assert len(out.splitlines()) == 1
    assert not db.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (leftover[0],)).fetchone(), (
        "the killed tail's publication was not cleaned up"
    )
    # (The log line "removed a publication left by a cdc-logs tail that is gone" is this tail's,
    # unless another cdc-logs start on the shared server got there first.)
    for name in look_alikes:
        assert publication_state(db, name) == states[name], f"{name} is the user's: it must survive"
    assert not db.execute(
        "SELECT 1 FROM pg_publication WHERE pubname LIKE %s", (f"cdc_logs_tail_{second.pid}_%",)
    ).fetchone(), "the second tail left its own publication behind"


def test_cleanup_keeps_publications_of_tails_that_are_still_running(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    pub = f"cdc_logs_tail_{unique_name}"
    made["publications"].append(pub)
    owner = psycopg.connect(pg_dsn, autocommit=True)  # stands in for a running tail's session
    try:
        ownership.create_own_publication(owner, pub, [t], all_tables=False, temporary=True)
        assert slots.get_publication(owner, pub) is not None
        with psycopg.connect(pg_dsn, autocommit=True) as other:
            assert pub not in ownership.drop_abandoned_publications(other)
            assert slots.get_publication(other, pub) is not None
    finally:
        owner.close()
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        deadline = time.monotonic() + 10
        dropped: list[str] = []
        while pub not in dropped:  # the backend may take a moment to leave pg_stat_activity
            dropped = ownership.drop_abandoned_publications(other)
            assert time.monotonic() < deadline, "the abandoned publication was not dropped"
            if pub not in dropped:
                time.sleep(0.1)
        assert slots.get_publication(other, pub) is None


def test_tail_with_a_user_slot_and_publication_keeps_both(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    t = table(db, made, unique_name)
    slot, pub = f"user_slot_{unique_name}", f"user_pub_{unique_name}"
    db.execute(f"CREATE PUBLICATION {pub} FOR TABLE {t}")  # before the slot, as Postgres needs
    made["publications"].append(pub)
    db.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    before = publication_state(db, pub)
    try:
        sub = subprocess.Popen(
            tail_cmd(pg_dsn, "--table", t, "--slot", slot, "--publication", pub),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_streaming(db, sub, slot)
        finally:
            sub.send_signal(signal.SIGTERM)
            _, err = sub.communicate(timeout=30)
        assert sub.returncode == 0, err.decode()[-2000:]
        row = db.execute(
            "SELECT temporary, plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        assert row == (False, "pgoutput"), "the user's slot must outlive tail"
        assert publication_state(db, pub) == before
    finally:
        with contextlib.suppress(psycopg.Error):
            db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def test_listing_publications_survives_concurrent_drops(
    pg_dsn: str, db: Any, made: dict[str, list[str]], unique_name: str
) -> None:
    """pg_publication_tables looks publications up by name, so one dropped mid-query used to fail
    the listing, and with it every reader start (it looks for abandoned publications)."""
    import threading

    t = table(db, made, unique_name)
    stop = threading.Event()

    def churn() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                name = f"{unique_name}_churn_{n % 20}"
                conn.execute(f"CREATE PUBLICATION {name} FOR TABLE {t}")
                conn.execute(f"DROP PUBLICATION {name}")
                n += 1

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    errors: list[BaseException] = []
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    slots.list_publications(conn)
                    slots.get_publication(conn, f"{unique_name}_churn_3")
                    ownership.drop_abandoned_publications(conn)
                except CdcError as exc:
                    errors.append(exc)
    finally:
        stop.set()
        churner.join(10)
        for n in range(20):
            db.execute(f"DROP PUBLICATION IF EXISTS {unique_name}_churn_{n}")
    assert not errors, errors[:3]
