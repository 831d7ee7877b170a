"""`offsets:` in a pipeline file: which store keeps each source's committed position (offsets/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from cdc_logs.configmodel import ConfigModel


class OffsetsConfig(ConfigModel):
    """Where each source's committed position is kept (and the one-run-per-pipeline lock)."""

    type: Literal["sqlite", "file", "postgres"] = Field(
        "sqlite",
        description="sqlite: a local SQLite file; file: a local JSON file replaced atomically; postgres: a "
        "table in a Postgres database (for stateless deployments).",
        examples=["postgres"],
    )
    path: str | None = Field(
        None,
        description="File of a sqlite or file store. Default: .cdc-logs/<pipeline>.offsets.db (sqlite), "
        ".cdc-logs/<pipeline>.offsets.json (file), relative to the working directory.",
        examples=["/var/lib/cdc/offsets.db"],
    )
    dsn: str | None = Field(
        None,
        description="libpq connection string or URL of the postgres store's database (then required). A "
        "password in it is masked in output; write it as ${VAR}.",
        examples=["postgresql://cdc:${OFFSETS_PASSWORD}@db.internal:5432/cdc"],
    )
    table: str = Field(
        "cdc_offsets",
        description="Table of the postgres store (created when missing); unused by the other types.",
        examples=["cdc_offsets_shop"],
    )

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") == "postgres":
            from cdc_logs.pg_conninfo import pg_conninfo_problem

            problem = pg_conninfo_problem(value)
            if problem is not None:
                raise ValueError(problem)  # never the value: it holds the password
        return value

    @model_validator(mode="after")
    def _needs(self) -> OffsetsConfig:
        if self.type == "postgres" and not self.dsn:
            raise ValueError("offsets type postgres needs `dsn`")
        return self
