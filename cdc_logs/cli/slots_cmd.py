"""`cdc-logs slots list|inspect|create|drop|advance --dsn URL`: Postgres replication slot hygiene.

A slot keeps every WAL segment its consumer has not confirmed: `list` shows how much each one pins
(`lag`), whether it is in use, and `wal_status` (`lost`: invalidated, unusable). `drop` refuses a slot
in use unless `--force` (which terminates its walsender first). `advance` skips changes for good.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.errors import CdcError, ErrorKind

app = typer.Typer(
    help="Postgres replication slots: list, inspect, create, drop, advance.", no_args_is_help=True
)
DSN = typer.Option(None, "--dsn", envvar="CDC_DSN", help="postgresql://user:pw@host:5432/db; env CDC_DSN.")
JSON = typer.Option(False, "--json", help="JSON for scripts.")


def _console() -> Console:
    # Piped output is not cut at 80 columns: slot names and LSNs must stay whole for scripts and logs.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _conn(dsn: str | None) -> Any:
    if not dsn:
        raise CdcError(ErrorKind.USAGE, "--dsn is required", "pass --dsn URL or set CDC_DSN")
    from cdc_logs.readers.postgres.connection import connect

    return connect(dsn, application_name="cdc-logs slots")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _table(rows: list[Any], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "slot_name",
        "plugin",
        "active",
        "active_pid",
        "restart_lsn",
        "confirmed_flush_lsn",
        "lag",
        "wal_status",
        "safe_wal_size",
    ):
        table.add_column(
            column, justify="right" if column in ("lag", "safe_wal_size", "active_pid") else "left"
        )
    for s in rows:
        status = s.wal_status or "-"
        table.add_row(
            s.slot_name,
            s.plugin or "(physical)",
            "yes" if s.active else "no",
            str(s.active_pid or "-"),
            s.restart_lsn or "-",
            s.confirmed_flush_lsn or "-",
            human_bytes(s.lag_bytes),
            f"[red]{status}[/red]" if status == "lost" else status,
            human_bytes(s.safe_wal_size),
        )
    return table


@app.command("list")
def list_(dsn: str | None = DSN, as_json: bool = JSON) -> None:
    """Every replication slot with what it pins (lag = WAL written since its confirmed position)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        rows = slots.list_slots(conn)
    if as_json:
        print(orjson.dumps([s.to_dict() for s in rows]).decode())
        return
    table = _table(rows, "replication slots")
    if not rows:
        table.caption = "no replication slots"
    _console().print(table)


@app.command("inspect")
def inspect(
    name: str = typer.Argument(..., help="Slot name."), dsn: str | None = DSN, as_json: bool = JSON
) -> None:
    """One slot, with what is wrong with it (invalidated, inactive and pinning WAL)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        slot = slots.get_slot(conn, name)
    if slot is None:
        raise CdcError(ErrorKind.NOT_FOUND, f"slot {name!r} does not exist", "see `cdc-logs slots list`")
    if as_json:
        print(orjson.dumps(slot.to_dict()).decode())
        return
    _console().print(_table([slot], f"slot {name}"))
    if slot.wal_status == "lost":
        print(f"invalidated: it cannot be read again. Recover: {slots.recreate_hint(name)}")
    elif not slot.active and (slot.lag_bytes or 0) > 0:
        print(
            f"inactive, pinning {human_bytes(slot.lag_bytes)} of WAL; drop it if nothing will read it again"
        )


@app.command("create")
def create(name: str = typer.Argument(..., help="Slot name ([a-z0-9_])."), dsn: str | None = DSN) -> None:
    """Create a pgoutput logical slot (it starts pinning WAL now: read it or drop it)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        slot = slots.create_slot(conn, name)
    print(f"created slot {slot.slot_name} at {slot.confirmed_flush_lsn}")


@app.command("drop")
def drop(
    name: str = typer.Argument(..., help="Slot name."),
    dsn: str | None = DSN,
    force: bool = typer.Option(False, "--force", help="Terminate the consumer using it first."),
) -> None:
    """Drop a slot (refused while in use, unless --force)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        slots.drop_slot(conn, name, force=force)
    print(f"dropped slot {name}")


@app.command("advance")
def advance(
    name: str = typer.Argument(..., help="Slot name."),
    dsn: str | None = DSN,
    to: str | None = typer.Option(None, "--to", help="Target LSN (X/Y); default: the current end of WAL."),
) -> None:
    """Move a slot forward, skipping the changes before the target for good (the slot must be idle)."""
    from cdc_logs.position import parse_lsn
    from cdc_logs.readers.postgres import slots

    lsn = parse_lsn(to) if to else None
    with _conn(dsn) as conn:
        end = slots.advance_slot(conn, name, lsn)
    print(f"slot {name} advanced to {end}")
