"""`cdc-logs publications list|create|drop --dsn URL`: the Postgres publications pgoutput reads.

A publication names the tables a slot's consumer receives. The reader creates its own when missing
(`cdc_logs_<slot>`, or a temporary one for `tail`), marked in its comment, and never alters or drops
one it did not create; `list` shows who owns each (`cdc-logs`, `cdc-logs tail` or `user`). These
commands are for inspection and for setups where the CDC role may not create publications itself.
"""

from __future__ import annotations

import orjson
import typer
from rich.table import Table

from cdc_logs.cli.slots_cmd import DSN, JSON, _conn, _console
from cdc_logs.errors import CdcError, ErrorKind

app = typer.Typer(help="Postgres publications: list, create, drop.", no_args_is_help=True)


@app.command("list")
def list_(dsn: str | None = DSN, as_json: bool = JSON) -> None:
    """Every publication with its tables, published operations and owner (cdc-logs or user)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        pubs = slots.list_publications(conn)
    if as_json:
        print(orjson.dumps([p.to_dict() for p in pubs]).decode())
        return
    table = Table(title="publications")
    for column in ("name", "tables", "operations", "owner"):
        table.add_column(column)
    for p in pubs:
        tables = "ALL TABLES" if p.all_tables else ", ".join(p.tables) or "-"
        table.add_row(p.name, tables, p.operations, p.owner)
    if not pubs:
        table.caption = "no publications"
    _console().print(table)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Publication name."),
    dsn: str | None = DSN,
    table: list[str] = typer.Option([], "--table", "-t", help="schema.table; repeat for several."),
    all_tables: bool = typer.Option(False, "--all-tables", help="FOR ALL TABLES (needs a superuser)."),
) -> None:
    """Create a publication FOR TABLE the given tables (or FOR ALL TABLES)."""
    from cdc_logs.readers.postgres import catalog, slots

    if bool(table) == all_tables:
        raise CdcError(
            ErrorKind.USAGE, "give --table (repeatable) or --all-tables", "e.g. --table public.orders"
        )
    with _conn(dsn) as conn:
        names = [t.sql_name for t in catalog.resolve_tables(conn, table)]
        slots.create_publication(conn, name, names, all_tables=all_tables)
    print(f"created publication {name}")


@app.command("drop")
def drop(name: str = typer.Argument(..., help="Publication name."), dsn: str | None = DSN) -> None:
    """Drop a publication (a slot reading it then fails: drop or repoint that consumer too)."""
    from cdc_logs.readers.postgres import slots

    with _conn(dsn) as conn:
        if slots.get_publication(conn, name) is None:
            raise CdcError(
                ErrorKind.NOT_FOUND, f"publication {name!r} does not exist", "see `publications list`"
            )
        slots.drop_publication(conn, name)
    print(f"dropped publication {name}")
