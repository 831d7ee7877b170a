"""A Debezium connector's whole lifecycle: `connectors delete --purge`, and naming the recovery when a
task resumes from offsets its database can no longer serve.

Deleting a connector in Kafka Connect keeps its offsets (in the Connect offsets topic, under the
connector's name) and leaves its database state: a Postgres replication slot and publication. A
connector created again under the same name resumes from those offsets; when the slot they point to is
gone (dropped by hand, or re-created), its task fails with "... is trying to read change stream starting
at ..., but this is no longer available on the server". `purge` removes everything instead:

1. stop the connector (`PUT /connectors/NAME/stop`) and wait until it is STOPPED;
2. reset its offsets (`DELETE /connectors/NAME/offsets`, Kafka 3.6+; only a stopped connector);
3. delete it;
4. Postgres: drop its replication slot (`slot.name`, default `debezium`) once the task's walsender
   has let go of it. Its publication (`publication.name`, default `dbz_publication`) is KEPT: nothing
   in the connector's config says who made it (`publication.autocreate.mode` only says Debezium may
   create it when missing, so it can be the user's), and another connector on the same database may
   name the same one (dropping it silently stops that connector's changes, even after a restart).
   `--drop-publication` drops it, and is refused when another connector of the Connect cluster names
   it on the same database (`publication_users`);
   MySQL/MariaDB: delete its schema history topic (`schema.history.internal.kafka.topic`) through
   the Kafka admin client, or name it when that is not reachable.

The database is reached with the connector's own `database.*` settings (as the worker reaches it) or
a DSN given with `--dsn` (when the worker sees the database under another name, or the password is a
config-provider reference): reachability is checked before anything is changed. The password is
only handed to the driver; what is printed names user@host:port/db (of `--dsn` when given). Data
topics are left alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc_logs.debezium.connect import ConnectClient, ConnectError
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import is_provider_reference, redact, register_connector_configs

POSTGRES_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
BINLOG_CLASSES = (
    "io.debezium.connector.mysql.MySqlConnector",
    "io.debezium.connector.mariadb.MariaDbConnector",
)
_GONE = ("no longer available on the server",)
_SLOT_MISSING = ("replication slot", "does not exist")


@dataclass
class PurgePlan:
    """What `delete --purge NAME` does, read from the connector's config (see the module doc)."""

    name: str
    kind: str  # postgres | binlog | other
    config: dict[str, str] = field(repr=False)
    slot: str | None = None
    publication: str | None = None
    drop_publication: bool = False
    history_topic: str | None = None
    history_bootstrap: str | None = None
    dsn: str | None = field(default=None, repr=False)  # --dsn: the database as reached from here

    @property
    def database(self) -> str:
        if self.dsn:
            return describe_dsn(self.dsn)
        c = self.config
        host, port = c.get("database.hostname", "?"), c.get("database.port", "")
        where = f"{c.get('database.user', '?')}@{host}" + (f":{port}" if port else "")
        return where + (f"/{c['database.dbname']}" if c.get("database.dbname") else "")

    def lines(self) -> list[str]:
        out = [
            f"purge connector {self.name}:",
            "  stop it and wait until it is STOPPED",
            "  reset its offsets in Connect (a connector created again under this name starts over)",
            "  delete it",
        ]
        if self.kind == "postgres":
            out.append(f"  drop replication slot {self.slot!r} in {self.database}")
            if self.drop_publication:
                out.append(f"  drop publication {self.publication!r} (--drop-publication)")
            else:
                out.append(
                    f"  kept: publication {self.publication!r} (it may be yours or shared with another "
                    "connector; --drop-publication drops it)"
                )
        elif self.kind == "binlog" and self.history_topic:
            out.append(f"  delete its schema history topic {self.history_topic!r}")
        prefix = self.config.get("topic.prefix")
        if prefix:
            out.append(f"  (its data topics {prefix}.* stay: delete them with Kafka's tools if unwanted)")
        return out


