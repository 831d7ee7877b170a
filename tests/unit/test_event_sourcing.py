"""The `event_sourcing` transform (the seed's Event Sourcing Pattern): key, checks, order."""

from __future__ import annotations

from typing import Any

import pytest

from cdc_logs.envelope import Op
from cdc_logs.errors import CdcError, ErrorKind
from tests.unit.test_transforms import make_event, transform

PARAMS = {
    "aggregate_field": "aggregate_id",
    "event_type_field": "event_type",
    "event_data_field": "event_data",
    "version_field": "event_version",
}


def row(event_id: int, aggregate: str, version: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "aggregate_id": aggregate,
        "event_type": "Deposited",
        "event_data": '{"amount": 1}',
        "event_version": version,
    }


def test_events_are_keyed_by_aggregate_and_version_and_pass_unchanged() -> None:
    t = transform("event_sourcing", **PARAMS)
    out = t.apply(make_event(after=row(7, "acct1", 3), key={"event_id": 7}))
    assert out is not None and out.key == {"aggregate_id": "acct1", "event_version": 3}
    assert out.after == row(7, "acct1", 3)


def test_a_version_regression_of_an_aggregate_stops_the_run() -> None:
    t = transform("event_sourcing", **PARAMS)
    t.apply(make_event(after=row(1, "a", 1)))
    t.apply(make_event(after=row(2, "b", 1)))  # another aggregate: its own versions
    t.apply(make_event(after=row(3, "a", 2)))
    with pytest.raises(CdcError) as err:
        t.apply(make_event(after=row(4, "a", 2)))
    assert err.value.kind is ErrorKind.DECODE and "aggregate 'a' has version 2 after 2" in err.value.message


def test_a_missing_column_is_a_config_error_naming_it() -> None:
    t = transform("event_sourcing", **{**PARAMS, "version_field": "version"})
    with pytest.raises(CdcError) as err:
        t.apply(make_event(after=row(1, "a", 1)))
    assert err.value.kind is ErrorKind.CONFIG and "no column 'version'" in err.value.message


def test_an_update_is_passed_on() -> None:
    t = transform("event_sourcing", **PARAMS)
    out = t.apply(make_event(Op.UPDATE, after=row(1, "a", 1)))
    assert out is not None and out.key == {"aggregate_id": "a", "event_version": 1}
