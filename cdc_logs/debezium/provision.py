"""Declarative connector provisioning: a YAML file of connectors, diffed against a Connect cluster.

File shape (`${VAR}` / `${VAR:-default}` are replaced from the environment, as in pipeline configs):

    managed_by: cdc-logs            # optional; the marker value, see below
    connectors:
      - name: inventory-pg
        config:
          connector.class: io.debezium.connector.postgresql.PostgresConnector
          database.hostname: ${PGHOST:-127.0.0.1}
          table.include.list: [public.orders, public.customers]   # a list is joined with ","

`make_plan` compares the file with the cluster: create, update (with the changed keys), unchanged, and
with `prune`, delete. `apply_plan` validates every new config with Connect first (nothing is written if
any is invalid), then deletes, then upserts (`PUT /connectors/{name}/config`), so an unchanged file is a
no-op and renaming a connector frees its replication slot before the new one claims it.

Prune safety: every connector `apply` writes carries the config key `cdc-logs.managed-by: <managed_by>`
(Kafka Connect keeps keys it does not know and Debezium ignores them; checked against Connect 4.3).
`--prune` deletes only connectors carrying the same marker value that the file no longer lists, so a
shared Connect cluster's other connectors (made by hand, by another team's file) are never touched.
`prune_unmarked` (`--prune-unmarked`) also deletes connectors without any marker: explicit opt-in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cdc_logs.configfile import interpolate, read_yaml
from cdc_logs.debezium.connect import ConnectClient, ConnectError
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import is_provider_reference, is_secret_key, mask_value, register_config

MARKER_KEY = "cdc-logs.managed-by"
DEFAULT_MARKER = "cdc-logs"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    name: str
    config: dict[str, str]


@dataclass(frozen=True, slots=True)
class ConnectorsFile:
    managed_by: str
    connectors: tuple[ConnectorSpec, ...]

    def desired(self) -> dict[str, dict[str, str]]:
        """The configs as Connect will store them: with `name` and the management marker."""
        return {c.name: {**c.config, "name": c.name, MARKER_KEY: self.managed_by} for c in self.connectors}


def _string(path: str, value: Any) -> str:
    # Connect stores every value as a string; normalising here makes the diff exact.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    what = "null" if value is None else type(value).__name__
    raise CdcError(
        ErrorKind.CONFIG,
        f"{path}: a connector config value must be a string, number, boolean or list, got {what}",
        "quote the value, or remove the key to use the connector's default",
    )


def parse_connectors(
    data: Any, env: Mapping[str, str] | None = None, source: str = "file", *, substitute: bool = True
) -> ConnectorsFile:
    """Validate and normalise a parsed connectors file, replacing `${VAR}` unless `substitute` is off.

    Connect's own config-provider references (`${file:/path:key}`, `${env:VAR}`) do not match the
    `${VAR}` syntax and reach Connect untouched, which resolves them on the worker.
    """
    if not isinstance(data, dict) or not isinstance(data.get("connectors"), list):
        raise CdcError(
            ErrorKind.CONFIG,
            f"{source}: expected a mapping with a `connectors:` list",
            "see debezium/examples/postgres.yaml for the shape",
        )
    unknown = set(data) - {"connectors", "managed_by"}
    if unknown:
        raise CdcError(ErrorKind.CONFIG, f"{source}: unknown top-level keys {sorted(unknown)}", None)
    if substitute:
        data = interpolate(data, env)
    register_config(data)  # the file's secrets are masked in every message from here on
    managed_by = str(data.get("managed_by") or DEFAULT_MARKER)
    specs: list[ConnectorSpec] = []
    for i, item in enumerate(data["connectors"]):
        where = f"{source}: connectors[{i}]"
        if (
            not isinstance(item, dict)
            or set(item) - {"name", "config"}
            or not isinstance(item.get("config"), dict)
        ):
            raise CdcError(ErrorKind.CONFIG, f"{where}: expected `name:` and a `config:` mapping", None)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise CdcError(
                ErrorKind.CONFIG,
                f"{where}.name: {name!r} is not a valid connector name",
                "use letters, digits, '.', '_' and '-'",
            )
        config = {str(k): _string(f"{where}.config.{k}", v) for k, v in item["config"].items()}
        if config.get("name", name) != name:
            raise CdcError(ErrorKind.CONFIG, f"{where}: config.name {config['name']!r} differs from {name!r}")
        if "connector.class" not in config:
            raise CdcError(ErrorKind.CONFIG, f"{where}.config: `connector.class` is required", None)
        if config.get(MARKER_KEY, managed_by) != managed_by:
            raise CdcError(ErrorKind.CONFIG, f"{where}.config: {MARKER_KEY} is set by cdc-logs; remove it")
        config.pop("name", None)
        specs.append(ConnectorSpec(name, config))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CdcError(ErrorKind.CONFIG, f"{source}: connector names repeat: {duplicates}", None)
    return ConnectorsFile(managed_by, tuple(specs))


def load_connectors(path: str | Path, env: Mapping[str, str] | None = None) -> ConnectorsFile:
    # The pipeline config's limits apply: size, UTF-8, YAML aliases; errors never quote the file.
    return parse_connectors(read_yaml(path, "-f"), env, str(path))


# -- plan ------------------------------------------------------------------------------------------
class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    KEEP = "keep"  # on the cluster, not in the file, and not deleted


@dataclass(frozen=True, slots=True)
class KeyChange:
    key: str
    old: str | None
    new: str | None

    def render(self) -> str:
        if self.old is None:
            return f"+ {self.key} = {mask_value(self.key, self.new)}"
        if self.new is None:
            return f"- {self.key} (was {mask_value(self.key, self.old)})"
        if is_secret_key(self.key) and not (
            is_provider_reference(self.old) and is_provider_reference(self.new)
        ):
            return f"~ {self.key}: (secret changed)"
        return f"~ {self.key}: {mask_value(self.key, self.old)} -> {mask_value(self.key, self.new)}"


@dataclass(frozen=True, slots=True)
class ConnectorChange:
    action: Action
    name: str
    config: dict[str, str] = field(default_factory=dict)  # the desired config (create/update)
    changes: tuple[KeyChange, ...] = ()
    note: str = ""


@dataclass(slots=True)
class Plan:
    items: list[ConnectorChange]

    def of(self, action: Action) -> list[ConnectorChange]:
        return [i for i in self.items if i.action is action]

    @property
    def has_changes(self) -> bool:
        return any(i.action in (Action.CREATE, Action.UPDATE, Action.DELETE) for i in self.items)

    def summary(self) -> str:
        counts = {a: len(self.of(a)) for a in Action}
        return (
            f"{counts[Action.CREATE]} to create, {counts[Action.UPDATE]} to update, "
            f"{counts[Action.DELETE]} to delete, {counts[Action.UNCHANGED]} unchanged"
        )


def diff_config(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[KeyChange, ...]:
    keys = sorted(set(old) | set(new))
    return tuple(KeyChange(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k))


def make_plan(
    wanted: ConnectorsFile,
    current: Mapping[str, Mapping[str, str]],
    *,
    prune: bool = False,
    prune_unmarked: bool = False,
) -> Plan:
    """Compare the file with the cluster's configs (`{name: config}`); pure, so unit-testable."""
    items: list[ConnectorChange] = []
    for name, config in wanted.desired().items():
        if name not in current:
            items.append(ConnectorChange(Action.CREATE, name, config))
            continue
        changes = diff_config({k: str(v) for k, v in current[name].items()}, config)
        action = Action.UPDATE if changes else Action.UNCHANGED
        note = "" if current[name].get(MARKER_KEY) else "adopted: cdc-logs marks it as managed by this file"
        items.append(ConnectorChange(action, name, config, changes, note if changes else ""))
    for name in sorted(set(current) - set(wanted.desired())):
        marker = current[name].get(MARKER_KEY)
        if marker == wanted.managed_by and (prune or prune_unmarked):
            items.append(ConnectorChange(Action.DELETE, name, note="managed by this file, no longer listed"))
        elif marker is None and prune_unmarked:
            items.append(
                ConnectorChange(Action.DELETE, name, note="not managed by cdc-logs (--prune-unmarked)")
            )
        elif marker is None:
            items.append(ConnectorChange(Action.KEEP, name, note="not managed by cdc-logs"))
        elif marker == wanted.managed_by:
            items.append(ConnectorChange(Action.KEEP, name, note="managed by this file, no longer listed"))
        else:
            items.append(ConnectorChange(Action.KEEP, name, note=f"managed by {marker!r}"))
    return Plan(items)


