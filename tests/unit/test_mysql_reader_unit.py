"""MySQL/MariaDB reader pieces that need no server: value mapping, resume checks (both flavours), the
MySQL-flavour GTID flow through the converter, error mapping, DSNs, config shapes, doctor parsing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysqlreplication.event import GtidEvent, QueryEvent, XidEvent

from cdc_logs.configfile import parse_config
from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql import types
from cdc_logs.readers.mysql.connection import classify, parse_dsn
from cdc_logs.readers.mysql.convert import BinlogConverter
from cdc_logs.readers.mysql.doctor import global_privileges, retention_seconds
from cdc_logs.readers.mysql.gtid import MysqlGtidSet
from cdc_logs.readers.mysql.reader import (
    default_server_id,
    mariadb_resume_problem,
    mysql_resume_problem,
    parse_table,
)
from cdc_logs.readers.mysql.snapshot import column_converter

UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
OTHER = "4a4a4a4a-71ca-11e1-9e33-c80aa9429562"


# -- value mapping ---------------------------------------------------------------------------------
def test_float32_is_the_shortest_round_trip() -> None:
    assert types.float32_value(1.100000023841858) == 1.1
    assert types.float32_value(1.1) == 1.1
    assert types.float32_value(3.4028234663852886e38) == 3.4028235e38


def test_bits_decimal_set_and_temporal_values() -> None:
    assert types.bit_from_binlog("1", 1) is True
    assert types.bit_from_binlog("101000000001", 12) == b"\x01\x0a"
    assert types.bit_from_text(b"\x0a\x01", 12) == b"\x01\x0a"
    assert types.decimal_value(Decimal("1E-10")) == "0.0000000001"
    assert types.set_value({"c", "a"}, ["a", "b", "c"]) == "a,c"
    assert types.set_value("c,a", ["a", "b", "c"]) == "a,c"
    assert types.set_value(None, ["a"]) == ""
    assert types.datetime_value(dt.datetime(1970, 1, 1, 0, 0, 1, 500), 3) == 1000
    assert types.datetime_value(dt.datetime(1970, 1, 1, 0, 0, 1, 500), 6) == 1_000_500
    assert types.timestamp_value(dt.datetime(2024, 1, 2, 3, 4, 5, 120000), 3) == "2024-01-02T03:04:05.120Z"
    assert types.timestamp_value(dt.datetime(999, 1, 2, 3, 4, 5), 0) == "0999-01-02T03:04:05Z"
    assert types.time_value(dt.timedelta(hours=-1)) == -3_600_000_000
    assert types.date_value(None) is None
    assert types.geometry_value(b"\xe6\x10\x00\x00\x01") == {"wkb": b"\x01", "srid": 4326}
    assert types.pad_binary(b"\x01", 3) == b"\x01\x00\x00"
    assert types.json_text({b"k": [1, b"v"]}) == '{"k":[1,"v"]}'


def test_snapshot_converters_agree_with_the_binlog_ones() -> None:
    assert column_converter("bit", "bit(12)", None, "mariadb")(b"\x0a\x01") == b"\x01\x0a"
    assert column_converter("set", "set('a','it''s','c')", None, "mariadb")("c,it's") == "it's,c"
    assert column_converter("datetime", "datetime(3)", 3, "mariadb")(dt.datetime(1970, 1, 1, 0, 0, 1)) == 1000
    assert column_converter("json", "json", None, "mysql")('{"a": 1}') == '{"a":1}'
    assert column_converter("longtext", "longtext", None, "mariadb") is None
    assert column_converter("int", "int(11)", None, "mariadb") is None


# -- resume checks ---------------------------------------------------------------------------------
def test_mariadb_resume_problems() -> None:
    state = "0-1-100,0-2-90,1-5-7"
    assert mariadb_resume_problem("0-1-100,1-5-7", state) is None
    assert mariadb_resume_problem("0-2-95", state) is None  # the server has seq 100 in domain 0
    assert "ahead" in (mariadb_resume_problem("0-1-101", state) or "")
    assert "never had" in (mariadb_resume_problem("9-1-1", state) or "")
    assert mariadb_resume_problem("", state) is None


def test_mysql_resume_problems() -> None:
    executed = f"{UUID}:1-100,{OTHER}:1-5"
    assert mysql_resume_problem(f"{UUID}:1-50", executed, f"{UUID}:1-10") is None
    assert "never executed" in (mysql_resume_problem(f"{UUID}:1-101", executed, "") or "")
    assert "purged" in (mysql_resume_problem(f"{UUID}:20-50", executed, f"{UUID}:1-10") or "")


intervals = st.lists(st.tuples(st.integers(1, 50), st.integers(0, 10)), max_size=4).map(
    lambda xs: MysqlGtidSet({(UUID, None): [(a, a + n) for a, n in xs]})
)


@given(ours=intervals, executed=intervals, purged=intervals)
def test_mysql_resume_problem_matches_set_logic(
    ours: MysqlGtidSet, executed: MysqlGtidSet, purged: MysqlGtidSet
) -> None:
    problem = mysql_resume_problem(ours.format(), executed.format(), purged.format())
    resumable = executed.issuperset(ours) and ours.issuperset(purged)
    assert (problem is None) == resumable


# -- MySQL flavour through the converter (stand-in events: no MySQL 8 server exists here) ------------
def _event(cls: type, log_pos: int, **attrs: Any) -> Any:
    event = object.__new__(cls)
    event.packet = SimpleNamespace(log_pos=log_pos, server_id=1, event_size=10)
    for name, value in attrs.items():
        setattr(event, name, value)
    return event


def test_mysql_gtid_set_grows_with_each_transaction() -> None:
    start = BinlogPosition(
        server=f"mysql:{UUID}", file="mysql-bin.000003", pos=4, gtid=f"{UUID}:1-5", flavor="mysql"
    )
    conv = BinlogConverter(flavor="mysql", connector="mysql", pipeline_name="p", start=start, heartbeat_s=0)
    items: list[Any] = []
    sid = bytes.fromhex(UUID.replace("-", ""))
    for gno, pos in ((6, 500), (7, 900)):
        items += conv.handle(_event(GtidEvent, pos - 100, sid=sid, gno=gno))
        items += conv.handle(_event(QueryEvent, pos - 50, query="BEGIN", schema=b"app"))
        items += conv.handle(_event(XidEvent, pos))
    items += conv.handle(_event(GtidEvent, 1000, sid=bytes.fromhex(OTHER.replace("-", "")), gno=1))
    items += conv.handle(_event(QueryEvent, 1100, query="CREATE TABLE t (id int)", schema=b"app"))
    beats = [i.position for i in items if isinstance(i, Heartbeat)]
    assert [b.gtid for b in beats] == [f"{UUID}:1-6", f"{UUID}:1-7", f"{UUID}:1-7,{OTHER}:1"]
    assert [b.pos for b in beats] == [500, 900, 1100] and conv.resume_gtid() == f"{UUID}:1-7,{OTHER}:1"


# -- errors, DSNs, ids, config ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (1236, "Could not find GTID state requested by slave in any binlog files", ErrorKind.POSITION_LOST),
        (4052, "A slave with the same server_uuid/server_id is already connected", ErrorKind.CONFIG),
        (
            1236,
            "A replica with the same server_uuid/server_id as this replica has connected",
            ErrorKind.CONFIG,
        ),
        (1045, "Access denied for user", ErrorKind.AUTH),
        (
            1227,
            "Access denied; you need (at least one of) the REPLICATION SLAVE privilege",
            ErrorKind.PERMISSION,
        ),
        (2003, "Can't connect to MySQL server", ErrorKind.CONNECTION),
    ],
)
def test_server_errors_become_typed_errors(code: int, text: str, kind: ErrorKind) -> None:
    error = classify(pymysql.err.OperationalError(code, text), "binlog")
    assert error.kind is kind and error.hint
    if kind is ErrorKind.CONFIG:
        assert "server_id" in (error.hint or "")
    if kind is ErrorKind.POSITION_LOST:
        assert "cdc-logs offsets reset -c" in (error.hint or "")


def test_dsn_and_table_names() -> None:
    s = parse_dsn("mysql://u%40x:p%3Aw@db.example:3307/app")
    assert (s.user, s.password, s.host, s.port, s.database) == ("u@x", "p:w", "db.example", 3307, "app")
    assert "p:w" not in repr(s) and "p:w" not in s.describe()
    with pytest.raises(CdcError):
        parse_dsn("postgresql://u@h/db")
    assert parse_table("t", "app") == ("app", "t") and parse_table("`x`.`t`", None) == ("x", "t")
    with pytest.raises(CdcError):
        parse_table("t", None)


def test_default_server_id_is_stable_and_high() -> None:
    assert default_server_id("orders") == default_server_id("orders") != default_server_id("users")
    assert 1_000_000_000 <= default_server_id("orders") < 2**31
    assert default_server_id("tail", temporary=True) >= 1_000_000_000


def test_seed_shape_config() -> None:
    cfg = parse_config(
        {
            "source": {
                "type": "mysql",
                "host": "mysql-db.company.com",
                "database": "ecommerce",
                "user": "cdc",
                "password": "s3cret",
                "table": "orders",
                "cdc_mode": "binlog",
                "binlog_config": {
                    "server_id": 1001,
                    "binlog_filename": "mysql-bin.000001",
                    "binlog_position": 4,
                    "gtid_set": "auto",
                },
                "binlog_format": "ROW",
                "binlog_row_image": "FULL",
            },
            "destination": {"type": "stdout"},
        }
    )
    source = cfg.all_sources()[0]
    assert source.type == "mysql" and source.server_id == 1001 and source.tables == ["orders"]
    assert "s3cret" not in repr(source)
    with pytest.raises(CdcError, match="binlog_format"):
        parse_config(
            {
                "source": {
                    "type": "mariadb",
                    "dsn": "mysql://u@h/db",
                    "tables": ["db.t"],
                    "binlog_format": "MIXED",
                },
                "destination": {"type": "stdout"},
            }
        )


def test_doctor_parsing() -> None:
    grants = [
        "GRANT SELECT, RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`localhost`",
        "GRANT ALL PRIVILEGES ON `test`.* TO `cdc`@`localhost`",
    ]
    assert {"SELECT", "REPLICATION SLAVE", "BINLOG MONITOR"} <= global_privileges(grants)
    assert "REPLICATION SLAVE" in global_privileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`%`"])
    assert retention_seconds({"binlog_expire_logs_seconds": "0", "expire_logs_days": "2"}) == 2 * 86400
