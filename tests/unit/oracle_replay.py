"""A replay of recorded LogMiner query results at the Oracle reader's connection boundary.

No Oracle server can run on the project's machines, so the Oracle tests drive the real reader
(cdc_logs/readers/oracle/reader.py and everything past connection.py) with `ReplaySession`, which
stands where `connection.LogMinerSession` stands and answers from a fixture of recorded-style rows
(tests/fixtures/oracle/*.json): V$DATABASE facts, V$LOG/V$ARCHIVED_LOG rows, ALL_TAB_COLUMNS rows,
V$LOGMNR_CONTENTS rows, and the result of the snapshot's flashback query. This is recorded data, not
a server: what it proves is the reader's handling of those rows, not LogMiner's behaviour.

`mine(files, start, end, tables)` returns the rows of SCNs (start, end] that the reader's query
selects (transaction control, and DML, DDL and UNSUPPORTED rows of the captured tables), and
asserts that the log files the reader chose cover every SCN of the window, as LogMiner would refuse
a window with missing redo. A fixture's `log_switch` makes the first window containing its SCN fail
after some rows with the recorded ORA- error (a log switch under the window), after which the log
lists change and the online member that was overwritten fails if it is added again.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cdc_logs.readers.oracle.connection import Identity, LogSwitched
from cdc_logs.readers.oracle.logs import LogFile
from cdc_logs.readers.oracle.rows import TABLE_CODES
from cdc_logs.readers.oracle.schema import CatalogColumn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "oracle"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


class ReplaySession:
    """See the module docstring. `current`: the SCNs `current_scn()` answers in turn (the last repeats)."""

    def __init__(self, fixture: dict[str, Any], *, current: Sequence[int] | None = None) -> None:
        self.fixture = copy.deepcopy(fixture)
        self.currents = list(current or [fixture["current_scn"]])
        self.switched = False
        self.windows: list[tuple[int, int, list[str]]] = []  # (start, end, files) of each mine call
        self.closed = False
        self.snapshots: list[str] = []

    def identity(self) -> Identity:
        return Identity(self.fixture["dbid"], self.fixture["db_name"])

    def current_scn(self) -> int:
        return self.currents.pop(0) if len(self.currents) > 1 else self.currents[0]

    def oldest_open_scn(self) -> int | None:
        return self.fixture.get("oldest_open_scn")

    def list_logs(self, start: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        logs = self.fixture["log_switch"]["logs"] if self.switched else self.fixture["logs"]
        return logs["online"], [a for a in logs["archived"] if a["NEXT_CHANGE#"] > start]

    def table_columns(self, owner: str, table: str) -> list[CatalogColumn]:
        rows = self.fixture["tables"].get(f"{owner}.{table}", [])
        return [
            CatalogColumn(
                r["COLUMN_NAME"],
                r["DATA_TYPE"],
                r["DATA_LENGTH"],
                r["DATA_PRECISION"],
                r["DATA_SCALE"],
                r["NULLABLE"] != "N",
                r["PK"],
            )
            for r in rows
        ]

    def mine(
        self, files: Sequence[LogFile], start: int, end: int, tables: Sequence[tuple[str, str]]
    ) -> Iterator[dict[str, Any]]:
        self.windows.append((start, end, [f.name for f in files]))
        switch = self.fixture.get("log_switch")
        if switch and self.switched and any(f.name == switch["overwritten"] for f in files):
            raise LogSwitched(switch["error"])
        covered = [(f.first_scn, f.next_scn) for f in files]
        for scn in (start + 1, end):
            assert any(a <= scn < b for a, b in covered), f"SCN {scn} is in no added log file: {files}"
        wanted = {(o, t) for o, t in tables}
        rows = [
            r
            for r in self.fixture["rows"]
            if start < r["SCN"] <= end
            and (
                r["OPERATION_CODE"] in (6, 7, 36)
                or (r["OPERATION_CODE"] in TABLE_CODES and (r["SEG_OWNER"], r["TABLE_NAME"]) in wanted)
            )
        ]
        fail_after = None
        if switch and not self.switched and start < switch["window_containing"] <= end:
            fail_after = switch["fail_after_rows"]
        for i, row in enumerate(rows):
            if fail_after is not None and i == fail_after:
                self.switched = True
                raise LogSwitched(switch["error"])
            yield dict(row)

    def snapshot_rows(self, sql: str, scn: int) -> Iterator[tuple[Any, ...]]:
        """The recorded result of a snapshot's flashback query (the table named in its FROM)."""
        match = re.search(r'FROM "([^"]+)"\."([^"]+)" AS OF SCN :scn$', sql)
        assert match, sql
        recorded = self.fixture["snapshot"][f"{match.group(1)}.{match.group(2)}"]
        assert recorded["scn"] == scn, f"snapshot asked as of SCN {scn}, recorded at {recorded['scn']}"
        self.snapshots.append(sql)
        yield from (tuple(r) for r in recorded["rows"])

    def close(self) -> None:
        self.closed = True
