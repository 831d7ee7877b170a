"""The cost of the `opentelemetry` middleware on the pipeline's hot path (docs/operations.md, Tracing).

One in-process pipeline (a scripted reader replaying N prepared events, a counting sink, offsets in
memory) is run with tracing off (no tracer: the default), on with sampling_rate 0 (every batch makes a
non-recording span), and on with sampling_rate 1 (every batch a span, exported over OTLP/HTTP to a
local receiver that answers 200). The runs are interleaved and repeated; the median events/s of each
is printed. Timings are never asserted anywhere.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_tracing.py [--events N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdc_logs.observability.tracing import BatchTracer, TracingSettings
from cdc_logs.offsets.memory import MemoryOffsetStore
from cdc_logs.pipeline import BatchPolicy, Pipeline
from cdc_logs.sinks.base import Sink
from tests.helpers import ScriptedReader, make_event


class _Count(Sink):
    """Counts what it is given and keeps nothing: the pipeline's own cost is what is measured."""

    name = "count"

    def __init__(self) -> None:
        self.events = 0

    def write(self, batch: Any) -> None:
        self.events += len(batch)


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _run(events: list[Any], mode: str, endpoint: str) -> float:
    tracer = None
    if mode != "off":
        rate = 0.0 if mode == "on, sampling 0" else 1.0
        tracer = BatchTracer(TracingSettings("bench", endpoint, rate), "bench", ["count"])
    pipeline = Pipeline(
        "bench",
        {"src": ScriptedReader(events, follow=False)},
        [_Count()],
        MemoryOffsetStore(),
        batch=BatchPolicy(max_events=1000, max_wait_s=0.05),
        stop_when_idle=True,
        tracer=tracer,
    )
    started = time.perf_counter()
    stats = pipeline.run()
    elapsed = time.perf_counter() - started
    assert stats.events == len(events), stats
    return len(events) / elapsed


def _hook_cost(events: list[Any], mode: str, endpoint: str, batches: int = 2000) -> float:
    """Microseconds per batch of the pipeline's two tracing hooks alone (off: the `if` the pipeline
    pays), on one batch of 1000 events."""
    batch = events[:1000]
    marks = [(n, "src", e.position, True) for n, e in enumerate(batch, 1)]
    tracer = None
    if mode != "off":
        rate = 0.0 if mode == "on, sampling 0" else 1.0
        tracer = BatchTracer(TracingSettings("bench", endpoint, rate), "bench", ["count"])
    started = time.perf_counter()
    for _ in range(batches):
        if tracer is not None:
            tracer.batch_started(time.monotonic(), batch, marks)
        if tracer is not None:
            tracer.batch_durable(1000)
    elapsed = time.perf_counter() - started
    if tracer is not None:
        tracer.close()
    return elapsed / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    events = [make_event(n) for n in range(1, args.events + 1)]
    modes = ["off", "on, sampling 0", "on, sampling 1"]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    _run(events[:20_000], "off", endpoint)  # warm-up
    for _ in range(args.repeat):
        for mode in modes:
            rates[mode].append(_run(events, mode, endpoint))
    hooks = {mode: _hook_cost(events, mode, endpoint) for mode in modes}
    server.shutdown()
    base = statistics.median(rates["off"])
    print(f"{args.events} events, batches of 1000, median of {args.repeat} interleaved runs")
    print("| tracing | events/s (median) | runs (events/s) | vs off | hooks per batch | share of a batch |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        median = statistics.median(rates[mode])
        runs = ", ".join(f"{r:,.0f}" for r in rates[mode])
        share = hooks[mode] / (1000 / base * 1e6) * 100
        change = 100 * (median / base - 1)
        print(f"| {mode} | {median:,.0f} | {runs} | {change:+.1f}% | {hooks[mode]:.2f} µs | {share:.3f}% |")


if __name__ == "__main__":
    main()
