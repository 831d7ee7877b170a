"""`cdc-logs offsets show|set|rewind|reset -c pipeline.yaml`: inspect and move committed positions.

`set` and `rewind` take a position as the source knows it (`--lsn`, `--gtid`, `--binlog`, `--scn`,
`--timestamp`; `rewind --by`) or as JSON (`--position`); offsets/seek.py builds and checks it on the
source's server. Every change takes the pipeline lock first: refused (exit 3) while the pipeline runs,
which would overwrite it at its next commit. See docs/offsets.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.build import build_offsets, lock_pipeline, source_name
from cdc_logs.cli.confirm import confirm, require_answerable
from cdc_logs.configfile import load_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.offsets.base import StoredOffset, decode_problem
from cdc_logs.offsets.lock import PipelineLock, PipelineLocked
from cdc_logs.offsets.seek import Seeker, Target, describe, is_before, parse_time
from cdc_logs.position import _TYPES, Position, decode, kinds

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
        table.add_column(column, overflow="fold")  # wrapped, never cut: positions are copied from here
    for r in rows:
        updated = dt.datetime.fromtimestamp(r.updated_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        try:
            described = r.decoded().describe()
        except CdcError:  # a damaged row is shown as it is, so it can be fixed with `offsets set`
            described = f"[red]unreadable:[/red] {redact(r.position[:80])!r}"
        table.add_row(redact(r.source), described, redact(r.server), updated)
    if not rows:
        table.caption = (
            "no committed position yet: the next run starts as a new pipeline (docs/offsets.md says where, "
            "per source)"
        )
    # Piped or redirected, rich would lay the table out for 80 columns: wide enough for whole positions.
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


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


_ACCEPTED = (
    'a position object ({"type": ..., "server": ..., ...}), a record of `offsets show --json` '
    '({"source": ..., "position": {...}}), or its whole output (a list of records: the one of --source '
    "is used)"
)


def _unwrap_position(data: Any, source: str, usage: Any) -> Any:
    """The position object in what --position holds: itself, a record, or a list of records."""
    if isinstance(data, list):
        mine = [r for r in data if isinstance(r, dict) and r.get("source") == source]
        if len(mine) != 1:
            names = sorted({str(r.get("source")) for r in data if isinstance(r, dict) and "source" in r})
            found = f"records of sources {', '.join(names)}" if names else "no records"
            raise usage(f"is a list with {found}, none for source {source!r}: give {_ACCEPTED}")
        data = mine[0]
    if isinstance(data, dict) and "position" in data and "type" not in data:
        if "source" in data and data["source"] != source:
            raise usage(f"is the record of source {data['source']!r}, not of {source!r}")
        if "error" in data:
            raise usage(f"is a record whose stored position is unreadable ({data['error']}): fix its values")
        data = data["position"]
    return data


def _parse_position(text: str, source_type: str, source: str = "") -> Position:
    """--position as a user typed it: a usage error (exit 2) saying what is wrong, not a 'stored offset'."""
    fix = (
        f"--position takes {_ACCEPTED}; copy it from `cdc-logs offsets show -c <pipeline.yaml> --json` "
        "and edit its values"
    )

    def usage(problem: str) -> CdcError:
        return CdcError(ErrorKind.USAGE, f"--position {problem}", fix)

    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise usage(f"is not JSON: give {_ACCEPTED}") from None
    data = _unwrap_position(data, source, usage)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise usage(f'has no position "type": give {_ACCEPTED}') from None
    text = orjson.dumps(data).decode()
    kind = data["type"]
    wanted = _POSITION_KINDS.get(source_type, tuple(kinds()))
    if kind not in wanted:
        known = "an unknown" if kind not in kinds() else "the wrong"
        raise usage(
            f"has {known} type {kind!r}: a {source_type} source stores {' or '.join(wanted)}"
        ) from None
    _check_fields(kind, data, usage)
    try:
        return decode(text)
    except CdcError as exc:
        raise usage(f"is not a valid {kind} position: {decode_problem(exc, text)}") from None


def _check_fields(kind: str, data: dict[str, Any], usage: Any) -> None:
    """Missing or unknown fields named as such (not as a Python TypeError)."""
    cls = _TYPES[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise usage(
            f"is missing field{plural} {', '.join(repr(m) for m in missing)} of a {kind} position "
            f"(fields: {', '.join(sorted(known))})"
        )
    unknown = sorted(k for k in data if k != "type" and k not in known)
    if unknown:
        raise usage(
            f"has unknown field(s) {', '.join(repr(u) for u in unknown)} for a {kind} position "
            f"(fields: {', '.join(sorted(known))})"
        )


def _one_source(cfg_sources: list[str], source: str | None) -> str:
    """--source, or the pipeline's only source when it has one (set and rewind move one source)."""
    if source is None:
        if len(cfg_sources) == 1:
            return cfg_sources[0]
        raise CdcError(
            ErrorKind.USAGE,
            f"this pipeline has {len(cfg_sources)} sources: say which one to move",
            f"add --source with one of: {', '.join(cfg_sources)}",
        )
    _check_source(cfg_sources, source)
    return source