def describe_dsn(dsn: str) -> str:
    """user@host:port/db of a libpq DSN or URL, never its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN is reported by the connection attempt, with its reason
        return "the --dsn database"
    where = f"{parts.get('user') or '?'}@{parts.get('host') or 'localhost'}"
    where += f":{parts['port']}" if parts.get("port") else ""
    return where + (f"/{parts['dbname']}" if parts.get("dbname") else "")


def _is_postgres(config: Mapping[str, Any]) -> bool:
    cls = str(config.get("connector.class", ""))
    return cls == POSTGRES_CLASS or cls.endswith(".PostgresConnector")


def _publication_key(config: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(host, port, dbname, publication) with Debezium's defaults: what makes two connectors share one."""
    return (
        str(config.get("database.hostname", "")).strip().lower(),
        str(config.get("database.port") or "5432").strip(),
        str(config.get("database.dbname", "")).strip(),
        str(config.get("publication.name") or "dbz_publication"),
    )


def publication_users(plan: PurgePlan, connectors: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The other Postgres connectors (`GET /connectors?expand=info`: name -> entry with info.config)
    that name this plan's publication on the same database host, port and dbname."""
    mine = _publication_key(plan.config)
    users = []
    for name, entry in connectors.items():
        config = (entry.get("info") or {}).get("config") or {}
        if name != plan.name and _is_postgres(config) and _publication_key(config) == mine:
            users.append(name)
    return sorted(users)


def purge_plan(
    name: str, config: Mapping[str, Any], *, drop_publication: bool = False, dsn: str | None = None
) -> PurgePlan:
    config = {str(k): str(v) for k, v in config.items()}
    register_connector_configs([config])  # anything quoting its secrets is masked from here on
    cls = config.get("connector.class", "")
    if _is_postgres(config):
        return PurgePlan(
            name,
            "postgres",
            config,
            slot=config.get("slot.name", "debezium"),
            publication=config.get("publication.name", "dbz_publication"),
            drop_publication=drop_publication,  # only on request: see the module doc
            dsn=dsn,
        )
    if cls in BINLOG_CLASSES or cls.endswith(("MySqlConnector", "MariaDbConnector")):
        return PurgePlan(
            name,
            "binlog",
            config,
            history_topic=config.get("schema.history.internal.kafka.topic"),
            history_bootstrap=config.get("schema.history.internal.kafka.bootstrap.servers"),
        )
    return PurgePlan(name, "other", config)


def postgres_dsn(plan: PurgePlan, dsn: str | None) -> str:
    """The DSN to drop the slot with: `dsn`, or the connector's database settings."""
    if dsn:
        return dsn
    from psycopg.conninfo import make_conninfo

    c = plan.config
    keys = {
        "host": "database.hostname",
        "port": "database.port",
        "user": "database.user",
        "password": "database.password",
        "dbname": "database.dbname",
        "sslmode": "database.sslmode",
    }
    resolved = [key for key in keys.values() if is_provider_reference(c.get(key))]
    if resolved:
        raise CdcError(
            ErrorKind.USAGE,
            f"connector {plan.name}'s {', '.join(resolved)} is a config-provider reference, which only the "
            "Connect worker can resolve",
            "give the database with --dsn postgresql://user:password@host:port/db (nothing was changed)",
        )
    return make_conninfo("", **{part: c[key] for part, key in keys.items() if c.get(key)})


def check_database(plan: PurgePlan, dsn: str) -> None:
    """Connect once before anything changes: a purge that cannot reach the database stops here."""
    from cdc_logs.readers.postgres.connection import connect

    try:
        connect(dsn, application_name="cdc-logs debezium purge").close()
    except CdcError as exc:
        if plan.dsn:
            fix = (
                "check the --dsn URL (host, port, user, password and database as seen from this machine); "
                "nothing was changed"
            )
        else:
            fix = (
                "where the Connect worker sees the database under another name, give --dsn URL as seen "
                "from here (nothing was changed)"
            )
        raise CdcError(
            exc.kind,
            f"cannot reach connector {plan.name}'s database {plan.database} to drop its slot: {exc.message}",
            fix,
        ) from exc


def stop_and_reset(client: ConnectClient, name: str, *, timeout_s: float = 60.0) -> str:
    """Stop the connector, wait until it is STOPPED, and reset its offsets; Connect's message."""
    client.stop(name)
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.status(name)
        state = (status.get("connector") or {}).get("state")
        if state == "STOPPED" and not status.get("tasks"):
            break
        if time.monotonic() > deadline:
            raise CdcError(
                ErrorKind.TIMEOUT,
                f"connector {name} is still {state} {timeout_s:.0f} s after the stop request",
                "see `cdc-logs debezium connectors status` and the worker's log, then purge again",
            )
        time.sleep(0.5)
    while True:
        try:
            return client.reset_offsets(name)
        except ConnectError as exc:  # a stop just done may not have reached every worker yet
            if exc.status != 400 or time.monotonic() > deadline:
                raise
            time.sleep(1)


def drop_postgres_state(
    plan: PurgePlan, dsn: str, report: Callable[[str], None], *, wait_s: float = 60
) -> None:
    """Drop the slot (once no walsender holds it) and, with --drop-publication, the publication."""
    from cdc_logs.readers.postgres import slots
    from cdc_logs.readers.postgres.connection import connect

    assert plan.slot is not None and plan.publication is not None
    with contextlib.closing(connect(dsn, application_name="cdc-logs debezium purge")) as conn:
        deadline = time.monotonic() + wait_s
        while (slot := slots.get_slot(conn, plan.slot)) is not None and slot.active:
            if time.monotonic() > deadline:
                raise CdcError(
                    ErrorKind.TIMEOUT,
                    f"slot {plan.slot!r} is still in use by process {slot.active_pid} {wait_s:.0f} s after "
                    f"connector {plan.name} stopped (another consumer?)",
                    f"find it in pg_stat_activity; `cdc-logs slots drop {plan.slot} --dsn URL --force` "
                    "terminates it and drops the slot",
                )
            time.sleep(0.5)
        if slot is None:
            report(f"slot {plan.slot} did not exist")
        else:
            slots.drop_slot(conn, plan.slot)
            report(f"dropped replication slot {plan.slot}")
        if not plan.drop_publication:
            report(f"kept publication {plan.publication} (--drop-publication drops it)")
        elif slots.get_publication(conn, plan.publication) is None:
            report(f"publication {plan.publication} did not exist")
        else:
            slots.drop_publication(conn, plan.publication, missing_ok=True)
            report(f"dropped publication {plan.publication}")


def delete_history_topic(plan: PurgePlan, report: Callable[[str], None]) -> bool:
    """Delete a binlog connector's schema history topic; False (and say why) when it cannot."""
    topic, bootstrap = plan.history_topic, plan.history_bootstrap
    if not topic:
        return True
    if not bootstrap:
        report(f"schema history topic {topic} remains (no bootstrap servers in the config): delete it")
        return False
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
        admin.delete_topics([topic], operation_timeout=15)[topic].result(30)
    except ImportError:
        report(f"schema history topic {topic} remains (confluent-kafka is not installed): delete it")
        return False
    except KafkaException as exc:
        if "UNKNOWN_TOPIC" in str(exc):
            report(f"schema history topic {topic} did not exist")
            return True
        report(redact(f"schema history topic {topic} remains ({exc}): delete it with Kafka's tools"))
        return False
    report(f"deleted schema history topic {topic}")
    return True


def recovery_hint(name: str, trace: str) -> str | None:
    """The recovery for a task that failed because its offsets point where the database can no longer
    serve (a dropped or re-created slot, a purged binlog); None for other failures."""
    text = trace.lower()
    if not (any(p in text for p in _GONE) or all(p in text for p in _SLOT_MISSING)):
        return None
    return (
        f"connector {name} resumes from offsets the database can no longer serve (its replication slot "
        "was dropped or re-created, or the binlog purged, since they were written). Recover: "
        f"`cdc-logs debezium connectors stop {name}`, then `cdc-logs debezium connectors offsets reset "
        f"{name} --yes`, then `cdc-logs debezium connectors resume {name}`: it starts over per its "
        "snapshot.mode (changes made while no slot held them come back only with a snapshot). To remove "
        "a connector with its offsets and slot: "
        f"`cdc-logs debezium connectors delete --purge {name}`"
    )
