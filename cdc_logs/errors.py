"""Typed errors: every failure carries a kind that decides retry / operator action / stop, and a hint.

The pipeline never guesses from exception text: a reader or sink raises `CdcError(kind, ...)` and the
kind's directive says whether to retry with backoff, wait for an operator, or stop. The hint is one
line naming the fix (a command, a config field, a server setting).
"""

from __future__ import annotations

from enum import StrEnum


class Directive(StrEnum):
    RETRY = "retry"  # transient: back off and try again
    OPERATOR = "operator"  # needs a human (a missing slot, purged binlog, wrong server)
    STOP = "stop"  # a bug or bad input that retrying cannot fix


class ErrorKind(StrEnum):
    CONFIG = "config"
    USAGE = "usage"
    CONNECTION = "connection"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    PERMISSION = "permission"
    SERVER_MISMATCH = "server_mismatch"
    POSITION_LOST = "position_lost"
    SLOT_LOST = "slot_lost"
    LOCKED = "locked"  # another process runs the same pipeline (same offset store and name)
    DECODE = "decode"
    UNSUPPORTED = "unsupported"
    SINK_TRANSIENT = "sink_transient"
    SINK_REJECTED = "sink_rejected"
    TIMEOUT = "timeout"
    LAG = "lag"  # a source fell behind past its max_lag with on_max_lag: stop
    INVALID_DATA = "invalid_data"  # a change fails a validation rule (financial_validation)
    INTEGRITY = "integrity"  # a tamper-evident store is damaged or altered (the audit log)
    INTERNAL = "internal"


DIRECTIVES: dict[ErrorKind, Directive] = {
    ErrorKind.CONFIG: Directive.STOP,
    ErrorKind.USAGE: Directive.STOP,
    ErrorKind.CONNECTION: Directive.RETRY,
    ErrorKind.AUTH: Directive.OPERATOR,
    ErrorKind.NOT_FOUND: Directive.OPERATOR,
    ErrorKind.PERMISSION: Directive.OPERATOR,
    ErrorKind.SERVER_MISMATCH: Directive.OPERATOR,
    ErrorKind.POSITION_LOST: Directive.OPERATOR,
    ErrorKind.SLOT_LOST: Directive.OPERATOR,
    ErrorKind.LOCKED: Directive.OPERATOR,
    ErrorKind.DECODE: Directive.STOP,
    ErrorKind.UNSUPPORTED: Directive.STOP,
    ErrorKind.SINK_TRANSIENT: Directive.RETRY,
    ErrorKind.SINK_REJECTED: Directive.OPERATOR,
    ErrorKind.TIMEOUT: Directive.RETRY,
    ErrorKind.LAG: Directive.OPERATOR,
    ErrorKind.INVALID_DATA: Directive.STOP,
    ErrorKind.INTEGRITY: Directive.OPERATOR,
    ErrorKind.INTERNAL: Directive.STOP,
}


class CdcError(Exception):
    """An error with a kind (what went wrong), a message and a one-line hint (how to fix it)."""

    def __init__(self, kind: ErrorKind, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    @property
    def directive(self) -> Directive:
        return DIRECTIVES[self.kind]

    @property
    def retryable(self) -> bool:
        return self.directive is Directive.RETRY

    @property
    def exit_code(self) -> int:
        """CLI exit code: 2 usage/config error, 3 an operator must act (the hint says what), 1 other
        runtime failures."""
        if self.kind in (ErrorKind.CONFIG, ErrorKind.USAGE):
            return 2
        return 3 if self.directive is Directive.OPERATOR else 1

    def __str__(self) -> str:
        text = f"{self.kind.value}: {self.message}"
        return f"{text}\n  fix: {self.hint}" if self.hint else text
