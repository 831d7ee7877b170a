"""Connection strings checked before connecting: a typo is CONFIG naming the option, never an outage,
and the message never repeats the DSN (it may hold a password)."""

from __future__ import annotations

import pytest

from cdc_logs.dsn import bootstrap_problem
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.pg_conninfo import check_pg_conninfo, libpq_option, pg_conninfo_problem


@pytest.mark.parametrize(
    ("dsn", "names"),
    [
        ("postgresql://u:s3cret@h:notaport/db", "port"),
        ("host=h port=notaport password=s3cret", "port"),
        ("host=h port=99999 password=s3cret", "port"),
        ("host=a,b port=5432,x password=s3cret", "port"),
        ("postgresql://u:s3cret@h/db?sslmode=bogus", "sslmode"),
        ("host=h password=s3cret connect_timeout=soon", "connect_timeout"),
        ("host=h password=s3cret target_session_attrs=whatever", "target_session_attrs"),
        ("postgresql://u:s3cret@h/db?nosuchoption=1", "'nosuchoption'"),
        ("postgresql//u:s3cret@h/db", "not a Postgres DSN"),
        ("s3cret", "not a Postgres DSN"),
    ],
)
def test_what_libpq_would_refuse_is_named_without_the_dsn(dsn: str, names: str) -> None:
    problem = pg_conninfo_problem(dsn)
    assert problem is not None and names in problem
    assert "s3cret" not in problem and "notaport" not in problem and "bogus" not in problem
    with pytest.raises(CdcError) as info:
        check_pg_conninfo(dsn, "offsets.dsn")
    assert info.value.kind is ErrorKind.CONFIG and info.value.exit_code == 2
    assert info.value.message.startswith("offsets.dsn: ")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:pw@h:5432/db",
        "postgresql://u:pw@h/db?sslmode=require&connect_timeout=5",
        "host=a,b port=5432,5433 dbname=x",
        "host=/var/run/postgresql dbname=x",
        "",
    ],
)
def test_valid_dsns_pass(dsn: str) -> None:
    assert pg_conninfo_problem(dsn) is None


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ('connection is bad: invalid integer value "x" for connection option "port"', "port"),
        ('invalid port number: "99999"', "port"),
        ('invalid sslmode value: "bogus"', "sslmode"),
        ('invalid gssencmode value: "x"', "gssencmode"),
        ("could not match 2 port numbers to 3 hosts", "port"),
        ('could not parse network address "x": Name or service not known', "hostaddr"),
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', None),
        ('FATAL:  password authentication failed for user "cdc"', None),
    ],
)
def test_libpq_option_errors_are_recognised(text: str, option: str | None) -> None:
    assert libpq_option(text) == option


@pytest.mark.parametrize(
    ("servers", "ok"),
    [
        ("127.0.0.1:9092", True),
        ("a:1,b:2", True),
        ("[::1]:9092", True),
        ("SASL_SSL://h:9093", True),
        ("broker", True),
        ("127.0.0.1:notaport", False),
        ("h:99999", False),
        ("h:0", False),
        ("a:1,,b:2", False),
        (":9092", False),
        ("", False),
    ],
)
def test_bootstrap_lists(servers: str, ok: bool) -> None:
    assert (bootstrap_problem(servers) is None) is ok
