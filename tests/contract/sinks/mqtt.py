"""The MQTT sink against the stack's Mosquitto, read back by a paho subscriber that subscribed first."""

from __future__ import annotations

import json
from typing import Any

from cdc_logs.sinks.base import Sink
from tests.contract.sink_contract import Held, SinkFixture


class Mqtt(SinkFixture):
    sink = "mqtt"
    examples = {"mqtt": {"broker": "mqtt://localhost:1883"}}

    def setup(self) -> None:
        from tests.contract.test_mqtt_sink import Subscriber  # imports paho: only when it runs

        self.url, self.prefix = self.server("mqtt_url"), self.server("unique_name")
        self.subscriber = Subscriber(self.url, self.prefix)
        self.cleanup.callback(self.subscriber.close)

    def destination(self) -> dict[str, Any]:
        return {"type": "mqtt", "broker": self.url, "prefix": self.prefix}

    def read_back(self, sink: Sink) -> Held:
        return Held(log=[json.loads(m.payload) for m in self.subscriber.settled()])
