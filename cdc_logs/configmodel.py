"""The base every config model derives from (components' and the pipeline's own).

`extra="forbid"`: a misspelt field is an error naming it, never silently ignored. In sink configs,
fields named like a client URL (`url`, `service_url`, `schema_registry_url`) and Kafka
`bootstrap_servers` are checked when the config is read, because the clients' own errors about a
malformed URL quote it, or the piece they choke on (often the password). `SourceConfigBase` and
`SinkConfigBase` give every source and sink config the fields the pipeline relies on (`type`, `name`;
for sources also the lag guard `max_lag` / `on_max_lag`, observability/lag.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from cdc_logs.dsn import check_bootstrap, check_url
from cdc_logs.route import RouteConfig

TOPIC_TEMPLATE = "{prefix}.{schema}.{table}"
_URL_FIELDS = ("url", "service_url", "schema_registry_url")
# One wording for every component's `name` (the JSON Schema and docs/reference/ show it).
NAME_DESCRIPTION = (
    "A name for this component, unique among the pipeline's sources (or destinations). Default: the "
    "`type` value as written. Offsets, dead-letter files, replay markers, consumer groups and metrics "
    "are keyed by it, so a component renamed after it has run starts without its stored state."
)


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceConfigBase(ConfigModel):
    type: str
    name: str | None = Field(None, description=NAME_DESCRIPTION, examples=["orders_db"])
    max_lag: str | None = Field(
        None,
        description="How far behind the source the pipeline may fall: a size of log not yet consumed "
        '("512MB"; kB/MB/GB are powers of 1024; postgresql, mysql and mariadb only) or a time ("10m", '
        '"30s"). Past it: a warning, and what `on_max_lag` says (docs/operations.md). Default: no limit.',
        examples=["512MB"],
    )
    on_max_lag: Literal["warn", "not_ready", "stop"] = Field(
        "not_ready",
        description="Past `max_lag`: `warn` logs only; `not_ready` also makes /ready answer 503 naming the "
        "source until the lag is back under it; `stop` ends the run with a `lag` error (exit 3) after "
        "delivering what it can, once the lag has stayed past `max_lag` without shrinking for "
        "`max_lag_grace`.",
        examples=["stop"],
    )
    connection_pool: Any = Field(
        None,
        description="The seed's connection pool block (cdc_logs/pool.py): used by the poll source's "
        "SQLAlchemy engine; a log reader reads one stream over one connection, so there it is accepted and "
        "the run warns that it is not used.",
        examples=[
            {"min_connections": 2, "max_connections": 10, "connection_timeout": 30, "idle_timeout": 300}
        ],
    )
    max_lag_grace: str = Field(
        "60s",
        description="With `on_max_lag: stop`: how long the lag may stay past `max_lag` without shrinking "
        "before the run stops (a pipeline catching up after a restart keeps running). A time: "
        '"60s", "5m", "0s" stops at once.',
        examples=["5m"],
    )

    @field_validator("connection_pool", mode="before")
    @classmethod
    def _connection_pool(cls, value: object) -> object:
        if value is None:
            return None
        from cdc_logs.pool import ConnectionPoolConfig

        pool = ConnectionPoolConfig.model_validate(value)
        if pool.batch_insert_size is not None:
            raise ValueError("batch_insert_size is a destination's setting (the SQL destination)")
        return pool

    @field_validator("max_lag_grace", mode="before")
    @classmethod
    def _max_lag_grace(cls, value: object) -> object:
        from cdc_logs.observability.lag import parse_grace

        parse_grace(value)  # type: ignore[arg-type]
        return str(value).strip()

    @field_validator("max_lag", mode="before")
    @classmethod
    def _max_lag(cls, value: object) -> object:
        if value is None:
            return None
        from cdc_logs.observability.lag import parse_max_lag

        parse_max_lag(value)  # type: ignore[arg-type]  # a ValueError names the expected forms
        return str(value).strip()


class SinkConfigBase(ConfigModel):
    type: str
    name: str | None = Field(None, description=NAME_DESCRIPTION, examples=["analytics_db"])
    route: RouteConfig | None = Field(
        None,
        description="Which events this destination takes (cdc_logs/route.py, docs/transforms.md): tables, "
        "exclude_tables, ops, and a `when` expression. The others pass it by without holding back the "
        "checkpoint. Default: every event.",
        examples=[{"tables": ["public.orders"], "ops": ["c", "u", "d"]}],
    )

    @model_validator(mode="before")
    @classmethod
    def _connection_pool(cls, data: Any) -> Any:
        # The seed puts connection_pool on any destination: refuse it clearly where there is no pool.
        if isinstance(data, dict) and "connection_pool" in data and "connection_pool" not in cls.model_fields:
            raise ValueError(
                f"connection_pool applies to SQL destinations (sql, postgresql, mysql, mariadb, sqlite); a "
                f"{data.get('type')} destination has no connection pool to size: remove it"
            )
        return data

    @model_validator(mode="after")
    def _urls(self) -> SinkConfigBase:
        for name in _URL_FIELDS:
            value = getattr(self, name, None)
            if isinstance(value, str):  # not the SQL sink's SecretStr: SQLAlchemy parses it (dsn.py)
                try:
                    check_url(value, "URL")
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        bootstrap = getattr(self, "bootstrap_servers", None)
        if isinstance(bootstrap, str):
            check_bootstrap(bootstrap)
        return self


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _on_off_word(value: Any) -> Any:
    # YAML 1.1 reads a bare `on` / `off` as a boolean: take it as the word the user wrote.
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


#: A source's `decode_process` setting (Postgres, MySQL/MariaDB): readers/worker_process.py.
DecodeProcessMode = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off_word)]
