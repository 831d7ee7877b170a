"""The event contract (cdc_logs/readers/contract.py, docs/event-contract.md) over every reader's real
output: the matrix workload read in process, every stream item checked, plus what the checker cannot
see alone (every source row arrives, a schema on every row event).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from cdc_logs.build import build_reader
from cdc_logs.config import PipelineConfig
from cdc_logs.envelope import ChangeEvent, Heartbeat
from cdc_logs.readers.contract import ContractChecker
from tests.matrix import workload
from tests.matrix.sources import Run, SourceCase, make_source
from tests.matrix.test_matrix import SOURCES


class Collector:
    """Runs `reader.stream()` on a thread, keeping every item."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.items: list[ChangeEvent | Heartbeat | None] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self.reader.stream(None):
                self.items.append(item)
                if item is not None and item.boundary and item.position is not None:
                    self.reader.commit(item.position)  # as the pipeline does once sinks are durable
        except BaseException as exc:
            self.error = exc

    def ids(self) -> set[int]:
        return {
            int(row["id"])
            for item in list(self.items)
            if isinstance(item, ChangeEvent) and (row := item.after or item.before) and "id" in row
        }

    def wait_for(self, ids: set[int], limit: float = 180) -> None:
        deadline = time.monotonic() + limit
        while not ids <= self.ids():
            assert self.error is None, f"the reader failed: {self.error!r}"
            assert time.monotonic() < deadline, f"timed out; missing {sorted(ids - self.ids())[:10]}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.reader.stop()
        self._thread.join(30)
        self.reader.close()


@pytest.mark.parametrize("source", SOURCES)
def test_every_reader_keeps_the_event_contract(
    source: str, servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = Run(uuid.uuid4().hex[:8], tmp_path_factory.mktemp(f"contract-{source}"))
    case: SourceCase = make_source(source, servers, run)
    case.prepare(run)
    try:
        config = PipelineConfig.model_validate(
            {"name": f"contract-{run.id}", "source": case.config(run), "destination": {"type": "stdout"}}
        )
        reader = build_reader(config.all_sources()[0], config.name)
        reader.open()
        collector = Collector(reader)
        try:
            collector.wait_for(set(workload.SNAPSHOT_IDS))
            for tx in workload.transactions(deletes=case.deletes, moves=case.moves):
                case.execute(run, tx)
            case.execute(run, workload.sentinel())
            collector.wait_for({workload.SENTINEL})
        finally:
            collector.stop()
        checker = ContractChecker(transactions=source != "debezium")  # Debezium's own blocks
        violations = checker.check_all(collector.items)
        assert not violations, f"{len(violations)} violations, first ones:\n" + "\n".join(violations[:15])
        events = [i for i in collector.items if isinstance(i, ChangeEvent)]
        assert checker.events == len(events) and events
        assert all(e.schema is not None for e in events if e.op.value in "cur"), "an event without its schema"
        expected_ids = set(workload.expected(deletes=case.deletes, moves=case.moves).changes)
        assert expected_ids <= collector.ids(), (
            f"rows never seen: {sorted(expected_ids - collector.ids())[:10]}"
        )
    finally:
        case.cleanup(run)
