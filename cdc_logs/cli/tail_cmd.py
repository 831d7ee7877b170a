"""`cdc-logs tail --source ...`: print a source's changes, nothing persisted, nothing left behind.

With `--format json`, stdout carries exactly one envelope per line; logs go to stderr. `--schemas`
makes each line Kafka Connect's JsonConverter form of the value, `{"schema": ..., "payload": <the
envelope>}`, the schema built from the source's catalog (cdc_logs.connect_schema, docs/schemas.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from cdc_logs import connect_schema
from cdc_logs.build import tail_pipeline
from cdc_logs.cli.progress import show_snapshot_progress
from cdc_logs.cli.source_flags import MONGO_ALIASES, PG_ALIASES, SOURCES, source_config
from cdc_logs.cli.stop_signals import stop_signals
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.sqlite.config import SqliteSourceConfig
from cdc_logs.sinks.stdout import StdoutSink


class SchemaStdoutSink(StdoutSink):
    """`--format json --schemas`: one `{"schema", "payload"}` value record per line."""

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        stream = self._stream
        assert stream is not None, "open() first"
        for event in batch:
            if event.schema is None and event.op is not Op.MESSAGE:
                # connect_schema's own hint names the destination setting; tail's fix is the flag.
                raise CdcError(
                    ErrorKind.USAGE,
                    f"{event.source.connector} event for {event.source.qualified_table} carries no table "
                    "schema, so it cannot be printed with a Connect schema (--schemas)",
                    "drop --schemas to print the envelopes alone; for --source debezium, make the "
                    "connector write schemas (value.converter.schemas.enable=true and "
                    "key.converter.schemas.enable=true)",
                )
        stream.write(b"".join(connect_schema.envelope_record(event) + b"\n" for event in batch))
        stream.flush()


def tail(
    source: str = typer.Option(..., "--source", "-s", help=f"Source type: {'|'.join(SOURCES)}."),
    dsn: str | None = typer.Option(
        None,
        "--dsn",
        envvar="CDC_DSN",
        help="Database URL (postgresql://user:pw@host/db for pg, sqlite:///file.db, a SQLAlchemy URL "
        "for poll, oracle://user:pw@host:1521/service for oracle); env CDC_DSN.",
    ),
    table: list[str] = typer.Option([], "--table", "-t", help="Table to capture; repeat for several."),
    collection: list[str] = typer.Option(
        [], "--collection", help="mongo: collection to capture, as db.collection; repeat for several."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Exit 0 after N events."),
    format: str = typer.Option("pretty", "--format", "-f", help="json (one envelope per line) | pretty."),
    schemas: bool = typer.Option(
        False,
        "--schemas",
        help='json: print each envelope as {"schema": ..., "payload": ...}, Kafka Connect\'s JsonConverter '
        "form with the schema Debezium would write.",
    ),
    snapshot: bool = typer.Option(False, "--snapshot/--no-snapshot", help="Emit existing rows (op r) first."),
    cleanup: bool = typer.Option(False, "--cleanup", help="sqlite: remove the capture triggers on exit."),
    mode: str = typer.Option(
        "timestamp+incrementing", "--mode", help="poll: timestamp | incrementing | timestamp+incrementing."
    ),
    timestamp_column: str | None = typer.Option(
        None, "--timestamp-column", help="poll: watermark timestamp column."
    ),
    incrementing_column: str | None = typer.Option(
        None, "--incrementing-column", help="poll: strictly increasing id column."
    ),
    soft_delete_column: str | None = typer.Option(
        None,
        "--soft-delete-column",
        help="poll: rows with this column set are emitted as deletes (polling cannot see real deletes).",
    ),
    interval_ms: int = typer.Option(200, "--interval-ms", min=1, help="Poll interval."),
    slot: str | None = typer.Option(
        None, "--slot", help="pg: replication slot to use (kept); without it a temporary slot, nothing left."
    ),
    publication: str | None = typer.Option(
        None,
        "--publication",
        help="pg: publication to read. An existing one is used as it is (never altered or dropped); "
        "a missing one is created, and dropped on exit when there is no --slot.",
    ),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", envvar="CDC_KAFKA_BOOTSTRAP", help="debezium: Kafka bootstrap servers."
    ),
    topic_prefix: str | None = typer.Option(
        None, "--topic-prefix", help="debezium: the connector's topic.prefix (--table: schema.table)."
    ),
    group_id: str | None = typer.Option(
        None, "--group-id", help="debezium: consumer group (default: throwaway)."
    ),
    from_beginning: bool = typer.Option(
        False, "--from-beginning/--from-end", help="debezium: start at the topics' start, not their end."
    ),
    dead_letter_dir: Path | None = typer.Option(
        None,
        "--dead-letter-dir",
        help="Park changes that cannot be decoded here and go on (default: stop at the first one).",
    ),
) -> None:
    """Stream changes of a source to stdout.

    pg reads a logical replication slot: without --slot a temporary slot (and publication, unless
    --publication names an existing one, which is used as it is) that are gone when tail exits; with
    --slot that slot (created if missing) resumes where it was confirmed.
    sqlite installs capture triggers on each --table (remove them with --cleanup). poll runs watermark
    queries: it cannot see deletes unless --soft-delete-column is set, nor an update's old values.
    debezium reads a connector's Kafka topics with a throwaway consumer group that commits nothing.
    mongo follows a change stream of each --collection db.c (none: the whole deployment) from now.
    """
    if format not in ("json", "pretty"):
        raise CdcError(
            ErrorKind.USAGE, f"--format must be json or pretty, got {format!r}", "use --format json"
        )
    if schemas and format != "json":
        raise CdcError(ErrorKind.USAGE, "--schemas needs --format json", "add --format json")
    if source in PG_ALIASES:
        source = "pg"
    if source in MONGO_ALIASES:
        source, table = "mongo", [*table, *collection]
    if source not in SOURCES:
        raise CdcError(ErrorKind.USAGE, f"unknown --source {source!r}", f"use one of: {', '.join(SOURCES)}")
    if not dsn and source != "debezium":
        raise CdcError(ErrorKind.USAGE, "--dsn is required", "pass --dsn URL or set CDC_DSN")
    if not table and source not in ("debezium", "mongo"):
        raise CdcError(ErrorKind.USAGE, "at least one --table is required", "pass --table name (repeatable)")
    cfg = source_config(
        source,
        dsn or "",
        table,
        snapshot,
        mode,
        timestamp_column,
        incrementing_column,
        soft_delete_column,
        interval_ms,
        slot,
        publication,
        debezium=(bootstrap, topic_prefix, group_id, from_beginning),
    )
    sink = SchemaStdoutSink(format) if schemas else StdoutSink(format)
    pipeline = tail_pipeline(
        cfg, sink, limit=limit, dead_letter_dir=str(dead_letter_dir) if dead_letter_dir else None
    )

    if format == "pretty" and snapshot:
        (reader,) = pipeline.readers.values()
        show_snapshot_progress(pipeline, reader, sink)
    try:
        with stop_signals(lambda _name: pipeline.stop()):
            pipeline.run()
    finally:
        if cleanup and isinstance(cfg, SqliteSourceConfig):
            from cdc_logs.readers.sqlite.triggers import cleanup as remove_triggers

            remove_triggers(cfg.path, cfg.tables)