def _check_source(cfg_sources: list[str], source: str) -> None:
    if source not in cfg_sources:
        raise CdcError(
            ErrorKind.USAGE,
            f"no source named {source!r} in this pipeline",
            f"use one of: {', '.join(cfg_sources)}",
        )


_SELECTORS = ("position", "lsn", "gtid", "binlog", "scn", "timestamp")
_LSN = typer.Option(
    None, "--lsn", help="Postgres: an LSN, e.g. 0/16B3748 (at or after the slot's confirmed point)."
)
_GTID = typer.Option(
    None, "--gtid", help="MariaDB: GTID position 0-1-1400 (resume after it); MySQL: GTID set uuid:1-N."
)
_BINLOG = typer.Option(None, "--binlog", help="MariaDB: binlog file:pos, e.g. mariadb-bin.000003:1234.")
_SCN = typer.Option(None, "--scn", help="Oracle: a system change number (Oracle sources only).")
_TIMESTAMP = typer.Option(
    None, "--timestamp", help="MariaDB: the first transaction at or after this time (2026-11-01T00:00Z)."
)
_POSITION = typer.Option(
    None,
    "--position",
    help="Position JSON: the position object, one record of `offsets show --json`, or its whole output.",
)
_SOURCE = typer.Option(
    None, "--source", help="Source name (its `name`, or its type); default: the pipeline's only source."
)


def _lock(cfg: Any) -> PipelineLock:
    """The pipeline lock; refused while the pipeline runs (it would overwrite the change)."""
    try:
        return lock_pipeline(cfg.offsets, cfg.name)
    except PipelineLocked as exc:
        raise CdcError(
            ErrorKind.LOCKED,
            exc.message,
            f"stop the running pipeline first ({exc.holder}), then change its offsets and start it again",
        ) from None


def _load(store: Any, pipeline: str, source: str) -> Position | None:
    row = store.load(pipeline, source)
    if row is None:
        return None
    try:
        return row.decoded()
    except CdcError:  # a damaged row: replaced by the new position
        return None


def _target(
    cfg: Any, source: str, target: Target, allowed: tuple[str, ...], current: Position | None
) -> Position:
    """The position the user asked for, built and checked on the source's server (offsets/seek.py)."""
    name, value = target.chosen(allowed)
    source_cfg = {source_name(s): s for s in cfg.all_sources()}[source]
    if name == "position":
        pos = _parse_position(value, source_cfg.type, source)
        if pos.kind not in ("pg_lsn", "pg_snapshot", "binlog"):
            return pos  # nothing on a server to check it against
        with Seeker(source_cfg, cfg.name, source) as seeker:
            return seeker.check(pos, current)
    with Seeker(source_cfg, cfg.name, source) as seeker:
        pos = seeker.build(name, value, current)
    if name == "timestamp" and parse_time(value) > dt.datetime.now(dt.UTC):
        print(
            f"warning: --timestamp {value} is in the future: the position is the current end of the log",
            file=sys.stderr,
        )
    return pos


def _change(cfg: Any, source: str, current: Position | None, pos: Position) -> str:
    return f"{cfg.name}/{source}: {describe(current)} -> {describe(pos)} (server {pos.server})"


@app.command("set")
def set_(
    config: Path = _CONFIG,
    source: str | None = _SOURCE,
    position: str | None = _POSITION,
    lsn: str | None = _LSN,
    gtid: str | None = _GTID,
    binlog: str | None = _BINLOG,
    scn: str | None = _SCN,
    timestamp: str | None = _TIMESTAMP,
) -> None:
    """Move a source to a given position (refused while the pipeline runs). Give exactly one of
    --lsn, --gtid, --binlog, --scn, --timestamp or --position; see docs/offsets.md."""
    cfg = load_config(config)
    source = _one_source([source_name(s) for s in cfg.all_sources()], source)
    target = Target(lsn=lsn, gtid=gtid, binlog=binlog, scn=scn, timestamp=timestamp, position=position)
    target.chosen(_SELECTORS)  # a usage error before anything is locked or connected
    with _lock(cfg):
        store = build_offsets(cfg.offsets, cfg.name)
        current = _load(store, cfg.name, source)
        pos = _target(cfg, source, target, _SELECTORS, current)
        store.save(cfg.name, source, pos)
    print(redact(_change(cfg, source, current, pos)))


