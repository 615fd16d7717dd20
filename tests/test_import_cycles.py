"""No import circle between bigtrain's modules, counting every import: top-level, deferred into a
function, and under `TYPE_CHECKING`. A circle held shut by a deferred import still ties two
modules into one (neither can be read, tested or moved without the other); the shared piece
belongs a floor below both, in its own module."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO


def module_names(root: Path, package: str = "bigtrain") -> dict[str, tuple[Path, bool]]:
    """Every module under `root/package`: dotted name -> (file, is a package's __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(root: Path, package: str = "bigtrain") -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (functions and
    `if TYPE_CHECKING:` blocks included). `from a import b` counts `a.b` where b is a module."""
    modules = module_names(root, package)

    def known(name: str | None) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [known(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: climb from this module's package
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != package:
                    continue
                targets = [known(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules
                           else known(source) for alias in node.names]
            graph[name].update(t for t in targets if t and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another round a circle (strongly connected
    components of more than one module), with one circle through it spelled out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(_circle_through(sorted(group), graph))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def _circle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One circle inside a strongly connected group, from its first member back to it."""
    members, start = set(group), group[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first, inside the group, until an arrow comes back to start
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    return group  # pragma: no cover - a strongly connected group always closes


def test_no_import_circle_between_bigtrain_modules() -> None:
    circles = find_cycles(import_graph(REPO))
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same arrows between bigtrain's packages (`bigtrain.run`, `bigtrain.cells`, ...): a
    module at the top of the package stands for itself."""
    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    folded: dict[str, set[str]] = {package(name): set() for name in graph}
    for name, targets in graph.items():
        folded[package(name)].update(package(t) for t in targets if package(t) != package(name))
    return folded


def test_no_import_circle_between_bigtrain_packages() -> None:
    """The folders are floors of the data flow: no package reaches back up to one that uses it."""
    circles = find_cycles(package_graph(import_graph(REPO)))
    assert circles == [], "package circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_a_circle_held_shut_by_a_deferred_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "bigtrain"
    (package / "run").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "run" / "__init__.py").write_text("")
    (package / "run" / "cell.py").write_text("from bigtrain.run.rank import go\n")
    (package / "run" / "rank.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bigtrain.run import job\n"
        "def go():\n    from bigtrain.run.cell import run\n")
    (package / "run" / "job.py").write_text("import os\n")
    graph = import_graph(tmp_path)
    assert graph["bigtrain.run.rank"] == {"bigtrain.run.cell", "bigtrain.run.job"}
    assert find_cycles(graph) == [["bigtrain.run.cell", "bigtrain.run.rank", "bigtrain.run.cell"]]


def test_only_the_entry_points_stay_loose_at_the_top_of_the_package() -> None:
    loose = sorted(name for name, (_, is_package) in module_names(REPO).items()
                   if name.count(".") == 1 and not is_package)
    assert loose == ["bigtrain.__main__", "bigtrain.cli"]
