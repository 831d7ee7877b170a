"""The `poll` source: its config (watermark polling through SQLAlchemy) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.readers.base import Reader


class PolledTableConfig(ConfigModel):
    """One polled table (or custom query) and its watermark; see docs/sources/polling.md."""

    table: str = Field(
        description="Table to poll, as table or schema.table; with `query`, only the name its events carry.",
        examples=["orders", "sales.orders"],
    )
    mode: Literal["timestamp", "incrementing", "timestamp+incrementing"] = Field(
        "timestamp+incrementing",
        description="Watermark, as Kafka Connect's JDBC source: `incrementing` sees inserts only, "
        "`timestamp` inserts and updates, `timestamp+incrementing` (the default) inserts and updates and "
        "resumes exactly inside a timestamp.",
        examples=["timestamp"],
    )
    timestamp_column: str | None = Field(
        None,
        description="Modification-time column, set on every insert and update; needed by the modes with "
        "`timestamp`. Rows where it is NULL are never read.",
        examples=["updated_at"],
    )
    incrementing_column: str | None = Field(
        None,
        description="Strictly increasing id column; needed by the modes with `incrementing`.",
        examples=["id"],
    )
    key_columns: list[str] | None = Field(
        None,
        description="Columns of the event key. Default: the table's primary key (with `query`: the "
        "incrementing column).",
        examples=[["order_id"]],
    )
    soft_delete_column: str | None = Field(
        None,
        description="A row whose value here is not NULL, false or 0 is emitted as a delete (op d). Default: "
        "none, and deleted rows go unseen (polling cannot see a DELETE).",
        examples=["deleted_at"],
    )
    query: str | None = Field(
        None,
        description="A custom SELECT polled instead of the table, wrapped as a subquery, so it needs no "
        "watermark predicate; :last_sync (timestamp) and :last_id are bound if it names them. Its "
        "result must hold the watermark and key columns.",
        examples=["SELECT event_id, created_at, payload FROM event_store"],
    )

    @model_validator(mode="after")
    def _columns_for_mode(self) -> PolledTableConfig:
        if "timestamp" in self.mode and not self.timestamp_column:
            raise ValueError(f"mode {self.mode!r} needs timestamp_column")
        if "incrementing" in self.mode and not self.incrementing_column:
            raise ValueError(f"mode {self.mode!r} needs incrementing_column")
        return self


class PollSourceConfig(SourceConfigBase):
    """Query polling with a watermark (any SQLAlchemy URL): the fallback without log access."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "poll",
                    "url": "postgresql+psycopg://reader:${DB_PASSWORD}@db.internal/shop",
                    "tables": [
                        {"table": "orders", "timestamp_column": "updated_at", "incrementing_column": "id"}
                    ],
                }
            ]
        }
    )

    type: Literal["poll", "polling", "query"] = Field(
        description="Selects this source; `polling` and `query` are aliases of `poll`."
    )
    url: str = Field(
        description="SQLAlchemy URL of the database (any dialect whose driver is installed); a password "
        "in it is masked in output, write it as ${VAR}. Also accepted as `dsn`.",
        examples=["postgresql+psycopg://reader:${DB_PASSWORD}@db.internal/shop"],
    )
    tables: list[PolledTableConfig] = Field(
        min_length=1,
        description="The tables to poll, each with its watermark. The seed's one-table shape (`table:`, "
        "`watermark: {column, type}`, `query:` at the top level) is accepted too.",
    )
    poll_interval_ms: int = Field(
        1000,
        ge=1,
        description="Milliseconds to wait between polls once every table is caught up.",
        examples=[5000],
    )
    snapshot: bool = Field(
        True,
        description="Starting without a stored position: emit the rows that already exist (as c/u), or "
        "with false start after the newest row.",
    )
    safety_lag_ms: int = Field(
        0,
        ge=0,
        description="Rows whose timestamp is newer than the database clock minus this many milliseconds "
        "are left for a later poll, so a transaction committing late (shorter than the lag) is not "
        "missed. Needs a date/time timestamp column; 0 (as in Kafka Connect) reads up to now.",
        examples=[5000],
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from cdc_logs.readers.polling.connection import url_problem
        from cdc_logs.sinks.sql_apply.urls import driver_problem, normalize_url

        # A driver that cannot be loaded is said by `config validate`, as `run` would say it.
        problem = url_problem(value) or driver_problem(normalize_url(value))
        if problem is not None:
            raise ValueError(problem)  # never the value: it holds the password
        return value

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        # The seed's shape: `table:` + `watermark: {column, type}` (+ `query:`) at the top level.
        if isinstance(data, dict):
            data = dict(data)
            if "dsn" in data and "url" not in data:
                data["url"] = data.pop("dsn")
            if "table" in data and "tables" not in data:
                table: dict[str, Any] = {"table": data.pop("table")}
                watermark = data.pop("watermark", None) or {}
                if isinstance(watermark, dict) and watermark.get("column"):
                    if watermark.get("type", "timestamp") in ("timestamp", "datetime"):
                        table.update(mode="timestamp", timestamp_column=watermark["column"])
                    else:
                        table.update(mode="incrementing", incrementing_column=watermark["column"])
                for key in (
                    "query",
                    "mode",
                    "timestamp_column",
                    "incrementing_column",
                    "key_columns",
                    "soft_delete_column",
                ):
                    if key in data:
                        table[key] = data.pop(key)
                data["tables"] = [table]
        return data


def polled_tables(cfg: PollSourceConfig) -> list[Any]:
    """The source's tables as the reader (and its doctor) take them: `PolledTable`s."""
    from cdc_logs.readers.polling.query import PolledTable

    return [
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


@registry.source(PollSourceConfig)
def build(cfg: PollSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.pool import engine_options
    from cdc_logs.readers.polling.connection import parse_url
    from cdc_logs.readers.polling.reader import PollingReader

    return PollingReader(
        cfg.url,
        polled_tables(cfg),
        pool_options=engine_options(cfg.connection_pool, parse_url(cfg.url)),
        pipeline_name=ctx.pipeline,
        snapshot=cfg.snapshot,
        safety_lag_s=cfg.safety_lag_ms / 1000,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )
