"""The `nats` source: its config (stream, durable pull consumer, ack settings) and how it is built."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase, secret
from cdc_logs.dsn import check_url
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig

_NAME = re.compile(r"^[^.*>\s]+$")  # JetStream stream and consumer names: no . * > or whitespace


def subject_problem(subject: str) -> str | None:
    """Why `subject` is not a valid NATS subject filter (None when it is)."""
    tokens = subject.split(".")
    if not subject or any(not t for t in tokens):
        return f"subject {subject!r}: tokens are separated by single dots and cannot be empty"
    for i, token in enumerate(tokens):
        if any(c.isspace() for c in token):
            return f"subject {subject!r} contains whitespace"
        if ">" in token and (token != ">" or i != len(tokens) - 1):
            return f"subject {subject!r}: > must be a whole token, and the last one"
        if "*" in token and token != "*":
            return f"subject {subject!r}: * must be a whole token (orders.*.created)"
    return None


class NatsSourceConfig(MessageFormatConfig, SourceConfigBase):
    """A NATS JetStream stream, read through a durable pull consumer; each message acknowledged once
    every sink holds it.

    See docs/sources/nats.md: the consumer the source creates, ack_wait and what the server redelivers.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "nats",
                    "url": "nats://nats.internal:4222",
                    "stream": "ORDERS",
                    "subject": "orders.>",
                }
            ]
        }
    )

    type: Literal["nats"] = Field(description="Selects this source.")
    url: str = Field(
        description="NATS server URL(s), comma-separated: nats://host[:port] (default port 4222), or "
        "tls:// for TLS. Credentials go in user/password or token. `servers` is accepted too.",
        examples=["nats://nats-1:4222,nats://nats-2:4222"],
    )
    stream: str = Field(
        description="The JetStream stream to read (it must exist). The seed's `stream_name` is accepted too.",
        examples=["ORDERS"],
    )
    subject: str | None = Field(
        None,
        description="Only the stream's messages on this subject (* one token, > the rest): the consumer's "
        "filter_subject. Default: every message of the stream.",
        examples=["orders.>"],
    )
    durable: str | None = Field(
        None,
        description="Name of the durable pull consumer that holds this source's progress on the server "
        "(created when missing). One pipeline per consumer. Default: cdc-logs-<pipeline>-<source name>. "
        "`consumer_name` and `consumer_group` are accepted too.",
        examples=["cdc-logs-orders"],
    )
    deliver_policy: Literal[
        "all", "new", "last", "last_per_subject", "by_start_sequence", "by_start_time"
    ] = Field(
        "all",
        description="Where a new consumer starts: all (the stream's first message), new (messages from now "
        "on), last, last_per_subject, by_start_sequence (`start_sequence`), by_start_time (`start_time`). "
        "Used only when the consumer is created.",
        examples=["new"],
    )
    start_sequence: int | None = Field(
        None,
        ge=1,
        description="For deliver_policy by_start_sequence: the first stream sequence.",
        examples=[1000],
    )
    start_time: dt.datetime | None = Field(
        None,
        description="For deliver_policy by_start_time: the first message's time (ISO-8601).",
        examples=["2026-01-01T00:00:00Z"],
    )
    ack_wait_s: float = Field(
        30.0,
        gt=0,
        description="The consumer's ack_wait: seconds the server waits for a message's ack before sending it "
        "again. While a message waits for the sinks the source tells the server it is in progress, so "
        "this bounds how soon messages come again after a crash, not how long a batch may take.",
        examples=[60.0],
    )
    max_ack_pending: int = Field(
        1000,
        ge=1,
        description="The consumer's max_ack_pending: messages delivered and not yet acknowledged at once. "
        "Acks wait for the sinks, so keep it at least sync.batch.max_events.",
        examples=[5000],
    )
    fetch_batch: int = Field(100, ge=1, description="Messages asked for per pull request.", examples=[500])
    user: str | None = Field(None, description="User name to log in with.", examples=["cdc"])
    password: SecretStr | None = Field(
        None, description="Password to log in with. A secret: never logged.", examples=["${NATS_PASSWORD}"]
    )
    token: SecretStr | None = Field(
        None, description="Token to log in with. A secret: never logged.", examples=["${NATS_TOKEN}"]
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the server and each JetStream request.", examples=[30.0]
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in (("servers", "url"), ("stream_name", "stream")):
                if alias in data and name not in data:
                    data[name] = data.pop(alias)
            for alias in ("consumer_name", "consumer_group"):
                if alias in data and "durable" not in data:
                    data["durable"] = data.pop(alias)
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, "NATS URL", ("nats", "tls"))
        if "@" in value:
            raise ValueError("give the credentials with user / password or token, not in the URL")
        return value

    @field_validator("stream", "durable")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"{value!r}: JetStream names cannot contain . * > or whitespace")
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        problem = subject_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _checks(self) -> NatsSourceConfig:
        if self.message_format == "avro":
            raise ValueError(
                "message_format avro is the Kafka source's (schema registry); use json or debezium"
            )
        if (self.deliver_policy == "by_start_sequence") != (self.start_sequence is not None):
            raise ValueError("start_sequence goes with deliver_policy: by_start_sequence (and it needs one)")
        if (self.deliver_policy == "by_start_time") != (self.start_time is not None):
            raise ValueError("start_time goes with deliver_policy: by_start_time (and it needs one)")
        return self


def settings(cfg: NatsSourceConfig, pipeline: str, temporary: bool = False) -> Any:
    """The reader's `NatsSettings` for `cfg` (the run's and the doctor's: the same durable default)."""
    from cdc_logs.readers.nats.reader import NatsSettings

    source = cfg.name or cfg.type
    durable = cfg.durable or re.sub(r"[.*>\s]", "_", f"cdc-logs-{pipeline}-{source}")
    return NatsSettings(
        url=cfg.url,
        stream=cfg.stream,
        subject=cfg.subject,
        durable=durable,
        deliver_policy=cfg.deliver_policy,
        start_sequence=cfg.start_sequence,
        start_time=cfg.start_time,
        ack_wait_s=cfg.ack_wait_s,
        max_ack_pending=cfg.max_ack_pending,
        fetch_batch=cfg.fetch_batch,
        user=cfg.user,
        password=secret(cfg.password),
        token=secret(cfg.token),
        connect_timeout_s=cfg.connect_timeout_s,
        temporary=temporary,
    )


@registry.source(NatsSourceConfig)
def build(cfg: NatsSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.extras import need, source_label

    need("nats", "nats", source_label(cfg.type, cfg.name))
    from cdc_logs.readers.nats.reader import NatsReader

    return NatsReader(settings(cfg, ctx.pipeline, ctx.temporary), cfg.mapping(), pipeline=ctx.pipeline)
