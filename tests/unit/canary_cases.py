"""The invocations of the secret-canary test: every command, every credential position, every variant.

`command_paths()` walks the typer app (nested groups included) and lists, for each command, its
credential positions: every option named like a credential (dsn, url, password, bootstrap, ...), the
environment variable it reads, and every file option (a pipeline config or connectors file). `BUILDERS`
maps each command to the invocations that put the canary in each of those positions, with a valid
value (unreachable; the hostile server; a real server of the stack with the canary as a wrong
password) and malformed ones (an unparseable DSN, a bad port, a bad scheme, an unencoded `/` or `@` in
the password, ...). A command without a builder, or a position no invocation covers, fails the test.

Pipeline configs are generated from the config models: every source, destination and offset-store
type, each field holding a credential (a `SecretStr`, or a field named like a URL, DSN or bootstrap
list) gets configs of its own with the canary in that field. A new type or credential field without a
template here fails the test too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import typer
import yaml

CANARY = "Kq7CanaryZ3xW"
CREDENTIAL = re.compile(r"(?i)(?:^|_)(?:dsn|url|uri|password|passwd|secret|token|credential|bootstrap)")
MODES: dict[str, list[str]] = {  # global options, before the command
    "console": [],
    "console-debug": ["--debug"],
    "json": ["--log-format", "json"],
    "json-debug": ["--debug", "--log-format", "json"],
}
# Every case runs with and without --debug and in both log formats: in one of these pairs, alternating
# from case to case, so each command meets all four combinations over its cases.
MODE_PAIRS = (("console", "json-debug"), ("console-debug", "json"))
UNREACHABLE = "127.0.0.1:1"  # connection refused at once


@dataclass
class Case:
    """One invocation (full argv, without the mode options) and the positions it puts the canary in."""

    name: str
    argv: list[str]
    covers: set[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> content, in the job's cwd
    timeout: float = 8.0


@dataclass
class Context:
    hostile: str  # base URL of the hostile HTTP server (Kafka Connect, webhook, OpenSearch)


# -- the walk --------------------------------------------------------------------------------------
def command_paths() -> dict[tuple[str, ...], set[str]]:
    """Every leaf command of `cdc_logs.cli.main:app` and its credential positions (`option:<name>`,
    `env:<VAR>`, `file:<name>`), counting the options of the groups above it."""
    from cdc_logs.cli.main import app

    found: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd: Any, path: tuple[str, ...], inherited: list[Any]) -> None:
        params = [*inherited, *cmd.params]
        subcommands = getattr(cmd, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name), params)
            return
        positions: set[str] = set()
        for param in params:
            name = param.name or ""
            if CREDENTIAL.search(name):
                positions.add(f"option:{name}")
                envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
                positions.update(f"env:{var}" for var in envvars if var)
            elif name in ("config", "file"):
                positions.add(f"file:{name}")
        found[path] = positions

    walk(typer.main.get_command(app), (), [])
    return found


# -- credential values -----------------------------------------------------------------------------
def stack_server(var: str) -> tuple[str, int] | None:
    """(host, port) of a stack server from its CDC_* variable, when set."""
    value = os.environ.get(var, "").strip()
    parts = urlsplit(value if "://" in value else f"x://{value}")
    return (parts.hostname, parts.port or 0) if value and parts.hostname else None


def url_variants(
    scheme: str, path: str = "/db", user: str = "cdc", wrong: str | None = None
) -> dict[str, str]:
    """The canary as the password of a `scheme://` URL: valid (unreachable), malformed, and wrong.

    `wrong`: the variable naming a real server of the stack; with it set, one variant logs in there
    with the canary as a wrong password."""
    c, u = CANARY, user
    out = {
        "valid": f"{scheme}://{u}:{c}@{UNREACHABLE}{path}",
        "pct": f"{scheme}://{u}:{c}%ZZ@{UNREACHABLE}{path}",  # invalid percent-encoding
        "ipv6": f"{scheme}://{u}:{c}@[::1:5432{path}",  # unclosed IPv6 host
        "port": f"{scheme}://{u}:{c}@127.0.0.1:99999{path}",  # port out of range
        "scheme": f"nosuch{scheme.replace('+', '')}://{u}:{c}@{UNREACHABLE}{path}",
        "slash": f"{scheme}://{u}:{c}/x@{UNREACHABLE}{path}",  # unencoded '/' in the password
        "at": f"{scheme}://{u}:{c}@x@{UNREACHABLE}{path}",  # unencoded '@' in the password
    }
    server = stack_server(wrong) if wrong else None
    if server:
        out["wrong"] = f"{scheme}://{u}:{c}@{server[0]}:{server[1]}{path}"
    return out


def oracle_easy_variants() -> dict[str, str]:
    """Oracle's Easy Connect form (user/password@host:port/service) with '@', '#' and '/' in the
    password: the credentials end at the LAST '@' (split at the first, the canary was printed)."""
    c = CANARY
    return {
        "easy": f"cdc/{c}@127.0.0.1:1/FREE",
        "easy_at": f"cdc/x@{c}@127.0.0.1:1/FREE",
        "easy_at_hash": f"cdc/x@#{c}/y@127.0.0.1:1/FREE",
        "url_at_hash": f"oracle://cdc:x@{c}#w/rd@127.0.0.1:1/FREE",
    }


def pg_variants() -> dict[str, str]:
    return {
        **url_variants("postgresql", "/cdc_test", wrong="CDC_PG_DSN"),
        "kv": f"host=127.0.0.1 port=1 user=cdc password={CANARY}",
        "kv_stray": f"host=127.0.0.1 port=1 password={CANARY} stray",  # a word without '='
        "kv_quote": f"host=127.0.0.1 password='{CANARY}",  # unterminated quote
        "noscheme": f"cdc:{CANARY}@127.0.0.1:1/db",
    }


def hostile_variants(hostile: str, path: str = "") -> dict[str, str]:
    """HTTP URLs with the canary as the basic-auth password: the hostile server (which echoes the
    credentials it receives), and malformed ones."""
    host, c = hostile.removeprefix("http://"), CANARY
    return {
        "valid": f"http://admin:{c}@{host}{path}",
        "pct": f"http://admin:{c}%ZZ@{host}{path}",
        "ipv6": f"http://admin:{c}@[::1:8083{path}",
        "port": f"http://admin:{c}@127.0.0.1:99999{path}",
        "scheme": f"htp://admin:{c}@{host}{path}",
        "slash": f"http://admin:{c}/x@{host}{path}",
        "at": f"http://admin:{c}@x@{host}{path}",
    }


# -- command builders ------------------------------------------------------------------------------
Builder = Callable[[Context], Iterator[Case]]
BUILDERS: dict[tuple[str, ...], Builder] = {}


def _builds(
    *paths: tuple[str, ...],
) -> Callable[[Callable[[tuple[str, ...], Context], Iterator[Case]]], None]:
    """Register a builder taking (path, ctx) for each of `paths`."""

    def register(fn: Callable[[tuple[str, ...], Context], Iterator[Case]]) -> None:
        for path in paths:
            BUILDERS[path] = lambda ctx, _path=path: fn(_path, ctx)

    return register


def _dsn_cases(argv: list[str], variants: dict[str, str], prefix: str = "dsn") -> Iterator[Case]:
    for name, dsn in variants.items():
        yield Case(f"{prefix}-{name}", [*argv, "--dsn", dsn], {"option:dsn"})


def _env_dsn_cases(argv: list[str], variants: dict[str, str]) -> Iterator[Case]:
    for name in ("valid", "pct"):
        yield Case(f"env-{name}", argv, {"env:CDC_DSN"}, env={"CDC_DSN": variants[name]})


@_builds(
    ("slots", "list"),
    ("slots", "inspect"),
    ("slots", "create"),
    ("slots", "drop"),
    ("slots", "advance"),
    ("publications", "list"),
    ("publications", "create"),
    ("publications", "drop"),
)
def _pg_admin(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    argv = [*path] + ([] if path[-1] == "list" else ["cdc_canary"])
    if path == ("publications", "create"):
        argv += ["--table", "public.t"]
    yield from _dsn_cases(argv, pg_variants())
    yield from _env_dsn_cases(argv, pg_variants())
    # A key=value DSN left unquoted: its words become the extra arguments of a usage error.
    yield Case(
        "dsn-unquoted", [*argv, "--dsn", "host=127.0.0.1", "port=1", f"password={CANARY}"], {"option:dsn"}
    )


@_builds(("tail",))
def _tail(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    pg = ["tail", "--source", "pg", "--table", "public.t"]
    yield from _dsn_cases(pg, pg_variants(), "pg")
    yield from _env_dsn_cases(pg, pg_variants())
    yield Case("pg-unquoted", [*pg, "--dsn", "host=127.0.0.1", f"password={CANARY}"], {"option:dsn"})
    # A password typed where a number goes: click's usage error would quote it.
    yield Case("misplaced-limit", [*pg, "--dsn", "postgresql://cdc@127.0.0.1:1/db", "--limit", CANARY], set())
    for source in ("mariadb", "mysql"):
        mysql = ["tail", "--source", source, "--table", "test.t"]
        yield from _dsn_cases(mysql, url_variants("mysql", "/test", wrong="CDC_MARIADB_DSN"), source)
    yield from _dsn_cases(
        ["tail", "--source", "oracle", "--table", "HR.EMP"], url_variants("oracle", "/FREE"), "oracle"
    )
    yield from _dsn_cases(
        ["tail", "--source", "oracle", "--table", "HR.EMP"], oracle_easy_variants(), "oracle"
    )
    poll = [
        "tail",
        "--source",
        "poll",
        "--table",
        "t",
        "--timestamp-column",
        "u",
        "--incrementing-column",
        "id",
    ]
    poll_variants = url_variants("postgresql+psycopg", "/cdc_test", wrong="CDC_PG_DSN")
    yield from _dsn_cases(poll, {**poll_variants, "noscheme": f"cdc:{CANARY}@127.0.0.1:1/db"}, "poll")
    mongo = ["tail", "--source", "mongo", "--collection", "test.t"]
    yield from _dsn_cases(mongo, url_variants("mongodb", "/"), "mongo")
    # Bootstrap servers carry no credentials, but a user may paste a URL that does.
    debezium = ["tail", "--source", "debezium", "--topic-prefix", "canary"]
    bootstrap = f"cdc:{CANARY}@{UNREACHABLE}"
    yield Case("bootstrap", [*debezium, "--bootstrap", bootstrap], {"option:bootstrap"}, timeout=4)
    yield Case(
        "env-bootstrap", debezium, {"env:CDC_KAFKA_BOOTSTRAP"}, {"CDC_KAFKA_BOOTSTRAP": bootstrap}, timeout=4
    )


@_builds(("doctor",))
def _doctor(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    pg = ["doctor", "--source", "pg"]
    yield from _dsn_cases(pg, pg_variants(), "pg")
    yield from _env_dsn_cases(pg, pg_variants())
    yield from _dsn_cases(
        ["doctor", "--source", "mariadb"], url_variants("mysql", "/test", wrong="CDC_MARIADB_DSN"), "mariadb"
    )
    yield from _dsn_cases(["doctor", "--source", "oracle"], url_variants("oracle", "/FREE"), "oracle")
    yield from _dsn_cases(["doctor", "--source", "oracle"], oracle_easy_variants(), "oracle")
    yield from _dsn_cases(["doctor", "--source", "mongo"], url_variants("mongodb", "/"), "mongo")
    # -c: every source's credential fields, and an offset store's (doctor reads the stored positions).
    for name, config in config_cases(ctx):
        if name.split(".")[0] in source_keys() or name.startswith("offsets."):
            yield Case(
                f"config-{name}",
                ["doctor", "-c", "pipeline.yaml"],
                {"file:config"},
                files={"pipeline.yaml": config_yaml(config)},
            )


_CONNECT_ARGS: dict[tuple[str, ...], list[str]] = {
    ("debezium", "plugins"): [],
    ("debezium", "connectors", "list"): ["--json"],
    ("debezium", "connectors", "status"): ["--trace"],
    ("debezium", "connectors", "topics"): ["inventory"],
    ("debezium", "connectors", "delete"): ["inventory", "--yes"],
    ("debezium", "connectors", "pause"): ["inventory"],
    ("debezium", "connectors", "resume"): ["inventory"],
    ("debezium", "connectors", "stop"): ["inventory"],
    ("debezium", "connectors", "restart"): ["inventory"],
    ("debezium", "connectors", "offsets", "get"): ["inventory"],
    ("debezium", "connectors", "offsets", "reset"): ["inventory", "--yes"],
    ("debezium", "connectors", "offsets", "set"): ["inventory", "--file", "offsets.json"],
    ("debezium", "connectors", "plan"): ["-f", "connectors.yaml"],
    ("debezium", "connectors", "apply"): ["-f", "connectors.yaml"],
}
JAAS = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="{CANARY}";'
CONNECTORS_FILE = yaml.safe_dump(
    {
        "connectors": [
            {
                "name": "inventory",
                "config": {
                    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                    "topic.prefix": "canary",
                    "database.user": "cdc",
                    "database.password": CANARY,
                    # Secrets under keys that do not say so: JDBC URLs and a JAAS config.
                    "database.url": f"jdbc:postgresql://db/x?user=u&password={CANARY}",
                    "schema.history.url": f"jdbc:postgresql://u:{CANARY}@h/x",
                    "oracle.url": f"jdbc:oracle:thin:u/{CANARY}@h:1521/x",
                    "producer.override.sasl.login": JAAS,
                },
            }
        ]
    }
)
OFFSETS_FILE = orjson.dumps({"offsets": [{"partition": {"server": "canary"}, "offset": {"lsn": 1}}]}).decode()


@_builds(*_CONNECT_ARGS)
def _connect(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    # Group options (--user, --password) go between `debezium` and the subcommand.
    rest = [*path[1:], *_CONNECT_ARGS[path]]
    files = {"connectors.yaml": CONNECTORS_FILE, "offsets.json": OFFSETS_FILE}
    variants = hostile_variants(ctx.hostile)
    for name, url in variants.items():
        yield Case(
            f"url-{name}", ["debezium", *rest, "--connect-url", url], {"option:connect_url"}, files=files
        )
    yield Case(
        "env-url", ["debezium", *rest], {"env:CDC_CONNECT_URL"}, {"CDC_CONNECT_URL": variants["valid"]}, files
    )
    if path == ("debezium", "connectors", "delete"):
        # --purge reaches the database with the connector's password, or with --dsn.
        purge = ["debezium", *rest, "--purge", "--connect-url", variants["valid"]]
        yield Case("purge-config", purge, {"option:connect_url"}, files=files)
        yield Case("purge-file", [*purge, "-f", "connectors.yaml"], {"file:file"}, files=files)
        yield from _dsn_cases(purge, pg_variants(), "purge")
    yield Case(
        "password",
        ["debezium", "--user", "admin", "--password", CANARY, *rest, "--connect-url", ctx.hostile],
        {"option:password"},
        files=files,
    )
    yield Case(
        "env-password",
        ["debezium", *rest, "--connect-url", ctx.hostile],
        {"env:CDC_CONNECT_PASSWORD"},
        {"CDC_CONNECT_USER": "admin", "CDC_CONNECT_PASSWORD": CANARY},
        files,
    )
    if "--file" in rest or "-f" in rest:
        # The file's own secrets against a server that takes no credentials; and a broken file.
        argv = ["debezium", *rest, "--connect-url", ctx.hostile]
        yield Case("file", argv, {"file:file"}, files=files)
        broken = {
            "connectors.yaml": CONNECTORS_FILE.replace("database.user: cdc", "database.user: [cdc"),
            "offsets.json": f'{{"offsets": [{{"password": "{CANARY}"',
        }
        yield Case("file-broken", argv, {"file:file"}, files=broken)


# -- pipeline configs ------------------------------------------------------------------------------
SYNC = {"mode": "one_time", "retry": {"max_attempts": 1, "initial_backoff_ms": 10, "max_backoff_ms": 20}}
SQLITE_SOURCE = {"type": "sqlite", "path": "source.db", "tables": ["t"], "snapshot": True}
STDOUT = {"type": "stdout"}
# A minimal block per type, keyed by the type's first `type` literal ("{hostile}": the hostile server).
# Required for every type with a credential field (`credential_fields`); a type without one may have none.
TEMPLATES: dict[str, dict[str, Any]] = {
    # sources
    "sqlite": SQLITE_SOURCE,
    "poll": {
        "type": "poll",
        "url": "sqlite:///source.db",
        "table": "t",
        "watermark": {"column": "id", "type": "int"},
    },
    "postgresql": {"type": "pg", "dsn": "postgresql://cdc@127.0.0.1:1/db", "tables": ["public.t"]},
    "mysql": {"type": "mariadb", "host": "127.0.0.1", "port": 1, "user": "cdc", "tables": ["test.t"]},
    "debezium": {"type": "debezium", "bootstrap_servers": UNREACHABLE, "topic_prefix": "canary"},
    "oracle": {"type": "oracle", "host": "127.0.0.1", "port": 1, "user": "cdc", "tables": ["HR.EMP"]},
    "pulsar_source": {
        "type": "pulsar",
        "service_url": "pulsar://127.0.0.1:1",
        "topic": "t",
        "subscription_name": "s",
    },
    "kafka_source": {
        "type": "kafka",
        "bootstrap_servers": UNREACHABLE,
        "topic": "canary",
        "message_format": "avro",
        "schema_registry_url": "{hostile}",
    },
    "redis_stream_source": {"type": "redis_stream", "url": "redis://127.0.0.1:1/0", "stream_name": "canary"},
    "rabbitmq_source": {"type": "rabbitmq", "url": "amqp://127.0.0.1:1/", "queue": "canary"},
    "mqtt_source": {
        "type": "mqtt",
        "broker": "mqtt://127.0.0.1:1",
        "topics": ["canary/#"],
        "connect_timeout_s": 1,
    },
    "mongodb": {"type": "mongodb", "uri": "mongodb://cdc@127.0.0.1:1/", "collections": ["test.t"]},
    "nats_source": {"type": "nats", "url": "nats://127.0.0.1:1", "stream": "CANARY", "connect_timeout_s": 1},
    # destinations
    "stdout": STDOUT,
    "file": {"type": "file", "path": "out.jsonl"},
    "kafka": {"type": "kafka", "bootstrap_servers": UNREACHABLE, "delivery_timeout_ms": 1000},
    "redis_stream": {"type": "redis_stream", "host": "127.0.0.1", "port": 1},
    "redis": {"type": "redis", "host": "127.0.0.1", "port": 1},
    "rabbitmq": {"type": "rabbitmq", "host": "127.0.0.1", "port": 1, "queue": "canary"},
    "sql": {"type": "postgresql", "host": "127.0.0.1", "port": 1, "database": "db", "username": "cdc"},
    "http": {"type": "webhook", "url": "{hostile}/hook", "max_attempts": 1},
    "nats": {"type": "nats", "url": "nats://127.0.0.1:1", "timeout_s": 1},
    "mqtt": {"type": "mqtt", "url": "mqtt://127.0.0.1:1", "timeout_s": 1},
    "pulsar": {"type": "pulsar", "service_url": "pulsar://127.0.0.1:1"},
    "opensearch": {"type": "opensearch", "url": "{hostile}", "timeout_s": 2},
    # the offset store
    "offsets": {"type": "postgres", "dsn": "postgresql://cdc@127.0.0.1:1/db"},
}
# URL-valued credential fields: the scheme and path of their variants ("hostile": the hostile server).
URL_FIELDS: dict[tuple[str, str], tuple[str, str]] = {
    ("postgresql", "dsn"): ("postgresql", "/cdc_test"),
    ("mysql", "dsn"): ("mysql", "/test"),
    ("oracle", "dsn"): ("oracle", "/FREE"),
    ("poll", "url"): ("postgresql+psycopg", "/cdc_test"),
    ("debezium", "connect_url"): ("hostile", ""),
    ("kafka", "schema_registry_url"): ("hostile", ""),
    ("kafka_source", "schema_registry_url"): ("hostile", ""),
    ("redis_stream_source", "url"): ("redis", "/0"),
    ("rabbitmq_source", "url"): ("amqp", "/"),
    ("redis_stream", "url"): ("redis", "/0"),
    ("redis", "url"): ("redis", "/0"),
    ("rabbitmq", "url"): ("amqp", "/"),
    ("sql", "url"): ("postgresql+psycopg", "/db"),
    ("http", "url"): ("hostile", "/hook"),
    ("nats", "url"): ("nats", ""),
    ("nats_source", "url"): ("nats", ""),
    ("mqtt", "url"): ("mqtt", ""),
    ("pulsar", "service_url"): ("pulsar", ""),
    ("pulsar_source", "service_url"): ("pulsar", ""),
    ("opensearch", "url"): ("hostile", ""),
    ("offsets", "dsn"): ("postgresql", "/cdc_test"),
}
CONNECTOR_CONFIG = {
    "name": "inventory",
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "topic.prefix": "canary",
    "database.password": CANARY,
    "database.url": f"jdbc:postgresql://db/x?user=u&password={CANARY}",
}
# Credential fields that are neither URLs nor SecretStr.
OTHER_FIELDS: dict[tuple[str, str], Any] = {
    ("debezium", "bootstrap_servers"): f"cdc:{CANARY}@{UNREACHABLE}",
    ("kafka", "bootstrap_servers"): f"cdc:{CANARY}@{UNREACHABLE}",
    ("kafka_source", "bootstrap_servers"): f"cdc:{CANARY}@{UNREACHABLE}",
    ("http", "headers"): {"Authorization": f"Bearer {CANARY}"},
    ("debezium", "connector_config"): CONNECTOR_CONFIG,
}
# The stack server each type can reach with a wrong password (when its variable is set).
WRONG_SERVER = {
    "postgresql": "CDC_PG_DSN",
    "mysql": "CDC_MARIADB_DSN",
    "poll": "CDC_PG_DSN",
    "offsets": "CDC_PG_DSN",
    "sql": "CDC_PG_DSN",
    "rabbitmq_source": "CDC_RABBITMQ_URL",
    "rabbitmq": "CDC_RABBITMQ_URL",  # not Redis: the stack's has no password, a "wrong" one would log in
}


def config_models() -> dict[str, Any]:
    """Every source, destination and offset-store model, by its template key."""
    from cdc_logs import config as cfg
    from cdc_logs import registry

    models: dict[str, Any] = {"offsets": cfg.OffsetsConfig}
    for component in registry.components("source"):
        models[_source_key(component.name)] = component.config
    for component in registry.components("sink"):
        first = component.name
        key = {"sql": "sql", "webhook": "http", "http": "http"}.get(first, first)
        models[key] = component.config
    return models


def _source_key(name: str) -> str:
    """A source's template key: its name, or `<name>_source` when a sink has the same name (kafka, the
    event buses), so that neither one's template hides the other's."""
    from cdc_logs import registry

    return f"{name}_source" if any(c.name == name for c in registry.components("sink")) else name


def source_keys() -> set[str]:
    """The template keys that are sources'."""
    from cdc_logs import registry

    return {_source_key(component.name) for component in registry.components("source")}


