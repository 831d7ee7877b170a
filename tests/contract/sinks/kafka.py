"""The Kafka sink against the stack's broker, read back by a plain consumer, in JSON and in Avro.

Avro needs a schema registry, and none can run on these machines (docs/sinks.md, "Avro"): the `avro`
configuration registers its schemas with a stand-in that answers the one call the sink makes
(tests/contract/test_kafka_sink.py), so it proves the records on the real broker, not a registry's
compatibility rules. The records are decoded with the schemas the sink registered.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.kafka_avro import decode_wire
from tests.contract.sink_contract import Held, SinkFixture
from tests.contract.test_kafka_sink import consume_all, create_topic, serve_registry_stand_in


class Kafka(SinkFixture):
    sink = "kafka"
    variants = {"json": "log", "avro": "log"}
    cannot_run = {
        "avro-registry": "no schema registry can run on these machines (Confluent's is not on Maven "
        "Central, Apicurio's cannot be assembled from it, Karapace is not on PyPI: docs/sinks.md, "
        '"Avro"); the `avro` configuration runs against a stand-in registry instead',
    }
    examples = {"kafka": {"bootstrap_servers": "localhost:9092", "topic": "t"}}

    def setup(self) -> None:
        self.bootstrap = self.server("kafka_bootstrap")
        self.topic = self.server("unique_name")
        create_topic(self.bootstrap, self.topic)
        if self.variant == "avro":
            self.registry_url, self.schemas, _paths = self.using(serve_registry_stand_in())

    def destination(self) -> dict[str, Any]:
        config = {"type": "kafka", "bootstrap_servers": self.bootstrap, "topic": self.topic}
        if self.variant == "avro":
            config["schema_registry_url"] = self.registry_url
        return config

    def read_back(self, sink: Sink) -> Held:
        # Tombstones (null values) are not envelopes: a Debezium consumer skips them too.
        values = [m.value() for m in consume_all(self.bootstrap, self.topic) if m.value() is not None]
        if self.variant == "avro":
            return Held(log=[decode_wire(v, self.schemas[struct.unpack(">I", v[1:5])[0]])[1] for v in values])
        return Held(log=[json.loads(v) for v in values])
