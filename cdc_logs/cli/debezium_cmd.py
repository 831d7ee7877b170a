"""`cdc-logs debezium ...`: provision and operate Debezium connectors on a Kafka Connect cluster.

    cdc-logs debezium connectors list|status|plan|apply|delete [--purge]|pause|resume|stop|restart|topics
    cdc-logs debezium connectors offsets get|reset|set NAME
    cdc-logs debezium plugins

Every command takes `--connect-url` (env CDC_CONNECT_URL). Auth and TLS options belong to the
`debezium` group (`cdc-logs debezium --user U --password P connectors list`) or come from
CDC_CONNECT_USER / CDC_CONNECT_PASSWORD / CDC_CONNECT_CA_BUNDLE / ... Everything printed goes through
`observability.redact`: the values of secret config keys are masked, and so are credentials embedded
anywhere else in what Connect returns (a JDBC URL in a task's stack trace, an error echoing a login).
Exit codes: 0 ok, 1 a runtime failure (or a FAILED task for `status`, or `apply --wait` not reaching
RUNNING), 2 usage or config errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdc_logs.cli.confirm import confirm, require_answerable
from cdc_logs.debezium.connect import ConnectClient, ConnectSettings
from cdc_logs.debezium.lifecycle import (
    PurgePlan,
    check_database,
    delete_history_topic,
    drop_postgres_state,
    postgres_dsn,
    publication_users,
    purge_plan,
    recovery_hint,
    stop_and_reset,
)
from cdc_logs.debezium.provision import (
    MARKER_KEY,
    Action,
    apply_plan,
    current_configs,
    load_connectors,
    make_plan,
    render_plan,
    wait_running,
)
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import mask_config, redact, redact_value

app = typer.Typer(help="Debezium on Kafka Connect: provision and operate connectors.", no_args_is_help=True)
connectors = typer.Typer(
    help="Connectors: declarative apply, status, day-2 operations.", no_args_is_help=True
)
offsets = typer.Typer(
    help="A connector's source offsets (changing them needs a STOPPED connector).", no_args_is_help=True
)
app.add_typer(connectors, name="connectors")
connectors.add_typer(offsets, name="offsets")

_URL = typer.Option(..., "--connect-url", envvar="CDC_CONNECT_URL", help="Kafka Connect REST URL.")
_JSON = typer.Option(False, "--json", help="JSON on stdout, for scripts.")
_FILE = typer.Option(..., "-f", "--file", help="Connectors YAML file (see debezium/examples/).")
_PRUNE = typer.Option(False, "--prune", help="Delete connectors this file manages but no longer lists.")
_PRUNE_UNMARKED = typer.Option(
    False, "--prune-unmarked", help="Also delete connectors on the cluster not created by cdc-logs."
)
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Also list the connectors left alone.")
_STYLE = {"RUNNING": "green", "FAILED": "red", "PAUSED": "yellow", "STOPPED": "yellow", "UNASSIGNED": "cyan"}
_settings: dict[str, Any] = {}
_out = Console(highlight=False, soft_wrap=True)


@app.callback()
def _options(
    user: str | None = typer.Option(None, "--user", envvar="CDC_CONNECT_USER", help="Basic-auth user."),
    password: str | None = typer.Option(
        None, "--password", envvar="CDC_CONNECT_PASSWORD", help="Basic-auth password."
    ),
    ca_bundle: str | None = typer.Option(
        None, "--ca-bundle", envvar="CDC_CONNECT_CA_BUNDLE", help="CA certificates (PEM) for https."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify the server's TLS certificate."),
    client_cert: str | None = typer.Option(
        None, "--client-cert", envvar="CDC_CONNECT_CLIENT_CERT", help="Client certificate (PEM)."
    ),
    client_key: str | None = typer.Option(
        None, "--client-key", envvar="CDC_CONNECT_CLIENT_KEY", help="Client certificate key (PEM)."
    ),
    timeout: float = typer.Option(30.0, "--request-timeout", min=1, help="Seconds per REST request."),
) -> None:
    """Kafka Connect connection options (before the subcommand)."""
    _settings.update(
        username=user,
        password=password,
        verify=False if insecure else (ca_bundle or True),
        client_cert=client_cert,
        client_key=client_key,
        timeout_s=timeout,
    )


def _client(url: str) -> ConnectClient:
    return ConnectClient(ConnectSettings(url, **_settings))


def _print_json(data: Any) -> None:
    print(orjson.dumps(redact_value(data), option=orjson.OPT_INDENT_2).decode())


def _say(line: str, flush: bool = False) -> None:
    """Print one line of text that may quote what Connect returned."""
    print(redact(line), flush=flush)


def _row(table: Table, *cells: Any) -> None:
    # Cells are redacted before rich wraps them: a secret split across lines would not be found after.
    table.add_row(*(redact(str(c)) for c in cells))


@app.command("plugins")
def plugins(connect_url: str = _URL, as_json: bool = _JSON) -> None:
    """List the connector plugins installed on the Connect workers."""
    with _client(connect_url) as client:
        data = client.plugins()
    if as_json:
        _print_json(data)
        return
    table = Table("class", "type", "version")
    for p in data:
        _row(table, p.get("class", ""), p.get("type", ""), p.get("version", ""))
    _out.print(table)


# -- inspection ----------------------------------------------------------------------------------
@connectors.command("list")
def list_(connect_url: str = _URL, as_json: bool = _JSON) -> None:
    """Every connector with its state, task count and management marker."""
    with _client(connect_url) as client:
        data = client.connectors()
    if as_json:
        _print_json(
            {
                name: {
                    "status": entry.get("status"),
                    "config": mask_config((entry.get("info") or {}).get("config") or {}),
                }
                for name, entry in sorted(data.items())
            }
        )
        return
    table = Table("name", "state", "tasks", "class", "topic.prefix", "managed by")
    for name, entry in sorted(data.items()):
        status = entry.get("status") or {}
        config = (entry.get("info") or {}).get("config") or {}
        state = (status.get("connector") or {}).get("state", "?")
        tasks = status.get("tasks") or []
        running = sum(1 for t in tasks if t.get("state") == "RUNNING")
        _row(
            table,
            name,
            f"[{_STYLE.get(state, 'white')}]{state}[/]",
            f"{running}/{len(tasks)} running",
            str(config.get("connector.class", "")).rsplit(".", 1)[-1],
            config.get("topic.prefix", ""),
            config.get(MARKER_KEY, "-"),
        )
    if not data:
        table.caption = "no connectors"
    _out.print(table)


@connectors.command("status")
def status(
    names: list[str] = typer.Argument(None, help="Connectors (default: all)."),
    connect_url: str = _URL,
    as_json: bool = _JSON,
    trace: bool = typer.Option(False, "--trace", help="Print the full stack trace of failed tasks."),
) -> None:
    """Connectors and their tasks; exits 1 when any connector or task is FAILED."""
    with _client(connect_url) as client:
        if names:
            statuses = [client.status(n) for n in names]
        else:
            statuses = [e.get("status") or {} for _, e in sorted(client.connectors().items())]
    failed = any(
        (s.get("connector") or {}).get("state") == "FAILED"
        or any(t.get("state") == "FAILED" for t in s.get("tasks") or [])
        for s in statuses
    )
    if as_json:
        _print_json(statuses)
    else:
        _print_status(statuses, trace)
    if failed:
        raise typer.Exit(1)


def _print_status(statuses: list[dict[str, Any]], trace: bool) -> None:
    table = Table("connector", "task", "state", "worker", "error")
    traces: list[tuple[str, str]] = []
    for s in statuses:
        name = s.get("name", "?")
        conn = s.get("connector") or {}
        rows = [("-", conn)] + [(str(t.get("id")), t) for t in s.get("tasks") or []]
        for task, item in rows:
            state = item.get("state", "?")
            text = str(item.get("trace") or "").strip()
            first = redact(text.splitlines()[0])[:120] if text else ""  # redacted before it is cut
            _row(
                table,
                name,
                task,
                f"[{_STYLE.get(state, 'white')}]{state}[/]",
                item.get("worker_id", ""),
                first,
            )
            if text and trace:
                traces.append((f"{name}/{task}", text))
    if not statuses:
        table.caption = "no connectors"
    _out.print(table)
    for what, text in traces:
        _out.print(f"\n[bold]{escape(what)}[/]\n{escape(redact(text))}", markup=True)
    hints = {
        hint
        for s in statuses
        for item in [s.get("connector") or {}, *(s.get("tasks") or [])]
        if item.get("state") == "FAILED"
        and (hint := recovery_hint(str(s.get("name", "NAME")), str(item.get("trace") or "")))
    }
    for hint in sorted(hints):
        _say(f"recovery: {hint}")


@connectors.command("topics")
def topics(name: str = typer.Argument(...), connect_url: str = _URL) -> None:
    """Topics the connector has written to (since its topics were last reset)."""
    with _client(connect_url) as client:
        for topic in client.topics(name):
            _say(topic)


# -- provisioning --------------------------------------------------------------------------------
@connectors.command("plan")
def plan(
    file: Path = _FILE,
    connect_url: str = _URL,
    prune: bool = _PRUNE,
    prune_unmarked: bool = _PRUNE_UNMARKED,
    verbose: bool = _VERBOSE,
) -> None:
    """Show what `apply` would create, update and (with --prune) delete; secrets are masked."""
    wanted = load_connectors(file)
    with _client(connect_url) as client:
        result = make_plan(wanted, current_configs(client), prune=prune, prune_unmarked=prune_unmarked)
    for line in render_plan(result, verbose=verbose):
        _say(line)


@connectors.command("apply")
def apply(
    file: Path = _FILE,
    connect_url: str = _URL,
    prune: bool = _PRUNE,
    prune_unmarked: bool = _PRUNE_UNMARKED,
    wait: bool = typer.Option(False, "--wait", help="Wait until every connector and task is RUNNING."),
    timeout: float = typer.Option(180.0, "--timeout", min=1, help="Seconds --wait may take."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Validate configs with Connect."),
    verbose: bool = _VERBOSE,
) -> None:
    """Create or update the file's connectors (idempotent); --prune deletes the ones it dropped."""
    wanted = load_connectors(file)
    with _client(connect_url) as client:
        result = make_plan(wanted, current_configs(client), prune=prune, prune_unmarked=prune_unmarked)
        if result.has_changes:
            for line in render_plan(result, verbose=verbose):
                _say(line)
            apply_plan(client, result, validate=validate, report=lambda line: _say(line, flush=True))
            _say(f"Applied: {result.summary()}.")
        else:
            _say(f"no changes ({len(result.of(Action.UNCHANGED))} connector(s) up to date)")
        if wait:
            _wait(client, [c.name for c in wanted.connectors], timeout)


