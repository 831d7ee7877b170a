"""The Kafka sink against the stack's broker, read back by a plain consumer, in JSON and in Avro.

The `avro` configuration registers its schemas with a real schema registry (Apicurio Registry's
Confluent API, the `schema_registry_url` fixture: tests/conftest.py, scripts/lib/schema-registry.sh)
and its records are decoded with the schema the registry returns for the id in each record.
"""

from __future__ import annotations

import json
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture
from tests.contract.test_kafka_sink import consume_all, create_topic, registry_decode


class Kafka(SinkFixture):
    sink = "kafka"
    variants = {"json": "log", "avro": "log"}
    examples = {"kafka": {"bootstrap_servers": "localhost:9092", "topic": "t"}}

    def setup(self) -> None:
        self.bootstrap = self.server("kafka_bootstrap")
        self.topic = self.server("unique_name")
        create_topic(self.bootstrap, self.topic)
        if self.variant == "avro":
            self.registry_url = self.server("schema_registry_url")

    def destination(self) -> dict[str, Any]:
        config = {"type": "kafka", "bootstrap_servers": self.bootstrap, "topic": self.topic}
        if self.variant == "avro":
            config["schema_registry_url"] = self.registry_url
        return config

    def read_back(self, sink: Sink) -> Held:
        # Tombstones (null values) are not envelopes: a Debezium consumer skips them too.
        values = [m.value() for m in consume_all(self.bootstrap, self.topic) if m.value() is not None]
        if self.variant == "avro":
            return Held(log=[registry_decode(self.registry_url, v) for v in values])
        return Held(log=[json.loads(v) for v in values])
