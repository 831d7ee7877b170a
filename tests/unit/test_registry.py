"""The registry's checks on what a component declares (registry.py); nothing here is registered."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase


class _Config(SinkConfigBase):
    type: Literal["registry_test_only"]


@pytest.mark.parametrize(
    "capabilities",
    [set(), {"ordered"}, {"state", "log"}, {"log", "count"}],
    ids=["none", "no-kind", "state-and-log", "log-and-count"],
)
def test_a_sink_is_exactly_one_kind(capabilities: set[str]) -> None:
    with pytest.raises(TypeError, match="exactly one of a `state`, `log` or `count` sink"):
        registry.sink(_Config, capabilities=capabilities)


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown capabilities \['fast'\]"):
        registry.sink(_Config, capabilities={"log", "fast"})


def test_every_registered_sink_is_one_kind() -> None:
    for component in registry.components("sink"):
        assert len(component.capabilities & registry.SINK_HOLDS) == 1, component.name
    assert "registry_test_only" not in {t for c in registry.components("sink") for t in c.types}


def test_composition_names_no_component() -> None:
    """config.py and build.py derive everything from the registry: they stay small and never import a
    reader, sink or transform module (a component added elsewhere needs no line here)."""
    import cdc_logs.build
    import cdc_logs.config

    for module in (cdc_logs.config, cdc_logs.build):
        path = Path(str(module.__file__))
        text = path.read_text()
        assert len(text.splitlines()) < 300, f"{path.name} grows with the components again"
        component_import = r"^\s*from cdc_logs\.(readers|sinks|transforms)\.(?!base\b)\w+"  # base: contracts
        assert not re.search(component_import, text, re.M), path.name
