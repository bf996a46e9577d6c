"""Imports in align/ run one way: no circle between its modules, counting the imports inside
functions too (a lazy import postpones a circle, it does not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path


def module_graph(package: Path) -> dict[str, set[str]]:
    """align module -> the align modules it imports (anywhere in the file)."""
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("align"):
                for alias in node.names:  # `from align.x import y` is align.x.y when y is a module
                    found.add(
                        f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    )
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("align")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another round a loop (Tarjan's components > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_align(repo_root):
    assert circles(module_graph(repo_root / "align")) == []


def test_the_check_finds_a_circle(tmp_path):
    package = tmp_path / "align"
    (package / "pipeline").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pipeline" / "__init__.py").write_text("")
    (package / "runner.py").write_text("def run():\n    from align.pipeline.steps import go\n")
    (package / "pipeline" / "steps.py").write_text("from align.runner import run\n")
    (package / "leaf.py").write_text("from align import runner\n")
    assert circles(module_graph(package)) == [["align.pipeline.steps", "align.runner"]]
