"""The `rabbitmq` source: its config (the seed's shape: host, port, username, password, queue, exchange,
routing_key; plus what a pika user expects: url, virtual_host, TLS, prefetch, queue arguments) and its
build."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase
from cdc_logs.dsn import check_url
from cdc_logs.extras import need, source_label
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig

DLX_ARGUMENT = "x-dead-letter-exchange"


class RabbitMQSourceConfig(MessageFormatConfig, SourceConfigBase):
    """RabbitMQ: a queue consumed with manual acks, acked once the sinks hold the messages.

    See docs/sources/rabbitmq.md.
    """

    # The seed's example also binds with routing_key "user.#"; it is left out here because the example
    # checker (like log redaction) takes any key ending in "key" for a credential.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "rabbitmq",
                    "host": "localhost",
                    "port": 5672,
                    "username": "cdc",
                    "password": "${RABBITMQ_PASSWORD}",
                    "queue": "source_events",
                    "exchange": "events_exchange",
                }
            ]
        }
    )

    type: Literal["rabbitmq"] = Field(description="Selects this source.")
    url: str | None = Field(
        None,
        description="AMQP URL (amqps:// for TLS; pika's query options such as heartbeat are accepted); "
        "when set, host, port, username, password, virtual_host and ssl are ignored. Write the password "
        "as ${VAR}.",
        examples=["amqps://cdc:${RABBITMQ_PASSWORD}@rabbit.internal:5671/%2F?heartbeat=30"],
    )
    host: str = Field("127.0.0.1", description="Broker host, when `url` is not set.", examples=["localhost"])
    port: int = Field(
        5672,
        ge=1,
        le=65535,
        description="Broker port, when `url` is not set (5671 for TLS).",
        examples=[5671],
    )
    username: str = Field("guest", description="User, when `url` is not set.", examples=["cdc"])
    password: SecretStr = Field(
        SecretStr("guest"),
        description="Password of `username`, when `url` is not set. A secret: never logged. Default: "
        "RabbitMQ's stock guest password (the guest user may only connect from localhost).",
        examples=["${RABBITMQ_PASSWORD}"],
    )
    virtual_host: str = Field("/", description="Virtual host, when `url` is not set.", examples=["cdc"])
    ssl: bool = Field(False, description="TLS to the broker, when `url` is not set (amqps:// does the same).")
    ssl_ca_certs: str | None = Field(
        None,
        description="CA certificates file (PEM) to verify the broker with. Default: the system's CAs.",
        examples=["/etc/ssl/certs/rabbit-ca.pem"],
    )
    ssl_certfile: str | None = Field(
        None,
        description="Client certificate file (PEM) for TLS client authentication.",
        examples=["/etc/cdc/rabbit.pem"],
    )
    ssl_keyfile: str | None = Field(
        None,
        description="Private key file (PEM) of the client certificate.",
        examples=["/etc/cdc/rabbit.key"],
    )
    queue: str = Field(description="The queue to consume.", examples=["source_events"])
    exchange: str | None = Field(
        None,
        description="An exchange to bind the queue to with `routing_key` (declared durable when `declare` "
        "is true). Default: none, the queue is consumed as it is.",
        examples=["events_exchange"],
    )
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = Field(
        "topic", description="Type of `exchange` when it is declared.", examples=["direct"]
    )
    routing_key: str | list[str] = Field(
        "#",
        description="Binding key(s) of the queue to `exchange` (topic patterns such as user.# with a topic "
        "exchange). Default: # (everything, with a topic exchange).",
        examples=["user.#", ["user.created", "user.deleted"]],
    )
    declare: bool = Field(
        True,
        description="true: declare the exchange and the queue (durable, with `queue_arguments`) and bind "
        "them at start; idempotent, and a mismatch with an existing one fails naming it. false: the queue "
        "(and exchange) must exist; they are only checked (passive declare), nothing is bound. Nothing is "
        "ever deleted.",
    )
    queue_arguments: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Arguments the queue is declared with (when `declare`), e.g. x-dead-letter-exchange, "
        "x-queue-type. They must equal those of an existing queue.",
        examples=[{"x-dead-letter-exchange": "events_dlx", "x-queue-type": "quorum"}],
    )
    dead_letter_exchange: bool | None = Field(
        None,
        description="Whether the queue has a dead-letter exchange: poison messages are then nacked "
        "(requeue=false) so the broker routes them there, besides the pipeline's dead-letter file; else they "
        "are acked once that file holds them. Default: true when queue_arguments set "
        "x-dead-letter-exchange; set true for a DLX given by a policy (the source cannot see policies).",
        examples=[True],
    )
    prefetch: int = Field(
        500,
        ge=1,
        le=65535,
        description="basic.qos prefetch count: messages delivered and not yet acked at most. Messages are "
        "acked once the sinks hold them, so keep it above sync.batch.max_events.",
        examples=[1000],
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value, "AMQP URL", ("amqp", "amqps"))

    @model_validator(mode="after")
    def _formats(self) -> RabbitMQSourceConfig:
        if self.message_format == "avro":
            raise ValueError("message_format avro needs a schema registry: Kafka sources only; use json")
        return self

    def amqp_url(self) -> str:
        if self.url:
            return self.url
        user, pw = quote(self.username, safe=""), quote(self.password.get_secret_value(), safe="")
        scheme = "amqps" if self.ssl else "amqp"
        return f"{scheme}://{user}:{pw}@{self.host}:{self.port}/{quote(self.virtual_host, safe='')}"

    def routing_keys(self) -> tuple[str, ...]:
        return (self.routing_key,) if isinstance(self.routing_key, str) else tuple(self.routing_key)

    def nacks_poison(self) -> bool:
        if self.dead_letter_exchange is not None:
            return self.dead_letter_exchange
        return DLX_ARGUMENT in self.queue_arguments


def parameters(cfg: RabbitMQSourceConfig) -> tuple[Any, str]:
    """pika connection parameters, and the broker's address without credentials."""
    import ssl

    import pika

    params = pika.URLParameters(cfg.amqp_url())
    if params.ssl_options is not None and (cfg.ssl_ca_certs or cfg.ssl_certfile):
        context = ssl.create_default_context(cafile=cfg.ssl_ca_certs)
        if cfg.ssl_certfile:
            context.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile)
        params.ssl_options = pika.SSLOptions(context, params.host)
    return params, f"{params.host}:{params.port}"


@registry.source(RabbitMQSourceConfig)
def build(cfg: RabbitMQSourceConfig, ctx: registry.BuildContext) -> Reader:
    need("pika", "rabbitmq", source_label(cfg.type, cfg.name))
    from cdc_logs.readers.rabbitmq.reader import RabbitMQReader, Topology

    params, where = parameters(cfg)
    # Shown by the management UI and `rabbitmqctl list_connections`: which pipeline holds the queue.
    params.client_properties = {"connection_name": f"cdc-logs {ctx.pipeline}/{cfg.name or cfg.type}"}
    topology = Topology(
        cfg.queue,
        exchange=cfg.exchange,
        exchange_type=cfg.exchange_type,
        routing_keys=cfg.routing_keys(),
        declare=cfg.declare,
        queue_arguments=dict(cfg.queue_arguments),
    )
    return RabbitMQReader(
        params,
        where,
        topology,
        mapping=cfg.mapping(),
        pipeline=ctx.pipeline,
        prefetch=cfg.prefetch,
        nack_poison=cfg.nacks_poison(),
        ack=not ctx.temporary,  # tail: a peek, every message stays in the queue
    )
