"""Build a DebeziumReader from a `type: debezium` source config (the build function registered in
debezium/config.py calls it, for `run` and `tail` alike).

Maps the config's friendly keys to librdkafka settings, chooses the consumer group and the dead-letter
destination, and, when the source carries the seed's `connector_config`, hands the reader a callback
that creates or updates that connector through Kafka Connect before consuming.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdc_logs.debezium.consumer import DebeziumReader, subscription
from cdc_logs.debezium.deadletter import DeadLetter, FileDeadLetter, KafkaDeadLetter, LogDeadLetter
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger

if TYPE_CHECKING:
    from cdc_logs.debezium.config import DebeziumSourceConfig

log = get_logger(__name__)


def client_settings(cfg: DebeziumSourceConfig) -> dict[str, Any]:
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


def _dead_letter(cfg: DebeziumSourceConfig, pipeline: str, source: str, temporary: bool) -> DeadLetter | None:
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


def _provisioner(cfg: DebeziumSourceConfig, pipeline: str) -> Any:
    if cfg.connector_config is None or not cfg.connect_url:
        return None
    from cdc_logs.debezium.connect import ConnectClient, ConnectSettings
    from cdc_logs.debezium.provision import ensure_connector

    settings = ConnectSettings(
        cfg.connect_url,
        username=cfg.connect_username,
        password=cfg.connect_password.get_secret_value() if cfg.connect_password else None,
    )
    connector = dict(cfg.connector_config)
    name = str(connector.pop("name"))

    def provision() -> None:
        with ConnectClient(settings) as client:
            action = ensure_connector(client, name, connector, managed_by=f"pipeline:{pipeline}")
        log.info("debezium connector provisioned", connector=name, action=action.value)

    return provision


def build_debezium_reader(
    cfg: DebeziumSourceConfig, pipeline: str, *, temporary: bool = False
) -> DebeziumReader:
    """The reader for one source. `temporary` (tail): a throwaway group that commits nothing."""
    source = cfg.name or cfg.type
    if cfg.message_format != "json":
        raise CdcError(ErrorKind.UNSUPPORTED, "only Debezium's JSON converter output is supported", None)
    group = cfg.group_id or (
        f"cdc-logs-tail-{uuid.uuid4().hex[:12]}" if temporary else f"cdc-logs.{pipeline}.{source}"
    )
    consumer_config = {
        **client_settings(cfg),
        "group.id": group,
        "client.id": f"cdc-logs.{pipeline}.{source}",
        "auto.offset.reset": cfg.auto_offset_reset,
        **cfg.consumer_config,
    }
    return DebeziumReader(
        consumer_config,
        subscription(cfg.topics or [], cfg.topic_prefix, cfg.tables),
        dead_letter=_dead_letter(cfg, pipeline, source, temporary),
        commit_offsets=not temporary,
        provision=_provisioner(cfg, pipeline),
    )
