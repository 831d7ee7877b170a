"""Build a DebeziumReader from a `type: debezium` source config (the build function registered in
debezium/config.py calls it, for `run` and `tail` alike).

Maps the config's friendly keys to librdkafka settings and chooses the consumer group and the
dead-letter destination (readers/kafka/settings.py, shared with the `kafka` source), and, when the
source carries the seed's `connector_config`, hands the reader a callback that creates or updates that
connector through Kafka Connect before consuming.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from cdc_logs.debezium.consumer import DebeziumReader, subscription
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.readers.kafka.settings import consumer_settings, dead_letter

if TYPE_CHECKING:
    from cdc_logs.debezium.config import DebeziumSourceConfig

log = get_logger(__name__)


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
    return DebeziumReader(
        consumer_settings(cfg, pipeline, source, group=group),
        subscription(cfg.topics or [], cfg.topic_prefix, cfg.tables),
        dead_letter=dead_letter(cfg, pipeline, source, temporary),
        commit_offsets=not temporary,
        provision=_provisioner(cfg, pipeline),
    )
