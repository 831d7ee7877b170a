"""Which publications cdc-logs regards as its own: only those carrying its exact comment markers."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg")

from cdc_logs.readers.postgres import ownership
from cdc_logs.readers.postgres.slots import TEMPORARY_MARKER, PublicationInfo, owner_of


def test_markers_written_by_cdc_logs_are_recognised() -> None:
    assert owner_of(ownership.owned_comment("orders", "cdc_logs_orders")) == "cdc-logs"
    temporary = (
        "cdc-logs:temporary backend_pid=4242 backend_start=2024-05-01T10:00:00.123456Z; created by cdc-logs "
        "tail, dropped when it exits"
    )
    assert owner_of(temporary) == "cdc-logs tail"
    match = TEMPORARY_MARKER.match(temporary)
    assert match is not None and match["pid"] == "4242" and match["start"] == "2024-05-01T10:00:00.123456Z"


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "",
        "owned by the application team",
        "cdc-logs tail for debugging (kept by hand)",
        "cdc-logs:owned by someone else's copy",
        "cdc-logs:temporary, but made by hand",
        " cdc-logs:owned pipeline=a slot=b; leading space",
    ],
)
def test_anything_else_is_the_users(comment: str | None) -> None:
    assert owner_of(comment) == "user"
    info = PublicationInfo("p", False, "insert", ("public.t",), comment)
    assert info.to_dict()["owner"] == "user"