_SIGN = {Action.CREATE: "+", Action.UPDATE: "~", Action.UNCHANGED: "=", Action.DELETE: "-", Action.KEEP: " "}


def render_plan(plan: Plan, *, verbose: bool = False) -> list[str]:
    """Plan lines for a terminal; secret values never appear (only that they changed)."""
    lines: list[str] = []
    for item in plan.items:
        if item.action is Action.KEEP and not verbose:
            continue
        head = f"{_SIGN[item.action]} {item.action.value} {item.name}"
        lines.append(f"{head}  ({item.note})" if item.note else head)
        if item.action is Action.CREATE:
            lines.extend(f"    {k} = {mask_value(k, v)}" for k, v in sorted(item.config.items()))
        elif item.action is Action.UPDATE:
            lines.extend(f"    {c.render()}" for c in item.changes)
    kept = plan.of(Action.KEEP)
    if kept and not verbose:
        lines.append(
            f"  ({len(kept)} other connector(s) on the cluster are left alone; --verbose lists them)"
        )
    lines.append(f"Plan: {plan.summary()}.")
    return lines


def current_configs(client: ConnectClient) -> dict[str, dict[str, str]]:
    return {
        name: dict((entry.get("info") or {}).get("config") or {})
        for name, entry in client.connectors().items()
    }


