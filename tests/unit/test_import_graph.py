"""The cdc_logs package has no import cycle.

The graph is built from the source (AST), not from what happens to be imported at run time, so a
cycle hidden behind a lazy import inside a function (which is how the last one hid) is found too.

An edge from module M to module T means "running M's imports runs T" (T a cdc_logs module):

- `import T` and `from T import name`, at module level or anywhere inside a function or class body;
- relative imports are resolved against M's package;
- `from P import name` where `P.name` is a submodule imports that submodule: an edge to `P.name`. It
  is an edge to `P` itself only when some imported name is not a submodule, i.e. is read from P's
  `__init__`;
- importing `P.Q.R` runs the `__init__` of `P` and `P.Q` first: edges to those too, except to the
  packages that contain M. Those have started running before M did, by the import machinery and
  not by anything M says, so a submodule is not in a cycle with its own package just for living in
  it. Hence a package `__init__` that re-exports from its own submodules is normal and no cycle;
  it becomes one only when such a submodule also reads a name back from that `__init__` (explicitly,
  lazily or not), which does make the import order matter.

Left out:

- imports under `if TYPE_CHECKING:`. They never run, they only feed the type checker (which copes
  with cycles), so they cannot make an import cycle at run time;
- imports by name at run time (`importlib.import_module`): only `registry.load()` does that, to
  find the component modules, which import `registry` back to register themselves. That is plugin
  discovery, not a cycle: `registry` has finished loading before anything calls `load()`.

A cycle is a strongly connected component of more than one module; the test names each one with a
path through it (A -> B -> ... -> A) and the line of each import, so the fix can start from there.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cdc_logs

ROOT = Path(cdc_logs.__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports in this module resolve against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def containers(self) -> set[str]:
        """The packages this module lives in (their `__init__` runs before this module does)."""
        parts = self.name.split(".")
        return {".".join(parts[:end]) for end in range(1, len(parts))}


def modules(root: Path) -> dict[str, Module]:
    """Every module of the package at `root`, by dotted name."""
    found: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth, except those under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # the `else:` branch does run
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        elif isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        else:
            yield from _imports(child)


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def edges(module: Module, known: dict[str, Module]) -> dict[str, int]:
    """The modules of the package that `module` imports, each with the line of its first import."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    targets: dict[str, int] = {}

    def add(name: str, line: int, *, parents_only: bool = False) -> None:
        parts = name.split(".")
        for end in range(1, len(parts) + (0 if parents_only else 1)):
            target = ".".join(parts[:end])
            explicit = end == len(parts)
            if target in known and target != module.name and (explicit or target not in module.containers):
                targets.setdefault(target, line)

    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
            continue
        base = _resolve(module, node)
        submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
        add(base, node.lineno, parents_only=len(submodules) == len(node.names))
        for name in submodules:
            add(name, node.lineno)
    return targets


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    known = modules(root)
    return {name: edges(module, known) for name, module in known.items()}


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not worth a thought)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycle_path(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """One cycle through the component's first module, shown with the line of each import."""
    members = set(component)
    start = component[0]
    # breadth-first search for the shortest way back to `start` inside the component
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier and start not in previous:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    path = [start]
    node = previous[start]
    while node != start:
        path.append(node)
        node = previous[node]
    path.append(start)
    path.reverse()
    hops = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path)]
    return " -> ".join([*hops, path[-1]]) + f"   [component: {', '.join(component)}]"


def test_graph_builder(tmp_path: Path) -> None:
    """What the builder counts, on a small package made for it."""
    files = {
        "__init__.py": "from pkg.a import A\n",  # re-export: pkg -> pkg.a
        "a.py": "A = 1\n\ndef f():\n    from .b import B  # lazy, relative\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\nB = 2\n",
        "c.py": "from pkg import sub\nfrom pkg import A\n",  # submodule; a name read from pkg's __init__
        "sub/__init__.py": "",
        "sub/d.py": "import pkg.sub.e\nfrom .. import b\n",  # pkg.sub is d's own package
        "sub/e.py": "",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = {name: set(targets) for name, targets in import_graph(tmp_path / "pkg").items()}
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": set(),
        "pkg.c": {"pkg.sub", "pkg"},
        "pkg.sub": set(),
        "pkg.sub.d": {"pkg.sub.e", "pkg.b"},
        "pkg.sub.e": set(),
    }
    cycles = [c for c in strongly_connected(import_graph(tmp_path / "pkg")) if len(c) > 1]
    assert cycles == []
    (tmp_path / "pkg" / "b.py").write_text("def g():\n    from pkg import A\n")  # b -> pkg -> a -> b
    graph2 = import_graph(tmp_path / "pkg")
    cycles = [c for c in strongly_connected(graph2) if len(c) > 1]
    assert cycles == [["pkg", "pkg.a", "pkg.b"]]
    assert cycle_path(graph2, cycles[0]).startswith("pkg (line 1) -> pkg.a (line 4) -> pkg.b (line 2) -> pkg")


def test_no_import_cycle() -> None:
    graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, "import cycles in cdc_logs:\n" + "\n".join(cycle_path(graph, c) for c in cycles)
