"""librdkafka's own log lines, routed through cdc-logs' logging instead of raw to stderr.

Without a `logger`, librdkafka prints every failed connection attempt to stderr itself
(`%3|...|FAIL|...`), a few per second while a broker is down: hundreds of lines around the one typed
error the command reports. Given a `logger` (the `logger` setting of a confluent-kafka client), it
queues them for the client's poll() instead; they become debug records here (warnings stay
warnings). Broker errors reach cdc-logs through `error_cb` and the typed errors built from it.
"""

from __future__ import annotations

import logging
from typing import Any

from cdc_logs.observability.logging import get_logger

log = get_logger("librdkafka")


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno == logging.WARNING:
            log.warning("kafka client", message=message)
        else:  # errors arrive through error_cb as typed errors; the raw lines help with --debug
            log.debug("kafka client", level=record.levelname.lower(), message=message)


def librdkafka_logger() -> logging.Logger:
    """The `logger` to give every confluent-kafka Consumer and Producer."""
    logger = logging.getLogger("cdc_logs.librdkafka")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


def with_logger(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` plus the cdc-logs logger (kept out of configs that are printed or compared)."""
    return {**settings, "logger": librdkafka_logger()}
