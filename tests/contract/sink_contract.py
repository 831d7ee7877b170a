"""The sink contract suite, driven by the component registry: every registered sink runs it.

What a sink promises (cdc_logs/sinks/base.py; docs/sinks.md, "Replays and duplicates";
docs/event-contract.md, "Delivery guarantees"): `write(batch)` returns only when the batch is durable
at the destination (read back here by an independent client *before* the sink is closed), a replayed
batch is tolerated (delivery is at-least-once), per-key order is kept, and an empty batch writes
nothing. A sink that declares `replay_guard` also skips a replay exactly.

Each registered sink has one fixture: a module in tests/contract/sinks/ (named after the sink) with a
`SinkFixture` subclass. Fixtures are found by importing every module there, as the registry finds
sinks, so adding a sink edits nothing shared. test_sink_contract.py runs the checks against every
configuration every fixture declares, and fails naming any registered sink without a fixture.

What a destination holds decides what the checks compare (`Held`):

  log    every envelope, in the order the destination keeps it (Kafka, files, brokers, webhooks):
         compared with the envelopes written.
  state  rows by primary key (`id`), for sinks that mirror tables (SQL apply, the Redis cache,
         OpenSearch `mode: mirror`): compared with the state the events leave behind (the last
         change of each key wins, a delete removes the row). The read-backs are the matrix's
         (tests/matrix/targets.py).
  count  nothing but how many events it took, for sinks that keep nothing (`count`): compared
         with the number of events written. There is nothing to read back but the sink's count.

Which one a sink's configurations hold is its registered capability (`state`, `log` or `count`,
registry.SINK_HOLDS); test_each_fixture_runs_what_its_sink_declares checks the fixture agrees.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from cdc_logs.build import build_sink
from cdc_logs.configfile import parse_config
from cdc_logs.sinks.base import Sink

Holds = Literal["log", "state", "count"]
_T = TypeVar("_T")

_SOURCE = {"type": "sqlite", "path": "unused.db", "tables": ["t"]}  # parsed, never opened


@dataclass
class Held:
    """What a destination holds now, as an independent client reads it: exactly one is set."""

    log: list[dict[str, Any]] | None = None  # envelopes, in the destination's order
    state: dict[Any, dict[str, Any]] | None = None  # primary key (`id`) -> row
    count: int | None = None  # events taken, by a sink that keeps nothing

    @property
    def holds(self) -> Holds:
        set_ = [name for name in ("log", "state", "count") if getattr(self, name) is not None]
        assert len(set_) == 1, f"a read-back sets exactly one of log, state, count (got {set_})"
        kind: Holds = set_[0]  # type: ignore[assignment]
        return kind


class SinkFixture:
    """A registered sink on its real destination. Subclass it in tests/contract/sinks/<sink>.py.

    One instance per test: `setup()` reaches the server, `destination()` is the `destination:` config
    the sink is built from (through the registry, as `cdc-logs run` builds it), `read_back()` reads
    the destination with the server's own client. Cleanups go on `self.cleanup` (an ExitStack closed
    after the test); `self.using(cm)` enters a context manager until then.
    """

    sink: ClassVar[str] = ""  # the registered sink's name (the first `type:` of its config)
    holds: ClassVar[Holds] = "log"  # what its destination holds (the one configuration's)
    # Several configurations to run (name -> what each holds) instead of the one named after the sink.
    variants: ClassVar[Mapping[str, Holds]] = {}
    # Configurations that cannot run on these machines: name -> why. They are reported as skipped,
    # with the reason. A name that is also a variant (or the sink's own name) skips that one.
    cannot_run: ClassVar[Mapping[str, str]] = {}
    integration: ClassVar[bool] = True  # needs a server from scripts/stack (`pytest -m integration`)
    # Why tests/matrix has no case for this sink, when it has none (test_matrix.py checks).
    not_in_matrix: ClassVar[str | None] = None
    # A minimal destination config per `type:` value (without `type`), which parses and builds with
    # no server: the config tests use them (tests/unit/test_extras.py).
    examples: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    _fixtures: ClassVar[dict[str, type[SinkFixture]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.sink:  # a shared base, not a fixture
            return
        known = SinkFixture._fixtures.get(cls.sink)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"two contract fixtures for sink {cls.sink!r}: {known!r} and {cls!r}")
        SinkFixture._fixtures[cls.sink] = cls

    def __init__(self, request: pytest.FixtureRequest, variant: str) -> None:
        self.request = request
        self.variant = variant
        self.cleanup = contextlib.ExitStack()

    @classmethod
    def configurations(cls) -> dict[str, Holds]:
        return dict(cls.variants) if cls.variants else {cls.sink: cls.holds}

    @property
    def kind(self) -> Holds:
        """What this configuration's destination holds."""
        return self.configurations()[self.variant]

    def using(self, cm: AbstractContextManager[_T]) -> _T:
        return self.cleanup.enter_context(cm)

    def server(self, fixture: str) -> Any:
        """A pytest fixture's value: a server's address (`kafka_bootstrap`), `unique_name`, `tmp_path`."""
        return self.request.getfixturevalue(fixture)

    # -- what a fixture provides ---------------------------------------------------------------------
    def setup(self) -> None:
        """Reach the server and create what the destination needs (a topic, a queue)."""

    def destination(self) -> dict[str, Any]:
        raise NotImplementedError

    def make_sink(self) -> Sink:
        """A fresh sink from `destination()`: parsed in a pipeline config and built by the registered
        build function, as `cdc-logs run` does."""
        config = parse_config({"name": "contract", "source": _SOURCE, "destination": self.destination()})
        return build_sink(config.all_sinks()[0], config.name)

    def read_back(self, sink: Sink) -> Held:
        raise NotImplementedError


@dataclass(frozen=True)
class Case:
    """One configuration of one sink's fixture; `reason` set: it cannot run here."""

    fixture: type[SinkFixture]
    variant: str
    holds: Holds | None
    reason: str | None

    @property
    def id(self) -> str:
        sink = self.fixture.sink
        return sink if self.variant == sink else f"{sink}-{self.variant}"


def fixtures() -> dict[str, type[SinkFixture]]:
    """Every sink's fixture, by sink name (imports every module of tests/contract/sinks/)."""
    package = importlib.import_module("tests.contract.sinks")
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
    return dict(sorted(SinkFixture._fixtures.items()))


def cases() -> list[Case]:
    out: list[Case] = []
    for fixture in fixtures().values():
        configurations: dict[str, Holds | None] = {**fixture.configurations()}
        for name in fixture.cannot_run:
            configurations.setdefault(name, None)
        for name, holds in configurations.items():
            out.append(Case(fixture, name, holds, fixture.cannot_run.get(name)))
    return out


@contextlib.contextmanager
def opened(fixture: SinkFixture) -> Iterator[Sink]:
    sink = fixture.make_sink()
    sink.open()
    try:
        yield sink
    finally:
        sink.close()