def _wait(client: ConnectClient, names: list[str], timeout: float) -> None:
    _say(f"waiting for {', '.join(names)} to run (up to {timeout:.0f} s) ...", flush=True)
    outcome = wait_running(client, names, timeout_s=timeout)
    for name, state in outcome.states.items():
        _say(f"  {name}: {state}")
    if not outcome.ok:
        hints: list[str] = []
        for what, text in outcome.failures:
            _say(f"FAILED {what}:\n{text}" if "\n" in text else f"FAILED {what}: {text}")
            hints.extend(h for n in names if n in what and (h := recovery_hint(n, text)) and h not in hints)
        for hint in hints:
            _say(f"recovery: {hint}")
        raise typer.Exit(1)
    _say("all connectors and tasks RUNNING")


# -- day-2 operations ----------------------------------------------------------------------------
@connectors.command("delete")
def delete(
    name: str = typer.Argument(...),
    connect_url: str = _URL,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    purge: bool = typer.Option(
        False,
        "--purge",
        help="Also stop it, reset its offsets and drop its Postgres slot (MySQL/MariaDB: its schema "
        "history topic), so the name can be used afresh. Its publication is kept.",
    ),
    drop_publication: bool = typer.Option(
        False,
        "--drop-publication",
        help="With --purge: also drop its Postgres publication (refused while another connector on the "
        "same database names it).",
    ),
    dsn: str | None = typer.Option(
        None,
        "--dsn",
        help="With --purge: the Postgres database as seen from here (default: the connector's "
        "database.* settings).",
    ),
    file: Path | None = typer.Option(
        None,
        "-f",
        "--file",
        help="With --purge, for a connector deleted earlier without it: its config from this connectors "
        "file (it is created STOPPED, then purged).",
    ),
) -> None:
    """Delete a connector. Without --purge its offsets stay in Connect and a Postgres slot stays in the
    database: a connector created again under this name resumes from them."""
    if drop_publication and not purge:
        raise CdcError(ErrorKind.USAGE, "--drop-publication goes with --purge", "add --purge")
    if purge:
        _purge(name, connect_url, yes, dsn, file, drop_publication)
        return
    confirm(yes, f"delete connector {name}", f"delete connector {name}?")
    with _client(connect_url) as client:
        client.delete(name)
    _say(f"deleted {name}")
    # After this delete, only the connectors file can bring the connector back to reset its offsets.
    _say(
        "its offsets stay in Connect (a connector created again under this name resumes from them) and a "
        f"Postgres slot stays in the database; `cdc-logs debezium connectors delete --purge {name} "
        "-f connectors.yaml` (the file that created it) removes them"
    )


