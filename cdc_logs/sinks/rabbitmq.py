"""RabbitMQ sink: persistent messages with publisher confirms (pika), one confirm wait per batch.

Every event is published with `delivery_mode=2` (persistent), `mandatory=True`, content type
`application/json`, the Debezium envelope as body, and headers `op`, `key` (the event key as JSON
text) and `position`. `message_id` is a stable id derived from the source position and the change
(see dedup.EventIds), so a consumer can drop a replayed message.

Routing, in the seed's shape: with `exchange`, messages go to it with the routing key rendered from
`routing_key` (default `{prefix}.{schema}.{table}.{op}`); with only `queue`, they go through the
default exchange straight to that queue. With `declare` (default true) the sink declares the durable
exchange (`exchange_type`, default topic) and the durable queue, bound with `binding_key` (default
`#`, everything). Declaring is idempotent; a mismatching existing declaration fails with the
broker's PRECONDITION_FAILED, and `declare: false` then leaves the topology to the operator.

Delivery: `write` publishes the whole batch and returns after the broker has confirmed every message
(for persistent messages on durable queues RabbitMQ confirms once they are on disk). A nack, or a
message returned as unroutable (no queue bound), fails the batch. The confirms are pipelined: pika's
BlockingChannel waits for each confirm in turn (a round trip per message, ~1.5k msg/s here), so the
sink publishes on the underlying channel (`BlockingChannel._impl`, stable through pika 1.x) and
drives the connection until every delivery tag is settled (~15k msg/s here).

Ordering: one channel publishes in source order, and RabbitMQ keeps publish order per queue. A
replayed batch is published again (at-least-once); `message_id` identifies the duplicates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from pydantic import ConfigDict, Field, SecretStr, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import EventIds
from cdc_logs.sinks.routing import check_template, position_text, render

DEFAULT_ROUTING_KEY = "{prefix}.{schema}.{table}.{op}"


class _Confirms:
    """Outstanding delivery tags of one batch; acks and nacks may settle several at once."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.nacked = 0
        self.returned: list[str] = []
        self.closed: Exception | None = None  # the broker closed the channel (e.g. 404 no exchange)

    def on_close(self, _channel: Any, reason: Exception) -> None:
        self.closed = reason

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        settled = {t for t in self.pending if t <= tag} if method.multiple else {tag} & self.pending
        self.pending -= settled
        if method.NAME == "Basic.Nack":
            self.nacked += len(settled)

    def on_return(self, _channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self.returned.append(
            f"{method.reply_text} (exchange {method.exchange!r}, key {method.routing_key!r})"
        )


class RabbitMQSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        exchange: str | None = None,
        exchange_type: str = "topic",
        queue: str | None = None,
        routing_key: str = DEFAULT_ROUTING_KEY,
        binding_key: str = "#",
        declare: bool = True,
        prefix: str | None = None,
        confirm_timeout_s: float = 30.0,
        name: str = "rabbitmq",
    ) -> None:
        if not exchange and not queue:
            raise CdcError(
                ErrorKind.CONFIG, "rabbitmq destination needs `exchange` or `queue`", "name one of them"
            )
        check_template(routing_key, "routing_key")
        self.url = url
        self.exchange = exchange or ""
        self.exchange_type = exchange_type
        self.queue = queue
        self.routing_key = routing_key
        self.binding_key = binding_key
        self.declare = declare
        self.prefix = prefix
        self.confirm_timeout_s = confirm_timeout_s
        self.name = name
        self._connection: Any = None
        self._channel: Any = None
        self._confirms = _Confirms()
        self._next_tag = 1
        self._ids = EventIds()

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        import pika
        import pika.exceptions as pex

        try:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            blocking = self._connection.channel()
            if self.declare:
                self._declare(blocking)
            channel = blocking._impl  # see the module docstring: pipelined confirms
            confirms = _Confirms()
            ready: list[bool] = []
            channel.confirm_delivery(
                ack_nack_callback=confirms.on_confirm, callback=lambda _f: ready.append(True)
            )
            channel.add_on_return_callback(confirms.on_return)
            channel.add_on_close_callback(confirms.on_close)
            deadline = time.monotonic() + self.confirm_timeout_s
            while not ready and time.monotonic() < deadline:
                self._connection.process_data_events(time_limit=0.1)
        except pex.ProbableAuthenticationError as exc:
            raise CdcError(
                ErrorKind.AUTH, f"RabbitMQ at {redact(self.url)} refused the login", "check username/password"
            ) from exc
        except pex.AMQPError as exc:
            self._reset()
            raise self._error(exc, f"cannot open RabbitMQ at {redact(self.url)}") from exc
        if not ready:
            self._reset()
            raise CdcError(ErrorKind.SINK_TRANSIENT, "RabbitMQ did not enable publisher confirms in time")
        self._channel, self._confirms, self._next_tag = channel, confirms, 1

    def _declare(self, channel: Any) -> None:
        if self.exchange:
            channel.exchange_declare(self.exchange, exchange_type=self.exchange_type, durable=True)
        if self.queue:
            channel.queue_declare(self.queue, durable=True)
            if self.exchange:
                channel.queue_bind(self.queue, self.exchange, routing_key=self.binding_key)

    def close(self) -> None:
        self._reset()

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Closing a broken connection must not mask the error that broke it.
            with contextlib.suppress(Exception):
                connection.close()

    # -- writing -----------------------------------------------------------------------------------
    def routing_key_for(self, event: ChangeEvent) -> str:
        if not self.exchange:
            assert self.queue is not None
            return self.queue  # default exchange: the routing key is the queue name
        return render(self.routing_key, event, self.prefix)

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._channel is None:
            self.open()
        import pika
        import pika.exceptions as pex

        confirms = self._confirms
        confirms.nacked, confirms.returned = 0, []
        ids, state = self._ids.assign(batch)
        try:
            for event, message_id in zip(batch, ids, strict=True):
                headers: dict[str, Any] = {"op": event.op.value}
                key = event.key_json()
                if key is not None:
                    headers["key"] = key.decode()
                position = position_text(event)
                if position is not None:
                    headers["position"] = position
                props = pika.BasicProperties(
                    delivery_mode=2,
                    content_type="application/json",
                    message_id=message_id,
                    timestamp=event.ts_ms // 1000 if event.ts_ms else None,
                    headers=headers,
                )
                self._channel.basic_publish(
                    self.exchange, self.routing_key_for(event), event.to_json(), props, mandatory=True
                )
                confirms.pending.add(self._next_tag)
                self._next_tag += 1
            deadline = time.monotonic() + self.confirm_timeout_s
            while confirms.pending and confirms.closed is None and time.monotonic() < deadline:
                self._connection.process_data_events(time_limit=0.05)
            if confirms.closed is not None:
                raise confirms.closed
        except pex.AMQPError as exc:
            self._reset()
            raise self._error(exc, f"publishing {len(batch)} messages failed") from exc
        if confirms.pending:
            self._reset()  # late confirms would be counted against the next batch
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"RabbitMQ confirmed {len(batch) - len(confirms.pending)} of {len(batch)} messages in "
                f"{self.confirm_timeout_s:g}s",
                "check the broker (disk or memory alarm?); the batch is retried",
            )
        if confirms.returned:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{len(confirms.returned)} messages were unroutable: {confirms.returned[0]}",
                "bind a queue to the exchange for these routing keys, or fix destination.routing_key",
            )
        if confirms.nacked:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"RabbitMQ nacked {confirms.nacked} of {len(batch)} messages",
                "the broker could not store them (queue limits, internal error); the batch is retried",
            )
        self._ids.commit(state)

    def _error(self, exc: Exception, what: str) -> CdcError:
        import pika.exceptions as pex

        if isinstance(exc, pex.ChannelClosedByBroker) and exc.reply_code in (403, 404, 406):
            # 404: the exchange does not exist; 406: a declaration mismatches; 403: not allowed.
            return CdcError(
                ErrorKind.SINK_REJECTED,
                f"{what}: {exc.reply_code} {exc.reply_text}",
                "declare the exchange/queue (destination.declare: true) or fix their names and types",
            )
        return CdcError(
            ErrorKind.SINK_TRANSIENT, f"{what}: {exc!r}", "the batch is retried when RabbitMQ is back"
        )


