"""The seed's IoT pipeline live: an MQTT source (the stack's Mosquitto) on `sensors/+/temperature` and
`sensors/+/humidity`, iot_aggregation with the seed's params (5m windows, avg/min/max) and
anomaly_detection with the seed's isolation_forest / threshold 0.1, to a file sink. Only the event
time is added (a field of the messages: the broker gives none, and arrival times would make the
expected windows depend on the machine's speed).

The aggregates must equal what this test computes from what it published; the spike it published is
among the anomalies. Topic prefix and client id are this test's own; the session is cleared after.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.test_mqtt_source import Broker, broker  # noqa: F401 - a fixture, used by name

pytest.importorskip("paho.mqtt")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.integration

T0 = 1_800_000_000_000  # a multiple of 5 minutes: windows are aligned to the epoch
WINDOW_MS = 300_000
STEPS = 45  # a reading every 20 s for 15 minutes: three windows per topic


def _lines(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []


def _publish(b: Broker, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1, in order, waiting for the broker's acknowledgements at the end (not one by one)."""
    import paho.mqtt.client as mqtt

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.client_id("pub"))
    pub.max_inflight_messages_set(1000)
    pub.connect(b.host, b.port)
    pub.loop_start()
    try:
        sent = [pub.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in sent:
            info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_the_seed_iot_shape_runs_against_mosquitto(broker: Broker, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"""
name: iot-{broker.uid}
source:
  type: mqtt
  broker: "{broker.url}"
  topics: ["{broker.prefix}/sensors/+/temperature", "{broker.prefix}/sensors/+/humidity"]
  qos: 1
  client_id: {broker.client_id("iot")}
destination: {{type: file, path: {out}}}
offsets: {{type: sqlite, path: {tmp_path / "offsets.db"}}}
plugins:
  transformers:
    transformers:
      - type: iot_aggregation
        params:
          time_window: "5m"
          aggregation_functions: ["avg", "min", "max"]
          event_time_field: ts
      - type: anomaly_detection
        params:
          algorithm: "isolation_forest"
          threshold: 0.1
          event_time_field: ts
sync:
  state_dir: {tmp_path / "state"}
  batch: {{max_events: 50, max_wait_ms: 20}}
"""
    )
    topics = [f"{broker.prefix}/sensors/d{d}/{q}" for d in range(2) for q in ("temperature", "humidity")]
    published: dict[str, list[tuple[int, float]]] = {t: [] for t in topics}
    messages = []
    for i in range(STEPS):
        for n, topic in enumerate(topics):
            value = 20.0 + n + (i % 7) * 0.25
            if topic == topics[0] and i == 30:
                value = 500.0  # the spike
            published[topic].append((T0 + i * 20_000, value))
            messages.append((topic, orjson.dumps({"ts": T0 + i * 20_000, "value": value})))
    # An hour later on every topic: each table's watermark passes its windows.
    closing = [(t, orjson.dumps({"ts": T0 + 3_600_000, "value": 0.0})) for t in topics]
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)], cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 30
            while b"mqtt session opened" not in (tmp_path / "run.log").read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
                time.sleep(0.1)
            _publish(broker, messages + closing)
            deadline = time.monotonic() + 60
            while sum(1 for e in _lines(out) if e["source"]["table"].endswith("_agg")) < 3 * len(topics):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "run.log"
                ).read_text()[-3000:]
                time.sleep(0.2)
            proc.terminate()
            assert proc.wait(30) == 0, (tmp_path / "run.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()

    events = _lines(out)
    aggregates = {
        (e["source"]["table"], e["after"]["window_start"]): e["after"]
        for e in events
        if e["source"]["table"].endswith("_agg")
    }
    expected = {}
    for topic, readings in published.items():
        table = topic.replace("/", "_")
        for start in range(T0, T0 + 3 * WINDOW_MS, WINDOW_MS):
            values = [v for t, v in readings if start <= t < start + WINDOW_MS]
            expected[(f"{table}_agg", start)] = {
                "window_start": start,
                "window_end": start + WINDOW_MS,
                "count": len(values),
                "value_avg": pytest.approx(statistics.fmean(values)),
                "value_min": min(values),
                "value_max": max(values),
            }
    assert aggregates == expected
    spike_table = topics[0].replace("/", "_") + "_anomalies"
    anomalies = [e["after"] for e in events if e["source"]["table"] == spike_table]
    assert any(a["value"] == 500.0 and a["event_time"] == T0 + 30 * 20_000 for a in anomalies), anomalies
    assert all(a["method"] == "isolation_forest" and a["threshold"] == 0.1 for a in anomalies)
    readings = [e for e in events if e["source"]["table"] in {t.replace("/", "_") for t in topics}]
    assert len(readings) == len(messages) + len(closing)  # the readings pass through
