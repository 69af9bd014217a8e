"""The shape of the code: no import circle among the project's modules, and no
source file too long to read.

Every import counts, function-local ones too, except a function-local import
marked as deferring a heavy module on purpose: a ``# deferred: <why>`` (or
``# deferred on purpose: <why>``) comment at the end of the import, or on the
line(s) just above it (that comment covers the imports that follow it
directly). A circle is never a reason to defer.
Imports under ``if TYPE_CHECKING:`` never run and don't count.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inspection", "prompting", "benchmarks", "reliability")
#: a function-local import with this comment defers a heavy module on purpose
DEFERRED = re.compile(r"#\s*deferred(?: on purpose)?:\s*\S")
#: no source file outside migrations is longer than this (lines)
MAX_LINES = 600
#: what a source file is: code, templates, styles, scripts
SOURCE_SUFFIXES = (".py", ".js", ".css", ".html", ".sh")


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


@dataclass(frozen=True)
class Import:
    """One import statement: ``import a.b`` is ``("a.b", [])``, ``from a import
    b, c`` is ``("a", ["b", "c"])`` (relative imports resolved)."""

    module: str
    names: list[str]
    line: int
    local: bool  # inside a function: runs when the function is called
    deferred: bool  # local and marked ``# deferred: <why>``


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _marked(node: ast.stmt, lines: list[str]) -> bool:
    """A ``# deferred:`` comment at the end of the import's lines, or in the
    comment lines directly above it."""
    if any(DEFERRED.search(line) for line in lines[node.lineno - 1 : node.end_lineno]):
        return True
    i = node.lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        if DEFERRED.search(lines[i]):
            return True
        i -= 1
    return False


def _imports(source: str, *, package: str) -> list[Import]:
    """Every import statement of ``source`` except those under ``if
    TYPE_CHECKING:``; relative imports are resolved against ``package``."""
    lines = source.splitlines()
    found: list[Import] = []

    def visit(body: list[ast.stmt], local: bool) -> None:
        marked_until = -1  # last line of a marked import: the next one directly below shares it
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                deferred = local and (marked_until == node.lineno - 1 or _marked(node, lines))
                marked_until = node.end_lineno if deferred else -1
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        found.append(Import(alias.name, [], node.lineno, local, deferred))
                    continue
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parent, base] if base else parent)
                names = [alias.name for alias in node.names]
                found.append(Import(base, names, node.lineno, local, deferred))
                continue
            marked_until = -1
            if isinstance(node, ast.If) and _type_checking(node.test):
                continue
            inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(node, field, None) or [], inner)
            for handler in getattr(node, "handlers", None) or []:
                visit(handler.body, inner)
            for case in getattr(node, "cases", None) or []:
                visit(case.body, inner)

    visit(ast.parse(source).body, False)
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(imp: Import, modules: dict[str, Path]) -> set[str]:
    """The project modules one import depends on: ``from package import module``
    on that module; ``from module import name`` (a function, a class...) on the
    module."""
    submodules = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in modules]
    out = set(submodules)
    if len(submodules) < len(imp.names) or not imp.names:
        out.add(imp.module)
    return {t for t in out if t in modules}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, at module level or inside a
    function (except function-local imports marked ``# deferred:``)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for imp in _imports(path.read_text(), package=_package_of(name, path)):
            if not imp.deferred:
                targets |= _targets(imp, modules)
        graph[name] = targets - {name}
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
    assert cycles == [], "import circles (function-local imports count too):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


#: what the product's function-local imports defer: the engine's heavy modules
HEAVY = ("torch", "segment_anything", "timm", "skimage", "scipy", "sklearn", "PIL")


def unmarked_local_imports(
    modules: dict[str, Path], *, root: Path = REPO, packages=("inspection", "prompting")
) -> list[str]:
    """``path:line: module`` of each function-local import of a project module,
    in ``packages``, without a ``# deferred:`` comment."""
    out = []
    for name, path in modules.items():
        if name.split(".")[0] not in packages:
            continue
        for imp in _imports(path.read_text(), package=_package_of(name, path)):
            if imp.local and not imp.deferred and _targets(imp, modules):
                out.append(f"{path.relative_to(root).as_posix()}:{imp.line}: {imp.module}")
    return out


