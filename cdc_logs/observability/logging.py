"""Structured logs on stderr (stdout belongs to `--format json` envelopes), with secrets redacted.

Every event passes `redact.redact_value` before the console or JSON renderer sees it (values under
secret-named keys become `***`, secrets inside any other value are masked), after tracebacks have
become text, so an exception message cannot leak a DSN either. The standard library's `logging` (which
some drivers use) and the `warnings` module write to stderr too: `install_stderr` puts a redacting
stream there, so whatever reaches stderr without structlog is masked as well.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from cdc_logs.observability.redact import redact, redact_value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_value(value, key)
    return event_dict


_current = ("info", "console")  # as last configured: a reader's helper process is set up the same way


def configure(level: str = "info", fmt: str = "console") -> None:
    """Set up structlog to write to stderr as `console` (human) or `json` lines."""
    global _current
    _current = (level, fmt)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks become text before redaction, so an exception message cannot leak a DSN.
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def current() -> tuple[str, str]:
    """(level, format) as last configured."""
    return _current


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class RedactingStream:
    """A text stream that redacts each write before passing it on (everything else is delegated).

    Writers call `write` with whole messages (a log line, a traceback line, a warning), so a secret is
    never split across two writes by them.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def install_stderr() -> None:
    """Route `sys.stderr` through redaction (idempotent); stdout is left alone: it carries data."""
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
