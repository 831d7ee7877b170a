"""The sink contract suite (sink_contract.py says what it checks), run for every registered sink.

Parametrized over the configurations of every fixture in tests/contract/sinks/; configurations that
cannot run here are reported as skipped with their reason. The coverage tests at the end fail for a
registered sink without a fixture, and for a fixture whose sink is not registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import orjson
import pytest

from cdc_logs import registry
from cdc_logs.envelope import ChangeEvent
from tests.contract.sink_contract import Case, Held, Holds, SinkFixture, cases, fixtures, opened
from tests.helpers import make_event

CASES = cases()


def _param(case: Case) -> Any:
    marks: list[Any] = [pytest.mark.integration] if case.fixture.integration else []
    if case.reason is not None:
        marks.append(pytest.mark.skip(reason=f"cannot run here: {case.reason}"))
    return pytest.param(case, marks=marks, id=case.id)


def _guarded(case: Case) -> bool:
    return "replay_guard" in registry.find("sink", case.fixture.sink).capabilities


@pytest.fixture(params=[_param(c) for c in CASES])
def contract(request: pytest.FixtureRequest) -> Iterator[SinkFixture]:
    case: Case = request.param
    fixture = case.fixture(request, case.variant)
    with fixture.cleanup:
        fixture.setup()
        yield fixture


@pytest.fixture(params=[_param(c) for c in CASES if _guarded(c)])
def guarded(request: pytest.FixtureRequest) -> Iterator[SinkFixture]:
    """The configurations of sinks that declare `replay_guard`."""
    case: Case = request.param
    fixture = case.fixture(request, case.variant)
    with fixture.cleanup:
        fixture.setup()
        yield fixture


# -- what the destination should hold ---------------------------------------------------------------
def _batch(start: int, count: int, keys: int = 5) -> list[ChangeEvent]:
    """Events start..start+count-1 over `keys` rows; each row goes create, update, update, delete."""
    ops = ["c", "u", "u", "d"]
    return [make_event(n, op=ops[(n // keys) % 4], key=n % keys) for n in range(start, start + count)]


def _envelope(event: ChangeEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads(event.to_json())
    return envelope


def _key(envelope: dict[str, Any]) -> Any:
    row = envelope["after"] or envelope["before"]
    return (envelope["source"]["table"], row["id"])


def _state(events: list[ChangeEvent]) -> dict[Any, dict[str, Any]]:
    """The rows `events` leave behind: upserts by primary key, deletes remove."""
    state: dict[Any, dict[str, Any]] = {}
    for event in events:
        assert event.key is not None
        if event.op.value == "d":
            state.pop(event.key["id"], None)
        else:
            assert event.after is not None
            state[event.key["id"]] = event.after
    return state


def _read(fixture: SinkFixture, sink: Any) -> Held:
    held = fixture.read_back(sink)
    assert held.holds == fixture.kind, f"{fixture.sink}: the fixture says it holds a {fixture.kind}"
    return held


# -- the contract --------------------------------------------------------------------------------------
def test_durable_on_return(contract: SinkFixture) -> None:
    batch = _batch(1, 20)
    with opened(contract) as sink:
        if contract.kind == "state":  # rows: check a state with several rows, then the end state
            sink.write(batch[:12])
            assert _read(contract, sink).state == _state(batch[:12])
            sink.write(batch[12:])
            assert _read(contract, sink).state == _state(batch)
            return
        sink.write(batch)
        # Read before close: what write() returned for must already be at the destination.
        held = _read(contract, sink)
    if held.count is not None:
        assert held.count == len(batch)
        return
    assert held.log is not None
    assert [e["source"]["seq"] for e in held.log] == [e.source.extra["seq"] for e in batch]
    assert held.log == [_envelope(e) for e in batch]


def test_replayed_batch_is_tolerated(contract: SinkFixture) -> None:
    first, second = _batch(1, 10), _batch(11, 10)
    with opened(contract) as sink:
        sink.write(first)
        if contract.kind == "state":
            assert _read(contract, sink).state == _state(first)
        sink.write(first)  # a crash before the checkpoint replays the batch
        if contract.kind == "state":
            assert _read(contract, sink).state == _state(first), "a replay must not change the rows"
        sink.write(second)
        held = _read(contract, sink)
        if contract.kind == "state":
            assert held.state == _state(first + second)
            sink.write(second)  # and the last batch once more: still the same rows
            assert _read(contract, sink).state == _state(first + second)
            return
    if held.count is not None:
        assert 20 <= held.count <= 30, "every event counted at least once, none invented"
        return
    assert held.log is not None
    delivered = {e["source"]["seq"] for e in held.log}
    assert delivered == set(range(1, 21)), "every event must be there at least once"
    # The last state of each key is the last event written for it.
    last: dict[Any, int] = {}
    for e in held.log:
        last[_key(e)] = e["source"]["seq"]
    expected: dict[Any, int] = {}
    for ev in first + second:
        expected[_key(_envelope(ev))] = ev.source.extra["seq"]
    assert last == expected


def test_per_key_order_is_kept(contract: SinkFixture) -> None:
    batches = [_batch(start, 25, keys=3) for start in (1, 26, 51)]
    written: list[ChangeEvent] = []
    with opened(contract) as sink:
        for batch in batches:
            sink.write(batch)
            written += batch
            if contract.kind == "state":  # each key's last change wins, batch after batch
                assert _read(contract, sink).state == _state(written)
        held = _read(contract, sink)
    if held.state is not None:
        return
    if held.count is not None:
        assert held.count == len(written)
        return
    assert held.log is not None
    by_key: dict[Any, list[int]] = {}
    for e in held.log:
        by_key.setdefault(_key(e), []).append(e["source"]["seq"])
    assert by_key, "nothing delivered"
    for key, order in by_key.items():
        assert order == sorted(order), f"key {key} out of order: {order}"


def test_empty_batch_is_a_no_op(contract: SinkFixture) -> None:
    with opened(contract) as sink:
        sink.write([])
        held = _read(contract, sink)
    assert held.log in (None, []) and held.state in (None, {}) and held.count in (None, 0)


def test_replay_guard_skips_a_replay_exactly(guarded: SinkFixture) -> None:
    """`replay_guard`: a replayed batch is recognised, not applied again, even after later batches."""
    first, second = _batch(1, 10), _batch(11, 10)
    with opened(guarded) as sink:
        sink.write(first)
        sink.write(first)
        sink.write(second)
        sink.write(first)  # an old batch again: a guard skips it, so nothing goes back in time
        held = _read(guarded, sink)
    if held.state is not None:
        assert held.state == _state(first + second)
    else:
        assert held.log == [_envelope(e) for e in first + second]


# -- coverage --------------------------------------------------------------------------------------
def test_every_registered_sink_has_a_contract_fixture() -> None:
    """A new sink fails here until it has a fixture in tests/contract/sinks/ (runnable, or saying why not)."""
    registered = {c.name for c in registry.components("sink")}
    found = fixtures()
    missing = sorted(registered - set(found))
    assert not missing, (
        f"registered sinks without a contract fixture: {missing}; add tests/contract/sinks/<sink>.py "
        "(a SinkFixture subclass; `cannot_run` says why it cannot run here, if so)"
    )
    stale = sorted(set(found) - registered)
    assert not stale, f"contract fixtures for sinks that are not registered: {stale}"


def test_each_fixture_runs_what_its_sink_declares() -> None:
    """A `state` sink is checked on rows, a `log` sink on envelopes, a `count` sink on its count."""
    assert set(get_args(Holds)) == registry.SINK_HOLDS, "the suite reads back each kind the registry has"
    for component in registry.components("sink"):
        fixture = fixtures().get(component.name)
        if fixture is None:
            continue  # test_every_registered_sink_has_a_contract_fixture names it
        runnable = {h for name, h in fixture.configurations().items() if name not in fixture.cannot_run}
        if not runnable:
            assert fixture.cannot_run, f"{component.name}: no configuration runs, and no reason is given"
            continue
        kinds = component.capabilities & registry.SINK_HOLDS
        assert kinds <= runnable, (
            f"{component.name} is a {sorted(kinds)} sink but its fixture reads back {sorted(runnable)}"
        )
