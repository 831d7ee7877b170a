"""Destination configs in the seed proposal's YAML shapes, and build_sink for every sink type.

Building connects to nothing (sinks connect in open()), so these run without servers.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cdc_logs.build import build_sink
from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError
from cdc_logs.sinks.http import HttpSink
from cdc_logs.sinks.kafka import KafkaSink
from cdc_logs.sinks.kafka_avro import AvroEncoder
from cdc_logs.sinks.mqtt import MqttSink
from cdc_logs.sinks.nats import NatsSink
from cdc_logs.sinks.pulsar import PulsarSink
from cdc_logs.sinks.rabbitmq import RabbitMQSink
from cdc_logs.sinks.redis_cache import RedisCacheSink
from cdc_logs.sinks.redis_stream import RedisStreamSink
from cdc_logs.sinks.search import SearchSink
from cdc_logs.sinks.sql_apply.apply import SqlSink

SOURCE = {"type": "sqlite", "path": "x.db", "tables": ["t"]}


def destination(text: str) -> Any:
    cfg = parse_config({"name": "app", "source": SOURCE, "destination": yaml.safe_load(text)})
    assert cfg.destination is not None
    return build_sink(cfg.destination)


def test_seed_kafka_destination() -> None:
    sink = destination(
        """
        type: kafka
        bootstrap_servers: "localhost:9092"
        topic: "processed_events"
        key_field: "user_id"
        partition_strategy: "hash"
        compression_type: "gzip"
        schema_registry_url: "http://localhost:8081"
        value_schema: "user_event_v2"
        """
    )
    assert isinstance(sink, KafkaSink)
    assert sink.topic_template == "processed_events" and sink.key_field == "user_id"
    assert sink._conf["compression.type"] == "gzip"
    assert sink._conf["enable.idempotence"] == "true" and sink._conf["acks"] == "all"
    assert isinstance(sink.encoder, AvroEncoder) and sink.encoder.value_subject == "user_event_v2"


def test_kafka_sasl_settings_reach_librdkafka() -> None:
    sink = destination(
        """
        type: kafka
        bootstrap_servers: "b:9092"
        security_protocol: "SASL_SSL"
        sasl_mechanism: "PLAIN"
        sasl_username: "user"
        sasl_password: "s3cret"
        format: json
        """
    )
    assert isinstance(sink, KafkaSink) and sink.encoder is None
    assert sink._conf["sasl.password"] == "s3cret" and sink._conf["security.protocol"] == "SASL_SSL"


@pytest.mark.parametrize("strategy", ["round_robin", "custom"])
def test_order_breaking_partition_strategies_are_refused(strategy: str) -> None:
    with pytest.raises(CdcError) as err:
        destination(f"{{type: kafka, bootstrap_servers: 'b:9092', partition_strategy: {strategy}}}")
    assert "in order" in err.value.message and "partition_strategy" in err.value.message


def test_seed_redis_stream_destination() -> None:
    sink = destination(
        """
        type: redis_stream
        host: "localhost"
        port: 6379
        stream_name: "processed_events"
        max_length: 10000
        """
    )
    assert isinstance(sink, RedisStreamSink)
    assert sink.url == "redis://localhost:6379/0" and sink.max_length == 10000
    assert sink.template == "processed_events"


def test_seed_redis_cache_destination() -> None:
    sink = destination('{name: cache, type: redis, key_pattern: "event:{user_id}"}')
    assert isinstance(sink, RedisCacheSink) and sink.key_pattern == "event:{user_id}" and sink.name == "cache"


def test_seed_rabbitmq_destination() -> None:
    sink = destination(
        """
        type: rabbitmq
        host: "localhost"
        port: 5672
        queue: "processed_events"
        exchange: "processed_exchange"
        """
    )
    assert isinstance(sink, RabbitMQSink)
    assert sink.url == "amqp://guest:guest@localhost:5672/%2F"
    assert (sink.exchange, sink.queue) == ("processed_exchange", "processed_events")


def test_rabbitmq_needs_a_target() -> None:
    with pytest.raises(CdcError, match="exchange"):
        destination("{type: rabbitmq}")


def test_seed_postgresql_destination() -> None:
    sink = destination(
        """
        name: analytics_db
        type: postgresql
        host: analytics.company.com
        database: analytics
        username: cdc
        password: "p@ss"
        table: unified_events
        """
    )
    assert isinstance(sink, SqlSink)
    assert sink.url == "postgresql+psycopg://cdc:p%40ss@analytics.company.com/analytics"
    assert sink.table_template == "unified_events" and sink.schema_template == "{schema}"


def test_sqlite_target_has_no_schema_by_default() -> None:
    sink = destination("{type: sqlite, database: out.db}")
    assert isinstance(sink, SqlSink) and sink.schema_template is None


def test_sql_needs_a_database() -> None:
    with pytest.raises(CdcError, match="url"):
        destination("{type: mysql, host: h}")


def test_postgres_target_without_a_database_takes_libpqs_default() -> None:
    # The seed's multi-destination example: host and table only (libpq: PGDATABASE, else the user).
    sink = destination('{type: postgresql, host: "analytics.company.com", table: "unified_events"}')
    assert isinstance(sink, SqlSink) and sink.table_template == "unified_events"


def test_seed_elasticsearch_destination() -> None:
    sink = destination(
        '{name: search_index, type: elasticsearch, host: "search.company.com", index: "events"}'
    )
    assert (
        isinstance(sink, SearchSink)
        and sink.url == "http://search.company.com:9200"
        and sink.index == "events"
    )


def test_seed_pulsar_destination() -> None:
    sink = destination(
        '{type: pulsar, service_url: "pulsar://localhost:6650", topic: "persistent://public/default/processed"}'
    )
    assert isinstance(sink, PulsarSink) and sink.topic == "persistent://public/default/processed"


def test_http_nats_mqtt() -> None:
    http = destination("{type: webhook, url: 'https://h/x', secret: k, format: ndjson, max_attempts: 3}")
    assert isinstance(http, HttpSink) and http.format == "ndjson" and http.sign(b"") is not None
    nats = destination("{type: nats, url: 'nats://h:4222', prefix: app}")
    assert isinstance(nats, NatsSink) and nats.stream == "APP" and nats.stream_subjects == ["app.>"]
    mqtt = destination("{type: mqtt, broker: 'mqtt://iot:1883', qos: 1}")
    assert isinstance(mqtt, MqttSink) and (mqtt.host, mqtt.port) == ("iot", 1883)


def test_unknown_template_field_fails_at_build() -> None:
    with pytest.raises(CdcError, match="unknown field"):
        destination("{type: kafka, bootstrap_servers: 'b:9092', topic_template: '{prefix}.{tabel}'}")


def test_secrets_are_not_printed() -> None:
    cfg = parse_config(
        {
            "source": SOURCE,
            "destination": {"type": "kafka", "bootstrap_servers": "b:9092", "sasl_password": "s3cret"},
        }
    )
    assert "s3cret" not in repr(cfg) and "s3cret" not in cfg.model_dump_json()


def test_unknown_destination_type_lists_the_accepted_ones() -> None:
    with pytest.raises(CdcError) as err:
        parse_config({"source": SOURCE, "destination": {"type": "kafak"}})
    for name in ("kafka", "redis_stream", "rabbitmq", "postgresql", "webhook", "nats", "mqtt", "opensearch"):
        assert name in err.value.message
