"""The `oracle` source: its config (LogMiner over explicitly added redo logs) and how it is built."""

from __future__ import annotations

import getpass
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel, SourceConfigBase
from cdc_logs.readers.base import Reader

MAX_SCN = 2**64 - 1


class OracleLogminerConfig(ConfigModel):
    """The seed's `logminer_config` block."""

    start_scn: int | Literal["auto"] = Field(
        "auto",
        description="Where a first run starts (a stored offset always wins): `auto` is the database's "
        "current SCN, with the transactions open then delivered whole; an SCN starts after it "
        "(transactions open at that SCN are delivered from it on); from 0 to 2^64-1.",
        examples=["auto", 48213307],
    )
    archive_log_dest: str | None = Field(
        None,
        description="The directory the database archives redo to, as the seed names it: `cdc-logs "
        "doctor` checks that a valid archive destination writes there. The reader itself takes the "
        "archived logs V$ARCHIVED_LOG lists on local destinations.",
        examples=["/opt/oracle/archive"],
    )
    supplemental_logging: bool = Field(
        True,
        description="Whether `cdc-logs doctor` requires supplemental logging (minimal, and ALL COLUMNS or "
        "PRIMARY KEY on each table). cdc-logs never changes the database's settings: the statements "
        "to run are in docs/sources/oracle.md.",
    )

    @field_validator("start_scn", mode="before")
    @classmethod
    def _scn(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("start_scn")
    @classmethod
    def _scn_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= MAX_SCN:
            raise ValueError(f"start_scn must be from 0 to {MAX_SCN} (an SCN is unsigned 64-bit)")
        return value


class OracleSourceConfig(SourceConfigBase):
    """Oracle LogMiner (online catalog, logs added per SCN window); see docs/sources/oracle.md."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "oracle",
                    "dsn": "oracle://c##cdc:${ORACLE_PASSWORD}@db.internal:1521/ORCLCDB",
                    "pdb": "ORCLPDB1",
                    "tables": ["HR.EMPLOYEES"],
                }
            ]
        }
    )

    type: Literal["oracle"] = Field(description="Selects this source.")
    dsn: SecretStr | None = Field(
        None,
        description="oracle://user:password@host:1521/service, or user/password@host:1521/service, of a "
        "user with the LogMiner privileges (docs/sources/oracle.md). A secret: never logged; write the "
        "password as ${VAR}. Also accepted as `url`, `uri`, `connection_string`. Without it: "
        "host/port/database/user/password.",
        examples=["oracle://c##cdc:${ORACLE_PASSWORD}@db.internal:1521/ORCLCDB"],
    )
    host: str = Field(
        "127.0.0.1", description="Server host, when `dsn` is not given.", examples=["db.internal"]
    )
    port: int = Field(
        1521, ge=1, le=65535, description="Listener port, when `dsn` is not given.", examples=[1521]
    )
    database: str | None = Field(
        None,
        description="Service name to connect to, when `dsn` is not given (the seed's `database`).",
        examples=["ORCLCDB"],
    )
    user: str | None = Field(
        None,
        description="User name, when `dsn` is not given. Default: the operating system's login name.",
        examples=["c##cdc"],
    )
    password: SecretStr | None = Field(
        None,
        description="Password of `user`, when `dsn` is not given. A secret: never logged.",
        examples=["${ORACLE_PASSWORD}"],
    )
    pdb: str | None = Field(
        None,
        description="Multitenant: the pluggable database whose tables are captured. LogMiner then runs in "
        "CDB$ROOT (connect to the root's service with a common user) and the catalog is read in the PDB.",
        examples=["ORCLPDB1"],
    )
    tables: list[str] = Field(
        min_length=1,
        description="Tables to capture, as OWNER.TABLE (upper case unless created with quotes: "
        '`HR."Mixed"`). The seed\'s `table:` and `monitored_tables:` are accepted too.',
        examples=[["HR.EMPLOYEES", "SALES.ORDERS"]],
    )
    snapshot: bool = Field(
        False,
        description="On the first run (no stored position): emit every row of the captured tables as of "
        "the start SCN (op r, a flashback query), then the changes after it. false: changes only. A "
        "stored position always wins.",
    )
    logminer_config: OracleLogminerConfig = Field(
        default_factory=OracleLogminerConfig,
        description="Where a first run starts and what `doctor` checks (the seed's block).",
    )
    poll_interval_ms: int = Field(
        1000,
        ge=10,
        description="Milliseconds to wait before asking for the current SCN again once the reader has "
        "caught up with it.",
        examples=[500],
    )
    window_scns: int = Field(
        20_000,
        ge=1,
        description="SCNs mined in one LogMiner session at first; the width adapts between "
        "`min_window_scns` and `max_window_scns` (wider while behind, narrower once caught up).",
        examples=[50_000],
    )
    min_window_scns: int = Field(1_000, ge=1, description="Smallest window, in SCNs.", examples=[500])
    max_window_scns: int = Field(100_000, ge=1, description="Largest window, in SCNs.", examples=[500_000])
    max_tx_memory_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes of open (uncommitted) transactions kept in memory over all of them; past it "
        "the largest moves to an unlinked temporary file.",
        examples=[268_435_456],
    )
    redo_flush_lag_ms: int = Field(
        5_000,
        ge=0,
        description="Milliseconds a change must be old before its window is mined: the log writer flushes "
        "redo at least every 3 seconds, and a window mined past redo still in memory would miss changes "
        "of transactions still open. 0 mines up to the current SCN (only safe on a quiet database).",
        examples=[3_000],
    )
    connect_timeout_ms: int = Field(
        10_000,
        ge=100,
        description="Milliseconds a connection may take in all (TCP connect, handshake, login) before "
        "it fails with a connection error: a port that accepts but is not an Oracle listener fails "
        "instead of hanging.",
        examples=[30_000],
    )
    call_timeout_ms: int = Field(
        600_000,
        ge=0,
        description="Milliseconds one round trip to the server (a query, a fetch of rows, starting "
        "LogMiner on a window) may take before it fails with a connection error (python-oracledb's "
        "call_timeout). Mining a large window of archived logs can take minutes. 0: no limit.",
        examples=[120_000],
    )
    heartbeat_interval_ms: int = Field(
        10_000,
        ge=0,
        description="Milliseconds between heartbeats at the end of a mined window: they move the stored "
        "position while the captured tables are quiet (so a restart re-mines less). 0: at every window.",
        examples=[30_000],
    )

    @model_validator(mode="before")
    @classmethod
    def _seed_shape(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias in ("url", "uri", "connection_string"):
                if alias in data and "dsn" not in data:
                    data["dsn"] = data.pop(alias)
            given = [k for k in ("tables", "table", "monitored_tables") if data.get(k) is not None]
            if len(given) > 1:
                raise ValueError(f"{' and '.join(given)} are both given: give one of them")
            if "table" in data and "tables" not in data:
                data["tables"] = [data.pop("table")]
            if "monitored_tables" in data and "tables" not in data:
                data["tables"] = data.pop("monitored_tables")
            mode = data.pop("cdc_mode", "logminer")
            if str(mode).lower() != "logminer":
                raise ValueError("cdc_mode: only `logminer` is supported for oracle")
        return data

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from cdc_logs.errors import CdcError
            from cdc_logs.readers.oracle.connection import parse_dsn

            try:
                parse_dsn(value.get_secret_value())
            except CdcError as exc:
                raise ValueError(exc.message) from None  # never the value: it holds the password
        return value

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        from cdc_logs.errors import CdcError
        from cdc_logs.readers.oracle.reader import split_table

        for name in value:
            try:
                split_table(name)
            except CdcError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _windows(self) -> OracleSourceConfig:
        if self.min_window_scns > self.max_window_scns:
            raise ValueError("min_window_scns must not exceed max_window_scns")
        return self


def oracle_dsn(cfg: OracleSourceConfig) -> Any:
    """The connection settings from `dsn` or host/port/database/user/password (password kept secret)."""
    from cdc_logs.readers.oracle.connection import OracleDsn, parse_dsn

    if cfg.dsn is not None:
        return parse_dsn(cfg.dsn.get_secret_value())
    address = f"{cfg.host}:{cfg.port}" + (f"/{cfg.database}" if cfg.database else "")
    password = cfg.password.get_secret_value() if cfg.password else ""
    return OracleDsn(cfg.user or getpass.getuser(), password, address)


@registry.source(OracleSourceConfig, capabilities={"heartbeats"})
def build(cfg: OracleSourceConfig, ctx: registry.BuildContext) -> Reader:
    from cdc_logs.readers.oracle.connection import LogMinerSession
    from cdc_logs.readers.oracle.logs import WindowSizer
    from cdc_logs.readers.oracle.reader import OracleReader

    dsn = oracle_dsn(cfg)
    start = cfg.logminer_config.start_scn
    return OracleReader(
        lambda: LogMinerSession(
            dsn,
            pdb=cfg.pdb,
            connect_timeout_s=cfg.connect_timeout_ms / 1000,
            call_timeout_ms=cfg.call_timeout_ms,
        ),
        cfg.tables,
        pipeline_name=ctx.pipeline,
        start_scn=None if start == "auto" else int(start),
        snapshot=cfg.snapshot,
        poll_interval_s=cfg.poll_interval_ms / 1000,
        window=WindowSizer(cfg.window_scns, cfg.min_window_scns, cfg.max_window_scns),
        max_tx_memory_bytes=cfg.max_tx_memory_bytes,
        heartbeat_interval_s=cfg.heartbeat_interval_ms / 1000,
        redo_flush_lag_s=cfg.redo_flush_lag_ms / 1000,
    )