def credential_fields(model: Any) -> list[str]:
    """A model's fields holding a credential: SecretStr ones, those named like a URL/DSN/bootstrap, the
    HTTP headers (Authorization) and a connector config."""
    return [
        name
        for name, info in model.model_fields.items()
        if "SecretStr" in repr(info.annotation)
        or CREDENTIAL.search(name)
        or (name in ("headers", "connector_config") and "dict" in repr(info.annotation))
    ]


def config_cases(ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    """(name, pipeline config) per credential field of every type and per variant of its value."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, model in sorted(config_models().items()):
        if key not in TEMPLATES:
            if not credential_fields(model):
                continue  # nothing secret to leak: a type without credential fields needs no template
            raise AssertionError(f"config type {key!r} ({model.__name__}) has no template in canary_cases.py")
        template = {
            k: v.replace("{hostile}", ctx.hostile) if isinstance(v, str) else v
            for k, v in TEMPLATES[key].items()
        }
        for fname in credential_fields(model):
            for variant, overrides in _field_values(key, fname, ctx).items():
                block = {**template, **overrides}
                out.append((f"{key}.{fname}-{variant}", _pipeline(key, block)))
    return out


def _pipeline(key: str, block: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "canary", "sync": SYNC}
    if key == "offsets":
        return {**config, "source": SQLITE_SOURCE, "destination": STDOUT, "offsets": block}
    if key in source_keys():
        return {**config, "source": block, "destination": STDOUT}
    return {**config, "source": SQLITE_SOURCE, "destination": block}


def _field_values(key: str, fname: str, ctx: Context) -> dict[str, dict[str, Any]]:
    """Variant name -> the fields to set in the type's template block."""
    if (key, fname) == ("sql", "url"):
        return {
            name: {"type": "sql", "url": url}
            for name, url in url_variants("postgresql+psycopg", "/db").items()
        }
    if key == "debezium" and fname in ("connect_url", "connect_password", "connector_config"):
        # Provisioning needs all three: vary one, the others point at the hostile server.
        base = {"connect_url": ctx.hostile, "connector_config": CONNECTOR_CONFIG}
        if fname == "connect_url":  # the credentials in the URL's userinfo
            return {name: {**base, "connect_url": url} for name, url in hostile_variants(ctx.hostile).items()}
        if fname == "connect_password":
            return {"valid": {**base, "connect_username": "admin", "connect_password": CANARY}}
        return {"valid": {**base, fname: OTHER_FIELDS[(key, fname)]}}
    if (key, fname) in OTHER_FIELDS:
        return {"valid": {fname: OTHER_FIELDS[(key, fname)]}}
    if (key, fname) in URL_FIELDS:
        scheme, path = URL_FIELDS[(key, fname)]
        if scheme == "hostile":
            variants = hostile_variants(ctx.hostile, path)
        else:
            variants = url_variants(
                scheme, path, user="" if scheme == "redis" else "cdc", wrong=WRONG_SERVER.get(key)
            )
        extra = {"schema_registry_url": ctx.hostile} if fname == "schema_registry_password" else {}
        return {name: {**extra, fname: url} for name, url in variants.items()}
    values: dict[str, dict[str, Any]] = {"valid": {fname: CANARY}}
    if fname == "schema_registry_password":
        values["valid"]["schema_registry_url"] = ctx.hostile
        values["valid"]["schema_registry_username"] = "admin"
    server = stack_server(WRONG_SERVER.get(key, "")) if fname == "password" else None
    if server:
        values["wrong"] = {fname: CANARY, "host": server[0], "port": server[1]}
    return values


def config_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


@_builds(("run",), ("config", "validate"))
def _config_commands(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    for name, config in config_cases(ctx):
        if path == ("config", "validate") and name.endswith("-wrong"):
            continue  # validate connects to nothing: a wrong password is a valid one to it
        yield Case(
            name,
            [*path, "-c", "pipeline.yaml"],
            {"file:config"},
            files={"pipeline.yaml": config_yaml(config)},
        )
    if path == ("run",):
        config = {"pipeline.yaml": config_yaml(_pipeline("sqlite", SQLITE_SOURCE))}
        yield Case(
            "misplaced-port", [*path, "-c", "pipeline.yaml", "--http-port", CANARY], set(), files=config
        )
    named = {"pipeline.yaml": config_yaml(NAMED_AFTER_DSN)}
    yield Case("named-after-dsn", [*path, "-c", "pipeline.yaml"], {"file:config"}, files=named)
    yield Case(
        "misplaced",
        [*path, "-c", "pipeline.yaml"],
        {"file:config"},
        files={"pipeline.yaml": config_yaml(MISPLACED)},
    )
    yield Case(
        "yaml-broken",
        [*path, "-c", "pipeline.yaml"],
        {"file:config"},
        files={"pipeline.yaml": f"source: {{type: pg, dsn: 'postgresql://u:{CANARY}@h/db\n"},
    )


@_builds(("offsets", "show"), ("offsets", "set"), ("offsets", "reset"), ("offsets", "rewind"))
def _offsets_commands(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    extra = {
        "show": ["--json"],
        "set": [
            "--source",
            "sqlite",
            "--position",
            '{"type": "watermark", "server": "sqlite:x", "values": [1]}',
        ],
        "reset": ["--yes"],
        "rewind": [
            "--source",
            "sqlite",
            "--position",
            '{"type": "watermark", "server": "sqlite:x", "values": [1]}',
            "--yes",
        ],
    }[path[-1]]
    # These commands read the config and open the offset store: its DSN, and a source's DSN.
    for name, config in config_cases(ctx):
        if name.startswith(("offsets.", "postgresql.dsn-")):
            yield Case(
                name,
                [*path, "-c", "pipeline.yaml", *extra],
                {"file:config"},
                files={"pipeline.yaml": config_yaml(config)},
            )
    named = str(NAMED_AFTER_DSN["source"]["name"])  # type: ignore[index]
    argv = {
        "show": [],
        "set": ["--source", named, *extra[2:]],
        "reset": ["--source", named, "--yes"],
        "rewind": ["--source", named, *extra[2:]],
    }[path[-1]]
    yield Case(
        "named-after-dsn",
        [*path, "-c", "pipeline.yaml", *argv],
        {"file:config"},
        files={"pipeline.yaml": config_yaml(NAMED_AFTER_DSN)},
    )


@_builds(("snapshot",))
def _snapshot_command(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    # `snapshot` reads the config and writes a signal row through the source's own connection: every
    # source's credential variants (most refuse the source type, Postgres and MySQL connect).
    sources = source_keys()
    for name, config in config_cases(ctx):
        if name.split(".", 1)[0] in sources:
            yield Case(
                name,
                [*path, "public.t", "-c", "pipeline.yaml"],
                {"file:config"},
                files={"pipeline.yaml": config_yaml(config)},
            )


# Names are free text: a source and a destination named after their DSN (metric labels, log fields,
# `config validate`'s summary, `offsets show` print names).
NAMED_AFTER_DSN = {
    "name": "canary",
    "source": {**SQLITE_SOURCE, "name": f"redis://:{CANARY}@cache:6379/0"},
    "destination": {"type": "file", "path": "out.jsonl", "name": f"postgresql://u:{CANARY}@db/x"},
    "sync": SYNC,
}
# A password pasted into a field that is not a secret: pydantic's own error (shown by --debug) quotes it.
MISPLACED = {
    "name": "canary",
    "source": {**TEMPLATES["mysql"], "port": CANARY},
    "destination": STDOUT,
}


@_builds(("status",))
def _status(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    # Without a running service `status` reads the offset store (its DSN) and measures the lag of the
    # sources that can tell (Postgres, MariaDB/MySQL: their DSNs); `--url` is the service's address.
    for name, config in config_cases(ctx):
        if name.startswith(("offsets.", "postgresql.", "mysql.")):
            yield Case(
                f"config-{name}", [*path, "-c", "pipeline.yaml"], {"file:config"},
                files={"pipeline.yaml": config_yaml(config)},
            )  # fmt: skip
    named = {"pipeline.yaml": config_yaml(NAMED_AFTER_DSN)}
    for name, url in hostile_variants(ctx.hostile).items():
        yield Case(f"url-{name}", [*path, "-c", "pipeline.yaml", "--url", url], {"option:url"}, files=named)
    yield Case("named-after-dsn", [*path, "-c", "pipeline.yaml", "--json"], {"file:config"}, files=named)


@_builds(("demo",), ("config", "schema"))
def _no_credentials(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    # No credential option: the canary sits in the environment a careless shell exports.
    argv = (
        [*path, "--limit", "2", "--format", "json", "--interval-ms", "10"] if path == ("demo",) else [*path]
    )
    yield Case("env", argv, set(), env={"CDC_DSN": f"postgresql://cdc:{CANARY}@127.0.0.1:1/db"})


@_builds(("audit", "verify"), ("audit", "keygen"), ("audit", "totals"))
def _audit_commands(path: tuple[str, ...], ctx: Context) -> Iterator[Case]:
    # `audit totals -c` reads the pipeline config (for its state directory): credentials in it.
    if path[-1] == "totals":
        for name, config in config_cases(ctx):
            if name.startswith(("offsets.", "postgresql.dsn-")):
                yield Case(
                    name, [*path, "-c", "pipeline.yaml"], {"file:config"},
                    files={"pipeline.yaml": config_yaml(config)},
                )  # fmt: skip
        return
    # verify and keygen take no credential: the canary sits in the environment.
    # keygen --force: the check runs each case twice in one directory (forked, then a real process).
    argv = [*path, "audit-log"] if path[-1] == "verify" else [*path, "--out", "keys", "--force"]
    yield Case("env", argv, set(), env={"CDC_DSN": f"postgresql://cdc:{CANARY}@127.0.0.1:1/db"})
