"""The shape of the code: no import circle among the project's modules.

Only module-level imports count (those run when a module is imported; a
function-local import defers a heavy module on purpose and says so). Imports
under ``if TYPE_CHECKING:`` never run and don't count either.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inspection", "prompting", "benchmarks", "reliability")


def _modules(root: Path = REPO, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` (not migrations)."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if "migrations" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _top_level_imports(tree: ast.Module, *, package: str) -> list[tuple[str, list[str]]]:
    """(module, names) of each module-level import (``if``/``try`` blocks
    included, ``if TYPE_CHECKING`` excluded): ``import a.b`` gives
    ``("a.b", [])``, ``from a import b, c`` gives ``("a", ["b", "c"])``;
    relative imports are resolved against ``package``."""
    found: list[tuple[str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, base] if base else parent)
                found.append((base, [alias.name for alias in node.names]))
            elif isinstance(node, ast.If):
                test = node.test
                guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
                )
                if not guarded:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules its module-level statements import.

    ``from package import module`` depends on that module; ``from module
    import name`` (a function, a class...) on the module."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for base, names in _top_level_imports(ast.parse(path.read_text()), package=package):
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            targets.update(submodules)
            if len(submodules) < len(names) or not names:
                targets.add(base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan),
    plus modules importing themselves: each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return cycles


def test_no_import_circle_among_project_modules():
    cycles = import_cycles(import_graph(_modules()))
    assert cycles == [], "import circles (module-level imports):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"a.py": "import pkg.b\n", "b.py": "from pkg import a\n"}, [["pkg.a", "pkg.b"]]),
        ({"a.py": "from . import b\n", "b.py": "from .a import thing\n"}, [["pkg.a", "pkg.b"]]),
        ({"a.py": "def f():\n    import pkg.b\n", "b.py": "import pkg.a\n"}, []),
        (
            {
                "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n",
                "b.py": "import pkg.a\n",
            },
            [],
        ),
        (
            {
                "a.py": "try:\n    import pkg.b\nexcept ImportError:\n    pass\n",
                "b.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        ({"a.py": "import pkg.b\n", "b.py": "import pkg.c\n", "c.py": "import os\n"}, []),
        # importing a sibling from its package is not importing the package's __init__
        ({"__init__.py": "from pkg.a import f\n", "a.py": "from pkg import b\n", "b.py": ""}, []),
        (
            {"__init__.py": "from pkg.a import f\n", "a.py": "from pkg import g\n"},
            [["pkg", "pkg.a"]],
        ),
    ],
)
def test_the_check_finds_circles_through_module_level_imports_only(tmp_path, files, expected):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(_modules(tmp_path, ("pkg",)))
    assert import_cycles(graph) == expected


def _readme_layout() -> list[str]:
    """Paths the README's Layout block names: top-level entries and the entries
    indented under a top-level directory."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths, top = [], ""
    for line in block.splitlines():
        if not line.strip():
            continue
        name = line.split()[0]
        if not line.startswith(" "):
            top = name if name.endswith("/") else ""
            paths.append(name)
        elif top and len(line) - len(line.lstrip()) == 2:
            paths.append(top + name)
    return paths


def test_the_readme_layout_names_only_what_exists():
    paths = _readme_layout()
    assert len(paths) > 20
    missing = [p for p in paths if not (REPO / p).exists()]
    assert missing == [], f"README's Layout names paths that don't exist: {missing}"
    table = (REPO / "README.md").read_text().split("Where things go:", 1)[1].split("\n## ", 1)[0]
    named = {
        p for p in re.findall(r"`((?:inspection|prompting|tests|reliability)/[\w/.]+)`", table)
    }
    assert named and not [p for p in named if not (REPO / p).exists()]
