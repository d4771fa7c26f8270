"""The architecture, checked on the source.

- Imports run one way: ``bench`` uses ``reports``, ``methods`` and ``datasets``; ``reports`` uses ``methods`` (its
  declarations: axis names, MCUE's readings, pure helpers) and ``datasets``; ``methods`` uses ``datasets``; nothing
  points back up.
- Inside ``methods`` the subpackages are ordered: ``network`` <- ``games`` <- ``indices`` <- ``scorers`` <-
  ``pruning``, with ``analyses``, ``neurogame`` and ``estimators`` beside them (``METHODS_ALLOWED``).
- No import circle inside the house, at module level or inside functions.
- Nothing is imported by string: no ``importlib.import_module``/``__import__``/``pkgutil`` walk names a house module,
  and no string names one where the layer below could use it to reach up (a registry's lazy "module:attr").
- Only ``bench/tracking.py`` imports mlflow, only ``bench/tuning.py`` imports optuna and only ``bench/executors.py``
  imports ray, and nothing else reaches the MLflow client (``Tracker._client``).
- No file over ``MAX_LINES`` lines, except those ``LONG_FILES`` names with the one job that needs the length.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "reports", "methods", "datasets")
# package -> the project packages it may import
ALLOWED = {
    "bench": {"bench", "reports", "methods", "datasets"},
    "reports": {"reports", "methods", "datasets"},
    "methods": {"methods", "datasets"},
    "datasets": {"datasets"},
}
# methods subpackage -> the other methods subpackages it may import (the root ``methods/__init__.py`` wires them)
METHODS_ALLOWED = {
    "network": set(),
    "games": {"network"},
    "indices": {"games"},
    "scorers": {"network", "games", "indices"},
    "pruning": {"network", "games", "indices", "scorers"},
    "analyses": {"network", "games", "indices", "scorers"},
    "neurogame": {"network", "games"},
    "estimators": {"network", "games", "indices"},
}
EDGE = {"mlflow": {"bench/tracking.py"}, "optuna": {"bench/tuning.py"}, "ray": {"bench/executors.py"}}
MAX_LINES = 600
LONG_FILES: dict[str, str] = {}  # "path": "the one job that needs the length"
HOUSE_MODULE = re.compile(r"^(bench|reports|methods|datasets)(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_.]*)?$")
DYNAMIC_IMPORTS = {"import_module", "__import__"}
DISCOVERY = {"walk_packages", "iter_modules"}
# files that import a module whose name is a variable, and why (never a house module)
DYNAMIC_IMPORTERS = {"methods/scorers/library.py": "the optional third-party libraries (captum, torch_pruning)"}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _module_name(relative: str) -> str:
    name = relative.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


MODULES = {_module_name(p.relative_to(ROOT).as_posix()) for p in _sources()}


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) for every import; ``from pkg import sub`` names the submodule when ``pkg.sub`` is one."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            if len(submodules) < len(node.names):
                found.append((node.module, node.lineno))
            found += [(sub, node.lineno) for sub in submodules]
    return found


def violations(path: Path, relative: str) -> list[str]:
    """Every import that points up or past the edge, every import by string, and every reach into the MLflow
    client, in one file.

    Args:
        path: the file; relative: its path in the project ("methods/scorers/base.py"), which says its package.
    """
    package = relative.split("/")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    parts = relative.split("/")
    sub = parts[1] if package == "methods" and len(parts) > 2 else None
    for module, line in _imports(tree):
        top = module.split(".")[0]
        if top in PACKAGES and top not in ALLOWED[package]:
            found.append(f"{relative}:{line} imports {module}: {package} may not use {top}")
        if sub is not None and top == "methods" and module.count(".") >= 1:
            other = module.split(".")[1]
            if other != sub and other not in METHODS_ALLOWED.get(sub, set()):
                found.append(f"{relative}:{line} imports {module}: methods.{sub} may not use methods.{other}")
        if top in EDGE and relative not in EDGE[top]:
            found.append(f"{relative}:{line} imports {top}; only {sorted(EDGE[top])} may")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0] if node.args else None
            named = isinstance(first, ast.Constant) and isinstance(first.value, str)
            house = named and first.value.split(".")[0] in PACKAGES
            if func in DISCOVERY or (func in DYNAMIC_IMPORTS and (house or (not named
                                                                             and relative not in DYNAMIC_IMPORTERS))):
                found.append(f"{relative}:{node.lineno} imports by string ({func}); import the module by name")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and HOUSE_MODULE.match(node.value) \
                and "." in node.value + ":" and node.value.split(".")[0].split(":")[0] not in ALLOWED[package]:
            found.append(f"{relative}:{node.lineno} names {node.value!r}: {package} may not reach it, by string either")
    if relative != "bench/tracking.py":
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_client", "client"):
                owner = ast.unparse(node.value)
                if "tracker" in owner.lower():
                    found.append(f"{relative}:{node.lineno} reaches {owner}.{node.attr}")
    return found


def import_graph() -> dict[str, set[str]]:
    """House module -> the house modules it imports (anywhere in the file, function bodies included)."""
    graph: dict[str, set[str]] = {}
    for path in _sources():
        name = _module_name(path.relative_to(ROOT).as_posix())
        targets = set()
        for module, _ in _imports(ast.parse(path.read_text())):
            while module and module not in MODULES:
                module = module.rpartition(".")[0]
            if module and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way_and_frameworks_stay_at_the_edge(path):
    assert violations(path, path.relative_to(ROOT).as_posix()) == []


def test_no_import_circle_inside_the_house():
    assert circles(import_graph()) == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_is_longer_than_one_job_needs(path):
    relative = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or relative in LONG_FILES, f"{relative} has {lines} lines (at most {MAX_LINES})"


def test_the_check_catches_each_kind_of_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import mlflow\nfrom bench.runner import run_suite\nimport optuna\nx = tracker.client.get_run(1)\n")
    found = violations(bad, "methods/bad.py")
    assert len(found) == 4 and "may not use bench" in found[1] and "reaches tracker.client" in found[3]
    assert violations(bad, "bench/tracking.py") == ["bench/tracking.py:3 imports optuna; only ['bench/tuning.py'] may"]


def test_the_check_catches_string_discovery_and_subpackage_order(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import importlib\nimportlib.import_module('methods')\nLAZY = 'methods.neurogame:neurogame'\n"
                   "from methods.pruning.curves import evaluate_path\n")
    found = violations(bad, "datasets/bad.py")
    assert any("imports by string" in f for f in found)
    assert any("names 'methods.neurogame:neurogame'" in f for f in found)
    assert any("datasets may not use methods" in f for f in found)
    found = violations(bad, "methods/indices/bad.py")
    assert any(f.endswith("methods.indices may not use methods.pruning") for f in found)


def test_the_circle_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
