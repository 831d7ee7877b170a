"""The contract checker fails on each kind of broken stream (so the matrix's contract test can fail)."""

from __future__ import annotations

import datetime as dt

from cdc_logs.envelope import ChangeEvent, Heartbeat, Op, SourceInfo, Transaction
from cdc_logs.position import BinlogPosition
from cdc_logs.readers.contract import ContractChecker

S = "mariadb:server_id=1,domain_id=0"


def ev(
    pos: int, event: int, *, boundary: bool, tx: str = "0-1-1", order: int = 1, **kw: object
) -> ChangeEvent:
    values: dict[str, object] = {"op": Op.CREATE, "after": {"id": order}, "key": {"id": order}}
    values.update(kw)
    return ChangeEvent(
        source=SourceInfo("mariadb", "p", "db", "t"),
        transaction=Transaction(tx, order, order),
        position=BinlogPosition(S, "b.000001", pos, "0-1-1", "mariadb", event=event),
        boundary=boundary,
        **values,  # type: ignore[arg-type]
    )


def rules(*items: ChangeEvent | Heartbeat) -> list[str]:
    return [v.split(":")[0] for v in ContractChecker().check_all(list(items))]


def test_a_good_transaction_passes() -> None:
    assert (
        rules(
            ev(100, 1, boundary=False),
            ev(120, 1, boundary=False, order=2),
            ev(200, 0, boundary=True, order=3),
        )
        == []
    )


def test_mid_transaction_events_at_the_previous_position_are_caught() -> None:
    """The bug the matrix found in the MariaDB reader: events that are not the last of their
    transaction carried the previous transaction's position."""
    found = rules(
        ev(100, 0, boundary=True, tx="0-1-1"),
        ev(100, 0, boundary=False, tx="0-1-2"),
        ev(200, 0, boundary=True, tx="0-1-2", order=2),
    )
    assert "P2" in found and "P3" in found


def test_a_boundary_must_be_a_resume_point() -> None:
    assert rules(ev(100, 3, boundary=True)) == ["P3"]


def test_values_must_be_json_ready() -> None:
    assert "V1" in rules(ev(100, 0, boundary=True, after={"id": 1, "at": dt.datetime(2024, 1, 1)}))


def test_a_transaction_must_end_with_a_boundary() -> None:
    assert "T2" in rules(ev(100, 1, boundary=False, tx="a"), ev(200, 0, boundary=True, tx="b"))


def test_numbering_and_positions_going_back() -> None:
    found = rules(ev(300, 0, boundary=True, order=2), ev(200, 0, boundary=True, tx="x"))
    assert "T1" in found and "P2" in found


def test_the_key_must_match_the_row_and_the_op_shape() -> None:
    assert "V2" in rules(ev(100, 0, boundary=True, key={"id": 9}))
    assert "V3" in rules(ev(100, 0, boundary=True, op=Op.DELETE, after={"id": 1}))


def test_a_heartbeat_is_a_resume_point_outside_transactions() -> None:
    beat = Heartbeat(BinlogPosition(S, "b.000001", 50, "0-1-1", "mariadb", event=2))
    assert rules(beat) == ["P3"]
    assert "T2" in rules(
        ev(100, 1, boundary=False), Heartbeat(BinlogPosition(S, "b.000001", 150, "", "mariadb"))
    )
