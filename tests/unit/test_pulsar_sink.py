"""Pulsar sink without a server (none can run here: docs/sinks.md, "Pulsar"): message building, error
mapping, and the real client failing against an unreachable service URL. Not a live-server test."""

from __future__ import annotations

import json

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.dedup import EventIds
from cdc_logs.sinks.pulsar import PulsarSink, error_kind, message_for
from cdc_logs.sinks.routing import render
from tests.helpers import make_event


def test_message_carries_key_properties_and_partition_key() -> None:
    event = make_event(3, op="u", key=9)
    ids, _state = EventIds().assign([event])
    msg = message_for(event, ids[0])
    assert json.loads(msg["partition_key"]) == {"id": 9}
    props = msg["properties"]
    assert props["op"] == "u" and json.loads(props["key"]) == {"id": 9}
    assert json.loads(props["position"])["values"] == [3]
    assert props["event_id"] == ids[0]
    assert msg["event_timestamp"] == event.source.ts_ms


def test_default_topic_is_debezium_naming_in_the_default_namespace() -> None:
    sink = PulsarSink("pulsar://127.0.0.1:6650", prefix="app")
    assert render(sink.topic, make_event(1), sink.prefix) == "persistent://public/default/app.main.t"


def test_error_mapping() -> None:
    assert error_kind("Timeout") is ErrorKind.SINK_TRANSIENT
    assert error_kind("BrokerPersistenceError") is ErrorKind.SINK_TRANSIENT
    assert error_kind("MessageTooBig") is ErrorKind.SINK_REJECTED
    assert error_kind("AuthorizationError") is ErrorKind.SINK_REJECTED


def test_unreachable_service_is_transient() -> None:
    sink = PulsarSink("pulsar://127.0.0.1:1", send_timeout_ms=2000, connection_timeout_ms=500)
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
    sink.close()
