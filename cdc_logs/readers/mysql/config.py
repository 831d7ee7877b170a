"""The `mysql` / `mariadb` source: its config (row binlog with GTIDs) and how it is built."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, SecretStr, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, DecodeProcessMode, SourceConfigBase
from cdc_logs.readers.base import Reader
from cdc_logs.readers.capture import (
    CAPTURE_DESCRIPTION,
    CaptureMode,
    PollSettings,
    capture_alias,
    polled_tables,
)


class MysqlBinlogConfig(ConfigModel):
    """The seed's `binlog_config` block: where a first run starts (a stored offset always wins)."""

    server_id: int | None = Field(
        None,
        ge=1,
        le=4294967295,
        description="Replication client id, used when the source's own `server_id` is not set.",
        examples=[1001],
    )
    binlog_filename: str | None = Field(
        None,
        description="MariaDB only: a first run starts in this binlog file (converted to a GTID position "
        "with BINLOG_GTID_POS) instead of a snapshot. Ignored when `gtid_set` is given; refused on MySQL.",
        examples=["mariadb-bin.000042"],
    )
    binlog_position: int | None = Field(
        None,
        ge=4,
        description="Byte offset in `binlog_filename` to start at (default 4, the file's first event); "
        "only used with `binlog_filename`.",
        examples=[4],
    )
    gtid_set: str = Field(
        "auto",
        description="Where a first run starts: `auto` is the snapshot when `snapshot: true`, else the "
        "server's current end; a GTID set (MySQL) or GTID position (MariaDB) starts there and skips the "
        "snapshot.",
        examples=["0-1-1042", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"],
    )


class MysqlSourceConfig(SourceConfigBase):
    """MySQL / MariaDB row-based binlog, resumed by GTID; see docs/sources/mysql.md."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "mariadb",
                    "dsn": "mysql://cdc:${MARIADB_PASSWORD}@db.internal:3306/shop",
                    "tables": ["shop.orders"],
                }
            ]
        }
    )

    type: Literal["mysql", "mariadb"] = Field(
        description="Selects this source and the server's flavour (GTID format, setup checks): it must "
        "match the server, which is checked when the source opens."
    )
    dsn: SecretStr | None = Field(
        None,
        description="mysql://user:password@host:port/database of a user with REPLICATION SLAVE, "
        "REPLICATION CLIENT and SELECT. A secret: never logged; write the password as ${VAR}. Also "
        "accepted as `url`, `uri`, `connection_string`. Without it: host/port/user/password.",
        examples=["mysql://cdc:${MARIADB_PASSWORD}@db.internal:3306/shop"],
    )
    host: str = Field(
        "127.0.0.1", description="Server host, when `dsn` is not given.", examples=["db.internal"]
    )
    port: int = Field(
        3306, ge=1, le=65535, description="Server port, when `dsn` is not given.", examples=[3306]
    )
    user: str | None = Field(
        None,
        description="User name, when `dsn` is not given. Default: the operating system's login name, as the "
        "mysql client does (the seed's multi-source example gives only host and database).",
        examples=["cdc"],
    )
    password: SecretStr | None = Field(
        None,
        description="Password of `user`, when `dsn` is not given. A secret: never logged. Default: none.",
        examples=["${MARIADB_PASSWORD}"],
    )
    database: str | None = Field(
        None,
        description="Database that bare table names in `tables` belong to (and the connection's, when "
        "`dsn` names none). With neither `tables` nor `schemas`, every table of this database is "
        "captured, as `schemas: [database]` (the seed's MySQL binlog example).",
        examples=["shop"],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Tables to capture, as db.table (a bare name takes `database`). Give `tables`, "
        "`schemas` or both; the seed's `table:` and `monitored_tables:` are accepted too.",
        examples=[["shop.orders", "shop.customers"]],
    )
    schemas: list[str] = Field(
        default_factory=list,
        description="Databases whose every table is captured (the tables are listed when the source opens).",
        examples=[["shop"]],
    )
    snapshot: bool = Field(
        True,
        description="On the first run (no stored position): emit the existing rows as op r, then the "
        "binlog from that point. false: start at the server's current end (or at `binlog_config`). A "
        "stored position always wins.",
    )
    snapshot_chunk_rows: int = Field(
        2000,
        ge=1,
        description="Rows per primary-key chunk of the snapshot (one SELECT each).",
        examples=[10_000],
    )
    server_id: int | None = Field(
        None,
        ge=1,
        le=4294967295,
        description="This client's replication server id, unique among the server's replicas and "
        "binlog clients. Default: derived from the pipeline name (1000000000 + a hash), stable across "
        "restarts.",
        examples=[1844674],
    )
    heartbeat_interval_ms: int = Field(
        5000,
        ge=100,
        description="Milliseconds between the server's heartbeats on an idle binlog "
        "(MASTER_HEARTBEAT_PERIOD) and between reports of a position moved by transactions of tables "
        "not captured. Silence for three periods (at least 10 s) means a dead connection.",
        examples=[10_000],
    )
    decode_process: DecodeProcessMode = Field(
        "auto",
        description="Read and convert the binlog in a second process, so parsing and the pipeline use "
        "two cores. `auto`: when the run starts more than 1 MiB of binlog behind its end, or at a "
        "configured GTID (catching up); `on`: always; `off`: never (a thread of the pipeline's process). "
        "YAML's true/false (yes/no) mean on/off. Output and positions are the same either way.",
        examples=["off"],
    )
    binlog_config: MysqlBinlogConfig | None = Field(
        None,
        description="The seed's block: where a first run starts (a stored offset always wins). Default: "
        "`snapshot` decides.",
    )
    signal_data_collection: str | None = Field(
        None,
        description="Debezium's signal table, as db.table: (id varchar(42) PRIMARY KEY, type varchar(32) "
        "NOT NULL, data varchar(2048)). Its inserts are read from the binlog and never emitted; "
        "`execute-snapshot` and `stop-snapshot` rows start and stop incremental snapshots, and the "
        "reader writes its chunk watermarks there (the user needs INSERT and DELETE on it; "
        "docs/snapshots.md). Debezium's `signal.data.collection`. Default: no signals, no incremental "
        "snapshots.",
        examples=["shop.debezium_signal"],
    )
    incremental_snapshot_chunk_size: int = Field(
        1024,
        ge=1,
        description="Rows per table per chunk of an incremental snapshot (one watermark window): the "
        "unit a crash resumes from. Debezium's `incremental.snapshot.chunk.size`.",
        examples=[4096],
    )
    incremental_snapshot_parallel_tables: int = Field(
        1,
        ge=1,
        description="Tables of an incremental snapshot read together, a chunk of each per window; the "
        "others wait in the queue. 1: one table after another, as Debezium does.",
        examples=[4],
    )
    snapshot_new_tables: bool | None = Field(
        None,
        description="On start, snapshot (incrementally, while streaming) the tables added to `tables` "
        "since the stored position was taken; needs `signal_data_collection`. Default: the value of "
        "`snapshot`.",
        examples=[True],
    )

    capture: CaptureMode = Field("log", description=CAPTURE_DESCRIPTION, examples=["auto"])
    poll: PollSettings | None = Field(
        None,
        description="The polling cursor for `capture: poll` / `auto` (readers/capture.py): timestamp_column "
        "and/or incrementing_column (and soft_delete_column) for every table, `tables:` per table.",
        examples=[{"timestamp_column": "updated_at", "incrementing_column": "id"}],
    )

    @model_validator(mode="before")
    @classmethod
    def _capture_mode(cls, data: Any) -> Any:
        return capture_alias(data)

    @model_validator(mode="after")
    def _poll_cursor(self) -> Self:
        if self.capture != "log":
            if not self.tables:
                raise ValueError(f"capture: {self.capture} polls the listed tables: give `tables`")
            polled_tables(self.tables, self.poll)  # every table needs a cursor column
        return self

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("url", "uri", "connection_string"):
                if alias in data and "dsn" not in data:
                    data["dsn"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
            if "signal.data.collection" in data and "signal_data_collection" not in data:
                data["signal_data_collection"] = data.pop("signal.data.collection")
            if "monitored_tables" in data and "tables" not in data:
                data["tables"] = data.pop("monitored_tables")
            if data.pop("cdc_mode", "binlog") != "binlog":
                raise ValueError("cdc_mode: only `binlog` is supported for mysql/mariadb (or use type: poll)")
            # The seed states the server settings it expects; they are checked at open, not set.
            for key, want in (("binlog_format", "ROW"), ("binlog_row_image", "FULL")):
                value = data.pop(key, want)
                if str(value).upper() != want:
                    raise ValueError(f"{key}: only {want} is supported (it is a server setting)")
        return data

    @model_validator(mode="after")
    def _needs(self) -> MysqlSourceConfig:
        if not self.tables and not self.schemas and self.database:
            self.schemas = [self.database]  # the seed's `database:` alone: the whole database
        if not self.tables and not self.schemas:
            raise ValueError("give `tables: [db.table, ...]`, `schemas: [db, ...]` or `database`")
        if self.binlog_config and self.binlog_config.server_id and self.server_id is None:
            self.server_id = self.binlog_config.server_id
        return self


def mysql_settings(cfg: MysqlSourceConfig) -> Any:
    """Connection settings from `dsn` or host/port/user/password (the password stays a secret)."""
    from cdc_logs.readers.mysql.connection import settings_of

    return settings_of(cfg)


@registry.source(MysqlSourceConfig, capabilities={"heartbeats"})
def build(cfg: MysqlSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.mysql.reader import MysqlReader

    start = cfg.binlog_config
    reader = MysqlReader(
        mysql_settings(cfg),
        cfg.tables,
        pipeline_name=ctx.pipeline,
        flavor=cfg.type,
        schemas=cfg.schemas,
        server_id=cfg.server_id,
        temporary=ctx.temporary,
        snapshot=cfg.snapshot,
        start_gtid=start.gtid_set if start else None,
        start_file=start.binlog_filename if start else None,
        start_pos=start.binlog_position if start else None,
        heartbeat_s=cfg.heartbeat_interval_ms / 1000,
        snapshot_chunk_size=cfg.snapshot_chunk_rows,
        signal_table=cfg.signal_data_collection,
        incremental_chunk_size=cfg.incremental_snapshot_chunk_size,
        incremental_parallel=cfg.incremental_snapshot_parallel_tables,
        snapshot_new_tables=cfg.snapshot if cfg.snapshot_new_tables is None else cfg.snapshot_new_tables,
        decode_process=cfg.decode_process,
    )
    if cfg.capture == "log":
        return reader
    return _capture_reader(cfg, ctx, reader)


def _capture_reader(cfg: MysqlSourceConfig, ctx: registry.BuildContext, reader: Reader) -> Reader:
    from cdc_logs.readers.capture import CaptureReader
    from cdc_logs.readers.mysql.doctor import LOG_NEEDS, poll_url, run_checks
    from cdc_logs.readers.polling.reader import PollingReader

    settings = mysql_settings(cfg)
    url = poll_url(settings)
    poll = cfg.poll
    return CaptureReader(
        cfg.capture,
        source=cfg.name or cfg.type,
        log_reader=lambda: reader,
        poll_reader=lambda: PollingReader(
            url,
            polled_tables(cfg.tables, poll),
            pipeline_name=ctx.pipeline,
            snapshot=cfg.snapshot,
            safety_lag_s=(poll.safety_lag_ms if poll else 0) / 1000,
            poll_interval_s=(poll.interval_ms if poll else 1000) / 1000,
        ),
        tables=lambda: polled_tables(cfg.tables, poll),
        checks=lambda: run_checks(settings, cfg.type),
        needed=LOG_NEEDS,
    )
