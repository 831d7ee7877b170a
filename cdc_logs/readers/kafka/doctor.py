"""Preflight checks for a `kafka` source (`cdc-logs doctor -c pipeline.yaml`), each failing one with
its fix. Read-only: metadata and watermark requests only; no subscription, no commit, no group join.

What a run needs: the brokers (with the configured security), the topics (a named topic that does not
exist yet is a warning: the source reads it once it is created), for a resume the stored position's
cluster and offsets still inside retention, and for Avro the schema registry.
"""

from __future__ import annotations

from typing import Any

from cdc_logs.observability.redact import redact
from cdc_logs.position import KafkaOffsets, Position
from cdc_logs.readers.checks import Check, warn
from cdc_logs.readers.kafka.settings import client_settings

_TIMEOUT_S = 10.0


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `kafka` source (`stored`: its committed position, if any)."""
    from confluent_kafka import Consumer, KafkaException

    from cdc_logs.kafka_logging import with_logger

    settings = with_logger({**client_settings(cfg), "group.id": "cdc-logs-doctor", **cfg.consumer_config})
    settings["enable.auto.commit"] = False
    consumer = Consumer(settings)
    try:
        try:
            metadata = consumer.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            return [
                Check(
                    "brokers",
                    False,
                    f"cannot reach Kafka at {cfg.bootstrap_servers}: {_reason(exc)}",
                    "check bootstrap_servers and the security settings (security_protocol, sasl_*, ssl_*)",
                )
            ]
        cluster = metadata.cluster_id or cfg.bootstrap_servers
        checks = [Check("brokers", True, f"cluster {cluster}, {len(metadata.brokers)} broker(s)")]
        checks += _topics(cfg.topics, metadata.topics)
        if isinstance(stored, KafkaOffsets):
            checks += _resume(consumer, stored, cluster)
    finally:
        consumer.close()
    if cfg.message_format == "avro":
        checks.append(_registry(cfg))
    return checks


def _reason(exc: Exception) -> str:
    return str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)


def _topics(topics: list[str], existing: dict[str, Any]) -> list[Check]:
    import re

    out: list[Check] = []
    for topic in topics:
        if topic.startswith("^"):
            try:
                matched = [t for t in existing if re.match(topic, t)]
            except re.error as exc:
                out.append(Check(f"topics {topic}", False, f"not a valid regex: {exc}", "fix the pattern"))
                continue
            detail = f"matches {len(matched)} topic(s) now" + (
                f": {', '.join(sorted(matched)[:5])}" if matched else ""
            )
            out.append(Check(f"topics {topic}", True, detail))
        elif topic in existing:
            out.append(Check(f"topic {topic}", True, f"{len(existing[topic].partitions)} partition(s)"))
        else:
            out.append(
                warn(
                    f"topic {topic}",
                    "does not exist (yet): the source reads it once it is created",
                    "check the name, or create the topic",
                )
            )
    return out


def _resume(consumer: Any, stored: KafkaOffsets, cluster: str) -> list[Check]:
    from confluent_kafka import TopicPartition

    if stored.server and stored.server != cluster:
        return [
            Check(
                "stored position",
                False,
                f"it is for cluster {stored.server}, these brokers are cluster {cluster}",
                "point bootstrap_servers at the cluster the position is from, or `cdc-logs offsets reset`",
            )
        ]
    lost = []
    for key, offset in stored.offsets:
        topic, _, partition = key.rpartition(":")
        low, _high = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), timeout=_TIMEOUT_S)
        if offset < low:
            lost.append(f"{key}@{offset} (the log starts at {low})")
    if lost:
        return [
            Check(
                "stored position",
                False,
                "retention deleted records after it: " + ", ".join(lost),
                "start over with `cdc-logs offsets reset` (and a new group_id), accepting the gap",
            )
        ]
    return [Check("stored position", True, f"resumes at {stored.describe()}")]


def _registry(cfg: Any) -> Check:
    import requests

    url = str(cfg.schema_registry_url).rstrip("/")
    auth = None
    if cfg.schema_registry_username:
        password = cfg.schema_registry_password.get_secret_value() if cfg.schema_registry_password else ""
        auth = (cfg.schema_registry_username, password)
    try:
        resp = requests.get(f"{url}/schemas/types", auth=auth, timeout=_TIMEOUT_S)
    except requests.RequestException as exc:
        return Check(
            "schema registry",
            False,
            f"{redact(url)} unreachable: {redact(str(exc))}",
            "check schema_registry_url",
        )
    if resp.status_code in (401, 403):
        return Check(
            "schema registry",
            False,
            f"{redact(url)} refused the credentials ({resp.status_code})",
            "check schema_registry_username / schema_registry_password",
        )
    if resp.status_code >= 300:
        return Check(
            "schema registry",
            False,
            f"{redact(url)} answered {resp.status_code} to GET /schemas/types: not a Confluent-API registry?",
            "give the Confluent API's base URL (Apicurio: .../apis/ccompat/v7)",
        )
    return Check("schema registry", True, f"{redact(url)} answers (schema types {resp.text.strip()[:80]})")
