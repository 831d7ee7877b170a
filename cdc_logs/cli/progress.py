"""A snapshot progress bar for `--format pretty`: one bar per table, drawn under the printed changes.

It polls `Reader.snapshot_progress()` from a thread and shares the pretty sink's console, so rich draws
the bars below the events as they print. It ends when every table is read or the pipeline stops.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cdc_logs.pipeline import Pipeline
from cdc_logs.readers.base import Reader
from cdc_logs.sinks.stdout import StdoutSink


def show_snapshot_progress(pipeline: Pipeline, reader: Reader, sink: StdoutSink) -> threading.Thread:
    """Start the display thread (daemon); it returns by itself."""
    thread = threading.Thread(target=_run, args=(pipeline, reader, sink), name="progress", daemon=True)
    thread.start()
    return thread


def _run(pipeline: Pipeline, reader: Reader, sink: StdoutSink) -> None:
    if not pipeline.ready.wait(60) or sink.console is None:
        return
    columns = (
        TextColumn("snapshot {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=sink.console, transient=False) as bars:
        while not pipeline.stopping:
            progress = reader.snapshot_progress()
            for item in progress:
                if item.table not in tasks:
                    tasks[item.table] = bars.add_task(item.table, total=item.estimate)
                total = max(item.estimate or 0, item.rows) if item.estimate is not None or item.done else None
                bars.update(tasks[item.table], completed=item.rows, total=item.rows if item.done else total)
            if progress and all(item.done for item in progress):
                return
            time.sleep(0.2)
