"""librdkafka settings and dead-letter destinations from a Kafka source's config, shared by the
`kafka` and `debezium` sources (their configs spell the connection and security fields alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc_logs.debezium.deadletter import DeadLetter, FileDeadLetter, KafkaDeadLetter, LogDeadLetter


def client_settings(cfg: Any) -> dict[str, Any]:
    """librdkafka connection and security settings shared by the consumer and a dead-letter producer."""
    out: dict[str, Any] = {"bootstrap.servers": cfg.bootstrap_servers}
    pairs: dict[str, Any] = {
        "security.protocol": cfg.security_protocol,
        "sasl.mechanism": cfg.sasl_mechanism,
        "sasl.username": cfg.sasl_username,
        "sasl.password": cfg.sasl_password.get_secret_value() if cfg.sasl_password else None,
        "ssl.ca.location": cfg.ssl_ca_location,
        "ssl.certificate.location": cfg.ssl_certificate_location,
        "ssl.key.location": cfg.ssl_key_location,
        "ssl.key.password": cfg.ssl_key_password.get_secret_value() if cfg.ssl_key_password else None,
    }
    out.update({k: v for k, v in pairs.items() if v is not None})
    return out


def consumer_settings(cfg: Any, pipeline: str, source: str, *, group: str) -> dict[str, Any]:
    """The consumer's settings: connection, group, client id, offset reset, then the user's extras."""
    return {
        **client_settings(cfg),
        "group.id": group,
        "client.id": f"cdc-logs.{pipeline}.{source}",
        "auto.offset.reset": cfg.auto_offset_reset,
        **cfg.consumer_config,
    }


def dead_letter(cfg: Any, pipeline: str, source: str, temporary: bool) -> DeadLetter | None:
    """The destination of `cfg.dead_letter` (a DeadLetterConfig); None for `tail` without a path."""
    dl = cfg.dead_letter
    if dl.type == "kafka":
        return KafkaDeadLetter(dl.topic or f"{pipeline}.dlq", client_settings(cfg))
    if temporary and dl.path is None:
        # tail leaves no files behind unless asked: the pipeline stops at a malformed record, or
        # parks it with --dead-letter-dir, as for every other source (never a skip with a warning).
        return None
    if dl.type == "log":
        return LogDeadLetter()
    return FileDeadLetter(dl.path or Path(".cdc-logs") / f"{pipeline}.{source}.dlq.jsonl", source)