def _purge(
    name: str, connect_url: str, yes: bool, dsn: str | None, file: Path | None, drop_publication: bool
) -> None:
    require_answerable(yes, f"purge connector {name}")  # before Connect or the database is contacted
    with _client(connect_url) as client:
        leftover = not client.exists(name)
        config = _leftover_config(name, file) if leftover else client.get_config(name)
        plan = purge_plan(name, config, drop_publication=drop_publication, dsn=dsn)
        database = None
        if drop_publication and plan.kind != "postgres":
            raise CdcError(
                ErrorKind.USAGE,
                f"--drop-publication is for Postgres connectors; {name} is not one",
                "purge without it",
            )
        if plan.kind == "postgres":
            if drop_publication:
                _refuse_shared_publication(plan, client)
            database = postgres_dsn(plan, dsn)
            check_database(plan, database)  # before anything changes
        if leftover:
            _say(f"connector {name} no longer exists: it is created STOPPED from {file} first")
        for line in plan.lines():
            _say(line)
        confirm(yes, f"purge connector {name}", f"purge connector {name}?")
        if leftover:
            # Connect keeps a deleted connector's offsets under its name; only a connector can have them
            # reset, so it comes back STOPPED (no task runs) for the purge.
            client.create(name, config, initial_state="STOPPED")
            _say(f"created {name} STOPPED to reach the offsets it left in Connect", flush=True)
        message = stop_and_reset(client, name)
        _say(f"stopped {name}; {message or 'offsets reset'}", flush=True)
        client.delete(name)
        _say(f"deleted {name}", flush=True)
    if database is not None:
        drop_postgres_state(plan, database, _say)
    elif plan.kind == "binlog" and not delete_history_topic(plan, _say):
        raise typer.Exit(1)


