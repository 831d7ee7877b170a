"""Optional bus clients ("extras"): which sink or source needs which package, and the error naming it.

The design's drivers (psycopg, pymysql + mysql-replication, oracledb, pymongo, confluent-kafka,
fastavro, requests) are core dependencies. The clients of a few sinks and bus sources stay optional:
a sink or reader module imports its client only when it opens, so a plain `pip install cdc-logs`
starts and every `--help` works, and `need()` turns a missing client into a config error (exit 2)
naming the extra to install instead of an ImportError. Each sink's (source's) build function calls it
before building, naming the destination (source) as `config validate` does: that calls `check_sink`
for every sink and `check_source` for every source, so a config that cannot run here fails before
anything connects, with the same message as `run`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from cdc_logs.errors import CdcError, ErrorKind


@dataclass(frozen=True)
class Extra:
    """One optional client: `pip install 'cdc-logs[<name>]'` installs `package`, imported as `module`."""

    name: str
    module: str
    package: str


OPTIONAL_CLIENTS: dict[str, Extra] = {
    extra.name: extra
    for extra in (
        Extra("redis", "redis", "redis"),
        Extra("rabbitmq", "pika", "pika"),
        Extra("nats", "nats", "nats-py"),
        Extra("mqtt", "paho", "paho-mqtt"),
        Extra("pulsar", "pulsar", "pulsar-client"),
    )
}

# sink `type` -> the extra its client comes from (every other sink needs only core packages)
SINK_EXTRAS: dict[str, str] = {
    "redis_stream": "redis",
    "redis": "redis",
    "rabbitmq": "rabbitmq",
    "nats": "nats",
    "mqtt": "mqtt",
    "pulsar": "pulsar",
}

# source `type` -> the extra its client comes from (the database readers' drivers are core)
SOURCE_EXTRAS: dict[str, str] = {
    "redis_stream": "redis",
    "rabbitmq": "rabbitmq",
    "nats": "nats",
    "mqtt": "mqtt",
    "pulsar": "pulsar",
}


def installed(module: str) -> bool:
    """True when `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing; a half-removed module
        return False


def need(module: str, extra: str, what: str = "this destination") -> None:
    """Raise a CONFIG error naming `cdc-logs[extra]` when `module` is not installed."""
    if installed(module):
        return
    known = OPTIONAL_CLIENTS.get(extra)
    package = known.package if known is not None and known.module == module else module
    raise CdcError(
        ErrorKind.CONFIG,
        f"{what} needs the Python package {package!r}, which is not installed",
        f"pip install 'cdc-logs[{extra}]'",
    )


def check_sink(type_: str, name: str | None = None) -> None:
    """The missing-extra error for a sink whose optional client is not installed, if any."""
    extra = SINK_EXTRAS.get(type_)
    if extra is None:
        return
    need(OPTIONAL_CLIENTS[extra].module, extra, what=destination_label(type_, name))


def check_source(type_: str, name: str | None = None) -> None:
    """The missing-extra error for a source whose optional client is not installed, if any."""
    extra = SOURCE_EXTRAS.get(type_)
    if extra is None:
        return
    need(OPTIONAL_CLIENTS[extra].module, extra, what=source_label(type_, name))


def destination_label(type_: str, name: str | None = None) -> str:
    """How an error names a destination: `destination 'hook' (redis_stream)`, or `the nats destination`."""
    return f"destination {name!r} ({type_})" if name and name != type_ else f"the {type_} destination"


def source_label(type_: str, name: str | None = None) -> str:
    """How an error names a source: `source 'orders' (nats)`, or `the nats source`."""
    return f"source {name!r} ({type_})" if name and name != type_ else f"the {type_} source"
