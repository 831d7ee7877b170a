"""The oracle source's config (readers/oracle/config.py): what it refuses, with a message that names
the field (shown as cdc-logs shows config errors)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cdc_logs.configfile import format_validation_error
from cdc_logs.readers.oracle.config import MAX_SCN, OracleSourceConfig


def config(**kw: Any) -> OracleSourceConfig:
    return OracleSourceConfig.model_validate({"type": "oracle", "dsn": "u/p@db/FREE", **kw})


def refused(**kw: Any) -> str:
    with pytest.raises(ValidationError) as info:
        config(**kw)
    return format_validation_error(info.value)


def test_start_scn_is_an_unsigned_64_bit_number() -> None:
    assert (
        config(tables=["HR.EMP"], logminer_config={"start_scn": MAX_SCN}).logminer_config.start_scn == MAX_SCN
    )
    assert config(tables=["HR.EMP"], logminer_config={"start_scn": "0"}).logminer_config.start_scn == 0
    for bad in (-1, MAX_SCN + 1):
        assert "start_scn must be from 0 to 18446744073709551615" in refused(
            tables=["HR.EMP"], logminer_config={"start_scn": bad}
        )


def test_tables_and_monitored_tables_together_are_refused() -> None:
    message = refused(tables=["HR.EMP"], monitored_tables=["HR.JOBS"])
    assert "tables and monitored_tables are both given: give one of them" in message
    assert "give one of them" in refused(table="HR.EMP", monitored_tables=["HR.JOBS"])
    assert config(monitored_tables=["HR.JOBS"]).tables == ["HR.JOBS"]


def test_timeouts_have_defaults_and_bounds() -> None:
    cfg = config(tables=["HR.EMP"])
    assert (cfg.connect_timeout_ms, cfg.call_timeout_ms) == (10_000, 600_000)
    assert "connect_timeout_ms" in refused(tables=["HR.EMP"], connect_timeout_ms=0)
