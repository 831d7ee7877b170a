"""`cdc-logs` with the Oracle reader's connection replaced by the matrix's replay (oracle_redo.py).

The matrix starts `cdc-logs run` as a user does; for the Oracle case, which has no server, it starts
this file instead: the same CLI, with `FileReplaySession` standing where `LogMinerSession` stands
(reading the LogMiner rows the case writes to $CDC_ORACLE_REPLAY_DIR). Nothing else differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `tests.matrix`

from tests.matrix.oracle_redo import install

install()

from cdc_logs.cli.main import main  # noqa: E402

main()