def _refuse_shared_publication(plan: PurgePlan, client: ConnectClient) -> None:
    """--drop-publication is refused while another connector of this cluster names the publication on
    the same database: dropping it would silently stop that connector's changes."""
    users = publication_users(plan, client.connectors())
    if users:
        raise CdcError(
            ErrorKind.USAGE,
            f"publication {plan.publication!r} on {plan.database} is also named by connector(s) "
            f"{', '.join(users)}: dropping it would silently stop their changes (nothing was changed)",
            "purge without --drop-publication (the publication is kept), or purge the other connector(s) "
            "first",
        )


def _leftover_config(name: str, file: Path | None) -> dict[str, str]:
    """The config of a connector no longer in Connect, from its connectors file."""
    if file is None:
        raise CdcError(
            ErrorKind.NOT_FOUND,
            f"connector {name} does not exist (a delete without --purge leaves its offsets in Connect and "
            "its slot in the database)",
            f"to purge what it left, give its connectors file: `cdc-logs debezium connectors delete --purge "
            f"{name} -f connectors.yaml` (it is created STOPPED, then purged)",
        )
    wanted = load_connectors(file).desired()
    if name not in wanted:
        raise CdcError(
            ErrorKind.USAGE,
            f"{file} has no connector named {name}",
            f"give the file that created it (connectors there: {', '.join(sorted(wanted)) or 'none'})",
        )
    return wanted[name]


