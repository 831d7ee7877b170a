"""Postgres connection strings checked before connecting: a typo is a config error, not a retry.

libpq parses a DSN's option values only when it connects, and psycopg reports a bad value
(`port=notaport`, `sslmode=bogus`) as an OperationalError, the same class as a server that is down.
`check_pg_conninfo` checks what libpq would refuse, and `libpq_option` recognises libpq's own messages
for the values it still refuses at connect time, so both become CONFIG (exit 2) naming the option
and what it accepts. Messages never repeat the DSN, nor any value of it: a password can sit anywhere
in a mistyped one.
"""

from __future__ import annotations

import re

from cdc_logs.errors import CdcError, ErrorKind

PG_DSN_FORM = "postgresql://user:password@host:5432/dbname (or key=value pairs)"

_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
}
_INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
# libpq's messages for option values it refuses when connecting (fe-connect.c).
_LIBPQ_OPTION_ERRORS: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r'for connection option "(\w+)"'), None),
    (re.compile(r"invalid port number"), "port"),
    (re.compile(r"could not match \d+ port numbers"), "port"),
    (re.compile(r"could not match \d+ host names to \d+ hostaddr"), "hostaddr"),
    (re.compile(r"could not parse network address"), "hostaddr"),
    (re.compile(r"invalid require_auth method"), "require_auth"),
    (re.compile(r"invalid (\w+) value: "), None),
)
_NAME = re.compile(r"^[A-Za-z_]{1,40}$")


def accepted(option: str) -> str:
    """What `option` accepts, for a message."""
    if option == "port":
        return "a number from 1 to 65535 (one per host, comma-separated)"
    if option in _CHOICES:
        return "one of " + ", ".join(_CHOICES[option])
    if option in _INTEGERS:
        return "a whole number"
    if option == "hostaddr":
        return "numeric IP addresses, one per host"
    return "a value libpq accepts (see the libpq connection parameters)"


def option_message(option: str) -> str:
    return f"the Postgres DSN's {option} is not valid: it must be {accepted(option)}"


def libpq_option(text: str) -> str | None:
    """The option a libpq connection error is about, when it is about an option value; else None."""
    for pattern, option in _LIBPQ_OPTION_ERRORS:
        match = pattern.search(text)
        if match:
            return option or match.group(1)
    return None


def pg_conninfo_problem(dsn: str) -> str | None:
    """Why libpq would refuse `dsn` (without repeating any of it), or None when it looks valid."""
    from psycopg import ProgrammingError
    from psycopg import conninfo as pg_conninfo

    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        named = re.match(r'invalid (connection option|URI query parameter):? "([^"]*)"', text)
        if named and _NAME.match(named.group(2)):
            return f"not a Postgres DSN: unknown option {named.group(2)!r}; write it as {PG_DSN_FORM}"
        return f"not a Postgres DSN; write it as {PG_DSN_FORM}"
    for option, value in params.items():
        text = str(value)
        if option == "port":
            for part in text.split(","):
                if part.strip() and not (part.strip().isdigit() and 1 <= int(part) <= 65535):
                    return option_message("port")
        elif (option in _CHOICES and text not in _CHOICES[option]) or (
            option in _INTEGERS and not re.fullmatch(r"\s*-?\d+\s*", text)
        ):
            return option_message(option)
    return None


def check_pg_conninfo(dsn: str, what: str | None = None) -> None:
    """Raise CONFIG when libpq would refuse `dsn`; `what` names the field (`offsets.dsn`)."""
    problem = pg_conninfo_problem(dsn)
    if problem is not None:
        raise CdcError(
            ErrorKind.CONFIG,
            f"{what}: {problem}" if what else problem,
            f"fix {what or 'the DSN (--dsn, or dsn: in the config)'}; "
            "it is not repeated here as it may hold a password",
        )
