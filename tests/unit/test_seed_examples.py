"""Every YAML example of the seed proposal, validated with `cdc-logs config validate` as a user runs it
(issue 17 part 8; the event-bus ones were issue 16's).

SEED holds a verbatim copy of each ```yaml block of the seed proposal (tests/fixtures/seed/, a copy of
/work/shared/seed/000_2e6cd9e59cfeb15a.txt), named by its section; `test_the_copies_are_the_seed`
checks that they are the seed's 20 blocks, in order, byte for byte. Most blocks are a fragment of a
pipeline (only a `source:`, only `plugins:`, only `sync:`...): COMPLETION gives each the least it needs
to be a pipeline (a stdout destination, a SQLite source), merged UNDER the block (a key the block
writes always wins). Hosts and paths are left as the seed writes them: validation connects to nothing.

EXPECTED is the table example -> result: `valid` for every one. docs/seed-examples.md has the same
table, with which examples also run here (tests/integration/test_seed_examples_run.py).
"""

# The copies keep the seed's trailing blanks: they are verbatim.
# ruff: noqa: W291, W293

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.inprocess_cli import cli_here

SEED_FILE = Path(__file__).parents[1] / "fixtures" / "seed" / "000_2e6cd9e59cfeb15a.txt"

#: section of the seed -> its ```yaml block, verbatim.
SEED: dict[str, str] = {
    "Kafka as Source": """\
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
""",
    "Kafka as Destination": """\
destination:
  type: kafka
  bootstrap_servers: "localhost:9092"
  topic: "processed_events"
  
  # Message configuration
  key_field: "user_id"  # Field to use as Kafka key
  partition_strategy: "hash"  # hash, round_robin, custom
  compression_type: "gzip"
  
  # Schema evolution
  schema_registry_url: "http://localhost:8081"
  value_schema: "user_event_v2"
""",
    "Apache Pulsar Integration": """\
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
""",
    "Redis Streams Integration": """\
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
""",
    "RabbitMQ Integration": """\
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
""",
    "Multi-Source CDC": """\
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
""",
    "Multi-Destination CDC": """\
destinations:
  - name: "analytics_db"
    type: postgresql
    host: "analytics.company.com"
    table: "unified_events"
    
  - name: "search_index"
    type: elasticsearch
    host: "search.company.com"
    index: "events"
    
  - name: "event_bus"
    type: kafka
    topic: "processed_events"
    
  - name: "cache"
    type: redis
    key_pattern: "event:{user_id}"
""",
    "Event Sourcing Pattern": """\
source:
  type: postgresql
  table: "event_store"
  query: >
    SELECT event_id, aggregate_id, event_type, event_data, 
           event_version, created_at
    FROM event_store 
    WHERE created_at > :last_sync
    ORDER BY created_at, event_version

plugins:
  transformers:
    transformers:
      - type: event_sourcing
        params:
          aggregate_field: "aggregate_id"
          event_type_field: "event_type"
          event_data_field: "event_data"
          version_field: "event_version"
""",
    "Change Data Capture with Debezium Integration": """\
source:
  type: debezium
  connector_config:
    name: "postgres-connector"
    connector.class: "io.debezium.connector.postgresql.PostgresConnector"
    database.hostname: "localhost"
    database.port: 5432
    database.user: "debezium"
    database.password: "password"
    database.dbname: "inventory"
    database.server.name: "dbserver1"
    table.include.list: "public.customers,public.orders"
    
  # CDC-specific settings
  capture_mode: "wal"  # wal, polling
  slot_name: "debezium_slot"
""",
    "Database Log Mining": """\
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
""",
    "MySQL Binlog CDC": """\
source:
  type: mysql
  host: "mysql-db.company.com"
  database: "ecommerce"
  cdc_mode: "binlog"
  
  binlog_config:
    server_id: 1001
    binlog_filename: "mysql-bin.000001"
    binlog_position: 4
    gtid_set: "auto"
    
  # Row-based replication
  binlog_format: "ROW"
  binlog_row_image: "FULL"
""",
    "GDPR Compliance CDC": """\
plugins:
  middleware:
    middleware:
      - type: gdpr_compliance
        params:
          pii_fields: ["email", "phone", "address"]
          anonymization_strategy: "hash"  # hash, mask, delete
          retention_period_days: 365
          
  transformers:
    transformers:
      - type: data_masking
        params:
          mask_fields: ["ssn", "credit_card"]
          mask_pattern: "***-**-****"
""",
    "Financial Data CDC": """\
plugins:
  middleware:
    middleware:
      - type: financial_validation
        params:
          currency_fields: ["amount", "balance"]
          precision_check: true
          regulatory_compliance: "SOX"
          
      - type: audit_trail
        params:
          audit_level: "full"
          immutable_log: true
          digital_signature: true
""",
    "IoT Data CDC": """\
source:
  type: mqtt
  broker: "mqtt://iot-broker.company.com:1883"
  topics: ["sensors/+/temperature", "sensors/+/humidity"]
  qos: 1
  
plugins:
  transformers:
    transformers:
      - type: iot_aggregation
        params:
          time_window: "5m"
          aggregation_functions: ["avg", "min", "max"]
          
      - type: anomaly_detection
        params:
          algorithm: "isolation_forest"
          threshold: 0.1
""",
    "Parallel Processing": """\
sync:
  mode: "continuous"
  parallelism:
    enabled: true
    worker_count: 4
    partition_strategy: "hash"  # hash, range, custom
    partition_field: "user_id"
""",
    "Batch Optimization": """\
sync:
  batch_optimization:
    adaptive_batching: true
    min_batch_size: 100
    max_batch_size: 10000
    target_latency_ms: 1000
    
  compression:
    enabled: true
    algorithm: "gzip"  # gzip, lz4, snappy
""",
    "Connection Pooling": """\
source:
  connection_pool:
    min_connections: 2
    max_connections: 10
    connection_timeout: 30
    idle_timeout: 300
    
destination:
  connection_pool:
    min_connections: 5
    max_connections: 20
    batch_insert_size: 1000
""",
    "Metrics Integration": """\
plugins:
  middleware:
    middleware:
      - type: prometheus_metrics
        params:
          metrics_port: 9090
          custom_metrics:
            - name: "records_processed_total"
              type: "counter"
            - name: "processing_latency_seconds"
              type: "histogram"
""",
    "Distributed Tracing": """\
plugins:
  middleware:
    middleware:
      - type: opentelemetry
        params:
          service_name: "evolvishub-cdc"
          jaeger_endpoint: "http://jaeger:14268/api/traces"
          trace_sampling_rate: 0.1
""",
    "Health Checks": """\
health_checks:
  enabled: true
  port: 8080
  endpoints:
    - path: "/health"
      checks: ["database", "kafka", "memory"]
    - path: "/metrics"
      format: "prometheus"
""",
}

