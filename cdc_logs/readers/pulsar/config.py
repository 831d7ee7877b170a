"""The `pulsar` source: its config (the seed's service_url, topic, subscription_name, subscription_type)
and how it is built. Not tested against a live broker here: docs/sources/pulsar.md says why."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase, secret
from cdc_logs.dsn import check_url
from cdc_logs.extras import need, source_label
from cdc_logs.readers.base import Reader
from cdc_logs.readers.messages import MessageFormatConfig


class PulsarSourceConfig(SourceConfigBase, MessageFormatConfig):
    """Apache Pulsar subscription (not tested against a live broker here: docs/sources/pulsar.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "pulsar",
                    "service_url": "pulsar://localhost:6650",
                    "topic": "persistent://public/default/events",
                    "subscription_name": "cdc_subscription",
                    "subscription_type": "shared",
                }
            ]
        }
    )

    type: Literal["pulsar"] = Field(description="Selects this source.")
    service_url: str = Field(
        "pulsar://127.0.0.1:6650",
        description="Pulsar service URL, pulsar://host:port (pulsar+ssl://host:6651 for TLS).",
        examples=["pulsar://pulsar.internal:6650"],
    )
    topic: str | None = Field(
        None,
        description="The topic to read (a partitioned topic: every partition). Give `topic` or `topics`.",
        examples=["persistent://public/default/events"],
    )
    topics: list[str] = Field(
        default_factory=list,
        description="Several topics read by one subscription, instead of `topic`.",
        examples=[["persistent://public/default/users", "persistent://public/default/orders"]],
    )
    subscription_name: str = Field(
        description="The subscription: the broker keeps its cursor (what was acknowledged), which is "
        "where a restart resumes.",
        examples=["cdc_subscription"],
    )
    subscription_type: Literal["exclusive", "shared", "failover", "key_shared"] = Field(
        "exclusive",
        description="exclusive (one consumer), failover (one active consumer, others standby), shared "
        "(messages spread over consumers, no order across them) or key_shared (per key order across "
        "consumers). exclusive/failover are acknowledged cumulatively, shared/key_shared message by message.",
        examples=["shared"],
    )
    consumer_name: str | None = Field(
        None,
        description="This consumer's name (shown by the broker). Default: chosen by the client.",
        examples=["cdc_worker_1"],
    )
    initial_position: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a subscription that does not exist yet starts: earliest (everything the topic "
        "retains) or latest (only new messages). An existing subscription resumes at its cursor.",
        examples=["latest"],
    )
    receiver_queue_size: int = Field(
        1000, ge=1, description="Messages the client prefetches.", examples=[5000]
    )
    dead_letter_topic: str | None = Field(
        None,
        description="shared/key_shared only: a message that cannot be decoded is written to the pipeline's "
        "dead-letter file and then negatively acknowledged, so Pulsar's dead-letter policy moves it to this "
        "topic after `max_redeliver_count` redeliveries. Default: such messages are acknowledged once "
        "dead-lettered to the file.",
        examples=["persistent://public/default/events-cdc-DLQ"],
    )
    max_redeliver_count: int = Field(
        1,
        ge=1,
        description="With `dead_letter_topic`: redeliveries before Pulsar moves a message there.",
        examples=[3],
    )
    negative_ack_redelivery_delay_ms: int = Field(
        1000,
        ge=0,
        description="With `dead_letter_topic`: how soon a negatively acknowledged message comes back.",
        examples=[60_000],
    )
    auth_token: SecretStr | None = Field(
        None,
        description="Token for Pulsar's token authentication. A secret: never logged.",
        examples=["${PULSAR_TOKEN}"],
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("subscription_type"), str):
            data = dict(data)
            # The client's own spellings: Shared, KeyShared, Failover, Exclusive.
            spelled = data["subscription_type"].lower().replace("-", "_")
            data["subscription_type"] = "key_shared" if spelled == "keyshared" else spelled
        return data

    @field_validator("service_url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, "URL")  # a malformed one never reaches the client, whose errors quote it
        return value

    @model_validator(mode="after")
    def _check(self) -> PulsarSourceConfig:
        if (self.topic is None) == (not self.topics):
            raise ValueError("give `topic` or `topics`")
        if self.message_format == "avro":
            raise ValueError(
                "message_format avro is the kafka source's (Confluent wire format); use json or debezium"
            )
        if self.dead_letter_topic and self.subscription_type not in ("shared", "key_shared"):
            raise ValueError(
                "dead_letter_topic needs subscription_type shared or key_shared (Pulsar's dead-letter "
                "policy works by negative acknowledgement, which cumulative acks do not use)"
            )
        return self

    def all_topics(self) -> list[str]:
        return [self.topic] if self.topic else list(self.topics)


@registry.source(PulsarSourceConfig)
def build(cfg: PulsarSourceConfig, ctx: registry.BuildContext) -> Reader:
    need("pulsar", "pulsar", source_label(cfg.type, cfg.name))
    from cdc_logs.readers.pulsar.reader import PulsarReader

    return PulsarReader(
        cfg.service_url,
        cfg.all_topics(),
        cfg.subscription_name,
        subscription_type=cfg.subscription_type,
        mapping=cfg.mapping(),
        pipeline=ctx.pipeline,
        consumer_name=cfg.consumer_name,
        initial_position=cfg.initial_position,
        receiver_queue_size=cfg.receiver_queue_size,
        dead_letter_topic=cfg.dead_letter_topic,
        max_redeliver_count=cfg.max_redeliver_count,
        negative_ack_redelivery_delay_ms=cfg.negative_ack_redelivery_delay_ms,
        auth_token=secret(cfg.auth_token),
        temporary=ctx.temporary,
    )
