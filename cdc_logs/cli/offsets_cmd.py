"""`cdc-logs offsets show|set|reset -c pipeline.yaml`: inspect and move committed positions.

Stop the pipeline before `set` or `reset`: a running one would overwrite the change at its next commit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.build import build_offsets, source_name
from cdc_logs.config import load_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.position import decode

app = typer.Typer(help="Inspect and move a pipeline's committed source positions.", no_args_is_help=True)
_CONFIG = typer.Option(..., "-c", "--config", help="Pipeline YAML file.")


@app.command("show")
def show(
    config: Path = _CONFIG, as_json: bool = typer.Option(False, "--json", help="JSON for scripts.")
) -> None:
    """Print each source's committed position."""
    cfg = load_config(config)
    store = build_offsets(cfg.offsets, cfg.name)
    rows = store.list(cfg.name)
    if as_json:
        print(
            orjson.dumps(
                [
                    {
                        "source": redact(r.source),  # names are free text; positions are kept exact
                        "position": orjson.loads(r.position),
                        "server": redact(r.server),
                        "updated_ms": r.updated_ms,
                    }
                    for r in rows
                ]
            ).decode()
        )
        return
    table = Table(title=f"offsets of pipeline {cfg.name}")
    for column in ("source", "position", "server", "updated"):
        table.add_column(column)
    for r in rows:
        updated = dt.datetime.fromtimestamp(r.updated_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        table.add_row(redact(r.source), decode(r.position).describe(), redact(r.server), updated)
    if not rows:
        table.caption = "no committed position yet: the next run starts from the beginning"
    Console().print(table)


def _check_source(cfg_sources: list[str], source: str) -> None:
    if source not in cfg_sources:
        raise CdcError(
            ErrorKind.USAGE,
            f"no source named {source!r} in this pipeline",
            f"use one of: {', '.join(cfg_sources)}",
        )


@app.command("set")
def set_(
    config: Path = _CONFIG,
    source: str = typer.Option(..., "--source", help="Source name (its `name`, or its type)."),
    position: str = typer.Option(..., "--position", help="Position JSON as `offsets show --json` prints it."),
) -> None:
    """Move a source to a given position (the pipeline must be stopped)."""
    cfg = load_config(config)
    _check_source([source_name(s) for s in cfg.all_sources()], source)
    pos = decode(position)
    build_offsets(cfg.offsets, cfg.name).save(cfg.name, source, pos)
    print(redact(f"{cfg.name}/{source} set to {pos.describe()} (server {pos.server})"))


@app.command("reset")
def reset(
    config: Path = _CONFIG,
    source: str | None = typer.Option(None, "--source", help="Only this source (default: all)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Forget committed positions: the next run starts over (snapshot, or the log's current end)."""
    cfg = load_config(config)
    if source is not None:
        _check_source([source_name(s) for s in cfg.all_sources()], source)
    what = f"{cfg.name}/{source}" if source else f"every source of {cfg.name}"
    if not yes and not typer.confirm(f"reset the offsets of {what}?"):
        raise typer.Exit(1)
    count = build_offsets(cfg.offsets, cfg.name).delete(cfg.name, source)
    print(redact(f"removed {count} offset(s) of {what}"))
