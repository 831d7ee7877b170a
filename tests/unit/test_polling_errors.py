"""The polling source's driver errors: a refused login is AUTH (like the Postgres reader's), a bad URL
option CONFIG, an unreachable server CONNECTION; a bad URL is CONFIG before anything connects."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.polling.connection import db_error, parse_url


@pytest.mark.parametrize(
    ("orig", "kind"),
    [
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                'FATAL:  password authentication failed for user "cdc"'
            ),
            ErrorKind.AUTH,
        ),
        (pymysql.err.OperationalError(1045, "Access denied for user 'cdc'@'localhost'"), ErrorKind.AUTH),
        (psycopg.OperationalError('connection is bad: invalid sslmode value: "bogus"'), ErrorKind.CONFIG),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
            ),
            ErrorKind.CONNECTION,
        ),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), ErrorKind.CONNECTION),
    ],
    ids=["pg-password", "mysql-password", "pg-sslmode", "pg-refused", "mysql-refused"],
)
def test_connect_errors_have_the_kind_that_says_what_to_fix(orig: Exception, kind: ErrorKind) -> None:
    engine = sa.create_engine("postgresql+psycopg://cdc:s3cret@127.0.0.1/db")
    err = db_error(
        sa_exc.OperationalError("SELECT 1", {}, orig), engine, "cannot connect", ErrorKind.CONNECTION
    )
    assert err.kind is kind
    assert "s3cret" not in str(err)


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u:s3cret@h:notaport/db", "postgresql+psycopg://u:s3cret@h:99999/db", "notaurl"],
)
def test_a_bad_url_is_config_without_the_url(url: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_url(url)
    assert info.value.kind is ErrorKind.CONFIG
    assert "s3cret" not in str(info.value) and "notaport" not in str(info.value)


def test_plain_mysql_and_postgresql_urls_get_the_installed_drivers() -> None:
    """mysql:// / mariadb:// / postgresql:// poll through PyMySQL and psycopg 3, as the SQL destination's
    URLs do: SQLAlchemy's defaults (MySQLdb, psycopg2) are not installed, and `run` failed on them."""
    from cdc_logs.readers.polling.connection import parse_url

    assert parse_url("mysql://u:p@127.0.0.1:3306/test").drivername == "mysql+pymysql"
    assert parse_url("mariadb://u:p@127.0.0.1/test").drivername == "mysql+pymysql"
    assert parse_url("postgresql://u:p@127.0.0.1/db").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


def test_config_validate_names_a_driver_that_is_not_installed() -> None:
    from pydantic import ValidationError

    from cdc_logs.readers.polling.config import PollSourceConfig

    with pytest.raises(ValidationError) as caught:
        PollSourceConfig.model_validate(
            {
                "type": "poll",
                "url": "mysql+mysqldb://u:S3cret@h/db",
                "tables": [{"table": "t", "mode": "incrementing", "incrementing_column": "id"}],
            }
        )
    message = caught.value.errors()[0]["msg"]  # what `config validate` prints (never the input value)
    assert "mysqlclient" in message and "S3cret" not in message
