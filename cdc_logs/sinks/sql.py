"""SQL apply sink: its configuration, its URLs and drivers, and its registration.

The sink itself (upserts, deletes, truncates, replay markers, auto_create, typed values) is
sql_apply/apply.py; it and SQLAlchemy are imported only when a SQL destination is built, so a
pipeline without one never loads them (idle memory: docs/benchmarks.md). docs/sinks.md describes
what it does.

URLs without a driver get the ones cdc-logs installs (psycopg 3, PyMySQL); a driver that is not
installed is a configuration error, never a transient one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import ConfigDict, Field, SecretStr, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.pool import ConnectionPoolConfig
from cdc_logs.sinks.sql_apply.urls import driver_problem, normalize_url

if TYPE_CHECKING:
    from cdc_logs.sinks.sql_apply.apply import SqlSink

__all__ = ["SqlSinkConfig", "build", "driver_problem", "normalize_url"]

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


class SqlSinkConfig(SinkConfigBase):
    """Apply changes to SQL tables (upsert / delete / truncate) through SQLAlchemy."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "postgresql",
                    "url": "postgresql://cdc:${ANALYTICS_PASSWORD}@analytics.internal:5432/analytics",
                }
            ]
        }
    )

    type: Literal["sql", "postgresql", "postgres", "mysql", "mariadb", "sqlite"] = Field(
        description="Selects this destination. `sql` needs `url`; the database names may instead build the "
        "URL from host, port, database, username and password with that database's driver (psycopg, "
        "PyMySQL; sqlite: `database` is the file)."
    )
    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the target database (postgresql:// uses psycopg 3, mysql:// and "
        "mariadb:// PyMySQL: the drivers cdc-logs installs); when set, the "
        "fields below are ignored. A secret: never logged. Also accepted as `dsn`.",
        examples=["postgresql://cdc:${ANALYTICS_PASSWORD}@analytics.internal:5432/analytics"],
    )
    host: str = Field(
        "127.0.0.1", description="Database host, when `url` is not set.", examples=["analytics.internal"]
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Database port, when `url` is not set. Default: the driver's (5432, 3306).",
        examples=[5432],
    )
    database: str | None = Field(
        None,
        description="Database name (sqlite: the file path), when `url` is not set; then required, except "
        "for postgresql/postgres, where libpq's default applies (PGDATABASE, else the user name), as the "
        "seed's multi-destination example gives only host and table.",
        examples=["analytics"],
    )
    username: str | None = Field(None, description="User, when `url` is not set.", examples=["cdc"])
    password: SecretStr | None = Field(
        None,
        description="Password of `username`, when `url` is not set. A secret: never logged.",
        examples=["${ANALYTICS_PASSWORD}"],
    )
    table: str = Field(
        "{table}",
        description="Target table per event, from {prefix} {db} {schema} {table} {op} {connector}, or one "
        "fixed table for every source table.",
        examples=["{schema}_{table}", "unified_events"],
    )
    target_schema: str | None = Field(
        "{schema}",
        alias="schema",
        description="Target schema per event (a template, as `table`); null: the connection's default "
        "schema, which is the default for SQLite targets. For MySQL sources {schema} is the database. It "
        "must exist: cdc-logs creates tables, never schemas (a missing one stops the run naming CREATE "
        "SCHEMA).",
        examples=["replica", None],
    )
    auto_create: bool = Field(
        False,
        description="Create a missing target table from the source's column types (primary key from the "
        "event key; types guessed from the values when an event carries no table schema) and add columns "
        "that appear later; false: a missing table or column stops the pipeline naming the fix.",
    )
    apply_truncate: bool = Field(
        True, description="Apply truncate events (TRUNCATE TABLE; DELETE on SQLite); false skips them."
    )
    applied_table: str = Field(
        "cdc_applied",
        description="Table of replay markers (last applied position per pipeline, destination, target table "
        "and source table), written in each batch's transaction; created in `schema` when that is one fixed "
        "schema, else in the connection's default schema.",
        examples=["cdc_applied_shop"],
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dsn" in data and "url" not in data:
            data = dict(data)
            data["url"] = data.pop("dsn")
        return data

    connection_pool: ConnectionPoolConfig | None = Field(
        None,
        description="Pool of the target's SQLAlchemy engine, and rows per upsert statement: min_connections, "
        "max_connections, connection_timeout, idle_timeout, batch_insert_size (cdc_logs/pool.py; "
        "docs/configuration.md#connection-pools). Default: SQLAlchemy's pool.",
        examples=[{"min_connections": 5, "max_connections": 20, "batch_insert_size": 1000}],
    )

    @model_validator(mode="after")
    def _connection(self) -> SqlSinkConfig:
        # Postgres without a database: libpq's default (PGDATABASE, else the user name), as psql does.
        libpq_default = self.type in ("postgresql", "postgres")
        if self.url is None and (self.type == "sql" or not (self.database or libpq_default)):
            raise ValueError("give `url` (a SQLAlchemy URL), or `database` with host/port/username/password")
        if "target_schema" not in self.model_fields_set and self.sqlalchemy_url().startswith("sqlite"):
            self.target_schema = None  # SQLite has no schemas to mirror
        problem = driver_problem(normalize_url(self.sqlalchemy_url()))
        if problem is not None:  # `config validate` says it, as `run` would
            raise ValueError(problem)
        return self

    def sqlalchemy_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        if self.type == "sqlite":
            return f"sqlite:///{self.database}"
        auth = quote(self.username or "", safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        port = f":{self.port}" if self.port else ""
        return f"{_DRIVERS[self.type]}://{auth + '@' if auth else ''}{self.host}{port}/{self.database or ''}"


@registry.sink(SqlSinkConfig, capabilities={"state", "ordered", "replay_guard"})
def build(cfg: SqlSinkConfig, ctx: registry.BuildContext) -> SqlSink:
    from cdc_logs.sinks.sql_apply.apply import SqlSink

    return SqlSink(
        cfg.sqlalchemy_url(),
        table=cfg.table,
        target_schema=cfg.target_schema,
        auto_create=cfg.auto_create,
        apply_truncate=cfg.apply_truncate,
        applied_table=cfg.applied_table,
        name=cfg.name or cfg.type,
        connection_pool=cfg.connection_pool,
        pipeline=ctx.pipeline,
    )
