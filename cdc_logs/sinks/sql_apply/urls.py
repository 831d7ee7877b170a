"""SQL target URLs: plain postgresql:// and mysql:// URLs get the drivers cdc-logs installs, and a
driver that cannot be loaded is said as a configuration error (never a transient one).

Shared by the config (sinks/sql.py, where `config validate` checks the driver) and the sink
(apply.py); SQLAlchemy is imported only when a driver is checked.
"""

from __future__ import annotations

# A URL without a driver gets the one cdc-logs installs: SQLAlchemy's defaults (psycopg2, MySQLdb)
# are not installed, and the MariaDB source and `scripts/stack env` write plain mysql:// URLs.
_PLAIN = {
    "postgresql://": "postgresql+psycopg://",
    "postgres://": "postgresql+psycopg://",
    "mysql://": "mysql+pymysql://",
    "mariadb://": "mysql+pymysql://",
}
# Driver name in a URL (dialect+driver://) -> the package that provides its module.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary] (installed with cdc-logs)",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "pymysql": "pymysql (installed with cdc-logs)",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "oracledb": "oracledb (installed with cdc-logs)",
    "cx_oracle": "cx_Oracle",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def normalize_url(url: str) -> str:
    """Plain postgresql:// and mysql:// / mariadb:// URLs use the drivers this project installs
    (psycopg 3, PyMySQL), not SQLAlchemy's defaults (psycopg2, MySQLdb)."""
    for plain, driver in _PLAIN.items():
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def driver_problem(url: str) -> str | None:
    """Why the database driver `url` selects cannot be loaded (not installed), or None.

    A missing driver is a configuration error, never a transient one: retrying cannot install it."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    try:
        dialect = sa.make_url(url).get_dialect()
    except sa_exc.NoSuchModuleError:
        scheme = url.partition("://")[0]
        return f"SQLAlchemy has no dialect {scheme!r} (is its plugin package installed?)"
    except (sa_exc.ArgumentError, ValueError):
        return None  # an unparsable URL: sqlalchemy_url() says what is wrong with it
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        driver = getattr(dialect, "driver", "") or ""
        package = _DRIVER_PACKAGES.get(driver, driver or "its driver")
        return (
            f"the URL's driver {driver!r} ({dialect.name}) cannot be loaded ({exc.msg or exc}): "
            f"pip install {package.split(' ')[0]!r} into cdc-logs' environment, or write the URL as "
            f"{_suggested(dialect.name)}"
        )
    return None


def _suggested(dialect: str) -> str:
    if dialect in ("mysql", "mariadb"):
        return "mysql+pymysql:// (or plain mysql://: PyMySQL, installed with cdc-logs)"
    if dialect == "postgresql":
        return "postgresql+psycopg:// (or plain postgresql://: psycopg 3, installed with cdc-logs)"
    return "one whose driver is installed"