@app.command("rewind")
def rewind(
    config: Path = _CONFIG,
    source: str | None = _SOURCE,
    to: str | None = typer.Option(
        None, "--to", help="Where to: an LSN, a GTID, file:pos or a time (the source's type decides)."
    ),
    lsn: str | None = _LSN,
    gtid: str | None = _GTID,
    binlog: str | None = _BINLOG,
    scn: str | None = _SCN,
    timestamp: str | None = _TIMESTAMP,
    by: str | None = typer.Option(
        None, "--by", help="MariaDB: this long (10m, 1h30m) before the committed position's time."
    ),
    position: str | None = _POSITION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Move a source back to an earlier position, after showing the change and asking to confirm.

    Events after the new position are read again (sinks with a replay guard skip what they hold)."""
    cfg = load_config(config)
    source = _one_source([source_name(s) for s in cfg.all_sources()], source)
    if to is not None:
        source_type = {source_name(s): s for s in cfg.all_sources()}[source].type
        lsn, gtid, binlog, timestamp = _guess(to, source_type, lsn, gtid, binlog, timestamp)
    target = Target(lsn=lsn, gtid=gtid, binlog=binlog, scn=scn, timestamp=timestamp, by=by, position=position)
    allowed = (*_SELECTORS, "by")
    target.chosen(allowed, also=("to",))
    require_answerable(yes, "rewind")
    with _lock(cfg):
        store = build_offsets(cfg.offsets, cfg.name)
        current = _load(store, cfg.name, source)
        if current is None:
            raise CdcError(
                ErrorKind.USAGE,
                f"{cfg.name}/{source} has no committed position: there is nothing to rewind",
                "use `cdc-logs offsets set` to give it one",
            )
        pos = _target(cfg, source, target, allowed, current)
        if is_before(pos, current) is False:
            raise CdcError(
                ErrorKind.USAGE,
                f"{describe(pos)} is ahead of the committed position {describe(current)}: that skips "
                "changes, it does not rewind",
                "use `cdc-logs offsets set` to move a source forward on purpose",
            )
        if pos.kind == current.kind and is_before(current, pos):  # both ways: the same position
            print(redact(f"{cfg.name}/{source} is already at {describe(pos)}: nothing changed"))
            return
        print(redact(_change(cfg, source, current, pos)))
        print(
            "the next run reads the changes after the new position again; sinks with a replay guard "
            "(SQL apply, Redis Streams) skip what they already applied"
        )
        confirm(yes, "rewind", "rewind?")
        store.save(cfg.name, source, pos)
    print(redact(f"{cfg.name}/{source} rewound to {describe(pos)}"))


def _guess(
    to: str, source_type: str, lsn: str | None, gtid: str | None, binlog: str | None, timestamp: str | None
) -> tuple[str | None, str | None, str | None, str | None]:
    """--to as the selector its form and the source's type mean."""
    if any(v is not None for v in (lsn, gtid, binlog, timestamp)):
        raise CdcError(ErrorKind.USAGE, "--to is one of --lsn/--gtid/--binlog/--timestamp: give only one")
    text = to.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", text):
        return text, None, None, None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text):
        return None, None, None, text
    if source_type in ("mysql", "mariadb") and re.fullmatch(r"[^:\s]+\.\d+:\d+", text):
        return None, None, text, None
    if source_type in ("mysql", "mariadb"):
        return None, text, None, None
    raise CdcError(
        ErrorKind.USAGE,
        f"--to {to!r}: not an LSN (0/16B3748), a time (2026-11-01T00:00Z), a binlog file:pos or a GTID",
        "name the kind: --lsn, --gtid, --binlog or --timestamp",
    )


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
    require_answerable(yes, f"reset the offsets of {what}")
    with _lock(cfg):
        confirm(yes, f"reset the offsets of {what}", f"reset the offsets of {what}?")
        count = build_offsets(cfg.offsets, cfg.name).delete(cfg.name, source)
    print(redact(f"removed {count} offset(s) of {what}"))