def test_function_local_imports_in_the_product_say_what_they_defer():
    """A function-local import of a project module in ``inspection/`` or
    ``prompting/`` defers a heavy module on purpose, and says which; any other
    belongs at the top of the module."""
    assert unmarked_local_imports(_modules()) == []


def test_the_web_process_starts_without_the_engines_heavy_modules():
    """What ``inspection/`` defers is deferred indeed: the Django app, its URLs
    (API and dashboard) and its tasks load none of the engine's heavy modules."""
    code = (
        "import sys, django; django.setup(); "
        "import inspection.urls, inspection.tasks, inspection.wsgi; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "inspection.test_settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def functions_without_type_hints(path: Path) -> list[str]:
    """``name:line`` of each public function of ``path`` (module level, or a
    method of a public class) with a parameter or its return not annotated."""
    out = []

    def check(fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> None:
        a = fn.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]
        bare = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
        if bare or fn.returns is None:
            out.append(f"{name}:{fn.lineno}")

    def public(node: ast.stmt) -> bool:
        return not getattr(node, "name", "_").startswith("_")

    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in filter(public, ast.parse(path.read_text()).body):
        if isinstance(node, functions):
            check(node, node.name)
        elif isinstance(node, ast.ClassDef):
            for fn in filter(public, node.body):
                if isinstance(fn, functions):
                    check(fn, f"{node.name}.{fn.name}")
    return out


def test_public_functions_of_the_services_and_the_api_have_type_hints():
    missing = {
        str(path.relative_to(REPO)): names
        for folder in ("inspection/services", "inspection/api")
        for path in sorted((REPO / folder).rglob("*.py"))
        if (names := functions_without_type_hints(path))
    }
    assert missing == {}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("def f(*, a: int) -> int:\n    return a\n", []),
        ("def _f(a):\n    pass\n", []),
        ("def f(a) -> None:\n    pass\n", ["f:1"]),
        ("def f(a: int):\n    pass\n", ["f:1"]),
        ("def f(*args: int, **kw) -> None:\n    pass\n", ["f:1"]),
        ("class V:\n    def get(self, request: int, pk) -> None:\n        pass\n", ["V.get:2"]),
        ("class V:\n    def _helper(self, x):\n        pass\n", []),
        ("class _V:\n    def get(self, x):\n        pass\n", []),
    ],
)
def test_the_check_finds_functions_without_type_hints(tmp_path, text, expected):
    (tmp_path / "m.py").write_text(text)
    assert functions_without_type_hints(tmp_path / "m.py") == expected


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"a.py": "import pkg.b\n", "b.py": "from pkg import a\n"}, [["pkg.a", "pkg.b"]]),
        ({"a.py": "from . import b\n", "b.py": "from .a import thing\n"}, [["pkg.a", "pkg.b"]]),
        # a function-local import counts...
        ({"a.py": "def f():\n    import pkg.b\n", "b.py": "import pkg.a\n"}, [["pkg.a", "pkg.b"]]),
        (
            {
                "a.py": "class A:\n    def f(self):\n        from . import b\n",
                "b.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        # ... unless marked as deferring a heavy module, at its end or just above it
        (
            {
                "a.py": "def f():\n    import pkg.b  # deferred: loads torch\n",
                "b.py": "import pkg.a\n",
            },
            [],
        ),
        (
            {
                "a.py": "def f():\n    # deferred: loads torch\n    import os\n    import pkg.b\n",
                "b.py": "import pkg.a\n",
            },
            [],
        ),
        (
            {
                "a.py": "def f():\n    # deferred: the network, and\n    # torch\n    from pkg.b import g\n",
                "b.py": "import pkg.a\n",
            },
            [],
        ),
        # the comment covers the imports directly below it, nothing further
        (
            {
                "a.py": "def f():\n    # deferred: loads torch\n\n    import pkg.b\n",
                "b.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        (
            {
                "a.py": "def f():\n    # deferred: loads torch\n    import os\n    x = 1\n    import pkg.b\n",
                "b.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        # a comment without the marker, or a marked module-level import, still counts
        (
            {"a.py": "def f():\n    import pkg.b  # deferred for now\n", "b.py": "import pkg.a\n"},
            [["pkg.a", "pkg.b"]],
        ),
        (
            {"a.py": "import pkg.b  # deferred: loads torch\n", "b.py": "import pkg.a\n"},
            [["pkg.a", "pkg.b"]],
        ),
        (
            {
                "a.py": "def f():\n    if True:\n        from typing import TYPE_CHECKING\n"
                "        if TYPE_CHECKING:\n            import pkg.b\n",
                "b.py": "import pkg.a\n",
            },
            [],
        ),
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
def test_the_check_finds_circles_through_every_import_not_marked_deferred(
    tmp_path, files, expected
):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(_modules(tmp_path, ("pkg",)))
    assert import_cycles(graph) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("import pkg.b\n", []),
        ("def f():\n    import os\n", []),
        ("def f():\n    import pkg.b\n", ["pkg/a.py:2: pkg.b"]),
        ("def f():\n    from pkg import b, c\n", ["pkg/a.py:2: pkg"]),
        ("def f():\n    import pkg.b  # deferred: loads torch\n", []),
        ("def f():\n    # deferred: loads torch\n    from . import b\n", []),
        ("def f():\n    # deferred on purpose: loads torch\n    from . import b\n", []),
        ("def f():\n    # loads torch\n    from . import b\n", ["pkg/a.py:3: pkg"]),
    ],
)
def test_the_check_names_unmarked_local_imports(tmp_path, text, expected):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(text)
    (tmp_path / "pkg" / "b.py").write_text("")
    modules = _modules(tmp_path, ("pkg",))
    assert unmarked_local_imports(modules, root=tmp_path, packages=("pkg",)) == expected


def source_files(root: Path = REPO) -> list[Path]:
    """The project's source files (``SOURCE_SUFFIXES``): the packages, tests,
    scripts and the top-level modules; migrations are generated, not read."""
    out = sorted(root.glob("*.py"))
    for top in (*PACKAGES, "tests", "scripts"):
        for path in sorted((root / top).rglob("*")):
            generated = {"migrations", "__pycache__"} & set(path.relative_to(root).parts)
            if path.suffix in SOURCE_SUFFIXES and path.is_file() and not generated:
                out.append(path)
    return out


def test_no_source_file_is_longer_than_600_lines():
    """A file that long holds more than one idea: split it along them."""
    files = source_files()
    assert len(files) > 200
    long = {
        str(path.relative_to(REPO)): n
        for path in files
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_the_length_check_reads_every_kind_of_source_but_migrations(tmp_path):
    for name in (
        "manage.py",
        "inspection/models.py",
        "inspection/migrations/0001_initial.py",
        "inspection/dashboard/static/dashboard/js/editor.js",
        "inspection/dashboard/templates/dashboard/base.html",
        "prompting/data.npz",
        "tests/test_a.py",
        "scripts/test.sh",
        "README.md",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    found = sorted(str(p.relative_to(tmp_path)) for p in source_files(tmp_path))
    assert found == [
        "inspection/dashboard/static/dashboard/js/editor.js",
        "inspection/dashboard/templates/dashboard/base.html",
        "inspection/models.py",
        "manage.py",
        "scripts/test.sh",
        "tests/test_a.py",
    ]


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
