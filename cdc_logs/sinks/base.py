"""The Sink contract: `write(batch)` returns only when the batch is durable at the sink.

Delivery is at-least-once: after a crash the last uncommitted batch is written again, so a sink must
tolerate a replayed batch (idempotent keys, upserts, or dedup by the event's position). Within a
batch, events are in source order, and a sink must keep per-key order. A sink raises `CdcError` with
kind SINK_TRANSIENT for failures worth retrying (the pipeline backs off and retries the whole batch)
and SINK_REJECTED for data the destination refuses (an operator must look).

Every registered sink runs the shared contract suite (tests/contract/test_sink_contract.py) against
its real destination, through its fixture in tests/contract/sinks/, except what no server on the
project's machines can run, each fixture saying why: Pulsar (no broker; unit-tested without one),
the Kafka sink's Avro mode with a real schema registry (it runs against a stand-in registry), and
the SQL sink on MySQL 8 (MariaDB runs instead).
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
