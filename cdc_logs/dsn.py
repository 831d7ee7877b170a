"""What is wrong with a DSN or URL, said without showing any of it.

Drivers report a connection string they cannot parse by quoting it, or the part they choke on, which
is often the password: libpq says `invalid percent-encoded token: "S3cret%ZZ"`, urllib says `Port
could not be cast to integer value as 'S3cret'` when a `/` in the password ended the host early.
cdc-logs never passes such messages on. `url_problem` looks at the string itself and names the part
at fault (scheme, user, password, host, port, database, query) and what is wrong with it;
`without_quoted` strips the quoted values from a driver message that is shown anyway.

The checks are structural and conservative: they only flag what no driver accepts (an unclosed `[`,
a port that is not a number from 1 to 65535, a `/`, `?`, `#` or `@` that ends the userinfo early), plus
invalid percent-escapes where the driver is strict about them (libpq).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUOTED = re.compile(r""""[^"]*"|'[^']*'""")
_ENCODE_HINT = "percent-encode '/', '?', '#', '@' and ':' in the user and password (%2F, %3F, %23, %40, %3A)"


def url_problem(
    url: str,
    *,
    what: str = "URL",
    schemes: Sequence[str] | None = None,
    strict_escapes: bool = False,
    database: bool = False,
) -> str | None:
    """A description of what is wrong with `url`, without any of its text but the scheme; None if fine.

    `schemes`: the accepted schemes (compared before any `+driver`); `strict_escapes`: the driver
    rejects `%` not followed by two hex digits (libpq); `database`: the path is a database name, so an
    `@` in it means the userinfo was cut short by a `/` in the password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"the {what} is not a URL: it has no scheme://"
    if not _SCHEME.match(scheme):
        return f"the {what}'s scheme is not valid (letters, digits, '+', '-' and '.')"
    if schemes is not None and scheme.split("+")[0].lower() not in schemes:
        return f"the {what}'s scheme {scheme!r} is not one of: {', '.join(f'{s}://' for s in schemes)}"
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    path = tail.partition("?")[0].partition("#")[0]
    if not at and ("@" in path if database else "@" in tail and not _ports_ok(hostport)):
        return f"the {what}'s user or password contains a character that ends it early: {_ENCODE_HINT}"
    if strict_escapes and "@" in userinfo:
        return f"the {what}'s password contains '@': {_ENCODE_HINT}"
    if not database and not _first_host(hostport) and not scheme.lower().startswith(("sqlite", "file")):
        return f"the {what} has no host"
    problem = _hosts_problem(hostport, what)
    if problem:
        return problem
    if strict_escapes:
        user, _, password = userinfo.partition(":")
        query = tail.partition("?")[2]
        for part, text in (("user", user), ("password", password), ("host", hostport), ("database", path)):
            if _BAD_ESCAPE.search(text):
                return _escape_problem(what, part)
        if _BAD_ESCAPE.search(query):
            return _escape_problem(what, "query")
    return None


def _escape_problem(what: str, part: str) -> str:
    return (
        f"the {what}'s {part} has an invalid percent-encoding: '%' must be followed by two hex digits "
        "(write a literal '%' as %25)"
    )


def _first_host(hostport: str) -> str:
    first = hostport.split(",")[0]
    if first.startswith("["):
        return first[1:].partition("]")[0]
    return first.partition(":")[0]


def _hosts_problem(hostport: str, what: str) -> str | None:
    for host in hostport.split(","):
        if host.startswith("[") and "]" not in host:
            return f"the {what}'s host opens '[' (an IPv6 address) without closing it with ']'"
        if not _port_ok(host):
            return (
                f"the {what}'s port is not a number from 1 to 65535 (if the password contains '/', '?' or "
                f"'#': {_ENCODE_HINT})"
            )
    return None


def _ports_ok(hostport: str) -> bool:
    return all(_port_ok(host) for host in hostport.split(","))


def _port_ok(host: str) -> bool:
    port = host.rpartition("]")[2] if host.startswith("[") else host
    if ":" not in port:
        return True
    digits = port.rpartition(":")[2]
    return digits == "" or (digits.isdigit() and 0 < int(digits) <= 65535)


def check_url(value: str | None, what: str = "URL", schemes: Sequence[str] | None = None) -> str | None:
    """A pydantic validator's body: `value` unchanged, or ValueError saying what is wrong with it.

    For the URLs of clients that split them with `urllib` (Redis, RabbitMQ, NATS, MQTT, Pulsar, HTTP):
    what fails here would fail there too, with the password quoted. A list of URLs (NATS servers) is
    checked URL by URL; a value without `scheme://` is left to the client (MQTT takes host:port).
    """
    if value is None or "://" not in value:
        return value
    for url in value.split(",") if value.count("://") > 1 else [value]:
        problem = url_problem(url.strip(), what=what, schemes=schemes)
        if problem:
            raise ValueError(problem)
    return value


def check_bootstrap(value: str) -> str:
    """Kafka bootstrap servers are `host:port[,host:port]`: a `user:password@` there would be printed by
    librdkafka, from C, straight to stderr (beyond any redaction)."""
    if "@" in value:
        raise ValueError(
            "bootstrap servers are host:port[,host:port] without credentials: give them with "
            "sasl_username / sasl_password (and security_protocol, sasl_mechanism)"
        )
    problem = bootstrap_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def without_quoted(message: str) -> str:
    """A driver message with every quoted value replaced by `"…"` (they may be fragments of a secret)."""
    return _QUOTED.sub('"…"', message)


def suggest(word: str, choices: Iterable[str]) -> str:
    """`; did you mean X?` for a close known word (the known word is shown, never the input)."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def sqlalchemy_url(url: str, what: str = "database URL") -> Any:
    """`sqlalchemy.make_url(url)`; a URL it cannot parse is a CONFIG error naming the part at fault.

    SQLAlchemy's own errors quote the URL, or a piece of it (`invalid literal for int(): 'S3cret'` when a
    `/` in the password cut the host short), so they are not passed on.
    """
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    from cdc_logs.errors import CdcError, ErrorKind

    try:
        return sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        problem = url_problem(url, what=what, database=True) or f"the {what} cannot be parsed"
        raise CdcError(
            ErrorKind.CONFIG,
            f"not a SQLAlchemy URL: {problem}",
            "write it as dialect+driver://user:password@host:port/database, e.g. sqlite:///app.db",
        ) from None


def bootstrap_problem(servers: str) -> str | None:
    """Why a Kafka bootstrap list (`host:port[,host:port]`) is malformed, or None."""
    entries = [e.strip() for e in servers.split(",")]
    if not any(entries):
        return "give at least one host:port"
    for entry in entries:
        if not entry:
            return "an empty entry between commas"
        address = entry.split("://", 1)[-1]
        if address.startswith("["):  # [ipv6]:port
            host, _, rest = address[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        else:
            host, sep, port_text = address.rpartition(":")
            host, port = (host, port_text) if sep else (address, None)
        if not host:
            return "each entry needs a host (host:port)"
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            return "each entry is host:port with a port from 1 to 65535"
    return None
