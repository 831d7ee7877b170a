"""The shared Sink contract suite. Every sink test module subclasses `SinkContract`.

A subclass provides `make_sink()` (a fresh sink on the real destination) and `read_back(sink)` (the
envelopes the destination holds now, in delivery order, read by an independent client). The suite
checks what DESIGN.md §3 promises: durable on return, replay-tolerant, per-key order kept.
"""

from __future__ import annotations

from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent
from cdc_logs.sinks.base import Sink
from tests.helpers import make_event


def _key(envelope: dict[str, Any]) -> Any:
    row = envelope["after"] or envelope["before"]
    return (envelope["source"]["table"], row["id"])


class SinkContract:
    def make_sink(self) -> Sink:
        raise NotImplementedError

    def read_back(self, sink: Sink) -> list[dict[str, Any]]:
        raise NotImplementedError

    # -- the contract ----------------------------------------------------------------------------
    def _batch(self, start: int, count: int, keys: int = 5) -> list[ChangeEvent]:
        ops = ["c", "u", "u", "d"]
        return [make_event(n, op=ops[(n // keys) % 4], key=n % keys) for n in range(start, start + count)]

    def test_durable_on_return(self) -> None:
        sink = self.make_sink()
        sink.open()
        try:
            batch = self._batch(1, 20)
            sink.write(batch)
            # Read before close: what write() returned for must already be at the destination.
            got = self.read_back(sink)
            assert [e["source"]["seq"] for e in got] == [e.source.extra["seq"] for e in batch]
            assert got == [orjson.loads(e.to_json()) for e in batch]
        finally:
            sink.close()

    def test_replayed_batch_is_tolerated(self) -> None:
        sink = self.make_sink()
        sink.open()
        try:
            first, second = self._batch(1, 10), self._batch(11, 10)
            sink.write(first)
            sink.write(first)  # a crash before the checkpoint replays the batch
            sink.write(second)
            got = self.read_back(sink)
            delivered = {e["source"]["seq"] for e in got}
            assert delivered == set(range(1, 21)), "every event must be there at least once"
            # The last state of each key is the last event written for it.
            last: dict[Any, int] = {}
            for e in got:
                last[_key(e)] = e["source"]["seq"]
            expected: dict[Any, int] = {}
            for ev in first + second:
                expected[_key(orjson.loads(ev.to_json()))] = ev.source.extra["seq"]
            assert last == expected
        finally:
            sink.close()

    def test_per_key_order_is_kept(self) -> None:
        sink = self.make_sink()
        sink.open()
        try:
            batches = [self._batch(start, 25, keys=3) for start in (1, 26, 51)]
            for batch in batches:
                sink.write(batch)
            got = self.read_back(sink)
            by_key: dict[Any, list[int]] = {}
            for e in got:
                by_key.setdefault(_key(e), []).append(e["source"]["seq"])
            assert by_key, "nothing delivered"
            for key, order in by_key.items():
                assert order == sorted(order), f"key {key} out of order: {order}"
        finally:
            sink.close()

    def test_empty_batch_is_a_no_op(self) -> None:
        sink = self.make_sink()
        sink.open()
        try:
            sink.write([])
            assert self.read_back(sink) == []
        finally:
            sink.close()
