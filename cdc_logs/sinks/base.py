"""The Sink contract: `write(batch)` returns only when the batch is durable at the sink.

Delivery is at-least-once: after a crash the last uncommitted batch is written again, so a sink must
tolerate a replayed batch (idempotent keys, upserts, or dedup by the event's position). Within a
batch, events are in source order, and a sink must keep per-key order. A sink raises `CdcError` with
kind SINK_TRANSIENT for failures worth retrying (the pipeline backs off and retries the whole batch)
and SINK_REJECTED for data the destination refuses (an operator must look).

The shared contract suite (tests/contract/test_sink_contract.py) checks this for every registered
sink, through its fixture in tests/contract/sinks/: what `write` returned for is at the destination
before the sink is closed, read without the sink (the server's own client, the files on disk, what
a receiver got); a replayed batch is tolerated; each key's order is kept; an empty batch writes
nothing; and a sink that declares `replay_guard` skips a replay exactly. What is compared follows
the sink's capability (registry.py): a `state` sink's rows, a `log` sink's envelopes, and for a
`count` sink, which keeps nothing to read, the count it keeps. A configuration that no server on
the project's machines can run is reported as skipped, with the reason its fixture gives
(`cannot_run`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind


class Sink(ABC):
    name: str = "sink"

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise CdcError naming the fix if the destination is unreachable or misconfigured."""

    @abstractmethod
    def write(self, batch: Sequence[ChangeEvent]) -> None:
        """Deliver `batch` durably; return only when the destination holds it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    def __enter__(self) -> Sink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_sink_error(exc: Exception) -> CdcError:
    """A sink failure as a CdcError: an unexpected exception counts as transient (the batch is retried)."""
    if isinstance(exc, CdcError):
        return exc
    return CdcError(ErrorKind.SINK_TRANSIENT, f"{type(exc).__name__}: {exc}", "the batch is retried")
