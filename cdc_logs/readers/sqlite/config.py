"""The `sqlite` source: its config (trigger-based capture of a SQLite file) and how it is built."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import SourceConfigBase
from cdc_logs.readers.base import Reader


class SqliteSourceConfig(SourceConfigBase):
    """Trigger-based capture of a SQLite database file (the embedded default)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "sqlite", "path": "app.db", "tables": ["users", "orders"]}]}
    )

    type: Literal["sqlite"] = Field(description="Selects this source.")
    path: str = Field(
        description="The SQLite database file (it must exist), or a sqlite:/// URL. Also accepted as "
        "`dsn`, `database`, `url`.",
        examples=["/var/lib/app/app.db", "sqlite:///app.db"],
    )
    tables: list[str] = Field(
        min_length=1,
        description="Tables to capture, as table or main.table; each must exist. Triggers writing to a "
        "change table are installed on them. The seed's `table:` is accepted too.",
        examples=[["users", "orders"]],
    )
    snapshot: bool = Field(
        False,
        description="Starting without a stored position: emit the existing rows (op r) first, then the "
        "changes. false: a consumer known from an earlier run continues where it stopped; a new one "
        "starts with the changes made after the source opens.",
    )
    consumer: str | None = Field(
        None,
        description="Name under which this reader's progress is kept in the database's _cdc_state table; "
        "change rows are trimmed once every consumer has committed them, so pipelines reading the same "
        "file need distinct names. Default: the pipeline name.",
        examples=["shop-archive"],
    )
    poll_interval_ms: int = Field(
        200,
        ge=1,
        description="Milliseconds to wait between polls of the change table when it had nothing new.",
        examples=[1000],
    )

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
    from cdc_logs.readers.sqlite.reader import SqliteReader

    return SqliteReader(
        cfg.path,
        cfg.tables,
        pipeline_name=ctx.pipeline,
        consumer=cfg.consumer or ctx.pipeline,
        temporary=ctx.temporary,
        snapshot=cfg.snapshot,
        poll_interval_s=cfg.poll_interval_ms / 1000,
    )
