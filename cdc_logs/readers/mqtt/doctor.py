"""Preflight checks for an `mqtt` source (`cdc-logs doctor -c pipeline.yaml`), each failing one with
its fix. Read-only: one connection with the source's broker, TLS and login settings, but under a
client id of its own and a clean session that expires at once, so the pipeline's persistent session
(its client id) is neither taken over nor cleaned; nothing is subscribed, received or acknowledged.

What it cannot check without subscribing: that the broker's ACL allows the topics at QoS 1 (the
run fails naming it when it does not).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, missing_client

_TIMEOUT_S = 5.0


def check_source(cfg: Any, stored: Position | None = None, pipeline: str | None = None) -> list[Check]:
    """The checks for a configured `mqtt` source (the broker's session holds the resume state:
    `stored` is not checked)."""
    missing = missing_client("paho", "mqtt", "the mqtt source")
    if missing is not None:
        return [missing]
    from cdc_logs.readers.mqtt.config import settings
    from cdc_logs.readers.mqtt.reader import MqttReader

    s = settings(cfg, pipeline or "?", temporary=True)
    s = replace(s, connect_timeout_s=min(s.connect_timeout_s, _TIMEOUT_S))
    reader = MqttReader(s, cfg.mapping(), pipeline=pipeline or "doctor")
    reader.client_id = f"cdc-logs-doctor-{uuid.uuid4().hex[:12]}"  # never the pipeline's session
    version = "5" if s.protocol_version == 5 else "3.1.1"
    try:
        reader.probe()
    except CdcError as exc:
        return [Check("broker", False, exc.message, exc.hint)]
    login = f" as {s.username}" if s.username else ""
    return [
        Check(
            "broker",
            True,
            f"{reader.server_identity()} accepted an MQTT {version} connection{login} (a separate client "
            f"id; the topics' ACL is checked by the run's subscribe)",
        )
    ]
