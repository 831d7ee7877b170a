"""Every reader's real output, written in the JsonConverter form (`schemas: true`): each event's
schema block describes its payload (tests/jsonconverter.py), key and value, for the matrix workload
(snapshot, inserts, updates, deletes, primary-key moves) of every source.

The equality with Debezium's own blocks is tests/integration/test_debezium_schema_block.py.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from cdc_logs import connect_schema
from cdc_logs.build import build_reader
from cdc_logs.config import PipelineConfig
from cdc_logs.envelope import ChangeEvent
from tests.jsonconverter import conforms_record
from tests.matrix import workload
from tests.matrix.sources import Run, SourceCase, make_source
from tests.matrix.test_event_contract import Collector
from tests.matrix.test_matrix import SOURCES


@pytest.mark.parametrize("source", SOURCES)
def test_every_readers_schema_block_describes_its_payload(
    source: str, servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = Run(uuid.uuid4().hex[:8], tmp_path_factory.mktemp(f"schemas-{source}"))
    case: SourceCase = make_source(source, servers, run)
    case.prepare(run)
    try:
        config = PipelineConfig.model_validate(
            {"name": f"schemas-{run.id}", "source": case.config(run), "destination": {"type": "stdout"}}
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
    finally:
        case.cleanup(run)
    events = [i for i in collector.items if isinstance(i, ChangeEvent) and i.schema is not None]
    assert events and {e.op.value for e in events} >= {"c", "u"}  # (polling has no op r)
    for event in events:
        value = conforms_record(connect_schema.envelope_record(event))
        assert value["payload"] == orjson.loads(event.to_json())
        key = conforms_record(connect_schema.key_record(event, None, event.key))
        assert key is None or key["payload"] == orjson.loads(event.key_json() or b"null")
