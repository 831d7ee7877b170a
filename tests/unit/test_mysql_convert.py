"""convert.py on binlog packets recorded from MariaDB 10.11 (tests/fixtures/mysql, made by
scripts/capture_binlog.py): the packets go through python-mysql-replication's real parser, fed by a
stand-in connection, then through BinlogConverter. No server needed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pymysql.connections
import pytest
from pymysqlreplication import BinLogStreamReader

from cdc_logs.envelope import ChangeEvent, Heartbeat, dumps
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.mysql.convert import BinlogConverter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mysql"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
PACKETS = [bytes.fromhex(line) for line in (FIXTURES / "mariadb-10.11.packets").read_text().split()]
START = MANIFEST["start_gtid"]
SERVER = "mariadb:server_id=1,domain_id=0"

TYPES_EXPECTED = {
    "id": 1,
    "ti": -128,
    "tu": 255,
    "bu": 18446744073709551615,
    "d": "-12.34",
    "f": 1.1,
    "db": 2.2,
    "b1": True,
    "b12": base64.b64encode(bytes([0x01, 0x0A])).decode(),
    "e": "y",
    "s": "a,c",
    "s0": "",
    "c": "ab",
    "vc": "héllo",
    "bl": base64.b64encode(b"\x00\xff").decode(),
    "bn": base64.b64encode(b"\x01\x02\x00").decode(),
    "j": '{"k": [1, 2]}',
    "dt": 19782,
    "dtm": 1704164645000,
    "dtm3": 1704164645123,
    "dtm6": -1,
    "ts": "2024-01-02T03:04:05Z",
    "ts3": "2024-01-02T03:04:05.500Z",
    "tm": -(838 * 3600 + 59 * 60 + 59) * 1_000_000,
    "tm6": 12 * 3600 * 1_000_000 + 1,
    "y": 2024,
    "g": {
        "wkb": base64.b64encode(bytes.fromhex("0101000000000000000000f03f0000000000000040")).decode(),
        "srid": 4326,
    },
    "n": None,
}


class _Cursor:
    def __init__(self) -> None:
        self.row: Any = None

    def execute(self, sql: str, args: Any = None) -> None:
        upper = sql.upper()
        if "BINLOG_CHECKSUM" in upper:
            self.row = ("binlog_checksum", MANIFEST["binlog_checksum"])
        elif "BINLOG_ROW_METADATA" in upper:
            self.row = {"Variable_name": "binlog_row_metadata", "Value": "FULL"}
        else:
            self.row = None

    def fetchone(self) -> Any:
        return self.row

    def close(self) -> None:
        pass


class _Replay:
    """Just enough of a PyMySQL connection for BinLogStreamReader: canned queries, recorded packets."""

    charset = "utf8mb4"
    open = True

    def __init__(self, **_kwargs: Any) -> None:
        self._packets = iter(PACKETS)

    def cursor(self, *_args: Any) -> _Cursor:
        return _Cursor()

    def get_server_info(self) -> str:
        return str(MANIFEST["server_version"])

    def _write_bytes(self, _data: bytes) -> None:
        pass

    def _read_packet(self, *_args: Any) -> pymysql.connections.MysqlPacket:
        return pymysql.connections.MysqlPacket(next(self._packets), "utf8")

    def close(self) -> None:
        pass


def recorded_events() -> list[Any]:
    stream = BinLogStreamReader(
        {"host": "replay", "user": "u", "password": ""},
        server_id=1,
        blocking=True,
        auto_position=START,
        is_mariadb=True,
        only_events=BinlogConverter.only_events,
        pymysql_wrapper=_Replay,
        enable_logging=False,
    )
    events = list(stream)
    stream.close()
    return events


@pytest.fixture(scope="module")
def binlog() -> list[Any]:
    return recorded_events()


def converter(**kw: Any) -> BinlogConverter:
    start = BinlogPosition(server=SERVER, file="", pos=4, gtid=START, flavor="mariadb")
    kw.setdefault("tables", {("test", "mr_fx_types"), ("test", "mr_fx_tx")})
    return BinlogConverter(flavor="mariadb", connector="mariadb", pipeline_name="p", start=start, **kw)


def run(conv: BinlogConverter, events: list[Any]) -> list[ChangeEvent | Heartbeat]:
    return [item for event in events for item in conv.handle(event)]


def changes(items: list[ChangeEvent | Heartbeat]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def test_every_type_maps_to_the_documented_value(binlog: list[Any]) -> None:
    first = changes(run(converter(), binlog))[0]
    assert first.source.table == "mr_fx_types"
    assert orjson.loads(dumps(first.after)) == TYPES_EXPECTED
    assert first.key == {"id": 1}


def test_multi_statement_transaction_one_id_last_is_boundary(binlog: list[Any]) -> None:
    tx = [e for e in changes(run(converter(), binlog)) if e.source.table == "mr_fx_tx"][:6]
    assert [e.op.value for e in tx] == ["c", "c", "u", "d", "c", "d"]
    assert len({e.transaction.id for e in tx if e.transaction}) == 1
    assert [e.transaction.total_order for e in tx if e.transaction] == [1, 2, 3, 4, 5, 6]
    assert [e.boundary for e in tx] == [False] * 5 + [True]
    assert (tx[3].key, tx[4].key) == ({"id": 2}, {"id": 3}), "a key change is a delete then a create"
    end = tx[-1].position
    assert isinstance(end, BinlogPosition) and end.gtid == tx[-1].source.extra["gtid"]
    assert end.file.startswith("mariadb-bin.") and end.pos > tx[-1].source.extra["pos"]


def test_alter_table_column_names_come_from_the_row_metadata(binlog: list[Any]) -> None:
    tx = [e for e in changes(run(converter(), binlog)) if e.source.table == "mr_fx_tx"]
    assert tx[6].after == {"id": 4, "a": 40, "b": "z", "c": 7}
    assert tx[7].after == {"id": 5, "c": 50, "bee": "v"}
    assert list(tx[7].after or {}) == ["id", "c", "bee"]


def test_positions_advance_per_transaction_and_filtered_ones_become_heartbeats(binlog: list[Any]) -> None:
    items = run(converter(heartbeat_s=0), binlog)
    seqs = [
        int((i.position.gtid or "").split("-")[2])
        for i in items
        if i.boundary and isinstance(i.position, BinlogPosition)
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    start_seq = int(START.split("-")[2])
    # All 13 transactions of the workload (DDL and the other table's insert included) moved the position.
    assert seqs[-1] == start_seq + 13
    assert any(isinstance(i, Heartbeat) for i in items)


def test_a_reconnect_mid_transaction_does_not_emit_twice(binlog: list[Any]) -> None:
    whole = changes(run(converter(), binlog))
    conv = converter()
    out: list[ChangeEvent | Heartbeat] = []
    # The multi-statement transaction: cut the stream after its second row event, as a dropped
    # connection would, then replay from the last complete transaction's GTID event.
    gtid_events = [i for i, e in enumerate(binlog) if type(e).__name__ == "MariadbGtidEvent"]
    rows_seen = 0
    cut = None
    for index, event in enumerate(binlog):
        out += conv.handle(event)
        if type(event).__name__ in ("WriteRowsEvent", "UpdateRowsEvent") and event.table == "mr_fx_tx":
            rows_seen += 1
            if rows_seen == 2:
                cut = index
                break
    assert cut is not None
    conv.restart()
    replay_from = max(i for i in gtid_events if i < cut)
    for event in binlog[replay_from:]:
        out += conv.handle(event)
    got = changes(out)
    assert [(e.op, e.key, e.after, e.boundary) for e in got] == [
        (e.op, e.key, e.after, e.boundary) for e in whole
    ]


def test_the_recorded_stream_keeps_the_event_contract(binlog: list[Any]) -> None:
    from cdc_logs.readers.contract import ContractChecker

    assert ContractChecker().check_all(list(run(converter(heartbeat_s=0), binlog))) == []


def test_a_row_the_converters_cannot_read_is_held_in_its_place_for_the_dead_letter_file(
    binlog: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value conversion that fails (here: the DECIMAL converter) turns that row into an Undecodable at
    its own position; the transaction's other rows and its boundary are unaffected."""
    from cdc_logs.envelope import Undecodable
    from cdc_logs.readers.contract import ContractChecker
    from cdc_logs.readers.mysql import types

    def broken(value: Any) -> str:
        raise ValueError(f"cannot read {value}")

    monkeypatch.setattr(types, "decimal_value", broken)
    items = run(converter(heartbeat_s=0), binlog)
    bad = [i for i in items if isinstance(i, Undecodable)]
    assert bad and all(b.table == "test.mr_fx_types" and "ValueError" in b.reason for b in bad)
    assert all("cannot read" not in b.reason for b in bad), "no value in the reason"
    assert [e for e in changes(items) if e.source.table == "mr_fx_tx"], "the other table still flows"
    assert ContractChecker().check_all(list(items)) == []


