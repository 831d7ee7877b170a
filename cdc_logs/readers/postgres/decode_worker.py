"""The Postgres decode process: pgoutput messages in, envelopes out, on the machine's second core.

Run by decode_process.py as `python -m cdc_logs.readers.postgres.decode_worker`, with frames
(readers/wire.py) on stdin and stdout (readers/worker_process.py has the plumbing). The reader keeps
the replication connection (the slot, the feedback, keepalives, incremental snapshots) and sends the
raw XLogData payloads it reads; this process runs the same `ChangeStream` the reader runs inline
(decode, value conversion, envelope building) and answers each batch with its items, in order,
followed by its stream state.

  in:  ("init", settings)                  once, at spawn: connection and stream settings
       ("start", state, last_boundary)     once, at a transaction boundary: the relations and types
                                           the reader had already seen (EventBuilder.export_state)
       ("feed", n, [(lsn, payload)])        a batch of XLogData payloads
  out: ("ready",)                                                 after init (imports, catalog connection)
       ("items", n, [item...], done, in_flight, last_boundary)   one or more per batch
       ("error", kind, message, hint)                            then the process ends

The catalog lookups the builder needs (primary keys, user types, column facts) go through a
connection of its own.
"""

from __future__ import annotations

import sys
from typing import Any

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.wire import ItemEncoder
from cdc_logs.readers.worker_process import Channel, serve

ITEMS_PER_FRAME = 512  # a big transaction's events go out in bounded frames (memory, and a steady flow)


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

        conn = connect(settings["dsn"], application_name=f"cdc-logs {settings['pipeline']} decode")
        registry = TypeRegistry()

        def key_lookup(relation: Relation) -> tuple[str, ...]:
            return catalog.primary_key(conn, relation.oid)

        def learn(relation: Relation) -> None:
            catalog.learn_types(conn, registry, relation)

        def facts(relation: Relation) -> dict[str, ColumnFacts]:
            return catalog.column_facts(conn, relation.oid)

        self.builder = EventBuilder(
            pipeline=settings["pipeline"],
            db=settings["db"],
            registry=registry,
            binary=settings["binary"],
            key_lookup=key_lookup,
            learn_types=learn,
            facts_lookup=facts,
        )
        tables = settings["tables"]
        self.changes = ChangeStream(
            self.builder,
            StreamBuffers(settings["max_tx_memory_bytes"]),
            settings["server"],
            tables=None if tables is None else set(tables),
            messages=settings["messages"],
        )
        self.encoder = ItemEncoder()
        self.serialize = bool(settings.get("serialize"))  # the pipeline has no transforms: JSON here
        self.started = False

    def start(self, state: list[Any], last_boundary: int) -> None:
        self.builder.import_state(state)
        self.changes.last_boundary = last_boundary
        self.started = True

    def feed(self, channel: Channel, seq: int, batch: list[tuple[int, bytes]]) -> None:
        changes, encode, serialize = self.changes, self.encoder.encode, self.serialize
        out: list[tuple[Any, ...]] = []
        for lsn, payload in batch:
            for item in changes.feed(lsn, payload):
                if serialize and type(item) is ChangeEvent:
                    item.to_json()  # cached in the event, sent with it: off the pipeline's core
                out.append(encode(item))
                if len(out) >= ITEMS_PER_FRAME:
                    channel.send(("items", seq, out, False, True, changes.last_boundary))
                    out = []
        channel.send(("items", seq, out, True, changes.in_flight, changes.last_boundary))


class _Handler:
    def __init__(self) -> None:
        self.worker: _Worker | None = None

    def __call__(self, channel: Channel, message: Any) -> None:
        tag = message[0]
        if tag == "init":
            self.worker = _Worker(message[1])
            channel.send(("ready",))
            return
        if self.worker is None:
            raise CdcError(ErrorKind.INTERNAL, f"the decode process got {tag!r} before its init")
        if tag == "start":
            self.worker.start(message[1], message[2])
        elif tag == "feed" and self.worker.started:
            self.worker.feed(channel, message[1], message[2])
        else:
            raise CdcError(ErrorKind.INTERNAL, f"the decode process got {tag!r} out of order")


if __name__ == "__main__":
    sys.exit(serve(_Handler()))