# -- config ----------------------------------------------------------------------------------------
class RabbitMQSinkConfig(SinkConfigBase):
    """RabbitMQ: persistent messages with publisher confirms."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "rabbitmq",
                    "host": "rabbit.internal",
                    "username": "cdc",
                    "password": "${RABBITMQ_PASSWORD}",
                    "exchange": "cdc",
                }
            ]
        }
    )

    type: Literal["rabbitmq"] = Field(description="Selects this destination.")
    url: str | None = Field(
        None,
        description="AMQP URL; when set, host, port, username, password and virtual_host are ignored. A "
        "password in it is masked in output; write it as ${VAR}.",
        examples=["amqp://cdc:${RABBITMQ_PASSWORD}@rabbit.internal:5672/%2F"],
    )
    host: str = Field(
        "127.0.0.1", description="Broker host, when `url` is not set.", examples=["rabbit.internal"]
    )
    port: int = Field(
        5672, ge=1, le=65535, description="Broker port, when `url` is not set.", examples=[5671]
    )
    username: str = Field("guest", description="User, when `url` is not set.", examples=["cdc"])
    password: SecretStr = Field(
        SecretStr("guest"),
        description="Password of `username`, when `url` is not set. A secret: never logged. Default: "
        "RabbitMQ's stock guest password (the guest user may only connect from localhost).",
        examples=["${RABBITMQ_PASSWORD}"],
    )
    virtual_host: str = Field("/", description="Virtual host, when `url` is not set.", examples=["cdc"])
    exchange: str | None = Field(
        None,
        description="Exchange to publish to, with the routing key from `routing_key`. Without it, messages "
        "go through the default exchange straight to `queue`. Give `exchange`, `queue` or both.",
        examples=["cdc"],
    )
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = Field(
        "topic", description="Type of the exchange when it is declared.", examples=["direct"]
    )
    queue: str | None = Field(
        None,
        description="Queue declared (durable) and bound to `exchange` with `binding_key`; without an "
        "exchange, the queue every message goes to.",
        examples=["processed_events"],
    )
    routing_key: str = Field(
        "{prefix}.{schema}.{table}.{op}",
        description="Routing key per event, from {prefix} {db} {schema} {table} {op} {connector}; unused "
        "without an exchange (the key is then the queue's name).",
        examples=["{schema}.{table}"],
    )
    binding_key: str = Field(
        "#",
        description="Binding key of `queue` to `exchange` when declaring; # (with a topic exchange) binds "
        "everything.",
        examples=["shop.public.*.*"],
    )
    declare: bool = Field(
        True,
        description="Declare the durable exchange, queue and binding at start (idempotent; a mismatching "
        "existing one fails with PRECONDITION_FAILED). false: the operator manages the topology.",
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `routing_key`. Default: the event's source.name: the pipeline name "
        "(native readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )
    confirm_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds to wait for the broker to confirm every message of a batch (and, at start, "
        "to enable publisher confirms); then the batch fails and is retried.",
        examples=[60.0],
    )

    @model_validator(mode="after")
    def _target(self) -> RabbitMQSinkConfig:
        if not self.exchange and not self.queue:
            raise ValueError("rabbitmq destination needs `exchange` or `queue`")
        return self

    def amqp_url(self) -> str:
        if self.url:
            return self.url
        user, pw = quote(self.username, safe=""), quote(self.password.get_secret_value(), safe="")
        return f"amqp://{user}:{pw}@{self.host}:{self.port}/{quote(self.virtual_host, safe='')}"


@registry.sink(RabbitMQSinkConfig, capabilities={"log", "ordered", "dedup_ids"})
def build(cfg: RabbitMQSinkConfig, ctx: registry.BuildContext) -> RabbitMQSink:
    need("pika", "rabbitmq", destination_label(cfg.type, cfg.name))
    return RabbitMQSink(
        cfg.amqp_url(),
        exchange=cfg.exchange,
        exchange_type=cfg.exchange_type,
        queue=cfg.queue,
        routing_key=cfg.routing_key,
        binding_key=cfg.binding_key,
        declare=cfg.declare,
        prefix=cfg.prefix,
        confirm_timeout_s=cfg.confirm_timeout_s,
        name=cfg.name or cfg.type,
    )