def apply_plan(
    client: ConnectClient,
    plan: Plan,
    *,
    validate: bool = True,
    report: Callable[[str], None] = lambda _line: None,
) -> None:
    """Carry out `plan`: validate all writes first, then delete, then create/update."""
    writes = [i for i in plan.items if i.action in (Action.CREATE, Action.UPDATE)]
    if validate:
        problems = []
        for item in writes:
            result = client.validate(item.config)
            if not result.ok:
                problems.append(f"{item.name}: {result.describe()}")
        if problems:
            raise CdcError(
                ErrorKind.CONFIG,
                "Kafka Connect rejects the config of " + "; ".join(problems),
                "fix the fields named above (nothing was changed on the cluster)",
            )
    for item in plan.of(Action.DELETE):
        client.delete(item.name)
        report(f"deleted {item.name}")
    for item in writes:
        client.put_config(item.name, item.config)
        report(f"{'created' if item.action is Action.CREATE else 'updated'} {item.name}")


# -- wait ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class WaitResult:
    ok: bool
    states: dict[str, str]  # "RUNNING (2/2 tasks)" and the like, per connector
    failures: list[tuple[str, str]]  # (what failed, trace or reason)


def _state_of(status: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    connector = status.get("connector") or {}
    tasks = status.get("tasks") or []
    name = str(status.get("name", "?"))
    failures: list[tuple[str, str]] = []
    if connector.get("state") == "FAILED":
        failures.append((f"connector {name}", str(connector.get("trace", "")).strip()))
    for task in tasks:
        if task.get("state") == "FAILED":
            failures.append((f"task {name}/{task.get('id')}", str(task.get("trace", "")).strip()))
    running = sum(1 for t in tasks if t.get("state") == "RUNNING")
    return f"{connector.get('state', '?')} ({running}/{len(tasks)} tasks running)", failures


def wait_running(
    client: ConnectClient,
    names: Iterable[str],
    *,
    timeout_s: float = 120.0,
    poll_s: float = 1.0,
    settle_s: float = 2.0,
    grace_s: float = 3.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Wait until each connector and all its tasks are RUNNING, steadily for `settle_s`.

    A FAILED connector or task ends the wait (after `grace_s`: right after an update Connect may still
    report the previous, failed instance); so does PAUSED or STOPPED, which no wait can change.
    """
    names = list(names)
    start = clock()
    steady_since: float | None = None
    states: dict[str, str] = {}
    while True:
        failures: list[tuple[str, str]] = []
        all_running = True
        for name in names:
            try:
                status = client.status(name)
            except ConnectError as exc:
                if exc.status != 404:
                    raise
                states[name], all_running = "not yet created", False
                continue
            states[name], failed = _state_of(status)
            failures.extend(failed)
            connector_state = (status.get("connector") or {}).get("state")
            tasks = status.get("tasks") or []
            if connector_state in ("PAUSED", "STOPPED"):
                failures.append(
                    (
                        f"connector {name}",
                        f"is {connector_state}: `cdc-logs debezium connectors resume {name}`",
                    )
                )
            if connector_state != "RUNNING" or not tasks or any(t.get("state") != "RUNNING" for t in tasks):
                all_running = False
        now = clock()
        if failures and now - start >= grace_s:
            return WaitResult(False, states, failures)
        if all_running:
            steady_since = steady_since if steady_since is not None else now
            if now - steady_since >= settle_s:
                return WaitResult(True, states, [])
        else:
            steady_since = None
        if now - start >= timeout_s:
            return WaitResult(False, states, [(n, _late(states[n], timeout_s)) for n in names])
        sleep(poll_s)


def _late(state: str, timeout_s: float) -> str:
    text = f"not RUNNING after {timeout_s:.0f} s: {state}"
    if "(0/0 tasks" in state:
        # Connect lists a task only once its start() returned: a task stuck starting shows as none.
        text += (
            "; no task has started yet: see the Connect worker's log (a Debezium Postgres task waits "
            "while creating its replication slot for every transaction open in the database)"
        )
    return text


def ensure_connector(client: ConnectClient, name: str, config: Mapping[str, Any], managed_by: str) -> Action:
    """Create or update one connector (used by a `type: debezium` source with `connector_config`)."""
    # The pipeline config was interpolated already: a second pass would turn `$$` into `$` twice.
    data = {"managed_by": managed_by, "connectors": [{"name": name, "config": dict(config)}]}
    wanted = parse_connectors(data, source="connector_config", substitute=False)
    current = {}
    if client.exists(name):
        current[name] = client.get_config(name)
    plan = make_plan(wanted, current)
    apply_plan(client, plan)
    return plan.items[0].action
