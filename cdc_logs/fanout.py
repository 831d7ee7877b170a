"""Fan-out: deliver every batch to several sinks, each at its own pace, through one spool.

The pipeline appends each flush to the spool and moves on. One worker thread per sink reads the spool
from its own cursor, writes to its sink with its own retries, and acknowledges to the checkpointer;
the source checkpoint is therefore the minimum over the sinks. A sink that is down keeps retrying
(backoff capped at `max_backoff_s`) while the others deliver; it catches up from its cursor when it
returns, in order. A batch a sink rejects (SINK_REJECTED) goes to that sink's dead-letter file with
the reason, when one is configured; otherwise the pipeline stops with the error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from cdc_logs.checkpoint import Checkpointer
from cdc_logs.envelope import ChangeEvent, dumps
from cdc_logs.errors import CdcError, Directive, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.metrics import Metrics
from cdc_logs.sinks.base import Sink, as_sink_error
from cdc_logs.spool import Spool, decode_record, encode_record

log = get_logger(__name__)


class FanOut:
    def __init__(
        self,
        sinks: Sequence[Sink],
        checkpoint: Checkpointer,
        spool_dir: str | Path,
        *,
        max_spool_bytes: int,
        batch_events: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        dead_letter_dir: str | Path | None,
        metrics: Metrics,
    ) -> None:
        self.sinks = list(sinks)
        self.checkpoint = checkpoint
        self.spool = Spool(spool_dir, [s.name for s in sinks], max_bytes=max_spool_bytes)
        self.batch_events = batch_events
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.dead_letter_dir = Path(dead_letter_dir) if dead_letter_dir else None
        self.metrics = metrics
        self.failure: CdcError | None = None
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._appended = 0  # highest seq appended (ack marker)
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=f"sink-{s.name}", daemon=True)
            for s in self.sinks
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(
        self, seqs: Sequence[int], batch: Sequence[ChangeEvent], last_seq: int, stop: threading.Event
    ) -> bool:
        """Append one flush to the spool (blocks while it is full). False if stopped while blocked."""
        self.check()
        lines = [encode_record(seq, event) for seq, event in zip(seqs, batch, strict=True)]
        lines.append(orjson.dumps({"a": last_seq}))
        ok = self.spool.append(lines, stop)
        if ok:
            self._appended = last_seq
        return ok

    def drain(self, timeout: float) -> bool:
        """Wait until every sink has acknowledged everything appended (graceful stop)."""
        self._draining.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failure is not None or self.checkpoint.durable_seq() >= self._appended:
                return self.failure is None
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.spool.close()

    def check(self) -> None:
        """Raise the error a sink worker stopped on, if any."""
        if self.failure is not None:
            raise self.failure

    # -- per-sink worker -------------------------------------------------------------------------
    def _work(self, sink: Sink) -> None:
        try:
            while not self._stop.is_set():
                records = self.spool.read(sink.name, self.batch_events, timeout=0.2)
                if not records:
                    continue
                events: list[ChangeEvent] = []
                ack = 0
                for record in records:
                    if "a" in record:
                        ack = record["a"]
                    else:
                        events.append(decode_record(record))
                # Events after the last ack marker are delivered now and acknowledged with the next one.
                if events and not self._deliver(sink, events):
                    return
                if ack:
                    self.checkpoint.ack(sink.name, ack)
                self.spool.release()
                self.metrics.sink_lag(sink.name, self.spool.lag_bytes(sink.name))
        except CdcError as exc:
            self.failure = exc
        except Exception as exc:
            self.failure = CdcError(
                ErrorKind.INTERNAL, f"sink worker {sink.name}: {type(exc).__name__}: {exc}"
            )

    def _deliver(self, sink: Sink, events: list[ChangeEvent]) -> bool:
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            try:
                sink.write(events)
                return True
            except Exception as exc:
                error = as_sink_error(exc)
                self.metrics.sink_error(sink.name)
                if error.directive is Directive.RETRY:
                    delay = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(attempt - 1, 16))
                    log.warning(
                        "sink write failed, retrying; other sinks go on",
                        sink=sink.name,
                        attempt=attempt,
                        retry_in_s=delay,
                        error=error.message,
                    )
                    self._stop.wait(delay)
                    continue
                if self.dead_letter_dir is not None:
                    self._dead_letter(sink, events, error)
                    return True
                raise error from exc
        return False

    def _dead_letter(self, sink: Sink, events: list[ChangeEvent], error: CdcError) -> None:
        assert self.dead_letter_dir is not None
        self.dead_letter_dir.mkdir(parents=True, exist_ok=True)
        path = self.dead_letter_dir / f"{sink.name}.deadletter.jsonl"
        reason = str(error)
        with open(path, "ab") as fh:
            for event in events:
                record: dict[str, Any] = {
                    "sink": sink.name,
                    "reason": reason,
                    "key": event.key,
                    "envelope": event.to_dict(),
                }
                fh.write(dumps(record) + b"\n")
        log.error("batch dead-lettered", sink=sink.name, events=len(events), path=str(path), error=reason)
