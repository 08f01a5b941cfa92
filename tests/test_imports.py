"""The import graph between parts of waypost (a part is the first name under the package:
`waypost/destinations/service.py` is `destinations`, `waypost/db.py` is `db`) has no
circle, and no kernel module imports a feature. Read with `ast`, nothing imported;
imports inside functions count too, since a lazy import is still a dependency."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "waypost"
KERNEL = set("access clock crypto db fields http kinds outbound ratelimit runtime settings".split())


def _part(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            # `from waypost import clock` names the part in the imported names.
            targets = [[*module, alias.name] for alias in node.names]
        else:
            continue
        found.update(t[1] for t in targets if len(t) > 1 and t[0] == "waypost")
    return found


def _graph() -> dict[str, set[str]]:
    paths = [path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts]
    parts = {_part(path) for path in paths}
    graph: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        # Names that are no part (`from waypost import __version__`) are no dependency.
        graph[_part(path)] |= (_imported_parts(path) & parts) - {_part(path)}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        part = todo.pop()
        if part not in seen:
            seen.add(part)
            todo.extend(graph.get(part, ()))
    return seen


def test_no_part_imports_itself_through_another() -> None:
    graph = _graph()
    circles = {part: sorted(graph[part]) for part in sorted(graph) if part in _reaches(graph, part)}
    assert not circles, f"parts in an import circle, with what each imports: {circles}"


def test_the_kernel_imports_no_feature() -> None:
    graph = _graph()
    features = {part: sorted(graph[part] - KERNEL) for part in KERNEL if graph[part] - KERNEL}
    assert not features, f"kernel modules importing features: {features}"


def test_the_check_sees_every_kernel_module_and_a_known_import() -> None:
    graph = _graph()
    assert KERNEL <= set(graph), f"kernel modules not found: {KERNEL - set(graph)}"
    assert {"auth", "organizations"} <= graph["sources"]
