"""Connecting to Oracle (readers/oracle/connection.py): DSN parsing that never leaks the password,
bounded connects, and connection failures mapped to CONNECTION errors with a fix that fits.

No Oracle server runs here: the servers are local sockets (a closed port, a port that accepts and
never answers) and an unresolvable host name (.invalid, RFC 6761), which is what a user's typo hits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdc_logs.configfile import format_validation_error
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.oracle.config import OracleSourceConfig
from cdc_logs.readers.oracle.connection import OracleDsn, map_error, parse_dsn
from cdc_logs.readers.oracle.doctor import check_source

REPO = Path(__file__).resolve().parents[2]
SECRET = "Pa@ssw0rdSecret"


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    """The canary rule: neither the password nor any 4-character piece of it is in the text."""
    pieces = {secret[i:j] for i in range(len(secret)) for j in range(i + 4, len(secret) + 1)}
    leaked = sorted(p for p in pieces if p in text)
    assert not leaked, f"password pieces in the output: {leaked}\n{text}"


def test_easy_connect_splits_at_the_last_at() -> None:
    assert parse_dsn(f"cdc/{SECRET}@127.0.0.1:1/X") == OracleDsn("cdc", SECRET, "127.0.0.1:1/X")
    assert parse_dsn("c##cdc/a@b@c@db/FREE") == OracleDsn("c##cdc", "a@b@c", "db:1521/FREE")
    assert parse_dsn("u/p/with/slash@db:1522/S") == OracleDsn("u", "p/with/slash", "db:1522/S")


def test_url_with_unescaped_at_hash_and_slash_in_the_password() -> None:
    assert parse_dsn("oracle://u:p@ss#w/rd@host/svc") == OracleDsn("u", "p@ss#w/rd", "host:1521/svc")
    assert parse_dsn(f"oracle://c##cdc:{SECRET}@db:1530/ORCLCDB") == OracleDsn(
        "c##cdc", SECRET, "db:1530/ORCLCDB"
    )
    assert parse_dsn("oracle://u:p%40ss@db/S").password == "p@ss"


def test_ipv6_hosts_and_service_name_parameter() -> None:
    assert parse_dsn("oracle://u:p@[::1]:1521/FREE").dsn == "[::1]:1521/FREE"
    assert parse_dsn("u/p@[::1]/FREE").dsn == "[::1]:1521/FREE"
    assert parse_dsn("oracle://u:p@db:1600?service_name=FREEPDB1").dsn == "db:1600/FREEPDB1"
    assert parse_dsn("oracle://u:p@[fe80::1]/?service_name=S").dsn == "[fe80::1]:1521/S"


@pytest.mark.parametrize(
    "bad",
    [
        f"mysql://u:{SECRET}@h/db",
        f"oracle://:{SECRET}@h/db",
        f"oracle://u:{SECRET}@h:99999/db",
        f"oracle://u:{SECRET}@",
        f"oracle://u:{SECRET}@h:1x/db",
        f"oracle://u:{SECRET}@h/db?service_name=other",
        f"u/{SECRET}@h:0/db",
        f"u/{SECRET}@h#/db",
        "Kq7xWord",
        "u/Kq7xWord",
    ],
)
def test_refused_dsns_never_echo_the_password(bad: str) -> None:
    with pytest.raises(CdcError) as info:
        parse_dsn(bad)
    assert info.value.kind is ErrorKind.CONFIG
    secret = SECRET if SECRET in bad else "Kq7xWord"
    assert_no_secret(f"{info.value.message} {info.value.hint}", secret)
    with pytest.raises(ValidationError) as cfg_error:
        OracleSourceConfig(type="oracle", dsn=bad, tables=["HR.EMP"])
    assert_no_secret(format_validation_error(cfg_error.value), secret)  # how config errors are shown


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@pytest.mark.parametrize("form", ["easy", "url"])
@pytest.mark.parametrize("command", ["doctor", "tail"])
def test_doctor_and_tail_print_only_host_port_service(form: str, command: str) -> None:
    port = closed_port()
    dsn = (
        f"cdc/{SECRET}@127.0.0.1:{port}/X"
        if form == "easy"
        else f"oracle://cdc:{SECRET}#x/y@127.0.0.1:{port}/X"
    )
    secret = SECRET if form == "easy" else f"{SECRET}#x/y"
    done = cli(command, "--source", "oracle", "--dsn", dsn, "--table", "HR.EMP")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert f"connecting to 127.0.0.1:{port}/X" in out
    assert "Connection refused" in out  # the cause is kept
    assert "retried" not in out  # doctor and tail do not retry
    assert "report it" not in out
    assert_no_secret(out, secret)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (not an Oracle listener)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_doctor_fails_within_the_connect_timeout_on_a_silent_port(silent_server: int) -> None:
    cfg = OracleSourceConfig(
        type="oracle",
        dsn=f"oracle://cdc:{SECRET}@127.0.0.1:{silent_server}/FREE",
        tables=["HR.EMP"],
        connect_timeout_ms=700,
    )
    started = time.monotonic()
    checks = check_source(cfg)
    took = time.monotonic() - started
    assert took < 5, took
    assert [c.name for c in checks] == ["connection"] and not checks[0].ok
    assert f"connecting to 127.0.0.1:{silent_server}/FREE: no answer within 0.7 s" in checks[0].detail
    assert_no_secret(f"{checks[0].detail} {checks[0].fix}")


def test_an_unknown_host_is_a_connection_error_naming_the_host() -> None:
    cfg = OracleSourceConfig(
        type="oracle", dsn=f"cdc/{SECRET}@no-such-host.invalid:1521/FREE", tables=["HR.EMP"]
    )
    checks = check_source(cfg)
    assert [c.name for c in checks] == ["connection"] and not checks[0].ok
    assert "no-such-host.invalid" in (checks[0].fix or "")
    assert "report it" not in (checks[0].fix or "")
    assert "gaierror" in checks[0].detail  # the cause, kept
    assert_no_secret(f"{checks[0].detail} {checks[0].fix}")


def test_dpy_6005_keeps_its_cause_and_is_a_connection_error() -> None:
    import oracledb

    exc = oracledb.OperationalError(
        "DPY-6005: cannot connect to database (CONNECTION_ID=x).\n[Errno 111] Connection refused"
    )
    error = map_error(exc, "connecting to db:1521/S", "db:1521/S")
    assert error.kind is ErrorKind.CONNECTION
    assert error.message.endswith("([Errno 111] Connection refused)")
    assert "db:1521/S" in (error.hint or "") and "retried" not in (error.hint or "")
