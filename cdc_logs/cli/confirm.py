"""Confirmation for commands that change or delete something (`offsets rewind|reset`, `debezium
connectors delete [--purge]`, `debezium connectors offsets reset`), one behaviour for all of them:

* `--yes`: no question;
* no terminal on standard input and no `--yes`: refused before anything changes (usage, exit 2),
  naming `--yes` (a prompt nobody can answer would only print "Aborted!");
* on a terminal the question is asked; any answer but yes exits 1 saying that nothing changed.
"""

from __future__ import annotations

import sys

import typer

from cdc_logs.errors import CdcError, ErrorKind


def require_answerable(yes: bool, action: str) -> None:
    """Refuse early when a question would be needed but nobody can answer it."""
    if not yes and not sys.stdin.isatty():
        raise CdcError(
            ErrorKind.USAGE,
            f"refusing to {action} without a confirmation: there is no terminal to ask on",
            "add --yes to confirm on the command line",
        )


def confirm(yes: bool, action: str, question: str) -> None:
    """Ask `question` unless `yes`; refused without a terminal; a "no" exits 1 (nothing changed)."""
    if yes:
        return
    require_answerable(yes, action)
    if not typer.confirm(question, default=False):
        print("nothing changed", file=sys.stderr)
        raise typer.Exit(1)
