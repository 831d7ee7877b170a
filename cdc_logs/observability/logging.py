"""Structured logs on stderr (stdout belongs to `--format json` envelopes), with secrets redacted.

Any value that looks like a URL with a password, or a key named like a secret, is masked before it is
rendered, so DSNs can be logged safely.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
# Any name ending in a secret word (PGPASSWORD=, db_password=), with a bare or quoted value.
_KV_PASSWORD = re.compile(
    r"""(?i)(\w*(?:password|passwd|pwd|secret|token|api[_-]?key))=('[^']*'|"[^"]*"|[^\s&]+)"""
)
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "sasl_password", "credentials")


def redact(text: str) -> str:
    """Mask passwords in URLs (`scheme://user:***@host`) and `password=...` pairs."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}=***", text)


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and any(s in key.lower() for s in _SECRET_KEYS)


def _redact_value(value: Any) -> Any:
    """Redact strings anywhere inside dicts, lists and tuples (a logged config, say)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: "***" if _is_secret_key(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        event_dict[key] = "***" if _is_secret_key(key) else _redact_value(value)
    return event_dict


def configure(level: str = "info", fmt: str = "console") -> None:
    """Set up structlog to write to stderr as `console` (human) or `json` lines."""
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


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
