"""docs/contributing.md: its worked example is the real code, and adding it took no shared edit.

The page shows whole files, each after a `<!-- the file PATH -->` line: they must be those files as
they are. The worked example is a sink, its module in cdc_logs/sinks/ and its contract fixture in
tests/contract/sinks/, and nothing outside those two files, the page and the reference pages that
scripts/gen_reference writes may name it: not its `type:`, its classes or its module. Had adding it
needed an edit anywhere else (a list of types, a template, a table of extras, a schema snapshot, a
matrix list), that edit would name it and fail here.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from cdc_logs import registry
from cdc_logs.configfile import parse_config
from cdc_logs.reference import pages

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "contributing.md"
SHOWN = re.compile(r"^<!-- the file (\S+) -->\n```python\n(.*?)^```$", re.M | re.S)
YAML = re.compile(r"^```yaml\n(.*?)^```$", re.M | re.S)
SKIPPED_DIRS = {"__pycache__", "build", "dist", "node_modules"}  # and every dot-directory


def shown() -> dict[str, str]:
    """The files the page shows whole: path -> the code shown."""
    return dict(SHOWN.findall(DOC.read_text()))


def test_the_page_shows_the_worked_example_as_it_is() -> None:
    files = shown()
    folders = sorted(Path(path).parent.as_posix() for path in files)
    assert folders == ["cdc_logs/sinks", "tests/contract/sinks"], "a sink's module and its fixture"
    for path, code in files.items():
        assert code == (REPO / path).read_text(), f"docs/contributing.md shows {path} as it was, not as it is"


def test_the_pages_yaml_examples_are_valid_configs() -> None:
    blocks = YAML.findall(DOC.read_text())
    assert blocks
    for block in blocks:
        parse_config(yaml.safe_load(block), {})


def _example_names() -> re.Pattern[str]:
    """What names the worked example: its `type:` values, its classes, its module."""
    path = next(path for path in shown() if path.startswith("cdc_logs/sinks/"))
    module_name = path.removesuffix(".py").replace("/", ".")
    found = [c for c in registry.components("sink") if c.module == module_name]
    assert found, f"{module_name} registers no sink, or the registry does not find it"
    module = importlib.import_module(module_name)
    classes = [n for n, o in vars(module).items() if isinstance(o, type) and o.__module__ == module_name]
    names = [rf"\b{re.escape(name)}\b" for name in classes]
    for type_ in found[0].types:
        names += [rf"[\"'`]{re.escape(type_)}[\"'`]", rf"\btype:\s*{re.escape(type_)}\b"]
    names.append(rf"\bsinks[./]{re.escape(module_name.rsplit('.', 1)[1])}\b")
    return re.compile("|".join(names))


def _repo_files() -> Iterator[Path]:
    for top, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in SKIPPED_DIRS or d.endswith(".egg-info"))]
        yield from (Path(top) / name for name in files)


def _uses_it(path: Path) -> bool:
    """The benchmark and the profiler run the discard sink as their null sink: a use of the sink, not a
    step of adding one (adding it still takes only its two files)."""
    rel = path.relative_to(REPO).as_posix()
    users = {"tests/unit/test_benchkit.py", "docs/benchmarks.md", "scripts/profile_hot.py"}
    return rel.startswith("scripts/benchkit/") or rel in users


def test_the_worked_example_is_named_only_in_its_own_files() -> None:
    names = _example_names()
    own = {REPO / path for path in shown()}
    generated = {REPO / "docs" / "reference" / name for name in pages()}  # written by scripts/gen_reference
    for path in own:  # the search can find it: the example's own files name it
        assert names.search(path.read_text()), f"{path}: the search finds nothing, so it cannot fail"
    found = []
    for path in _repo_files():
        if path in own or path in generated or path == DOC or _uses_it(path):
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if names.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "the worked example is named outside its two files:\n" + "\n".join(found)
