"""The architecture, checked on the source: imports run one way, and MLflow and Optuna stay at the edge.

``bench`` uses ``reports``, ``methods`` and ``datasets``; ``reports`` and ``methods`` use ``datasets``; nothing points
back up. Only ``bench/tracking.py`` imports mlflow and only ``bench/tuning.py`` imports optuna, and nothing else
reaches the MLflow client (``Tracker._client``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "reports", "methods", "datasets")
# package -> the project packages it may import
ALLOWED = {
    "bench": {"bench", "reports", "methods", "datasets"},
    "reports": {"reports", "datasets"},
    "methods": {"methods", "datasets"},
    "datasets": {"datasets"},
}
EDGE = {"mlflow": {"bench/tracking.py"}, "optuna": {"bench/tuning.py"}}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


def violations(path: Path, relative: str) -> list[str]:
    """Every import that points up or past the edge, and every reach into the MLflow client, in one file.

    Args:
        path: the file; relative: its path in the project ("methods/scorers.py"), which says its package.
    """
    package = relative.split("/")[0]
    found = []
    for module, line in _imports(path):
        top = module.split(".")[0]
        if top in PACKAGES and top not in ALLOWED[package]:
            found.append(f"{relative}:{line} imports {module}: {package} may not use {top}")
        if top in EDGE and relative not in EDGE[top]:
            found.append(f"{relative}:{line} imports {top}; only {sorted(EDGE[top])} may")
    if relative != "bench/tracking.py":
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("_client", "client"):
                owner = ast.unparse(node.value)
                if "tracker" in owner.lower():
                    found.append(f"{relative}:{node.lineno} reaches {owner}.{node.attr}")
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way_and_frameworks_stay_at_the_edge(path):
    assert violations(path, path.relative_to(ROOT).as_posix()) == []


def test_the_check_catches_each_kind_of_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import mlflow\nfrom bench.runner import run_suite\nimport optuna\nx = tracker.client.get_run(1)\n")
    found = violations(bad, "methods/bad.py")
    assert len(found) == 4 and "may not use bench" in found[1] and "reaches tracker.client" in found[3]
    assert violations(bad, "bench/tracking.py") == ["bench/tracking.py:3 imports optuna; only ['bench/tuning.py'] may"]
