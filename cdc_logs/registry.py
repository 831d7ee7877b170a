"""The component registry: every reader, sink and transform declares itself in its own module.

A component module defines its pydantic config model (a `type: Literal[...]` field names the `type:`
values users write, the first one canonical, the others aliases of the seed's shapes) and registers
a build function for it:

    @registry.sink(NatsSinkConfig, capabilities={"log"})
    def build(cfg: NatsSinkConfig, ctx: BuildContext) -> NatsSink: ...

Everything else is derived from the registry, nothing is listed by hand: the pipeline config's
`source`/`destination`/`plugins` unions (config.py), building a pipeline (build.py), the `type:`
values an unknown-type error lists, `cdc-logs config schema`, and the reference pages in
docs/reference/ (reference.py renders them; scripts/gen_reference rewrites the committed pages, and
a test fails while they are stale). The tests are driven by it too: a registered sink fails the sink
contract suite until it has a fixture in tests/contract/sinks/, and the reader x sink matrix until
it has a case there or its fixture says why not. Components are found by importing every module of
cdc_logs/sinks/ and cdc_logs/transforms/, each reader package's `config` module, and the Debezium
source's (`load()`): a new sink is its module, its contract fixture and the regenerated reference,
and nothing else (docs/contributing.md walks through one).

A sink's capabilities say what it promises beyond the contract of sinks/base.py. Exactly one says
what its destination holds, and the contract suite checks it: `state` (it mirrors tables by primary
key: SQL, Redis cache, OpenSearch), `log` (it appends every change), or `count` (it keeps nothing
but how many changes it took, as a sink for benchmarks does). `replay_guard` means it recognises a
replayed batch exactly (sinks/dedup.py), which the suite checks too; `ordered` (per-key order kept
in what it holds) and `dedup_ids` (each message carries an id stable across replays) are declared
for the reader and the reference pages, and not checked by the suite.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

Kind = Literal["source", "sink", "transform"]
_B = TypeVar("_B", bound=Callable[..., Any])

SINK_HOLDS = frozenset({"state", "log", "count"})  # what a sink's destination holds: exactly one
SINK_CAPABILITIES = SINK_HOLDS | {"replay_guard", "ordered", "dedup_ids"}


@dataclass(frozen=True)
class BuildContext:
    """What a build function may need beyond its config."""

    pipeline: str
    temporary: bool = False  # tail: leave no consumer state behind (temporary slot, throwaway group)


@dataclass(frozen=True)
class Component:
    kind: Kind
    config: type[BaseModel]
    build: Callable[..., Any]
    capabilities: frozenset[str] = field(default_factory=frozenset)

    @property
    def types(self) -> tuple[str, ...]:
        """The `type:` values that select this component (canonical first)."""
        return literal_values(self.config)

    @property
    def name(self) -> str:
        return self.types[0]

    @property
    def summary(self) -> str:
        return (self.config.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")

    @property
    def module(self) -> str:
        return self.build.__module__


def literal_values(model: type[BaseModel]) -> tuple[str, ...]:
    annotation = model.model_fields["type"].annotation
    values = typing.get_args(annotation)
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{model.__name__}.type must be a Literal of strings")
    return tuple(values)


_components: dict[Kind, list[Component]] = {"source": [], "sink": [], "transform": []}
_lock = threading.Lock()
_loaded = False


def _register(kind: Kind, config: type[BaseModel], capabilities: Iterable[str]) -> Callable[[_B], _B]:
    caps = frozenset(capabilities)
    if kind == "sink" and len(caps & SINK_HOLDS) != 1:
        raise TypeError(f"{config.__name__}: a sink is exactly one of a `state`, `log` or `count` sink")
    if kind == "sink" and caps - SINK_CAPABILITIES:
        raise TypeError(f"{config.__name__}: unknown capabilities {sorted(caps - SINK_CAPABILITIES)}")

    def decorate(build: _B) -> _B:
        component = Component(kind, config, build, caps)
        taken = {t for c in _components[kind] for t in c.types if c.config is not config}
        clash = taken & set(component.types)
        if clash:
            raise TypeError(f"{kind} type(s) {sorted(clash)} of {config.__name__} are already registered")
        with _lock:
            _components[kind] = [c for c in _components[kind] if c.config is not config] + [component]
        return build

    return decorate


def source(config: type[BaseModel], *, capabilities: Iterable[str] = ()) -> Callable[[_B], _B]:
    """Register a reader's build function `(cfg, ctx) -> Reader` for `config`."""
    return _register("source", config, capabilities)


def sink(config: type[BaseModel], *, capabilities: Iterable[str]) -> Callable[[_B], _B]:
    """Register a sink's build function `(cfg, ctx) -> Sink` for `config`."""
    return _register("sink", config, capabilities)


def transform(config: type[BaseModel]) -> Callable[[_B], _B]:
    """Register a transform's build function `(cfg) -> Transform | BatchStage` for `config`."""
    return _register("transform", config, ())


_PACKAGES = ("cdc_logs.sinks", "cdc_logs.transforms", "cdc_logs.middleware")


def load() -> None:
    """Import every component module once (their registrations run on import)."""
    global _loaded
    if _loaded:
        return
    import cdc_logs.readers as readers

    packages = pkgutil.iter_modules(readers.__path__, "cdc_logs.readers.")
    names = [f"{m.name}.config" for m in packages if m.ispkg]
    names.append("cdc_logs.debezium.config")
    for package in _PACKAGES:
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.iter_modules(module.__path__, package + ".") if not m.ispkg]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a component's own import failed: a real error
                raise
    _loaded = True


def components(kind: Kind) -> list[Component]:
    load()
    return sorted(_components[kind], key=lambda c: c.name)


def find(kind: Kind, type_name: str) -> Component:
    for component in components(kind):
        if type_name in component.types:
            return component
    raise KeyError(f"no {kind} of type {type_name!r}")


def for_config(cfg: BaseModel) -> Component:
    """The component whose config model `cfg` is."""
    for kind in ("source", "sink", "transform"):
        for component in components(kind):
            if type(cfg) is component.config:
                return component
    raise KeyError(f"{type(cfg).__name__} is not a registered config model")
