"""`cdc-logs snapshot TABLE... -c pipeline.yaml`: ask a pipeline for an incremental snapshot.

It writes Debezium's `execute-snapshot` signal (type incremental, the tables as data-collections,
`--where` as their additional condition) to the source's signal table (`signal_data_collection`);
`--stop` writes `stop-snapshot`. The reader, running or started later, reads the row from the log and
snapshots the tables in chunks while it keeps streaming (docs/snapshots.md). Nothing else is changed:
the command needs only INSERT on the signal table.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import typer

from cdc_logs.build import source_name
from cdc_logs.configfile import load_config
from cdc_logs.errors import CdcError, ErrorKind

_PG = ("postgresql", "postgres", "pg")
_MYSQL = ("mysql", "mariadb")


def snapshot(
    tables: list[str] = typer.Argument(None, help="Tables to snapshot, as the source names them."),
    config: Path = typer.Option(..., "-c", "--config", help="Pipeline YAML file."),
    source: str | None = typer.Option(None, "--source", help="Which source (when the pipeline has several)."),
    where: str | None = typer.Option(
        None, "--where", help="Additional condition (SQL) on the rows to read, for every table given."
    ),
    stop: bool = typer.Option(
        False, "--stop", help="Stop the snapshot of these tables (none given: of all)."
    ),
) -> None:
    """Snapshot tables while the pipeline streams (incremental, through the signal table)."""
    cfg = load_config(config)
    src = _pick(cfg.all_sources(), source)
    table_names = list(tables or [])
    if not table_names and not stop:
        raise CdcError(
            ErrorKind.USAGE, "name the tables to snapshot", "e.g. cdc-logs snapshot public.orders -c p.yaml"
        )
    signal_table = getattr(src, "signal_data_collection", None)
    if not signal_table:
        raise CdcError(
            ErrorKind.CONFIG,
            f"source {source_name(src)} has no signal table",
            "create one (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048)) and set "
            "`signal_data_collection: schema.table` on the source (docs/snapshots.md), then restart it",
        )
    resolved = [_captured(src, t) for t in table_names]
    data: dict[str, Any] = {"type": "incremental"}
    if resolved:
        data["data-collections"] = resolved
    if where and not stop:
        data["additional-conditions"] = [{"data-collection": t, "filter": where} for t in resolved]
    kind = "stop-snapshot" if stop else "execute-snapshot"
    signal_id = f"cdc-logs-{int(time.time())}-{uuid.uuid4().hex[:8]}"  # at most 42 characters
    text = orjson.dumps(data).decode()
    if src.type in _PG:
        from cdc_logs.readers.postgres.incremental import send_signal

        publication = src.publication
        if publication is None and src.slot:  # as the reader derives it (reader.py, doctor.py)
            publication = src.slot if src.slot.startswith("cdc_logs_") else f"cdc_logs_{src.slot}"
        send_signal(src.dsn.get_secret_value(), signal_table, signal_id, kind, text, publication)
    else:
        from cdc_logs.readers.mysql.config import mysql_settings
        from cdc_logs.readers.mysql.incremental import send_signal as send_mysql
        from cdc_logs.readers.mysql.reader import parse_table

        settings = mysql_settings(src)
        send_mysql(settings, parse_table(signal_table, settings.database), signal_id, kind, text)
    what = (
        "stop the snapshot of " + (", ".join(resolved) or "every table")
        if stop
        else "snapshot " + ", ".join(resolved)
    )
    print(f"signal {signal_id} written to {signal_table}: {what}")
    print("a running pipeline picks it up from the log; otherwise the next `cdc-logs run` does")


def _pick(sources: list[Any], name: str | None) -> Any:
    usable = [s for s in sources if s.type in _PG + _MYSQL]
    if name is not None:
        usable = [s for s in usable if source_name(s) == name]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        raise CdcError(
            ErrorKind.USAGE,
            "no Postgres or MySQL/MariaDB source" + (f" named {name!r}" if name else "") + " in the pipeline",
            "incremental snapshots are for postgresql, mysql and mariadb sources",
        )
    raise CdcError(
        ErrorKind.USAGE,
        "the pipeline has several sources",
        "pick one with --source " + " | ".join(source_name(s) for s in usable),
    )


def _captured(src: Any, table: str) -> str:
    """The table as the source captures it (refused when it does not capture it)."""
    name = table.strip()
    if src.type in _MYSQL and "." not in name:
        from cdc_logs.readers.mysql.config import mysql_settings

        database = mysql_settings(src).database
        name = f"{database}.{name}" if database else name
    if src.type in _PG and "." not in name:
        name = f"public.{name}"
    captured = list(getattr(src, "tables", []) or [])
    if getattr(src, "all_tables", False) or name in captured:
        return name
    if src.type in _MYSQL and name.split(".", 1)[0] in (getattr(src, "schemas", []) or []):
        return name
    raise CdcError(
        ErrorKind.USAGE,
        f"source {source_name(src)} does not capture {name}",
        f"snapshot one of: {', '.join(captured)}; or add {name} to its `tables` and restart it (with "
        "snapshot_new_tables it is then snapshotted on start)",
    )
