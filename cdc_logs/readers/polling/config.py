"""The `poll` source: its config (watermark polling through SQLAlchemy) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.readers.base import Reader


class PolledTableConfig(ConfigModel):
    table: str
    mode: Literal["timestamp", "incrementing", "timestamp+incrementing"] = "timestamp+incrementing"
    timestamp_column: str | None = None
    incrementing_column: str | None = None
    key_columns: list[str] | None = None
    soft_delete_column: str | None = None
    query: str | None = Field(None, description="custom SELECT; use :last_sync / :last_id for the watermark")

    @model_validator(mode="after")
    def _columns_for_mode(self) -> PolledTableConfig:
        if "timestamp" in self.mode and not self.timestamp_column:
            raise ValueError(f"mode {self.mode!r} needs timestamp_column")
        if "incrementing" in self.mode and not self.incrementing_column:
            raise ValueError(f"mode {self.mode!r} needs incrementing_column")
        return self


class PollSourceConfig(SourceConfigBase):
    """Query polling with a watermark (any SQLAlchemy URL): the fallback without log access."""

    type: Literal["poll", "polling", "query"]
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db")
    tables: list[PolledTableConfig] = Field(min_length=1)
    poll_interval_ms: int = Field(1000, ge=1)
    snapshot: bool = Field(True, description="first run: emit existing rows (True) or start at the newest")
    safety_lag_ms: int = Field(0, ge=0, description="ignore rows newer than now - lag (late commits)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from cdc_logs.readers.polling.connection import url_problem

        problem = url_problem(value)
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


@registry.source(PollSourceConfig)
def build(cfg: PollSourceConfig, ctx: registry.BuildContext) -> Reader:
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
        pipeline_name=ctx.pipeline,
        snapshot=cfg.snapshot,
        safety_lag_s=cfg.safety_lag_ms / 1000,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )
