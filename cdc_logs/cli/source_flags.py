"""Source configs from command-line flags (`tail`, `doctor`): the same models a pipeline file uses.

A flag the model rejects is reported under the flag's name (`--dsn`, not `url`).
"""

from __future__ import annotations

import re
from typing import Any

from cdc_logs.debezium.config import DebeziumSourceConfig
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.polling.config import PolledTableConfig, PollSourceConfig
from cdc_logs.readers.postgres.config import PostgresSourceConfig
from cdc_logs.readers.sqlite.config import SqliteSourceConfig

SOURCES = ("pg", "sqlite", "poll", "mariadb", "mysql", "debezium", "oracle", "mongo")
MONGO_ALIASES = ("mongo", "mongodb")
PG_ALIASES = ("pg", "postgres", "postgresql")


def source_config(
    source: str,
    dsn: str,
    tables: list[str],
    snapshot: bool,
    mode: str,
    timestamp_column: str | None,
    incrementing_column: str | None,
    soft_delete_column: str | None,
    interval_ms: int,
    slot: str | None = None,
    publication: str | None = None,
    debezium: tuple[Any, ...] = (),
) -> Any:
    from pydantic import ValidationError

    from cdc_logs.configfile import format_validation_error

    try:
        if source == "debezium":
            return _debezium_config(tables, *debezium)
        if source == "pg":
            return PostgresSourceConfig(
                type="pg", dsn=dsn, tables=tables, slot=slot, publication=publication, snapshot=snapshot
            )
        if source in ("mariadb", "mysql"):  # binlog: a random server_id, tail keeps no position
            from cdc_logs.readers.mysql.config import MysqlSourceConfig

            return MysqlSourceConfig(type=source, dsn=dsn, tables=tables, snapshot=snapshot)
        if source == "oracle":  # LogMiner keeps nothing on the server: nothing to clean up
            from cdc_logs.readers.oracle.config import OracleSourceConfig

            return OracleSourceConfig(type="oracle", dsn=dsn, tables=tables, snapshot=snapshot)
        if source == "mongo":  # collections: none = the whole deployment
            from cdc_logs.readers.mongo.config import MongoSourceConfig

            scope = {"collections": tables} if tables else {}  # `collections: []` is refused
            return MongoSourceConfig(type="mongodb", uri=dsn, snapshot=snapshot, **scope)
        if source == "sqlite":
            return SqliteSourceConfig(
                type="sqlite", path=dsn, tables=tables, snapshot=snapshot, poll_interval_ms=interval_ms
            )
        return PollSourceConfig(
            type="poll",
            url=dsn,
            snapshot=snapshot,
            poll_interval_ms=interval_ms,
            tables=[
                PolledTableConfig(
                    table=t,
                    mode=mode,
                    timestamp_column=timestamp_column,
                    incrementing_column=incrementing_column,
                    soft_delete_column=soft_delete_column,
                )
                for t in tables
            ],
        )
    except ValidationError as exc:
        # Name the option the user typed, not the config field behind it (--bootstrap, not bootstrap_servers).
        message = re.sub(
            r"(^|; )(\w+)(?=[.:\[])",
            lambda m: m.group(1) + _FLAGS.get(m.group(2), m.group(2)),
            format_validation_error(exc),
        )
        raise CdcError(
            ErrorKind.USAGE, message, "see `cdc-logs tail --help` for the options of each source"
        ) from None  # pydantic's own message quotes the rejected values


def _debezium_config(
    tables: list[str],
    bootstrap: str | None,
    topic_prefix: str | None,
    group_id: str | None,
    from_beginning: bool,
) -> DebeziumSourceConfig:
    """The source config behind `--source debezium` (a throwaway group, no commits)."""
    if not bootstrap:
        raise CdcError(
            ErrorKind.USAGE,
            "--bootstrap is required",
            "pass --bootstrap HOST:PORT or set CDC_KAFKA_BOOTSTRAP",
        )
    if not topic_prefix:
        raise CdcError(ErrorKind.USAGE, "--topic-prefix is required", "pass the connector's topic.prefix")
    return DebeziumSourceConfig(
        type="debezium",
        bootstrap_servers=bootstrap,
        topic_prefix=topic_prefix,
        tables=tables,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )


_FLAGS = {
    "dsn": "--dsn",
    "url": "--dsn",
    "path": "--dsn",
    "bootstrap_servers": "--bootstrap",
    "tables": "--table",
    "uri": "--dsn",
    "collections": "--collection",
    "slot": "--slot",
    "publication": "--publication",
    "topic_prefix": "--topic-prefix",
    "group_id": "--group-id",
}
