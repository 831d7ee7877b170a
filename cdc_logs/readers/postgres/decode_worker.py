"""The decode process: pgoutput messages in, envelopes out, on the machine's second core.

Run by decode_process.py as `python -m cdc_logs.readers.postgres.decode_worker`, with frames
(decode_wire.py) on stdin and stdout. The reader keeps the replication connection (the slot, the
feedback, keepalives, incremental snapshots) and sends the raw XLogData payloads it reads; this
process runs the same `ChangeStream` the reader runs inline (decode, value conversion, envelope
building) and answers each batch with the items it made, in order, followed by its stream state.

  in:  ("init", settings)                  once, at spawn: connection and stream settings
       ("start", state, last_boundary)     once, at a transaction boundary: the relations and types
                                           the reader had already seen (EventBuilder.export_state)
       ("feed", n, [(lsn, payload)])        a batch of XLogData payloads
  out: ("ready",)                                                 after init (imports, catalog connection)
       ("items", n, [item...], done, in_flight, last_boundary)   one or more per batch
       ("error", n, kind, message, hint)                         then the process ends

The reader spawns it when a backlog shows and keeps decoding inline until "ready" comes back, so the
start-up of a Python process is never a pause in the stream.

The catalog lookups the builder needs (primary keys, user types, column facts) go through a
connection of its own. It ignores SIGINT and SIGTERM: the reader decides when to stop, and ends it by
closing stdin, which also happens when the reader's process dies, however it died.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.postgres.decode_wire import Frames, ItemEncoder, frame, unframe

ITEMS_PER_FRAME = 512  # a big transaction's events go out in bounded frames (memory, and a steady flow)


_out = 1  # the frames' file descriptor (main() moves it off fd 1)


def _write(data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(_out, view)
        view = view[written:]


class _Worker:
    def __init__(self, settings: dict[str, Any]) -> None:
        from cdc_logs.readers.postgres import catalog
        from cdc_logs.readers.postgres.changes import ChangeStream
        from cdc_logs.readers.postgres.connection import connect
        from cdc_logs.readers.postgres.convert import EventBuilder
        from cdc_logs.readers.postgres.pgoutput import Relation
        from cdc_logs.readers.postgres.schema import ColumnFacts
        from cdc_logs.readers.postgres.txbuffer import StreamBuffers
        from cdc_logs.readers.postgres.types import TypeRegistry

        dsn = settings["dsn"]
        self.conn = connect(dsn, application_name=f"cdc-logs {settings['pipeline']} decode")
        conn = self.conn
        registry = TypeRegistry()

        def key_lookup(relation: Relation) -> tuple[str, ...]:
            return catalog.primary_key(conn, relation.oid)

        def learn(relation: Relation) -> None:
            catalog.learn_types(conn, registry, relation)

        def facts(relation: Relation) -> dict[str, ColumnFacts]:
            return catalog.column_facts(conn, relation.oid)

        builder = EventBuilder(
            pipeline=settings["pipeline"],
            db=settings["db"],
            registry=registry,
            binary=settings["binary"],
            key_lookup=key_lookup,
            learn_types=learn,
            facts_lookup=facts,
        )
        self.builder = builder
        tables = settings["tables"]
        self.changes = ChangeStream(
            builder,
            StreamBuffers(settings["max_tx_memory_bytes"]),
            settings["server"],
            tables=None if tables is None else set(tables),
            messages=settings["messages"],
        )
        self.encoder = ItemEncoder()

    def start(self, state: list[Any], last_boundary: int) -> None:
        self.builder.import_state(state)
        self.changes.last_boundary = last_boundary

    def feed(self, seq: int, batch: list[tuple[int, bytes]]) -> None:
        changes, encode = self.changes, self.encoder.encode
        out: list[tuple[Any, ...]] = []
        for lsn, payload in batch:
            for item in changes.feed(lsn, payload):
                out.append(encode(item))
                if len(out) >= ITEMS_PER_FRAME:
                    _write(frame(("items", seq, out, False, True, changes.last_boundary)))
                    out = []
        _write(frame(("items", seq, out, True, changes.in_flight, changes.last_boundary)))


def main() -> int:
    global _out
    # Frames get stdout's pipe to themselves; anything else written to stdout (a log line, a library's
    # print) goes to stderr, where it cannot break a frame.
    _out = os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = Frames()
    worker: _Worker | None = None
    seq = 0
    try:
        while True:
            data = os.read(0, 1 << 16)
            if not data:
                return 0  # the reader closed stdin (or died): done
            for body in frames.feed(data):
                message = unframe(body)
                if message[0] == "init":
                    worker = _Worker(message[1])
                    _write(frame(("ready",)))
                elif message[0] == "start":
                    if worker is None:
                        raise CdcError(ErrorKind.INTERNAL, "the decode process was started before its init")
                    worker.start(message[1], message[2])
                elif message[0] == "feed":
                    if worker is None:
                        raise CdcError(ErrorKind.INTERNAL, "the decode process was fed before its init")
                    seq = message[1]
                    worker.feed(seq, message[2])
    except CdcError as exc:
        _write(frame(("error", seq, exc.kind._value_, exc.message, exc.hint)))
    except Exception as exc:  # a decode bug must reach the reader with its name, not kill us silently
        reason = f"the decode process failed: {type(exc).__name__}: {exc}"
        _write(frame(("error", seq, ErrorKind.INTERNAL._value_, reason, "rerun with --debug and report it")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
