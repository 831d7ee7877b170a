"""Apache Pulsar sink (pulsar-client). NOT tested against a live Pulsar server here: none can run on
the project's machines (docs/sinks.md, "Pulsar", says why); the message building and the error
mapping are unit-tested, and the client is exercised against an unreachable service URL.

Topic: rendered per event from `topic` (default `persistent://public/default/{prefix}.{schema}.{table}`).
Each event is one message: the Debezium envelope as payload; `partition_key` = the event key JSON, so
every change of a row lands on the same partition of a partitioned topic, in order; properties `op`,
`key`, `position` and `event_id` (dedup.EventIds: stable across replays); `event_timestamp` = the
source commit time.

Delivery: the batch is sent with `send_async` (batching off, so one failed message cannot take a
batch of others with it), `flush()` once, and `write` returns when every send callback reported
Ok, i.e. the broker persisted the message to its bookies. A failure fails the batch: Timeout,
NotConnected, ConnectError, broker persistence errors and full queues as SINK_TRANSIENT; MessageTooBig,
authorisation, invalid topic names and the like as SINK_REJECTED.

Why no broker-side deduplication: Pulsar drops a message whose `sequence_id` is not above the last
one persisted for the producer name, so sequence ids would have to be a strictly increasing function
of the event alone. Source positions are not integers for every source (GTID sets, binlog file/pos,
watermarks), and the events of one transaction share a position, so any such mapping either
collides (and the broker would silently drop real changes) or depends on process state (and would
not match on a replay). Replays are therefore at-least-once; consumers can drop duplicates by the
`event_id` property.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import EventIds
from cdc_logs.sinks.routing import check_template, position_text, render

DEFAULT_TOPIC = "persistent://public/default/{prefix}.{schema}.{table}"
_TRANSIENT = frozenset(
    {
        "Timeout",
        "NotConnected",
        "ConnectError",
        "ReadError",
        "LookupError",
        "TooManyLookupRequestException",
        "ServiceUnitNotReady",
        "BrokerPersistenceError",
        "BrokerMetadataError",
        "ProducerQueueIsFull",
        "MemoryBufferIsFull",
        "ProducerBusy",
        "AlreadyClosed",
        "UnknownError",
    }
)


def message_for(event: ChangeEvent, event_id: str) -> dict[str, Any]:
    """`send_async` keyword arguments (besides content and callback) for one event."""
    properties = {"op": event.op.value, "event_id": event_id}
    key = event.key_json()
    if key is not None:
        properties["key"] = key.decode()
    position = position_text(event)
    if position is not None:
        properties["position"] = position
    out: dict[str, Any] = {"properties": properties}
    if key is not None:
        out["partition_key"] = key.decode()
    if event.source.ts_ms:
        out["event_timestamp"] = event.source.ts_ms
    return out


def error_kind(result_name: str) -> ErrorKind:
    return ErrorKind.SINK_TRANSIENT if result_name in _TRANSIENT else ErrorKind.SINK_REJECTED


class PulsarSink(Sink):
    def __init__(
        self,
        service_url: str,
        *,
        topic: str = DEFAULT_TOPIC,
        prefix: str | None = None,
        producer_name: str | None = None,
        compression_type: str = "none",
        send_timeout_ms: int = 30_000,
        auth_token: str | None = None,
        connection_timeout_ms: int = 10_000,
        name: str = "pulsar",
    ) -> None:
        check_template(topic, "topic")
        self.service_url = service_url
        self.topic = topic
        self.prefix = prefix
        self.producer_name = producer_name
        self.compression_type = compression_type
        self.send_timeout_ms = send_timeout_ms
        self.auth_token = auth_token
        self.connection_timeout_ms = connection_timeout_ms
        self.name = name
        self._client: Any = None
        self._producers: dict[str, Any] = {}
        self._ids = EventIds()

    def open(self) -> None:
        import pulsar

        auth = pulsar.AuthenticationToken(self.auth_token) if self.auth_token else None
        try:
            self._client = pulsar.Client(
                self.service_url,
                authentication=auth,
                operation_timeout_seconds=max(1, self.send_timeout_ms // 1000),
                connection_timeout_ms=self.connection_timeout_ms,
                logger=_quiet_logger(),
            )
        except Exception as exc:
            raise CdcError(
                ErrorKind.CONFIG,
                f"bad Pulsar service URL {redact(self.service_url)}: {exc}",
                "pulsar://host:6650",
            ) from exc

    def close(self) -> None:
        for producer in self._producers.values():
            try:
                producer.close()
            except Exception:  # closing: acknowledged messages are persisted already
                continue
        self._producers.clear()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _producer(self, topic: str) -> Any:
        producer = self._producers.get(topic)
        if producer is not None:
            return producer
        import pulsar

        compression = {
            "none": pulsar.CompressionType.NONE,
            "lz4": pulsar.CompressionType.LZ4,
            "zlib": pulsar.CompressionType.ZLib,
            "zstd": pulsar.CompressionType.ZSTD,
            "snappy": pulsar.CompressionType.SNAPPY,
        }[self.compression_type]
        try:
            producer = self._client.create_producer(
                topic,
                producer_name=f"{self.producer_name}-{topic.rsplit('/', 1)[-1]}"
                if self.producer_name
                else None,
                send_timeout_millis=self.send_timeout_ms,
                compression_type=compression,
                batching_enabled=False,
                block_if_queue_full=True,
                max_pending_messages=10_000,
            )
        except Exception as exc:
            kind = error_kind(type(exc).__name__)
            raise CdcError(
                kind,
                f"cannot create a Pulsar producer for {topic} at {redact(self.service_url)}: {exc}",
                "check destination.service_url and that the topic's namespace exists"
                if kind is ErrorKind.SINK_TRANSIENT
                else "check the topic name and the token's permissions",
            ) from exc
        self._producers[topic] = producer
        return producer

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._client is None:
            self.open()
        ids, state = self._ids.assign(batch)
        done = threading.Semaphore(0)
        failures: list[str] = []
        lock = threading.Lock()

        def callback(result: Any, _msg_id: Any) -> None:
            if result.name != "Ok":
                with lock:
                    failures.append(result.name)
            done.release()

        used = []
        for event, event_id in zip(batch, ids, strict=True):
            producer = self._producer(render(self.topic, event, self.prefix))
            producer.send_async(event.to_json(), callback, **message_for(event, event_id))
            used.append(producer)
        for producer in dict.fromkeys(used):
            producer.flush()
        deadline = self.send_timeout_ms / 1000 + 10
        for _ in batch:
            if not done.acquire(timeout=deadline):
                raise CdcError(ErrorKind.SINK_TRANSIENT, "Pulsar did not report on every message in time")
        if failures:
            kind = (
                ErrorKind.SINK_TRANSIENT
                if all(error_kind(f) is ErrorKind.SINK_TRANSIENT for f in failures)
                else (ErrorKind.SINK_REJECTED)
            )
            raise CdcError(
                kind,
                f"{len(failures)} of {len(batch)} Pulsar messages failed: {failures[0]}",
                "the batch is retried"
                if kind is ErrorKind.SINK_TRANSIENT
                else "check topic limits and permissions",
            )
        self._ids.commit(state)


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("cdc_logs.pulsar_client")
    logger.setLevel(logging.WARNING)
    return logger


# -- config ----------------------------------------------------------------------------------------
class PulsarSinkConfig(SinkConfigBase):
    """Apache Pulsar producer (not tested against a live server here: see docs/sinks.md)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "pulsar", "service_url": "pulsar://pulsar.internal:6650"}]}
    )

    type: Literal["pulsar"] = Field(description="Selects this destination.")
    service_url: str = Field(
        "pulsar://127.0.0.1:6650",
        description="Pulsar service URL, pulsar://host:port.",
        examples=["pulsar://pulsar.internal:6650"],
    )
    topic: str = Field(
        "persistent://public/default/{prefix}.{schema}.{table}",
        description="Topic per event, from {prefix} {db} {schema} {table} {op} {connector}; its namespace "
        "must exist.",
        examples=["persistent://public/cdc/{table}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `topic`. Default: the event's source.name: the pipeline name (native "
        "readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )
    producer_name: str | None = Field(
        None,
        description="Name prefix of the producers (one per topic: <producer_name>-<topic's last part>). "
        "Default: names chosen by the broker. The sink sets no sequence ids, so it does not rely on broker "
        "deduplication; consumers dedup by the event_id property.",
        examples=["cdc-logs-shop"],
    )
    compression_type: Literal["none", "lz4", "zlib", "zstd", "snappy"] = Field(
        "none", description="Compression of each message.", examples=["lz4"]
    )
    send_timeout_ms: int = Field(
        30_000,
        ge=1000,
        description="Milliseconds a message may take to be persisted (also the client's operation timeout, "
        "in whole seconds); a batch fails when one is not.",
        examples=[60_000],
    )
    auth_token: SecretStr | None = Field(
        None,
        description="Token for Pulsar's token authentication. A secret: never logged.",
        examples=["${PULSAR_TOKEN}"],
    )


@registry.sink(PulsarSinkConfig, capabilities={"log", "ordered", "dedup_ids"})
def build(cfg: PulsarSinkConfig, ctx: registry.BuildContext) -> PulsarSink:
    need("pulsar", "pulsar", destination_label(cfg.type, cfg.name))
    return PulsarSink(
        cfg.service_url,
        topic=cfg.topic,
        prefix=cfg.prefix,
        producer_name=cfg.producer_name,
        compression_type=cfg.compression_type,
        send_timeout_ms=cfg.send_timeout_ms,
        auth_token=secret(cfg.auth_token),
        name=cfg.name or cfg.type,
    )
