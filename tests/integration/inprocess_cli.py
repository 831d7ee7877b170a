"""`cdc-logs ...` run in the test's own process, through the CLI's real entry point (`main()`).

A subprocess spends seconds importing on a busy machine; this gives the same exit code, stdout and
stderr (as a `CompletedProcess`) in milliseconds. Standard input is empty and not a terminal, so a
command that asks for confirmation needs --yes, as under a script. `run` stays a subprocess: it
installs signal handlers and holds the pipeline lock for its lifetime.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from unittest import mock

from cdc_logs.cli.main import main


def cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["cdc-logs", *args]
    with (
        mock.patch.object(sys, "argv", argv),
        mock.patch.object(sys, "stdin", io.StringIO("")),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