_STDOUT = {"destination": {"type": "stdout"}}
_SQLITE = {"source": {"type": "sqlite", "path": "app.db", "tables": ["users"]}}

#: What each block lacks to be a pipeline, merged under it (the block's own keys win).
COMPLETION: dict[str, dict[str, Any]] = {
    "Kafka as Source": _STDOUT,
    "Kafka as Destination": _SQLITE,
    "Apache Pulsar Integration": {},
    "Redis Streams Integration": {},
    "RabbitMQ Integration": {},
    "Multi-Source CDC": _STDOUT,
    "Multi-Destination CDC": _SQLITE,
    "Event Sourcing Pattern": _STDOUT,
    "Change Data Capture with Debezium Integration": _STDOUT,
    "Database Log Mining": _STDOUT,
    "MySQL Binlog CDC": _STDOUT,
    "GDPR Compliance CDC": {**_SQLITE, **_STDOUT},
    "Financial Data CDC": {**_SQLITE, **_STDOUT},
    "IoT Data CDC": _STDOUT,
    # Parallel workers need a keyed destination (several writers would interleave one stdout stream),
    # and sync.compression applies to file and http destinations: the completion picks such a one.
    "Parallel Processing": {**_SQLITE, "destination": {"type": "kafka", "topic": "users"}},
    "Batch Optimization": {**_SQLITE, "destination": {"type": "file", "path": "out/changes.jsonl"}},
    # The block's source and destination have no `type`: SQL ones, as its settings are for SQL clients.
    "Connection Pooling": {
        "source": {
            "type": "postgresql",
            "host": "db.company.com",
            "database": "shop",
            "table": "public.orders",
        },
        "destination": {"type": "postgresql", "host": "analytics.company.com", "database": "analytics"},
    },
    "Metrics Integration": {**_SQLITE, **_STDOUT},
    "Distributed Tracing": {**_SQLITE, **_STDOUT},
    "Health Checks": {**_SQLITE, **_STDOUT},
}

#: example -> the result of `cdc-logs config validate`.
EXPECTED: dict[str, str] = dict.fromkeys(SEED, "valid")


def merge(base: Any, over: Any) -> Any:
    """`over` merged onto `base`, mappings key by key (`over` wins)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


def pipeline(example: str) -> dict[str, Any]:
    """The example as a whole pipeline: its block, completed."""
    return merge(COMPLETION[example], yaml.safe_load(SEED[example]))


#: example -> the pipeline YAML validated (other tests adapt it to run: test_seed_multi_source.py).
EXAMPLES: dict[str, str] = {name: yaml.safe_dump(pipeline(name), sort_keys=False) for name in SEED}


def validate(path: Path) -> str:
    """`valid`, or `invalid (exit N): <the error line>`, as `cdc-logs config validate` says (its real
    entry point, in this process: a subprocess per example cost seconds each)."""
    proc = cli_here("config", "validate", "-c", str(path))
    if proc.returncode == 0 and proc.stdout.startswith("ok:"):
        return "valid"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return f"invalid (exit {proc.returncode}): {lines[0] if lines else ''}"


def test_the_copies_are_the_seed() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", SEED_FILE.read_text(), re.S)
    assert len(blocks) == 20
    assert list(SEED.values()) == blocks  # verbatim, all of them, in the seed's order
    assert set(COMPLETION) == set(SEED)


@pytest.mark.parametrize(("example", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_seed_example_validates(tmp_path: Path, example: str, expected: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(EXAMPLES[example])
    result = validate(path)
    assert result == expected


def test_health_checks_checks_are_a_warning(tmp_path: Path) -> None:
    """The Health Checks example's `checks: [database, kafka, memory]` cannot select what /health
    judges: validation says so (a warning, exit 0) instead of ignoring it."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(EXAMPLES["Health Checks"])
    proc = cli_here("config", "validate", "-c", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "warning: health_checks.endpoints[0].checks ['database', 'kafka', 'memory'] is not selectable" in (
        proc.stderr
    )
    bad = yaml.safe_load(EXAMPLES["Health Checks"])
    bad["health_checks"]["endpoints"][1]["path"] = "/healthz"
    path.write_text(yaml.safe_dump(bad))
    assert validate(path).startswith(
        "invalid (exit 2): error: config: invalid config: health_checks.endpoints.1.path"
    )
