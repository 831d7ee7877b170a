"""The Kafka sink's `schemas` setting: JSON only, refused with Avro at config and at build."""

from __future__ import annotations

import pydantic
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.kafka import KafkaSink, KafkaSinkConfig


def test_schemas_is_off_by_default_and_json_only() -> None:
    plain = KafkaSinkConfig(type="kafka", bootstrap_servers="k:9092")
    assert plain.schemas is False
    assert KafkaSinkConfig(type="kafka", bootstrap_servers="k:9092", schemas=True).schemas is True
    with pytest.raises(pydantic.ValidationError, match="schemas: true is the JSON converter's form"):
        KafkaSinkConfig(
            type="kafka", bootstrap_servers="k:9092", schemas=True, schema_registry_url="http://r:8081"
        )


def test_the_sink_refuses_schemas_with_an_encoder() -> None:
    with pytest.raises(CdcError) as err:
        KafkaSink("k:9092", schemas=True, encoder=lambda event, topic, key: (key, b""))
    assert err.value.kind is ErrorKind.CONFIG
