"""What the CLI's single exit (`main.main`) needs to keep credentials out of its own output.

* `register_cli_secrets`: before typer parses anything, the values of credential options (`--dsn`,
  `--password`, `--connect-url`, `--bootstrap`, ...) and of CDC_* variables holding DSNs, URLs and
  passwords are registered with `observability.redact`, so any later output quoting them (a driver's
  error, a usage error, a traceback) is masked. Options are recognised by name, so a new `--foo-url`
  is covered without a change here.
* `usage_message` / `print_usage_error`: click quotes the value it rejects (`'S3cret' is not a valid
  integer`), which may be a secret typed in the wrong place; the message keeps what was wrong and
  drops the value, then is redacted.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import typer

from cdc_logs.observability.redact import redact, register, register_text

# Click's exception classes, whether typer vendors click (typer >= 0.20) or depends on it.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]
ClickException: type[Exception] = typer.BadParameter.__mro__[2]

# Options and environment variables whose values are credentials, or embed them (DSNs, URLs).
_CREDENTIAL_OPTION = re.compile(
    r"(?i)(?:^|[-_])(?:dsn|url|uri|password|passwd|secret|token|credential|bootstrap)"
)
_WHOLE_SECRET = re.compile(r"(?i)password|passwd|secret|token|credential")
_CREDENTIAL_ENV = re.compile(r"^CDC_\w*(?:DSN|URL|URI|PASSWORD|SECRET|TOKEN|BOOTSTRAP)$")
# Click puts the rejected value first: `'S3cret' is not a valid integer.`, `70000 is not in the range`.
_REJECTED_VALUE = re.compile(r"""^(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)(?= (?:is|does) )""")


def register_cli_secrets(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Register the credentials on the command line and in CDC_* variables before any parsing."""
    for i, token in enumerate(argv):
        if not token.startswith("--"):
            continue
        name, eq, value = token.partition("=")
        if not eq:
            if i + 1 >= len(argv):
                continue
            value = argv[i + 1]
        if _CREDENTIAL_OPTION.search(name):
            _register_credential(name, value)
    for name, value in environ.items():
        if _CREDENTIAL_ENV.match(name):
            _register_credential(name, value)


def _register_credential(name: str, value: str) -> None:
    if _WHOLE_SECRET.search(name):
        register(value)
    register_text(value)


def usage_message(exc: Any) -> str:
    """Click's message without the value it rejected (it may be a secret typed in the wrong place)."""
    if isinstance(exc, typer.BadParameter) and not _is_path_param(exc):
        exc.message = _REJECTED_VALUE.sub("the value", str(exc.message), count=1)
    return redact(str(exc.format_message()))


def _is_path_param(exc: Any) -> bool:
    # A path that does not exist is worth showing, and a file name is not a credential.
    return type(getattr(getattr(exc, "param", None), "type", None)).__name__ == "Path"


def print_usage_error(exc: Any) -> None:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a group without a subcommand: typer showed its help
        return
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
    fix = f"see `{ctx.command_path} --help`" if ctx is not None else "see `cdc-logs --help`"
    print(f"error: usage: {usage_message(exc)}\n  fix: {fix}", file=sys.stderr)
