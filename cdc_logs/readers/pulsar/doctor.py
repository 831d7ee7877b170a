"""Preflight checks for a `pulsar` source (`cdc-logs doctor -c pipeline.yaml`), each failing one with
its fix. Read-only: the service URL is parsed and each broker address is opened with a plain TCP
connection, then closed; nothing is sent to the broker.

Not checked: the login (auth_token), TLS, the topics and the subscription. A lookup through the
Pulsar client could create a topic on a broker that auto-creates them, and no Pulsar server runs in
this project's test stack to prove otherwise (docs/sources/pulsar.md), so doctor stops at the port.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, missing_client

_TIMEOUT_S = 5.0
_PORTS = {"pulsar": 6650, "pulsar+ssl": 6651, "http": 8080, "https": 8443}


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `pulsar` source (the subscription holds the resume state: `stored`
    is not checked)."""
    missing = missing_client("pulsar", "pulsar", "the pulsar source")
    if missing is not None:
        return [missing]
    try:
        brokers = addresses(cfg.service_url)
    except ValueError as exc:
        return [
            Check(
                "service URL",
                False,
                str(exc),
                "write it as pulsar://host:6650 (pulsar+ssl://host:6651 for TLS), hosts comma-separated",
            )
        ]
    checks = []
    for host, port in brokers:
        try:
            with socket.create_connection((host, port), timeout=_TIMEOUT_S):
                pass
        except OSError as exc:
            checks.append(
                Check(
                    f"broker {host}:{port}",
                    False,
                    f"no TCP connection: {exc}",
                    "check service_url and that the broker is running and reachable from here",
                )
            )
        else:
            checks.append(
                Check(
                    f"broker {host}:{port}",
                    True,
                    "the port accepts TCP connections (doctor does not check the login, the topics or the "
                    "subscription)",
                )
            )
    return checks


def addresses(service_url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a Pulsar service URL; ValueError naming what is wrong."""
    parts = urlsplit(service_url)
    if parts.scheme not in _PORTS:
        raise ValueError(f"service_url scheme {parts.scheme!r}: expected one of {', '.join(_PORTS)}")
    out = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), ""
        if not host:
            raise ValueError(f"service_url has an empty host in {parts.netloc!r}")
        if port and not port.isdigit():
            raise ValueError(f"service_url port {port!r} is not a number")
        out.append((host.strip("[]"), int(port) if port else _PORTS[parts.scheme]))
    return out