def test_every_idle_server_heartbeat_confirms_the_position_even_when_it_did_not_move(
    binlog: list[Any],
) -> None:
    """A quiet binlog: the server sends heartbeats and nothing moves. Each one must still reach the
    pipeline as a Heartbeat of the current position, or the heartbeat and checkpoint ages grow forever
    and the stale alerts fire on every idle MariaDB pipeline."""
    from pymysqlreplication.event import HeartbeatLogEvent

    conv = converter(heartbeat_s=3600)
    run(conv, binlog)
    idle = HeartbeatLogEvent.__new__(HeartbeatLogEvent)  # the handler reads nothing from it
    first, second = conv.handle(idle), conv.handle(idle)
    assert [type(i) for i in first + second] == [Heartbeat, Heartbeat]
    assert first[0].position == second[0].position == conv.position


def test_a_table_map_of_the_same_definition_keeps_its_shape_and_an_altered_one_gets_a_new_one() -> None:
    # Each transaction brings a new TABLE_MAP with new column objects: the converters are reused when
    # every column attribute is equal (a per-transaction rebuild was ~7% of the reader), rebuilt when not.
    from pymysqlreplication.row_event import WriteRowsEvent

    def tx_inserts(events: list[Any]) -> list[Any]:
        return [e for e in events if isinstance(e, WriteRowsEvent) and e.table == "mr_fx_tx"]

    from cdc_logs.readers.mysql import table_maps

    first = tx_inserts(recorded_events())
    table_maps._cache.clear()  # parsed again (else the TABLE_MAP cache hands back the same columns)
    again = tx_inserts(recorded_events())
    conv = converter()
    shape = conv._shape(first[0])
    assert again[0].columns is not first[0].columns
    assert conv._shape(again[0]) is shape
    altered = next(e for e in first if [c.name for c in e.columns] != [c.name for c in first[0].columns])
    new_shape = conv._shape(altered)
    assert new_shape is not shape and new_shape.schema is not shape.schema
