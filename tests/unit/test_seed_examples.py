"""The seed proposal's event-bus source examples and its multi-source example, each validated with
`cdc-logs config validate` as a user would run it (issue 16's done-when).

Each example is a verbatim copy of a YAML block of /work/shared/seed/000_2e6cd9e59cfeb15a.txt (the
section is named beside it). Hosts and paths are left as the seed writes them: validation connects
to nothing. Where the seed's block is only a `source:` (or `sources:`), a `destination: {type:
stdout}` is added, since a pipeline needs one; nothing else is changed. The expected result of every
example is `valid`: an example fails here until its source type exists.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Added to the examples that are a source block only.
STDOUT = "\ndestination:\n  type: stdout\n"

EXAMPLES: dict[str, str] = {
    # seed: Event Bus Integration, 1. Kafka Integration, Kafka as Source (Event Streaming)
    "kafka source": textwrap.dedent(
        """\
        source:
          type: kafka
          bootstrap_servers: "localhost:9092"
          topic: "user_events"
          group_id: "cdc_consumer"
          auto_offset_reset: "earliest"
          security_protocol: "SASL_SSL"
          sasl_mechanism: "PLAIN"
          sasl_username: "user"
          sasl_password: "password"

          # CDC-specific configuration
          watermark:
            column: "event_timestamp"
            type: "timestamp"

          # Message format configuration
          message_format: "json"  # json, avro, protobuf
          schema_registry_url: "http://localhost:8081"
        """
    )
    + STDOUT,
    # seed: Event Bus Integration, 2. Apache Pulsar Integration
    "pulsar source": textwrap.dedent(
        """\
        source:
          type: pulsar
          service_url: "pulsar://localhost:6650"
          topic: "persistent://public/default/events"
          subscription_name: "cdc_subscription"
          subscription_type: "shared"  # exclusive, shared, failover

        destination:
          type: pulsar
          service_url: "pulsar://localhost:6650"
          topic: "persistent://public/default/processed"
        """
    ),
    # seed: Event Bus Integration, 3. Redis Streams Integration
    "redis_stream source": textwrap.dedent(
        """\
        source:
          type: redis_stream
          host: "localhost"
          port: 6379
          stream_name: "events"
          consumer_group: "cdc_group"
          consumer_name: "cdc_worker_1"

        destination:
          type: redis_stream
          host: "localhost"
          port: 6379
          stream_name: "processed_events"
          max_length: 10000  # Stream trimming
        """
    ),
    # seed: Event Bus Integration, 4. RabbitMQ Integration
    "rabbitmq source": textwrap.dedent(
        """\
        source:
          type: rabbitmq
          host: "localhost"
          port: 5672
          username: "guest"
          password: "guest"
          queue: "source_events"
          exchange: "events_exchange"
          routing_key: "user.#"

        destination:
          type: rabbitmq
          host: "localhost"
          port: 5672
          queue: "processed_events"
          exchange: "processed_exchange"
        """
    ),
    # seed: Advanced CDC Patterns, 1. Multi-Source CDC
    "multi-source": textwrap.dedent(
        """\
        sources:
          - name: "user_db"
            type: postgresql
            host: "user-db.company.com"
            database: "users"
            table: "user_profiles"

          - name: "order_db"
            type: mysql
            host: "order-db.company.com"
            database: "orders"
            table: "order_events"

          - name: "event_stream"
            type: kafka
            topic: "real_time_events"

        # Join/merge strategy
        merge_strategy: "timestamp_based"  # timestamp_based, key_based, custom
        """
    )
    + STDOUT,
    # seed: Real-Time CDC Features, 2. Database Log Mining
    "oracle logminer source": textwrap.dedent(
        """\
        source:
          type: oracle
          host: "oracle-db.company.com"
          database: "ORCL"
          cdc_mode: "logminer"

          logminer_config:
            start_scn: "auto"  # auto, specific SCN
            archive_log_dest: "/opt/oracle/archive"
            supplemental_logging: true

          # Tables to monitor
          monitored_tables:
            - "HR.EMPLOYEES"
            - "SALES.ORDERS"
        """
    )
    + STDOUT,
    # seed: Advanced CDC Patterns, 3. IoT Data CDC: the source block (its plugins, iot_aggregation and
    # anomaly_detection, are transforms cdc-logs does not have, and are not this issue's)
    "iot mqtt source": textwrap.dedent(
        """\
        source:
          type: mqtt
          broker: "mqtt://iot-broker.company.com:1883"
          topics: ["sensors/+/temperature", "sensors/+/humidity"]
          qos: 1
        """
    )
    + STDOUT,
}

#: example -> result of `cdc-logs config validate`.
EXPECTED: dict[str, str] = {name: "valid" for name in EXAMPLES}


def validate(path: Path) -> str:
    """`valid`, or `invalid: <the error line>` (exit code 2), as `cdc-logs config validate` says."""
    proc = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "config", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode == 0 and proc.stdout.startswith("ok:"):
        return "valid"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return f"invalid (exit {proc.returncode}): {lines[0] if lines else ''}"


@pytest.mark.parametrize(("example", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_seed_example_validates(tmp_path: Path, example: str, expected: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(EXAMPLES[example])
    assert validate(path) == expected
