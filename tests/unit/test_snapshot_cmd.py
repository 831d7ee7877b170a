"""`cdc-logs snapshot`: what it refuses before touching a database (the writes are tested on the
stack: tests/integration/test_incremental_snapshot_*.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"name: shop\nsource:\n{source}\ndestination: {{type: stdout}}\n")
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", "snapshot", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


PG = """  type: postgresql
  dsn: postgresql://cdc@127.0.0.1:1/shop
  tables: [public.orders]
"""


@pytest.mark.parametrize(
    ("source", "args", "message", "fix"),
    [
        (PG, ["public.orders"], "has no signal table", "signal_data_collection"),
        (
            PG + "  signal_data_collection: public.sig\n",
            ["public.nope"],
            "does not capture public.nope",
            "public.orders",
        ),
        (
            PG + "  signal_data_collection: public.sig\n",
            [],
            "name the tables to snapshot",
            "cdc-logs snapshot",
        ),
        (
            "  type: sqlite\n  database: x.db\n  tables: [t]\n",
            ["t"],
            "no Postgres or MySQL/MariaDB source",
            "incremental",
        ),
    ],
)
def test_refusals_name_the_fix(tmp_path: Path, source: str, args: list[str], message: str, fix: str) -> None:
    result = run(tmp_path, source, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and fix in result.stderr
    assert "Traceback" not in result.stderr
