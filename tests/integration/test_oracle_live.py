"""The Oracle reader against a real Oracle server: runs only when ORACLE_DSN is set.

No Oracle server can run on the project's machines, so this test has never run here: it is skipped
with that reason (tests/integration/conftest.py `oracle_dsn`). docker/compose.yaml's Oracle Free
(readers/oracle/setup-logminer.sh: ARCHIVELOG, supplemental logging, user c##dbzuser) is where it is
meant to run, with `eval "$(scripts/stack env --docker)"`:

  ORACLE_DSN       the workload's connection (the tables' database, e.g. the PDB's service)
  ORACLE_CDB_DSN   optional: the reader's connection to CDB$ROOT (multitenant), with ORACLE_PDB
  ORACLE_PDB       optional: the PDB whose tables are captured (the reader's `pdb`)

It creates a table of its own (CDC_ORA_<random>), logs all its columns, runs the reader from the
current SCN while a transaction commits, one rolls back and one undoes a statement with a savepoint,
and checks the envelopes; `cdc-logs doctor` must pass for that table. The table is dropped at the end.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent
from cdc_logs.readers.oracle.config import OracleSourceConfig
from cdc_logs.readers.oracle.connection import parse_dsn
from cdc_logs.readers.oracle.doctor import check_source
from cdc_logs.readers.oracle.reader import OracleReader

oracledb = pytest.importorskip("oracledb")


@pytest.fixture
def table(oracle_dsn: str) -> Iterator[tuple[Any, str, str]]:
    parsed = parse_dsn(oracle_dsn)
    conn = oracledb.connect(user=parsed.user, password=parsed.password, dsn=parsed.dsn)
    owner = parsed.user.upper()
    name = f"CDC_ORA_{uuid.uuid4().hex[:8].upper()}"
    with conn.cursor() as cur:
        cur.execute(
            f'CREATE TABLE "{name}" (ID NUMBER(10) PRIMARY KEY, NAME VARCHAR2(40), AMOUNT NUMBER(10, 2), '
            "CREATED TIMESTAMP(6))"
        )
        cur.execute(f'ALTER TABLE "{name}" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS')
    try:
        yield conn, owner, name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP TABLE "{name}" PURGE')
        conn.close()


def _config(oracle_dsn: str, owner: str, name: str) -> OracleSourceConfig:
    return OracleSourceConfig(
        type="oracle",
        dsn=os.environ.get("ORACLE_CDB_DSN") or oracle_dsn,
        pdb=os.environ.get("ORACLE_PDB") or None,
        tables=[f"{owner}.{name}"],
        poll_interval_ms=200,
        heartbeat_interval_ms=1000,
    )


def test_live_changes_in_commit_order(oracle_dsn: str, table: tuple[Any, str, str]) -> None:
    conn, owner, name = table
    from cdc_logs import registry

    cfg = _config(oracle_dsn, owner, name)
    reader = registry.for_config(cfg).build(cfg, registry.BuildContext("live"))
    assert isinstance(reader, OracleReader)
    events: list[ChangeEvent] = []
    done = threading.Event()

    def workload() -> None:
        time.sleep(2)  # the reader has taken its start point
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO \"{name}\" VALUES (1, 'it''s', 12.5, TIMESTAMP '2024-01-02 03:04:05.5')"
            )
            cur.execute(f"UPDATE \"{name}\" SET NAME = 'b' WHERE ID = 1")
            conn.commit()
            cur.execute(f"INSERT INTO \"{name}\" VALUES (2, 'gone', 1, NULL)")
            conn.rollback()
            cur.execute(f"INSERT INTO \"{name}\" VALUES (3, 'kept', 1, NULL)")
            cur.execute("SAVEPOINT s")
            cur.execute(f"INSERT INTO \"{name}\" VALUES (4, 'undone', 1, NULL)")
            cur.execute("ROLLBACK TO SAVEPOINT s")
            cur.execute(f'DELETE FROM "{name}" WHERE ID = 1')
            conn.commit()
        done.set()

    worker = threading.Thread(target=workload)
    deadline = time.monotonic() + 120
    with reader:
        worker.start()
        for item in reader.stream(None):
            if isinstance(item, ChangeEvent):
                events.append(item)
            if len(events) >= 4 or time.monotonic() > deadline:
                break
    worker.join(30)
    assert done.is_set()
    got = [(e.op.value, (e.after or e.before or {}).get("ID")) for e in events]
    assert got == [("c", 1), ("u", 1), ("c", 3), ("d", 1)]
    assert events[0].after == {"ID": 1, "NAME": "it's", "AMOUNT": "12.5", "CREATED": 1704164645500000}
    assert events[1].before is not None and events[1].before["NAME"] == "it's"


def test_live_doctor_passes_for_the_table(oracle_dsn: str, table: tuple[Any, str, str]) -> None:
    _, owner, name = table
    checks = check_source(_config(oracle_dsn, owner, name))
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    assert not failed, failed
