"""The MySQL/MariaDB decode process: the binlog read, parsed and converted on the machine's second core.

Run by decode_process.py as `python -m cdc_logs.readers.mysql.decode_worker`, with frames
(readers/wire.py) on stdin and stdout (readers/worker_process.py has the plumbing). It runs the very
`BinlogStream` and `BinlogConverter` the reader runs on a thread otherwise: python-mysql-replication's
parsing, the conversion to envelopes, the reconnects from the last complete transaction's GTID. What
it sends back is the items, in frames that end at transaction boundaries (or every 256 items), each
with the converter's state the reader looks at (server idle, position after the last transaction).

  in:  ("init", settings)    once: the stream's and the converter's arguments
  out: ("items", [item...], server_idle, position)
       ("error", kind, message, hint)    a stream failure (as the thread would raise it); then nothing
"""

from __future__ import annotations

import sys
from typing import Any

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.mysql.connection import BinlogStream, _Failure
from cdc_logs.readers.mysql.convert import BinlogConverter
from cdc_logs.readers.wire import ItemEncoder, encode_position
from cdc_logs.readers.worker_process import Channel, serve

FLUSH_ITEMS = 256  # a frame at latest every this many items, else at each transaction's end


class _FramedStream(BinlogStream):
    """A BinlogStream whose item lists go to the reader's process in frames instead of a queue."""

    def __init__(self, channel: Channel, converter: BinlogConverter, serialize: bool, **kwargs: Any) -> None:
        super().__init__(handler=converter, **kwargs)
        self.serialize = serialize  # the pipeline has no transforms: each event's JSON is made here
        self.channel = channel
        self.converter = converter
        self.encoder = ItemEncoder()
        self.pending: list[tuple[Any, ...]] = []

    def _put(self, item: list[Any] | _Failure) -> bool:
        if isinstance(item, _Failure):
            self._flush()
            error = item.error
            self.channel.send(("error", error.kind._value_, error.message, error.hint))
            return True
        encode = self.encoder.encode
        if self.serialize:
            for event in item:
                if type(event) is ChangeEvent:
                    event.to_json()  # cached in the event, sent with it: off the pipeline's core
        self.pending.extend(encode(i) for i in item)
        # A frame per transaction (its last item is a boundary) or per FLUSH_ITEMS: the reader gets
        # whole transactions without waiting, and a big one in bounded frames (the pipe holds the rest
        # back when the reader is slower: the flow control of the thread's bounded queue).
        if item[-1].boundary or len(self.pending) >= FLUSH_ITEMS:
            self._flush()
        return not self._stop.is_set()

    def _flush(self) -> None:
        converter = self.converter
        self.channel.send(("items", self.pending, converter.server_idle, encode_position(converter.position)))
        self.pending = []


class _Handler:
    def __init__(self) -> None:
        self.stream: _FramedStream | None = None

    def __call__(self, channel: Channel, message: Any) -> None:
        if message[0] != "init" or self.stream is not None:
            raise CdcError(ErrorKind.INTERNAL, f"the binlog decode process got {message[0]!r} out of order")
        settings = message[1]
        converter = BinlogConverter(**settings["converter"])
        self.stream = _FramedStream(channel, converter, bool(settings["serialize"]), **settings["stream"])
        self.stream.start()


if __name__ == "__main__":
    sys.exit(serve(_Handler()))
