"""The `postgresql` source: its config (pgoutput through a replication slot) and how it is built."""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import DecodeProcessMode, SourceConfigBase
from cdc_logs.readers.base import Reader
from cdc_logs.readers.capture import (
    CAPTURE_DESCRIPTION,
    CaptureMode,
    PollSettings,
    capture_alias,
    polled_tables,
)

_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def default_slot_name(pipeline: str) -> str:
    """`cdc_logs_<pipeline>` as a valid slot name (lowercase letters, digits and _, at most 63)."""
    return ("cdc_logs_" + re.sub(r"[^a-z0-9_]", "_", pipeline.lower()))[:63]


class PostgresSourceConfig(SourceConfigBase):
    """Postgres logical replication (pgoutput) through a replication slot; see docs/sources/postgres.md."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "postgresql",
                    "dsn": "postgresql://cdc:${PG_PASSWORD}@db.internal:5432/shop",
                    "tables": ["public.orders"],
                }
            ]
        }
    )

    type: Literal["postgresql", "postgres", "pg"] = Field(
        description="Selects this source; `postgres` and `pg` are aliases of `postgresql`."
    )
    dsn: SecretStr = Field(
        SecretStr(""),
        description="libpq connection string or URL of the database to capture, for a role with "
        "REPLICATION and SELECT on the tables. A secret: never logged; write the password as ${VAR}. "
        "Also accepted as `url`, `uri`, `connection_string`, or the seed's host/port/database/user/password. "
        "Default: empty, so libpq's defaults apply, as for psql (PGHOST, PGPORT, PGUSER, PGPASSWORD, "
        "PGDATABASE, else the local socket; the seed's event-sourcing example names no server).",
        examples=["postgresql://cdc:${PG_PASSWORD}@db.internal:5432/shop"],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Tables to capture, as schema.table. Required unless `all_tables: true`; the seed's "
        "`table:` (one name) is accepted too.",
        examples=[["public.orders", "public.customers"]],
    )
    all_tables: bool = Field(
        False,
        description="Capture every table: the publication is created FOR ALL TABLES (needs a superuser). "
        "Excludes `tables`.",
    )
    slot: str | None = Field(
        None,
        description="Replication slot to read (1-63 lowercase letters, digits, _); created when missing. "
        "Default: cdc_logs_<pipeline name>, lowercased, other characters as _. The seed's `slot_name` is "
        "accepted too.",
        examples=["cdc_logs_shop"],
    )
    publication: str | None = Field(
        None,
        description="Publication the slot decodes; created when missing, used as it is when it exists. "
        "Default: the slot's name when it starts with cdc_logs_ (the default slot), else cdc_logs_<slot>. "
        "The seed's `publication_name` is accepted too.",
        examples=["cdc_logs_shop"],
    )
    snapshot: bool = Field(
        True,
        description="On the first run (no stored position): emit the existing rows as op r, read in a "
        "snapshot consistent with the slot, then stream. false: stream from where the slot stands (a new "
        "slot: the current end of the WAL). A stored position always wins.",
    )
    snapshot_chunk_rows: int = Field(
        10_000,
        ge=1,
        description="Rows per primary-key chunk of the snapshot: the unit a snapshot interrupted by a crash "
        "resumes from.",
        examples=[50_000],
    )
    heartbeat_interval_ms: int = Field(
        10_000,
        ge=0,
        description="Milliseconds between heartbeats (pg_logical_emit_message, never emitted as events): "
        "they move the confirmed position of an idle or filtered source so the slot does not pin WAL. "
        "0 turns heartbeats off.",
        examples=[30_000],
    )
    status_interval_ms: int = Field(
        10_000,
        ge=100,
        description="Milliseconds between standby status updates to the server (the confirmed flush "
        "position; also sent soon after each commit). Keep it below the server's wal_sender_timeout.",
        examples=[5_000],
    )
    binary: bool = Field(
        False, description="Ask pgoutput for the binary format: the same values, less text parsing."
    )
    messages: bool = Field(
        True, description="Emit pg_logical_emit_message() messages as op m events; false drops them."
    )
    decode_process: DecodeProcessMode = Field(
        "auto",
        description="Decode pgoutput in a second process, so reading the stream and decoding it use two "
        "cores. `auto`: on a machine with at least 4 usable CPUs, from the first transaction boundary after "
        "5,000 changes arrived back to back (a backlog), so a quiet pipeline runs one process; `on`: from "
        "the start; `off`: never. YAML's true/false (yes/no) mean on/off. Output and positions are the "
        "same either way.",
        examples=["off"],
    )
    max_tx_memory_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description="Bytes of in-progress transactions streamed by the server (Postgres 14+) kept in "
        "memory, over all open transactions; past it the largest moves to an unlinked temporary file.",
        examples=[268_435_456],
    )
    logical_decoding_work_mem: str | None = Field(
        None,
        description="The walsender session's logical_decoding_work_mem: how much of a transaction the "
        "server buffers before it streams it. Default: the server's setting (unchanged).",
        examples=["64MB"],
    )

    signal_data_collection: str | None = Field(
        None,
        description="Debezium's signal table, as schema.table: (id varchar(42) PRIMARY KEY, type "
        "varchar(32) NOT NULL, data varchar(2048)). Its inserts are read from the log (it must be in the "
        "publication; cdc-logs adds it to a publication it created) and never emitted; `execute-snapshot` "
        "and `stop-snapshot` rows start and stop incremental snapshots (docs/snapshots.md). Debezium's "
        "`signal.data.collection`. Default: no signals.",
        examples=["public.debezium_signal"],
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
        "since the stored position was taken. Default: the value of `snapshot`.",
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
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("url", "connection_string", "uri"):
                if alias in data and "dsn" not in data:
                    data["dsn"] = data.pop(alias)
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
            if "slot_name" in data and "slot" not in data:
                data["slot"] = data.pop("slot_name")
            if "signal.data.collection" in data and "signal_data_collection" not in data:
                data["signal_data_collection"] = data.pop("signal.data.collection")
            if "publication_name" in data and "publication" not in data:
                data["publication"] = data.pop("publication_name")
            if "query" in data:  # the seed's event-sourcing shape: poll this query instead of the log
                _seed_query(data)
            if "dsn" not in data and "host" in data:  # the seed's host/port/database/user/password shape
                from psycopg.conninfo import make_conninfo

                parts = {
                    k: data.pop(k) for k in ("host", "port", "database", "user", "password") if k in data
                }
                if "database" in parts:
                    parts["dbname"] = parts.pop("database")
                data["dsn"] = make_conninfo("", **{k: str(v) for k, v in parts.items()})
        return data

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        from cdc_logs.pg_conninfo import pg_conninfo_problem

        problem = pg_conninfo_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)  # never the value: it holds the password
        return value

    @field_validator("slot")
    @classmethod
    def _slot_name(cls, value: str | None) -> str | None:
        if value is not None and not _SLOT_NAME.fullmatch(value):
            raise ValueError("a slot name has 1-63 lowercase letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _tables(self) -> PostgresSourceConfig:
        if not self.tables and not self.all_tables:
            raise ValueError("give `tables: [schema.table, ...]` or `all_tables: true`")
        if self.tables and self.all_tables:
            raise ValueError("give either `tables` or `all_tables: true`, not both")
        return self


_LAST_SYNC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*>=?\s*:last_sync\b")


def _seed_query(data: dict[str, Any]) -> None:
    """`table:` + `query:` (the seed's event-sourcing example): poll the query, as `capture: poll` with
    `poll.tables[table].query`; its timestamp cursor is the column compared with :last_sync (`WHERE
    created_at > :last_sync`) unless poll gives one. A log capture cannot run a query: refused."""
    query = data.pop("query")
    capture = data.get("capture", "poll")
    if capture != "poll":
        raise ValueError(f"`query` is polled: it needs capture: poll (got capture: {capture})")
    data["capture"] = "poll"
    tables = data.get("tables") or ([data["table"]] if "table" in data else [])
    if len(tables) != 1:
        raise ValueError("`query` needs exactly one `table` (the name its events carry)")
    poll = dict(data.get("poll") or {})
    per_table = dict(poll.get("tables") or {})
    own = dict(per_table.get(tables[0]) or {})
    own["query"] = query
    found = _LAST_SYNC.search(str(query))
    if found and not (own.get("timestamp_column") or poll.get("timestamp_column")):
        own["timestamp_column"] = found.group(1)
    per_table[tables[0]] = own
    poll["tables"] = per_table
    data["poll"] = poll


@registry.source(PostgresSourceConfig, capabilities={"heartbeats"})
def build(cfg: PostgresSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.postgres.reader import PostgresReader

    # tail without a slot name: a temporary slot and publication; with one (or in `run`), persistent.
    slot = cfg.slot if (cfg.slot or ctx.temporary) else default_slot_name(ctx.pipeline)
    reader = PostgresReader(
        cfg.dsn.get_secret_value(),
        cfg.tables,
        pipeline_name=ctx.pipeline,
        slot=slot,
        publication=cfg.publication,
        all_tables=cfg.all_tables,
        temporary=ctx.temporary and not cfg.slot,
        snapshot=cfg.snapshot,
        snapshot_chunk_rows=cfg.snapshot_chunk_rows,
        heartbeat_interval_s=cfg.heartbeat_interval_ms / 1000,
        status_interval_s=cfg.status_interval_ms / 1000,
        binary=cfg.binary,
        messages=cfg.messages,
        max_tx_memory_bytes=cfg.max_tx_memory_bytes,
        decode_process=cfg.decode_process,
        logical_decoding_work_mem=cfg.logical_decoding_work_mem,
        signal_table=cfg.signal_data_collection,
        incremental_chunk_size=cfg.incremental_snapshot_chunk_size,
        incremental_parallel=cfg.incremental_snapshot_parallel_tables,
        snapshot_new_tables=cfg.snapshot if cfg.snapshot_new_tables is None else cfg.snapshot_new_tables,
    )
    if cfg.capture == "log":
        return reader
    return _capture_reader(cfg, ctx, reader)


def _capture_reader(cfg: PostgresSourceConfig, ctx: registry.BuildContext, reader: Reader) -> Reader:
    from cdc_logs.readers.capture import CaptureReader
    from cdc_logs.readers.polling.reader import PollingReader
    from cdc_logs.readers.postgres.doctor import LOG_NEEDS, poll_url, run_checks

    dsn = cfg.dsn.get_secret_value()
    url = poll_url(dsn)
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
        checks=lambda: run_checks(dsn, cfg.tables),
        needed=LOG_NEEDS,
    )
