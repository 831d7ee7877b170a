"""`cdc-logs offsets show|set|reset -c pipeline.yaml`: inspect and move committed positions.

Stop the pipeline before `set` or `reset`: a running one would overwrite the change at its next commit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.build import build_offsets, lock_pipeline, source_name
from cdc_logs.configfile import load_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.offsets.base import StoredOffset, decode_problem
from cdc_logs.position import Position, decode, kinds

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
        print(orjson.dumps([_row_json(r) for r in rows]).decode())
        return
    table = Table(title=f"offsets of pipeline {cfg.name}")
    for column in ("source", "position", "server", "updated"):
        table.add_column(column)
    for r in rows:
        updated = dt.datetime.fromtimestamp(r.updated_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        try:
            described = r.decoded().describe()
        except CdcError:  # a damaged row is shown as it is, so it can be fixed with `offsets set`
            described = f"[red]unreadable:[/red] {redact(r.position[:80])!r}"
        table.add_row(redact(r.source), described, redact(r.server), updated)
    if not rows:
        table.caption = "no committed position yet: the next run starts from the beginning"
    Console().print(table)


def _row_json(r: StoredOffset) -> dict[str, Any]:
    # Names are free text (masked like every output); positions are kept exact, so they can be set back.
    row: dict[str, Any] = {"source": redact(r.source), "server": redact(r.server), "updated_ms": r.updated_ms}
    try:
        row["position"] = r.decoded().to_dict()
    except CdcError as exc:  # shown as stored, with the reason
        row["position"] = r.position
        row["error"] = exc.message
    return row


# The position types each source type stores (a position of another type would be refused at start).
_POSITION_KINDS = {
    "sqlite": ("watermark",),
    "poll": ("watermark",),
    "polling": ("watermark",),
    "query": ("watermark",),
    "postgresql": ("pg_lsn", "pg_snapshot"),
    "postgres": ("pg_lsn", "pg_snapshot"),
    "pg": ("pg_lsn", "pg_snapshot"),
    "mysql": ("binlog",),
    "mariadb": ("binlog",),
    "debezium": ("kafka",),
    "oracle": ("oracle_scn",),
}


def _parse_position(text: str, source_type: str) -> Position:
    """--position as a user typed it: a usage error (exit 2) saying what is wrong, not a 'stored offset'."""
    fix = "copy a position from `cdc-logs offsets show -c <pipeline.yaml> --json` and edit its values"

    def usage(problem: str) -> CdcError:
        return CdcError(ErrorKind.USAGE, f"--position {problem}", fix)

    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise usage('is not JSON: give the position object, e.g. \'{"type": "watermark", ...}\'') from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise usage('must be a JSON object with a "type"') from None
    kind = data["type"]
    wanted = _POSITION_KINDS.get(source_type, tuple(kinds()))
    if kind not in wanted:
        known = "an unknown" if kind not in kinds() else "the wrong"
        raise usage(
            f"has {known} type {kind!r}: a {source_type} source stores {' or '.join(wanted)}"
        ) from None
    try:
        return decode(text)
    except CdcError as exc:
        raise usage(f"is not a valid {kind} position: {decode_problem(exc, text)}") from None


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
    sources = {source_name(s): s for s in cfg.all_sources()}
    _check_source(list(sources), source)
    pos = _parse_position(position, sources[source].type)
    with lock_pipeline(cfg.offsets, cfg.name):  # refused while the pipeline runs: it would overwrite it
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
    with lock_pipeline(cfg.offsets, cfg.name):  # refused while the pipeline runs: it would overwrite it
        if not yes and not typer.confirm(f"reset the offsets of {what}?"):
            raise typer.Exit(1)
        count = build_offsets(cfg.offsets, cfg.name).delete(cfg.name, source)
    print(redact(f"removed {count} offset(s) of {what}"))
