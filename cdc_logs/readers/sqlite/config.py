"""The `sqlite` source: its config (trigger-based capture of a SQLite file) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase
from cdc_logs.readers.base import Reader


class SqliteSourceConfig(SourceConfigBase):
    """Trigger-based capture of a SQLite database file (the embedded default)."""

    type: Literal["sqlite"]
    path: str = Field(description="SQLite database file, or a sqlite:/// URL")
    tables: list[str] = Field(min_length=1)
    snapshot: bool = Field(False, description="emit existing rows (op r) before streaming")
    consumer: str | None = Field(None, description="consumer id in the change table (default: pipeline name)")
    poll_interval_ms: int = Field(200, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("dsn", "database", "url"):
                if alias in data and "path" not in data:
                    data["path"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
        return data

    @field_validator("path")
    @classmethod
    def _strip_url(cls, value: str) -> str:
        return value.removeprefix("sqlite:///") if value.startswith("sqlite:///") else value


@registry.source(SqliteSourceConfig)
def build(cfg: SqliteSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.sqlite import SqliteReader

    return SqliteReader(
        cfg.path,
        cfg.tables,
        pipeline_name=ctx.pipeline,
        consumer=cfg.consumer or ctx.pipeline,
        temporary=ctx.temporary,
        snapshot=cfg.snapshot,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )
