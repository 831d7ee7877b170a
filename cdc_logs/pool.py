"""`connection_pool:` on a source or destination (the seed's shape), mapped to SQLAlchemy's pool.

Where it applies:
- the polling source (readers/polling) and the SQL destination (sinks/sql_apply/) use a SQLAlchemy
  engine, whose QueuePool gets: pool_size = min_connections (connections kept open once opened;
  SQLAlchemy opens them on demand, never ahead), max_overflow = max_connections - min_connections,
  pool_timeout = connection_timeout (seconds to wait for a free pooled connection), and the driver's
  connect timeout = connection_timeout (Postgres, MySQL/MariaDB), pool_recycle = idle_timeout (a
  connection opened longer ago than that is replaced when it is next taken: SQLAlchemy measures from
  when it was opened, not from its last use). A SQLite file has no server to connect to: there only
  the pool sizes and pool_timeout apply.
- `batch_insert_size` is the SQL destination's: at most that many rows per multi-row upsert
  statement (sinks/sql_apply/apply.py `_Upserts`); refused on a source.
- the log readers (Postgres, MySQL/MariaDB, SQLite triggers, MongoDB, Oracle, the buses) read one
  replication stream or consumer over one connection: a pool has nothing to size there, so the
  setting is accepted for the seed's shape and the run logs a warning saying it is not used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import sqlalchemy as sa


class ConnectionPoolConfig(BaseModel):
    """Connection pool of a SQL source or destination (cdc_logs/pool.py says what maps where)."""

    # configmodel.ConfigModel's settings; not derived from it, because configmodel validates a
    # source's connection_pool with this model (an import cycle otherwise).
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    min_connections: int | None = Field(
        None,
        ge=1,
        description="Connections kept open once opened (SQLAlchemy pool_size; opened on demand). Default: "
        "SQLAlchemy's 5.",
        examples=[2],
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Connections open at most (pool_size + max_overflow). Default: min_connections + 10.",
        examples=[10],
    )
    connection_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for a free pooled connection, and the driver's connect timeout "
        "(Postgres, MySQL/MariaDB). Default: 30 s pool wait, the driver's own connect timeout.",
        examples=[30],
    )
    idle_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds after which a pooled connection is replaced when next taken (SQLAlchemy "
        "pool_recycle: counted from when it was opened). Default: never.",
        examples=[300],
    )
    batch_insert_size: int | None = Field(
        None,
        ge=1,
        description="SQL destination: rows per multi-row upsert statement at most. Default: all the "
        "consecutive rows of one table and shape in a batch.",
        examples=[1000],
    )

    @model_validator(mode="before")
    @classmethod
    def _a_block(cls, data: Any) -> Any:
        # Pydantic would say "a valid dictionary or instance of ConnectionPoolConfig": a class name.
        if not isinstance(data, dict | ConnectionPoolConfig):
            shown = f" {data!r}" if isinstance(data, int | float) else ""  # a string may hold anything
            raise ValueError(
                f"connection_pool is a block of settings, not {type(data).__name__}{shown}: write e.g. "
                "connection_pool: {max_connections: 5} (min_connections, max_connections, "
                "connection_timeout, idle_timeout, batch_insert_size)"
            )
        return data

    @model_validator(mode="after")
    def _sizes(self) -> ConnectionPoolConfig:
        low, high = self.min_connections, self.max_connections
        if low is not None and high is not None and low > high:
            raise ValueError("connection_pool: min_connections is larger than max_connections")
        return self


def engine_options(pool: ConnectionPoolConfig | None, url: sa.URL) -> dict[str, Any]:
    """create_engine keyword arguments for `pool` on `url` (module docstring)."""
    if pool is None:
        return {}
    out: dict[str, Any] = {}
    size = pool.min_connections
    if size is None and pool.max_connections is not None:
        size = min(5, pool.max_connections)
    if size is not None:
        out["pool_size"] = size
        if pool.max_connections is not None:
            out["max_overflow"] = pool.max_connections - size
    if pool.connection_timeout is not None:
        out["pool_timeout"] = pool.connection_timeout
        backend = url.get_backend_name()
        if backend in ("postgresql", "mysql", "mariadb"):
            out["connect_args"] = {"connect_timeout": max(1, round(pool.connection_timeout))}
    if pool.idle_timeout is not None:
        out["pool_recycle"] = pool.idle_timeout
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # An in-memory SQLite database lives in one connection (SingletonThreadPool): no sizes to set.
        for key in ("pool_size", "max_overflow", "pool_timeout"):
            out.pop(key, None)
    return out


def not_used_warning(source_type: str) -> str:
    return (
        f"connection_pool is not used by a {source_type} source: it reads one replication stream (or "
        "consumer) over one connection; it applies to the poll source and the SQL destination"
    )
