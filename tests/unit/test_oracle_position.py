"""OracleScn (cdc_logs/position.py): order, encoding, and the resume semantics the reader relies on."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import OracleScn, decode
from cdc_logs.readers.oracle.changes import order_key

S = "1339461245"


def test_events_of_a_transaction_sort_before_its_boundary_and_after_the_previous_one() -> None:
    previous = OracleScn(S, scn=100, xid="0A", restart=90)
    mid = [OracleScn(S, scn=120, xid="01", inside=True, event=k) for k in (1, 2)]
    boundary = OracleScn(S, scn=120, xid="01", restart=110)
    same_scn_next = OracleScn(S, scn=120, xid="02", inside=True, event=1)
    beat = OracleScn(S, scn=120, restart=121)
    assert previous < mid[0] < mid[1] < boundary < same_scn_next < beat
    assert beat < OracleScn(S, scn=121, xid="00", inside=True, event=1)


def test_resume_key_drops_exactly_what_was_delivered() -> None:
    stored = OracleScn(S, scn=120, xid="05", restart=100)
    assert order_key(120, "05") <= stored.sort_key()
    assert order_key(120, "04") <= stored.sort_key()
    assert order_key(120, "06") > stored.sort_key()
    beat = OracleScn(S, scn=120, restart=121)
    assert order_key(120, "FF") <= beat.sort_key() < order_key(121, "00")


def test_restart_is_not_part_of_the_order() -> None:
    assert OracleScn(S, scn=5, xid="A", restart=1) == OracleScn(S, scn=5, xid="A", restart=3)


def test_encoding() -> None:
    data = orjson.loads(OracleScn(S, scn=7, xid="0A00", restart=5).encode())
    assert data == {"type": "oracle_scn", "server": S, "scn": 7, "xid": "0A00", "restart": 5}
    assert "inside" in orjson.loads(OracleScn(S, scn=7, inside=True, event=2).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**63),
    st.text(alphabet="0123456789ABCDEF", max_size=16),
    st.integers(0, 2**63),
    st.booleans(),
    st.integers(0, 1000),
)
def test_round_trip(scn: int, xid: str, restart: int, inside: bool, event: int) -> None:
    position = OracleScn(S, scn=scn, xid=xid, restart=restart, inside=inside, event=event)
    back = decode(position.encode())
    assert back == position and back.to_dict() == position.to_dict()


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "oracle_scn", "server": "s", "scn": "7"}',
        '{"type": "oracle_scn", "server": "s", "scn": 7, "inside": 1}',
        '{"type": "oracle_scn", "server": "s", "scn": 7, "xid": 5}',
    ],
)
def test_wrongly_typed_fields_are_refused(text: str) -> None:
    with pytest.raises(CdcError) as info:
        decode(text)
    assert info.value.kind is ErrorKind.DECODE


def test_another_database_is_a_server_mismatch() -> None:
    with pytest.raises(CdcError) as info:
        _ = OracleScn(S, scn=1) < OracleScn("other", scn=2)
    assert info.value.kind is ErrorKind.SERVER_MISMATCH
