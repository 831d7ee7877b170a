"""The `nats` source's config (spellings, what is refused and why) and its position. The server
behaviour is tested live in tests/integration/test_nats_source.py."""

from __future__ import annotations

import pytest

from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError
from cdc_logs.position import NatsSequence, decode
from cdc_logs.readers.nats.config import NatsSourceConfig, subject_problem

BASE = {"type": "nats", "url": "nats://n:4222", "stream": "ORDERS"}


def test_a_pipeline_with_the_source_validates_and_takes_the_seed_spellings() -> None:
    cfg = parse_config(
        {
            "name": "orders",
            "source": {
                "type": "nats",
                "servers": "nats://n1:4222,nats://n2:4222",
                "stream_name": "ORDERS",
                "consumer_name": "cdc-orders",
                "subject": "orders.>",
            },
            "destination": {"type": "file", "path": "out.jsonl"},
        }
    )
    source = cfg.source
    assert isinstance(source, NatsSourceConfig)
    assert (source.url, source.stream, source.durable) == (
        "nats://n1:4222,nats://n2:4222",
        "ORDERS",
        "cdc-orders",
    )
    assert source.ack_wait_s == 30 and source.deliver_policy == "all"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"stream": "OR.DERS"}, "cannot contain"),
        ({"durable": "a b"}, "cannot contain"),
        ({"subject": "orders.>.x"}, "> must be a whole token"),
        ({"subject": "orders.a*"}, "* must be a whole token"),
        ({"subject": "orders..x"}, "cannot be empty"),
        ({"url": "nats://u:p@n:4222"}, "not in the URL"),
        ({"url": "http://n"}, "NATS URL"),
        ({"deliver_policy": "by_start_sequence"}, "start_sequence goes with"),
        ({"start_sequence": 5}, "start_sequence goes with"),
        ({"deliver_policy": "by_start_time"}, "start_time goes with"),
        ({"message_format": "avro"}, "Kafka source"),
        ({"ack_wait_s": 0}, "greater than 0"),
    ],
)
def test_refused_configs_say_why(change: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match="validation error") as info:
        NatsSourceConfig.model_validate({**BASE, **change})
    assert complaint in str(info.value)


def test_start_options() -> None:
    cfg = NatsSourceConfig.model_validate(
        {**BASE, "deliver_policy": "by_start_time", "start_time": "2026-01-01T00:00:00Z"}
    )
    assert cfg.start_time is not None and cfg.start_time.year == 2026


@pytest.mark.parametrize(
    ("subject", "ok"),
    [("a.b", True), ("a.*.c", True), ("a.>", True), (">", True), ("a.>.b", False), ("", False)],
)
def test_subject_rules(subject: str, ok: bool) -> None:
    assert (subject_problem(subject) is None) is ok


def test_position_is_the_stream_sequence_in_the_streams_lane() -> None:
    a = NatsSequence("nats-jetstream:ORDERS@t", stream="ORDERS", seq=7)
    b = NatsSequence("nats-jetstream:ORDERS@t", stream="ORDERS", seq=8)
    assert a < b and a.lane() == "ORDERS"
    assert decode(a.encode()) == a
    assert a.describe() == "ORDERS#7"
    with pytest.raises(CdcError):
        decode('{"type": "nats", "server": "s", "stream": "S", "seq": "7"}')