@connectors.command("pause")
def pause(name: str = typer.Argument(...), connect_url: str = _URL) -> None:
    """Pause the connector and its tasks (they keep their resources)."""
    with _client(connect_url) as client:
        client.pause(name)
    _say(f"paused {name}")


@connectors.command("resume")
def resume(name: str = typer.Argument(...), connect_url: str = _URL) -> None:
    """Resume a paused or stopped connector."""
    with _client(connect_url) as client:
        client.resume(name)
    _say(f"resumed {name}")


@connectors.command("stop")
def stop(name: str = typer.Argument(...), connect_url: str = _URL) -> None:
    """Stop the connector and shut its tasks down, keeping its config (then offsets can change)."""
    with _client(connect_url) as client:
        client.stop(name)
    _say(f"stopped {name}")


@connectors.command("restart")
def restart(
    name: str = typer.Argument(...),
    connect_url: str = _URL,
    failed: bool = typer.Option(False, "--failed", help="Only the FAILED connector instance and tasks."),
    task: int | None = typer.Option(None, "--task", help="Only this task id."),
    connector_only: bool = typer.Option(False, "--connector-only", help="Not the tasks."),
) -> None:
    """Restart a connector and its tasks (--failed: only what failed; --task N: one task)."""
    with _client(connect_url) as client:
        if task is not None:
            client.restart_task(name, task)
            _say(f"restarted task {name}/{task}")
            return
        result = client.restart(name, include_tasks=not connector_only, only_failed=failed)
    if isinstance(result, dict) and result.get("tasks") is not None:
        restarting = [str(t.get("id")) for t in result["tasks"] if t.get("state") == "RESTARTING"]
        conn = (result.get("connector") or {}).get("state")
        _say(f"restarting {name}: connector {conn}, tasks restarting: {', '.join(restarting) or 'none'}")
    else:
        _say(f"restarted {name}")


# -- offsets -------------------------------------------------------------------------------------
@offsets.command("get")
def offsets_get(name: str = typer.Argument(...), connect_url: str = _URL, as_json: bool = _JSON) -> None:
    """The connector's offsets; `--json` prints the form `offsets set --file` reads."""
    with _client(connect_url) as client:
        data = client.offsets(name)
    if as_json:
        _print_json({"offsets": data})
        return
    table = Table("partition", "offset", title=f"offsets of {name}")
    for item in data:
        _row(table, orjson.dumps(item.get("partition")).decode(), orjson.dumps(item.get("offset")).decode())
    if not data:
        table.caption = "no offsets: the connector starts over (snapshot per its snapshot.mode)"
    _out.print(table)


@offsets.command("reset")
def offsets_reset(
    name: str = typer.Argument(...),
    connect_url: str = _URL,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove the connector's offsets (it must be STOPPED); on resume it starts over."""
    confirm(yes, f"reset the offsets of connector {name}", f"reset the offsets of connector {name}?")
    with _client(connect_url) as client:
        message = client.reset_offsets(name)
    _say(message or f"offsets of {name} reset")
    _say(f"resume it with `cdc-logs debezium connectors resume {name}`")


@offsets.command("set")
def offsets_set(
    name: str = typer.Argument(...),
    connect_url: str = _URL,
    file: Path = typer.Option(..., "--file", "-f", help="JSON {offsets: [{partition, offset}]}."),
) -> None:
    """Set offsets from a file (the connector must be STOPPED); `offsets get --json` writes the form."""
    try:
        data = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CdcError(
            ErrorKind.USAGE, f"cannot read offsets from {file}: {exc}", "pass a JSON file"
        ) from exc
    items = data.get("offsets") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) and "partition" in i for i in items):
        raise CdcError(
            ErrorKind.USAGE,
            f'{file}: expected {{"offsets": [{{"partition": {{...}}, "offset": {{...}}}}]}}',
            f"start from `cdc-logs debezium connectors offsets get {name} --json`",
        )
    with _client(connect_url) as client:
        message = client.alter_offsets(name, items)
    _say(message or f"offsets of {name} set")
