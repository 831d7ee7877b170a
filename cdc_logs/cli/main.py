"""Entry point: the typer app, global options, and the one place errors become exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 an operator must act. A `CdcError`
prints one line (and its fix) on stderr; a traceback only with `--debug`.

This is also the process's single exit for secrets: before anything runs, the credentials given on
the command line and in the environment are registered with `observability.redact`, stderr gets a
redacting stream, and every message printed here (errors, usage errors, `--debug` tracebacks) is
redacted. Usage errors are printed here too (typer runs with `standalone_mode=False`), because click
quotes the rejected value (`'S3cret' is not a valid integer`) and wraps it in a panel where a secret
could be split across lines.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from cdc_logs import __version__
from cdc_logs.cli import (
    audit_cmd,
    config_cmd,
    debezium_cmd,
    demo_cmd,
    doctor_cmd,
    offsets_cmd,
    publications_cmd,
    run_cmd,
    slots_cmd,
    snapshot_cmd,
    status_cmd,
    tail_cmd,
)
from cdc_logs.cli.secrets import (
    ClickException,
    UsageError,
    print_usage_error,
    register_cli_secrets,
    usage_message,
)
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability import logging as cdc_logging
from cdc_logs.observability.redact import redact

app = typer.Typer(
    name="cdc-logs",
    help="Log-based change data capture: stream every insert, update and delete as Debezium-shaped JSON.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo_cmd.demo)
app.command("tail")(tail_cmd.tail)
app.command("run")(run_cmd.run)
app.command("doctor")(doctor_cmd.doctor)
app.command("snapshot")(snapshot_cmd.snapshot)
app.command("status")(status_cmd.status)
app.add_typer(offsets_cmd.app, name="offsets")
app.add_typer(config_cmd.app, name="config")
app.add_typer(debezium_cmd.app, name="debezium")
app.add_typer(slots_cmd.app, name="slots")
app.add_typer(publications_cmd.app, name="publications")
app.add_typer(audit_cmd.app, name="audit")

_state = {"debug": False}
_LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")
_LOG_FORMATS = ("console", "json")


def _version(value: bool) -> None:
    if value:
        print(f"cdc-logs {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="CDC_LOG_LEVEL", help="debug|info|warning|error"
    ),
    log_format: str = typer.Option("console", "--log-format", envvar="CDC_LOG_FORMAT", help="console|json"),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug
    if log_level.lower() not in _LOG_LEVELS:
        raise CdcError(
            ErrorKind.USAGE,
            f"--log-level (or CDC_LOG_LEVEL) must be one of debug, info, warning, error; got {log_level!r}",
            "use --log-level info",
        )
    if log_format.lower() not in _LOG_FORMATS:
        raise CdcError(
            ErrorKind.USAGE,
            f"--log-format (or CDC_LOG_FORMAT) must be console or json; got {log_format!r}",
            "use --log-format json (one JSON object per line) or console",
        )
    cdc_logging.configure("debug" if debug else log_level.lower(), log_format.lower())


def _print_traceback() -> None:
    if _state["debug"]:
        print(redact(traceback.format_exc()), file=sys.stderr, end="")


def main() -> None:
    cdc_logging.install_stderr()
    register_cli_secrets(sys.argv[1:], os.environ)
    cdc_logging.configure()
    try:
        # Not standalone: usage errors come here to be printed without the value they quote.
        code = app(standalone_mode=False)
    except UsageError as exc:
        print_usage_error(exc)
        sys.exit(getattr(exc, "exit_code", 2))
    except ClickException as exc:  # e.g. a file click could not open
        print(f"error: {usage_message(exc)}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except CdcError as exc:
        _print_traceback()
        print(redact(f"error: {exc}"), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        _print_traceback()
        print(
            redact(f"error: unexpected {type(exc).__name__}: {exc}\n  fix: rerun with --debug and report it"),
            file=sys.stderr,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
