"""The `mysql` / `mariadb` source: its config (row binlog with GTIDs) and how it is built."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.readers.base import Reader


class MysqlBinlogConfig(ConfigModel):
    """The seed's `binlog_config` block: where a first run starts (a stored offset always wins)."""

    server_id: int | None = Field(None, ge=1, le=4294967295)
    binlog_filename: str | None = Field(None, description="MariaDB: start at this file (converted to a GTID)")
    binlog_position: int | None = Field(None, ge=4)
    gtid_set: str = Field("auto", description="auto (current end, or snapshot) | a GTID set / position")


class MysqlSourceConfig(SourceConfigBase):
    """MySQL / MariaDB row-based binlog, resumed by GTID; see docs/sources/mysql.md."""

    type: Literal["mysql", "mariadb"]
    dsn: SecretStr | None = Field(None, description="mysql://user:password@host:3306/db (never logged)")
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    database: str | None = Field(None, description="default database for unqualified table names")
    tables: list[str] = Field(default_factory=list, description="db.table to capture")
    schemas: list[str] = Field(default_factory=list, description="capture every table of these databases")
    snapshot: bool = Field(True, description="first run: emit existing rows (op r), then stream")
    snapshot_chunk_rows: int = Field(2000, ge=1, description="rows per primary-key chunk of the snapshot")
    server_id: int | None = Field(
        None, ge=1, le=4294967295, description="replication client id (default: from the pipeline name)"
    )
    heartbeat_interval_ms: int = Field(5000, ge=100, description="server heartbeat / idle position report")
    binlog_config: MysqlBinlogConfig | None = None

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
        if not self.tables and not self.schemas:
            raise ValueError("give `tables: [db.table, ...]` or `schemas: [db, ...]`")
        if self.dsn is None and self.user is None:
            raise ValueError("give `dsn: mysql://user:password@host:3306/db` or host/port/user/password")
        if self.binlog_config and self.binlog_config.server_id and self.server_id is None:
            self.server_id = self.binlog_config.server_id
        return self


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


@registry.source(MysqlSourceConfig, capabilities={"heartbeats"})
def build(cfg: MysqlSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.mysql import MysqlReader

    start = cfg.binlog_config
    return MysqlReader(
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
    )
