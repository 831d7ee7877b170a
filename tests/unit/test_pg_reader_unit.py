"""Postgres reader pieces that need no server: slot checks, config, protocol choice, error mapping."""

from __future__ import annotations

import psycopg
import pytest

from cdc_logs.configfile import parse_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Lsn, PgSnapshot, decode
from cdc_logs.readers.postgres import slots
from cdc_logs.readers.postgres.config import PostgresSourceConfig, default_slot_name
from cdc_logs.readers.postgres.connection import map_error, protocol_version
from cdc_logs.readers.postgres.reader import PostgresReader


def slot(**kw: object) -> slots.SlotInfo:
    base: dict[str, object] = {
        "slot_name": "s",
        "plugin": "pgoutput",
        "slot_type": "logical",
        "database": "app",
        "temporary": False,
        "active": False,
        "active_pid": None,
        "restart_lsn": "0/10",
        "confirmed_flush_lsn": "1/20",
        "lag_bytes": 0,
        "wal_status": "reserved",
        "safe_wal_size": None,
    }
    base.update(kw)
    return slots.SlotInfo(**base)  # type: ignore[arg-type]


def test_an_invalidated_slot_stops_with_slot_lost_and_the_recovery_commands() -> None:
    with pytest.raises(CdcError) as err:
        slots.check_slot(slot(wal_status="lost"), "s", "app")
    assert err.value.kind is ErrorKind.SLOT_LOST
    assert "cdc-logs slots drop s" in (err.value.hint or "")
    assert "cdc-logs offsets reset" in (err.value.hint or "")


def test_a_missing_slot_with_a_position_is_not_found_with_the_create_command() -> None:
    error = slots.missing_slot_error("s")
    assert error.kind is ErrorKind.NOT_FOUND and "cdc-logs slots create s" in (error.hint or "")


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [({"plugin": "wal2json"}, "pgoutput"), ({"slot_type": "physical", "plugin": None}, "physical"),
     ({"database": "other"}, "database")],
)  # fmt: skip
def test_a_slot_of_another_kind_or_database_is_refused(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(CdcError) as err:
        slots.check_slot(slot(**kw), "s", "app")
    assert err.value.kind is ErrorKind.CONFIG and fragment in err.value.message


def test_a_usable_slot_or_none_passes() -> None:
    slots.check_slot(slot(), "s", "app")
    slots.check_slot(None, "s", "app")
    assert slot().confirmed_flush == (1 << 32) | 0x20


@pytest.mark.parametrize(
    ("version", "proto"), [(130012, 1), (140005, 2), (150020, 3), (160001, 4), (170000, 4)]
)
def test_the_highest_protocol_the_server_speaks(version: int, proto: int) -> None:
    assert protocol_version(version) == proto


def test_config_defaults_aliases_and_secret_dsn() -> None:
    cfg = parse_config(
        {
            "name": "orders-sync",
            "source": {"type": "postgresql", "url": "postgresql://u:pw@h/db", "table": "public.orders"},
            "destination": {"type": "stdout"},
        }
    )
    source = cfg.all_sources()[0]
    assert isinstance(source, PostgresSourceConfig)
    assert source.tables == ["public.orders"] and source.snapshot and source.heartbeat_interval_ms == 10_000
    assert "pw" not in repr(source) and source.dsn.get_secret_value().endswith("@h/db")
    assert default_slot_name("orders-sync") == "cdc_logs_orders_sync"


def test_config_seed_host_shape_builds_a_dsn() -> None:
    cfg = PostgresSourceConfig.model_validate(
        {"type": "pg", "host": "db.example", "port": 5433, "database": "app", "user": "u", "password": "p",
         "tables": ["t"], "slot_name": "my_slot"}
    )  # fmt: skip
    dsn = cfg.dsn.get_secret_value()
    assert "host=db.example" in dsn and "port=5433" in dsn and "dbname=app" in dsn and cfg.slot == "my_slot"


@pytest.mark.parametrize(
    "source",
    [
        {"type": "pg", "dsn": "x"},  # no tables
        {"type": "pg", "dsn": "x", "tables": ["t"], "all_tables": True},
        {"type": "pg", "dsn": "x", "tables": ["t"], "slot": "Bad-Name"},
    ],
)
def test_config_errors_name_the_field(source: dict[str, object]) -> None:
    with pytest.raises(CdcError) as err:
        parse_config({"source": source, "destination": {"type": "stdout"}})
    assert err.value.kind is ErrorKind.CONFIG


def test_reader_defaults_publication_from_the_slot() -> None:
    reader = PostgresReader("postgresql://h/db", ["t"], pipeline_name="p", slot="cdc_logs_p")
    assert reader.publication == "cdc_logs_p" and not reader.temporary
    tail = PostgresReader("postgresql://h/db", ["t"], pipeline_name="tail", temporary=True)
    assert tail.temporary and tail.slot.startswith("cdc_logs_tail_") and tail.publication == tail.slot
    other = PostgresReader("postgresql://h/db", ["t"], pipeline_name="p", slot="mine")
    assert other.publication == "cdc_logs_mine"


@pytest.mark.parametrize(
    "dsn", ["postgresql://u:hunter2x@h:5432/db", "host=h user=u password=hunter2x dbname=db"]
)
def test_dsn_passwords_never_reach_messages(dsn: str) -> None:
    error = map_error(psycopg.OperationalError("connection refused"), "connecting", dsn)
    assert "hunter2x" not in str(error) and "h" in str(error)


class _Err(Exception):
    def __init__(self, text: str, sqlstate: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("text", "state", "kind"),
    [
        ("password authentication failed for user", "28P01", ErrorKind.AUTH),
        ("must be superuser or replication role to start walsender", "42501", ErrorKind.PERMISSION),
        ('replication slot "s" is active for PID 42', "55006", ErrorKind.CONNECTION),
        ("This slot has been invalidated because it exceeded the maximum reserved size.", "55000",
         ErrorKind.SLOT_LOST),
        ("terminating connection due to administrator command", "57P01", ErrorKind.CONNECTION),
        ("sorry, too many clients already", "53300", ErrorKind.CONNECTION),
    ],
)  # fmt: skip
def test_errors_map_to_kinds(text: str, state: str, kind: ErrorKind) -> None:
    assert map_error(_Err(text, state), "doing").kind is kind


def test_snapshot_positions_round_trip_and_differ_from_lsn() -> None:
    pos = PgSnapshot("42", 0x10, ("public.a",), "public.b", ("7",))
    assert decode(pos.encode()) == pos
    assert decode(Lsn("42", 5).encode()) == Lsn("42", 5)
    assert "public.b" in pos.describe()
    with pytest.raises(CdcError):
        decode('{"type": "pg_snapshot", "server": "42", "lsn": 1, "done": [1], "table": "t", "key": []}')
