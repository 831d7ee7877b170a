"""`cdc-logs doctor`: preflight checks of a source, each failure with its fix.

`doctor -c pipeline.yaml` checks every source of a pipeline as configured, with its committed
position (can the run resume from it?); `doctor --source pg|mariadb|mysql|sqlite --dsn URL` checks one
source from flags. Prints one line per check (`ok`, `warn` or `FAIL`, and the fix under each failure
or warning) and exits 1 if any check failed, 0 otherwise.

Each reader's checks live in its package (`readers/<source>/doctor.py`, `check_source(cfg, stored)`);
this module finds them from the registry, and only dispatches and prints.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import typer

from cdc_logs import registry
from cdc_logs.cli.source_flags import MONGO_ALIASES, PG_ALIASES, source_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position
from cdc_logs.readers.checks import Check

FLAG_SOURCES = ("pg", "mariadb", "mysql", "sqlite", "oracle", "mongo")


def doctor(
    config: Path | None = typer.Option(
        None, "-c", "--config", help="Pipeline YAML: check each of its sources, as configured."
    ),
    source: str | None = typer.Option(
        None, "--source", "-s", help=f"Without -c, the source type: {' | '.join(FLAG_SOURCES)}."
    ),
    dsn: str | None = typer.Option(
        None,
        "--dsn",
        envvar="CDC_DSN",
        help="Database URL (sqlite: the file), e.g. mysql://user:pw@host:3306/db; env CDC_DSN.",
    ),
    gtid: str | None = typer.Option(
        None,
        "--gtid",
        help="mysql/mariadb: a stored GTID position (from `cdc-logs offsets show`) to check is still in "
        "the binlog.",
    ),
    table: list[str] = typer.Option(
        [],
        "--table",
        "-t",
        help="A captured table (repeatable). pg: default every published table; sqlite: required.",
    ),
    collection: list[str] = typer.Option(
        [], "--collection", help="mongo: a captured collection, db.collection (repeatable)."
    ),
) -> None:
    """Check that a source is set up for change data capture; print the fix for each failing check."""
    if config is not None:
        if source or dsn:
            raise CdcError(ErrorKind.USAGE, "-c and --source/--dsn exclude each other", "pass one of them")
        sections = _configured_sources(config)
        pipeline = _pipeline_name(config)
    else:
        pipeline = None
        sections = [("", _flag_source(source, dsn, [*table, *collection]), _flag_position(source, gtid))]
    failed = total = warned = 0
    for title, cfg, stored in sections:
        if len(sections) > 1:
            print(redact(f"[{title}]"))
        for check in _checks_of(cfg, stored, pipeline):
            total += 1
            failed += not check.ok
            warned += check.ok and check.warning
            _print(check)
    # Not "N passed, N failed": CI log readers take that line for a test runner's summary.
    summary = f"{total - failed} of {total} checks ok"
    summary += f" ({warned} with a warning)" if warned else ""
    print(summary + (f"; {failed} to fix" if failed else ""))
    if failed:
        raise typer.Exit(1)


def _print(check: Check) -> None:
    # A check's detail may quote the server or the DSN: it is printed like any message, redacted.
    print(redact(f"{check.mark:<4} {check.name}: {check.detail}"))
    if check.fix and (check.warning or not check.ok):
        print(redact(f"     fix: {check.fix}"))


def _checks_of(cfg: Any, stored: Position | CdcError | None, pipeline: str | None = None) -> list[Check]:
    """The reader's own checks: `check_source` in the doctor module beside its config module."""
    if isinstance(stored, CdcError):
        return [
            Check("stored position", False, stored.message, stored.hint),
            *_checks_of(cfg, None, pipeline),
        ]
    component = registry.for_config(cfg)
    package = component.module.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{package}.doctor")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.doctor":  # the doctor's own imports failed: a real error
            raise
        return [
            Check(
                f"{component.name} source",
                False,
                f"doctor has no checks for {component.name} sources",
                "see the source's page in docs/sources/ for its requirements",
            )
        ]
    if "pipeline" in inspect.signature(module.check_source).parameters:
        # The event buses' default consumer names (durable, group, client id) include the pipeline's.
        return list(module.check_source(cfg, stored, pipeline=pipeline))
    return list(module.check_source(cfg, stored))


def _pipeline_name(path: Path) -> str:
    from cdc_logs.configfile import load_config

    return str(load_config(path).name)


def _configured_sources(path: Path) -> list[tuple[str, Any, Position | CdcError | None]]:
    from cdc_logs.build import build_offsets, offsets_path, source_name
    from cdc_logs.configfile import load_config

    cfg = load_config(path)
    sources = [(source_name(s), s) for s in cfg.all_sources()]
    if cfg.offsets.type != "postgres" and not offsets_path(cfg.offsets, cfg.name).exists():
        return [(name, s, None) for name, s in sources]  # never run yet (and doctor creates no store)
    stored: dict[str, Position | CdcError] = {}
    store = build_offsets(cfg.offsets, cfg.name)
    try:
        for row in store.list(cfg.name):
            try:
                stored[row.source] = row.decoded()
            except CdcError as exc:  # checked like the rest: a run could not resume from it
                stored[row.source] = exc
    finally:
        store.close()
    return [(name, s, stored.get(name)) for name, s in sources]


def _flag_source(source: str | None, dsn: str | None, tables: list[str]) -> Any:
    if source is None:
        raise CdcError(
            ErrorKind.USAGE,
            "doctor needs a pipeline (-c pipeline.yaml) or a source (--source and --dsn)",
            "e.g. `cdc-logs doctor -c pipeline.yaml` or `cdc-logs doctor --source pg --dsn URL`",
        )
    source = "pg" if source in PG_ALIASES else source
    source = "mongo" if source in MONGO_ALIASES else source
    if source not in FLAG_SOURCES:
        why = "its table settings live in the config" if source == "poll" else "it has no checks from flags"
        raise CdcError(
            ErrorKind.USAGE,
            f"doctor --source {source!r}: {why}",
            f"check it with `cdc-logs doctor -c pipeline.yaml`, or use --source {' | '.join(FLAG_SOURCES)}",
        )
    if not dsn:
        raise CdcError(ErrorKind.USAGE, "--dsn is required", "pass --dsn URL or set CDC_DSN")
    if source == "sqlite" and not tables:
        raise CdcError(ErrorKind.USAGE, "sqlite: at least one --table is required", "pass --table name")
    if source == "mongo":  # no --collection: the whole deployment
        return source_config(source, dsn, tables, False, "timestamp+incrementing", None, None, None, 200)
    if not tables:
        # pg without --table checks every published table, mysql/mariadb the server: neither needs the
        # table list a run requires, so the model is built without that validation.
        from pydantic import SecretStr

        model = registry.find("source", source).config
        return model.model_construct(type=source, dsn=SecretStr(dsn))
    return source_config(source, dsn, tables, False, "timestamp+incrementing", None, None, None, 200)


def _flag_position(source: str | None, gtid: str | None) -> Position | None:
    if gtid is None:
        return None
    if source not in ("mariadb", "mysql"):
        raise CdcError(ErrorKind.USAGE, "--gtid applies to --source mariadb|mysql", "drop --gtid")
    from cdc_logs.position import BinlogPosition

    return BinlogPosition(server="", file="", pos=4, gtid=gtid, flavor=source)
