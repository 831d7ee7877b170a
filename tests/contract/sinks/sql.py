"""The SQL apply sink on the stack's Postgres and MariaDB and on SQLite: a table mirroring the rows.

The destinations and read-backs are the matrix's (tests/matrix/targets.py): a table per test with
`auto_create`, read with the database's own client. test_sql_sink.py has the sink's other tests.
"""

from __future__ import annotations

import uuid
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture
from tests.matrix import targets
from tests.matrix.sources import Run


class Sql(SinkFixture):
    sink = "sql"
    variants = {"postgres": "state", "mariadb": "state", "sqlite": "state"}
    cannot_run = {
        "mysql": "no MySQL 8 server can run here (docs/stack.md); MariaDB, the same dialect and "
        "driver, runs instead (docker/compose.yaml has MySQL 8.4 for users)",
    }
    examples = {
        "sql": {"url": "sqlite:///out.db"},
        "postgresql": {"url": "postgresql://u@localhost/db"},
        "postgres": {"url": "postgresql://u@localhost/db"},
        "mysql": {"url": "mysql://u@localhost/db"},
        "mariadb": {"url": "mysql://u@localhost/db"},
        "sqlite": {"database": "out.db"},
    }

    def setup(self) -> None:
        self.run = Run("ct" + uuid.uuid4().hex[:8], self.server("tmp_path"))
        self.case: targets.SinkCase
        if self.variant == "postgres":
            self.case = targets.SqlPostgres(self.server("pg_dsn"))
        elif self.variant == "mariadb":
            self.case = targets.SqlMariadb(self.server("mariadb_dsn"))
        else:
            self.case = targets.SqlSqlite()
        self.cleanup.callback(self.case.cleanup, self.run)

    def destination(self) -> dict[str, Any]:
        return self.case.destination(self.run)

    def read_back(self, sink: Sink) -> Held:
        return Held(state=self.case.read(self.run, "t").state)
