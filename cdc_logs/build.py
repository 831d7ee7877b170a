"""Turn validated config into live objects: readers, sinks, transforms, offset stores.

The one place that maps a config `type` to a class, so the CLI, `run` and tests build pipelines the
same way. Driver imports happen here, lazily, so a missing extra is a clear config error.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cdc_logs.config import (
    AnyDestinationConfig,
    DebeziumSourceConfig,
    FileSinkConfig,
    MysqlSourceConfig,
    OffsetsConfig,
    PipelineConfig,
    PollSourceConfig,
    PostgresSourceConfig,
    SqliteSourceConfig,
    StdoutSinkConfig,
    TransformConfig,
)
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import need as _need
from cdc_logs.offsets.base import OffsetStore
from cdc_logs.offsets.lock import PipelineLock
from cdc_logs.readers.base import Reader
from cdc_logs.sink_configs import SinkModel
from cdc_logs.sinks.base import Sink
from cdc_logs.transforms.base import Transform

_MASK_ALIASES = {
    "mask_fields": "fields",
    "pii_fields": "fields",
    "anonymization_strategy": "strategy",
    "mask_pattern": "pattern",
}


def build_transform(cfg: TransformConfig) -> Transform:
    params = dict(cfg.params)
    try:
        if cfg.type == "filter":
            from cdc_logs.transforms.filter import FilterTransform

            return FilterTransform(**params)
        if cfg.type in ("mask", "data_masking", "gdpr_compliance"):
            from cdc_logs.transforms.mask import MaskTransform

            if "retention_period_days" in params:
                raise ValueError(
                    "retention_period_days is not supported: cdc-logs keeps no data of its own; "
                    "set retention on the destination"
                )
            merged: dict[str, Any] = {}
            for key, value in params.items():
                name = _MASK_ALIASES.get(key, key)
                if name == "fields" and "fields" in merged:
                    merged["fields"] = [*merged["fields"], *value]  # pii_fields + mask_fields: mask both
                elif name in merged:
                    raise ValueError(f"{cfg.type} params: {key!r} repeats {name!r}; give it once")
                else:
                    merged[name] = value
            return MaskTransform(**merged)
        from cdc_logs.transforms.rename import RenameTransform

        return RenameTransform(**params)
    except TypeError as exc:
        raise ValueError(f"{cfg.type} params: {exc}".replace(".__init__() ", ": ")) from exc


def build_sink(cfg: AnyDestinationConfig) -> Sink:
    name = cfg.name or cfg.type
    if isinstance(cfg, StdoutSinkConfig):
        from cdc_logs.sinks.stdout import StdoutSink

        return StdoutSink(cfg.format, name=name)
    if not isinstance(cfg, FileSinkConfig):
        return _build_bus_sink(cfg, name)
    from cdc_logs.sinks.file import FileSink

    return FileSink(cfg.path, max_bytes=cfg.max_bytes, max_files=cfg.max_files, fsync=cfg.fsync, name=name)


def _build_bus_sink(cfg: SinkModel, name: str) -> Sink:
    """Message-bus, database, webhook and search sinks (configs in sink_configs.py)."""
    from cdc_logs import sink_configs as sc

    if isinstance(cfg, sc.KafkaSinkConfig):
        _need("confluent_kafka", "kafka")
        from cdc_logs.sinks.kafka import KafkaSink

        encoder = None
        if cfg.avro:
            _need("fastavro", "kafka")
            from cdc_logs.sinks.kafka_avro import AvroEncoder, SchemaRegistry

            assert cfg.schema_registry_url is not None
            registry = SchemaRegistry(
                cfg.schema_registry_url,
                username=cfg.schema_registry_username,
                password=sc.secret(cfg.schema_registry_password),
            )
            encoder = AvroEncoder(registry, value_subject=cfg.value_schema)
        return KafkaSink(
            cfg.bootstrap_servers,
            topic=cfg.topic,
            topic_template=cfg.topic_template,
            prefix=cfg.prefix,
            key_field=cfg.key_field,
            compression=cfg.compression_type,
            tombstones_on_delete=cfg.tombstones_on_delete,
            headers=cfg.headers,
            delivery_timeout_ms=cfg.delivery_timeout_ms,
            linger_ms=cfg.linger_ms,
            config=cfg.librdkafka(),
            encoder=encoder,
            name=name,
        )
    if isinstance(cfg, sc.RedisStreamSinkConfig | sc.RedisCacheSinkConfig):
        _need("redis", "redis")
        if isinstance(cfg, sc.RedisStreamSinkConfig):
            from cdc_logs.sinks.redis_stream import RedisStreamSink

            return RedisStreamSink(
                cfg.redis_url(),
                password=sc.secret(cfg.password),
                stream_name=cfg.stream_name,
                stream_template=cfg.stream_template,
                prefix=cfg.prefix,
                max_length=cfg.max_length,
                marker_key=cfg.marker_key,
                name=name,
            )
        from cdc_logs.sinks.redis_cache import RedisCacheSink

        return RedisCacheSink(
            cfg.redis_url(),
            password=sc.secret(cfg.password),
            key_pattern=cfg.key_pattern,
            prefix=cfg.prefix,
            ttl_seconds=cfg.ttl_seconds,
            name=name,
        )
    if isinstance(cfg, sc.RabbitMQSinkConfig):
        _need("pika", "rabbitmq")
        from cdc_logs.sinks.rabbitmq import RabbitMQSink

        return RabbitMQSink(
            cfg.amqp_url(),
            exchange=cfg.exchange,
            exchange_type=cfg.exchange_type,
            queue=cfg.queue,
            routing_key=cfg.routing_key,
            binding_key=cfg.binding_key,
            declare=cfg.declare,
            prefix=cfg.prefix,
            confirm_timeout_s=cfg.confirm_timeout_s,
            name=name,
        )
    if isinstance(cfg, sc.SqlSinkConfig):
        from cdc_logs.sinks.sql import SqlSink

        return SqlSink(
            cfg.sqlalchemy_url(),
            table=cfg.table,
            schema=cfg.target_schema,
            auto_create=cfg.auto_create,
            apply_truncate=cfg.apply_truncate,
            applied_table=cfg.applied_table,
            name=name,
        )
    if isinstance(cfg, sc.HttpSinkConfig):
        _need("requests", "http")
        from cdc_logs.sinks.http import HttpSink

        return HttpSink(
            cfg.url,
            method=cfg.method,
            format=cfg.body_format,
            headers=cfg.headers,
            secret=sc.secret(cfg.secret),
            signature_header=cfg.signature_header,
            timeout_s=cfg.timeout_s,
            max_attempts=cfg.max_attempts,
            initial_backoff_s=cfg.initial_backoff_ms / 1000,
            max_backoff_s=cfg.max_backoff_ms / 1000,
            max_events_per_request=cfg.max_events_per_request,
            rejected_attempts=cfg.rejected_attempts,
            dead_letter_path=cfg.dead_letter_path,
            name=name,
        )
    if isinstance(cfg, sc.NatsSinkConfig):
        _need("nats", "nats")
        from cdc_logs.sinks.nats import NatsSink

        return NatsSink(
            cfg.url,
            subject=cfg.subject,
            prefix=cfg.prefix,
            stream=cfg.stream,
            stream_subjects=cfg.stream_subjects,
            create_stream=cfg.create_stream,
            duplicate_window_s=cfg.duplicate_window_s,
            timeout_s=cfg.timeout_s,
            user=cfg.user,
            password=sc.secret(cfg.password),
            token=sc.secret(cfg.token),
            name=name,
        )
    if isinstance(cfg, sc.MqttSinkConfig):
        _need("paho", "mqtt")
        from cdc_logs.sinks.mqtt import MqttSink

        return MqttSink(
            cfg.url,
            topic=cfg.topic,
            prefix=cfg.prefix,
            qos=cfg.qos,
            retain=cfg.retain,
            protocol_version=cfg.protocol_version,
            client_id=cfg.client_id,
            username=cfg.username,
            password=sc.secret(cfg.password),
            max_inflight=cfg.max_inflight,
            timeout_s=cfg.timeout_s,
            name=name,
        )
    if isinstance(cfg, sc.PulsarSinkConfig):
        _need("pulsar", "pulsar")
        from cdc_logs.sinks.pulsar import PulsarSink

        return PulsarSink(
            cfg.service_url,
            topic=cfg.topic,
            prefix=cfg.prefix,
            producer_name=cfg.producer_name,
            compression_type=cfg.compression_type,
            send_timeout_ms=cfg.send_timeout_ms,
            auth_token=sc.secret(cfg.auth_token),
            name=name,
        )
    _need("requests", "opensearch")
    from cdc_logs.sinks.search import SearchSink

    return SearchSink(
        cfg.base_url(),
        index=cfg.index,
        prefix=cfg.prefix,
        mode=cfg.mode,
        username=cfg.username,
        password=sc.secret(cfg.password),
        refresh=cfg.refresh,
        timeout_s=cfg.timeout_s,
        name=name,
    )


def default_offsets_path(pipeline: str) -> Path:
    return Path(".cdc-logs") / f"{pipeline}.offsets.db"


def offsets_path(cfg: OffsetsConfig, pipeline: str) -> Path:
    """Where a sqlite or file offset store keeps its data."""
    if cfg.path:
        return Path(cfg.path)
    if cfg.type == "file":
        return Path(".cdc-logs") / f"{pipeline}.offsets.json"
    return default_offsets_path(pipeline)


def build_offsets(cfg: OffsetsConfig, pipeline: str) -> OffsetStore:
    if cfg.type == "sqlite":
        from cdc_logs.offsets.sqlite import SqliteOffsetStore

        return SqliteOffsetStore(offsets_path(cfg, pipeline))
    if cfg.type == "file":
        from cdc_logs.offsets.file import FileOffsetStore

        return FileOffsetStore(offsets_path(cfg, pipeline))
    from cdc_logs.offsets.postgres import PostgresOffsetStore

    assert cfg.dsn is not None
    return PostgresOffsetStore(cfg.dsn, cfg.table)


def lock_pipeline(cfg: OffsetsConfig, pipeline: str) -> PipelineLock:
    """Take the pipeline's lock (one running pipeline per offset store and name), or raise LOCKED
    naming the process that holds it. See offsets/lock.py."""
    from cdc_logs.offsets.lock import FileLock, PostgresLock

    if cfg.type == "postgres":
        assert cfg.dsn is not None
        return PostgresLock(cfg.dsn, cfg.table, pipeline).acquire()
    return FileLock(FileLock.path_for(offsets_path(cfg, pipeline), pipeline), pipeline).acquire()


def mysql_settings(cfg: MysqlSourceConfig) -> Any:
    """Connection settings from `dsn` or host/port/user/password (the password stays a secret)."""
    from cdc_logs.readers.mysql import MysqlSettings, parse_dsn

    if cfg.dsn is not None:
        settings = parse_dsn(cfg.dsn.get_secret_value())
        return settings if settings.database or not cfg.database else replace(settings, database=cfg.database)
    return MysqlSettings(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user or "root",
        password=cfg.password.get_secret_value() if cfg.password else "",
        database=cfg.database,
    )


def _mysql_reader(cfg: MysqlSourceConfig, pipeline: str, *, temporary: bool) -> Reader:
    from cdc_logs.readers.mysql import MysqlReader

    start = cfg.binlog_config
    return MysqlReader(
        mysql_settings(cfg),
        cfg.tables,
        pipeline_name=pipeline,
        flavor=cfg.type,
        schemas=cfg.schemas,
        server_id=cfg.server_id,
        temporary=temporary,
        snapshot=cfg.snapshot,
        start_gtid=start.gtid_set if start else None,
        start_file=start.binlog_filename if start else None,
        start_pos=start.binlog_position if start else None,
        heartbeat_s=cfg.heartbeat_interval_ms / 1000,
        snapshot_chunk_size=cfg.snapshot_chunk_rows,
    )


def build_reader(
    cfg: SqliteSourceConfig
    | PollSourceConfig
    | PostgresSourceConfig
    | MysqlSourceConfig
    | DebeziumSourceConfig,
    pipeline: str,
    *,
    temporary: bool = False,
) -> Reader:
    """Build the reader for one source config. `temporary`: leave no consumer state behind (tail)."""
    if isinstance(cfg, DebeziumSourceConfig):
        from cdc_logs.debezium.source import build_debezium_reader

        return build_debezium_reader(cfg, pipeline, temporary=temporary)
    if isinstance(cfg, MysqlSourceConfig):
        return _mysql_reader(cfg, pipeline, temporary=temporary)
    if isinstance(cfg, PostgresSourceConfig):
        return _postgres_reader(cfg, pipeline, temporary=temporary)
    if isinstance(cfg, SqliteSourceConfig):
        from cdc_logs.readers.sqlite import SqliteReader

        return SqliteReader(
            cfg.path,
            cfg.tables,
            pipeline_name=pipeline,
            consumer=cfg.consumer or pipeline,
            temporary=temporary,
            snapshot=cfg.snapshot,
            poll_interval_s=cfg.poll_interval_ms / 1000,
        )
    from cdc_logs.readers.polling import PolledTable, PollingReader

    tables = [
        PolledTable(
            name=t.table,
            mode=t.mode,
            timestamp_column=t.timestamp_column,
            incrementing_column=t.incrementing_column,
            key_columns=tuple(t.key_columns) if t.key_columns else None,
            soft_delete_column=t.soft_delete_column,
            query=t.query,
        )
        for t in cfg.tables
    ]
    return PollingReader(
        cfg.url,
        tables,
        pipeline_name=pipeline,
        snapshot=cfg.snapshot,
        safety_lag_s=cfg.safety_lag_ms / 1000,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )


def _postgres_reader(cfg: PostgresSourceConfig, pipeline: str, *, temporary: bool) -> Reader:
    try:
        from cdc_logs.readers.postgres.reader import PostgresReader
    except ImportError as exc:  # psycopg is the [pg] extra
        raise CdcError(
            ErrorKind.CONFIG,
            f"the postgres source needs psycopg: {exc}",
            "pip install 'cdc-logs[pg]'",
        ) from exc
    from cdc_logs.config import default_slot_name

    # tail without a slot name: a temporary slot and publication; with one (or in `run`), persistent.
    slot = cfg.slot if (cfg.slot or temporary) else default_slot_name(pipeline)
    return PostgresReader(
        cfg.dsn.get_secret_value(),
        cfg.tables,
        pipeline_name=pipeline,
        slot=slot,
        publication=cfg.publication,
        all_tables=cfg.all_tables,
        temporary=temporary and not cfg.slot,
        snapshot=cfg.snapshot,
        snapshot_chunk_rows=cfg.snapshot_chunk_rows,
        heartbeat_interval_s=cfg.heartbeat_interval_ms / 1000,
        status_interval_s=cfg.status_interval_ms / 1000,
        binary=cfg.binary,
        messages=cfg.messages,
        max_tx_memory_bytes=cfg.max_tx_memory_bytes,
        logical_decoding_work_mem=cfg.logical_decoding_work_mem,
    )


def source_name(cfg: Any) -> str:
    return str(cfg.name or cfg.type)


def build_pipeline_parts(cfg: PipelineConfig) -> dict[str, Any]:
    """Readers (by source name), sinks and transforms for `cfg`."""
    return {
        "readers": {source_name(s): build_reader(s, cfg.name) for s in cfg.all_sources()},
        "sinks": [build_sink(d) for d in cfg.all_destinations()],
        "transforms": [build_transform(t) for t in cfg.plugins.all()],
    }
