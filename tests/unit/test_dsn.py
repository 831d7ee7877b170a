"""Tests for cdc_logs.dsn and the parse errors it rewrites: what is wrong, never the value."""

from __future__ import annotations

import pytest

from cdc_logs.dsn import check_bootstrap, check_url, sqlalchemy_url, url_problem, without_quoted
from cdc_logs.errors import CdcError
from cdc_logs.readers.mysql.connection import parse_dsn
from cdc_logs.readers.postgres.connection import parse_conninfo

PW = "Zq9Secret"


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        (f"postgresql://cdc:{PW}%ZZ@h:5432/db", "password has an invalid percent-encoding"),
        (f"postgresql://cdc:{PW}@[::1:5432/db", "opens '[' (an IPv6 address) without closing it"),
        (f"postgresql://cdc:{PW}@h:99999/db", "port is not a number from 1 to 65535"),
        (f"postgresql://cdc:{PW}/x@h/db", "port is not a number"),  # libpq reads the password as the port
        (f"postgresql://cdc:{PW}@x@h/db", "host contains '@'"),
        (f"postgresq://cdc:{PW}@h/db", "scheme 'postgresq' is not one of"),
        (f"cdc:{PW}@h/db", "neither a postgresql:// URL nor key=value pairs"),
        (f"host=h password={PW} stray", "a word without '='"),
        (f"host=h password='{PW}", "quoted value without its closing quote"),
        (f"host=h sslmod=x password={PW}", "unknown connection option; did you mean sslmode?"),
        (f"postgresql://cdc:{PW}@h/db?sslmod=x", "unknown parameter; did you mean sslmode?"),
    ],
)
def test_postgres_dsn_problems_name_the_part_not_the_value(dsn: str, says: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_conninfo(dsn)
    assert says in info.value.message
    assert PW not in str(info.value) and "Zq9" not in str(info.value)
    # libpq's message (which quotes the DSN) is not chained, so --debug cannot show it either
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_valid_postgres_dsn_parses() -> None:
    assert parse_conninfo(f"postgresql://cdc:{PW}%25x@h1:5432,h2:5433/db")["password"] == f"{PW}%x"
    assert parse_conninfo(f"host=h password='{PW} x' dbname=d")["password"] == f"{PW} x"


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        (f"mysql://cdc:{PW}/x@h:3306/db", "ends it early"),
        (f"mysql://cdc:{PW}@h:99999/db", "port is not a number"),
        (f"mysql://cdc:{PW}@[::1/db", "without closing it"),
        (f"postgresql://cdc:{PW}@h/db", "scheme 'postgresql' is not one of: mysql://, mariadb://"),
    ],
)
def test_mysql_dsn_problems(dsn: str, says: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_dsn(dsn)
    assert says in info.value.message and PW not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [f"postgresql+psycopg://cdc:{PW}@h:abc/db", f"postgresql+psycopg://cdc:{PW}@[::1/db", f"cdc:{PW}@h/db"],
)
def test_sqlalchemy_url_problems(url: str) -> None:
    with pytest.raises(CdcError) as info:
        sqlalchemy_url(url)
    assert PW not in str(info.value) and not info.value.__cause__


def test_sqlalchemy_accepts_what_it_accepts() -> None:
    assert sqlalchemy_url(f"postgresql+psycopg://cdc:{PW}/x@h/db").password == f"{PW}/x"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw@cache:6379/0",
        "amqp://guest:guest@rabbit:5672/%2F",
        "nats://a:4222,nats://b:4222",
        "pulsar://h1:6650,h2:6650",
        "http://h:8080/path/user@example.com",
        "mqtt://h:1883",
        "127.0.0.1:1883",  # no scheme: left to the client
        "redis://:pw%ZZ@cache:6379/0",  # urllib clients are lenient about escapes
        "http://u:p@x@h:80",  # the last '@' ends the userinfo, as urllib splits it
    ],
)
def test_check_url_accepts_urls_clients_accept(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [f"redis://:{PW}/x@cache:6379/0", f"http://u:{PW}@h:99999", f"nats://a:4222,nats://u:{PW}@[::1:4222"],
)
def test_check_url_rejects_what_clients_choke_on(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_url(url)
    assert PW not in str(info.value)


def test_url_problem_without_scheme_and_bootstrap() -> None:
    assert url_problem("h:5432/db", what="DSN") == "the DSN is not a URL: it has no scheme://"
    with pytest.raises(ValueError, match="without credentials"):
        check_bootstrap(f"u:{PW}@h:9092")
    assert check_bootstrap("h1:9092,h2:9092") == "h1:9092,h2:9092"


def test_without_quoted() -> None:
    assert without_quoted("invalid token: \"a b\" near 'c'") == 'invalid token: "…" near "…"'
