"""Fixtures shared by several test files (plain helpers they import are in helpers.py).

They import torch and the data helpers when used, so collecting a light test file stays light. None is autouse:
a file that wants its own cache folder or a quiet MLflow says so with
``pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from datasets.registry import Registry

T = TypeVar("T")


@pytest.fixture()
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own, so nothing is read from or written to the user's cache."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(folder))
    return folder


@pytest.fixture()
def quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLflow progress bars, and no tracking store from the environment."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture()
def register() -> Iterator[Callable[[Registry[T], str, T], T]]:
    """``register(registry, name, obj)`` adds an entry for the test (``Registry.add``, so a taken name is an error)
    and takes it out again at teardown; only entries this fixture added are removed."""
    added: list[tuple[Registry, str, object]] = []

    def add(registry: Registry[T], name: str, obj: T) -> T:
        registry.add(name, obj)
        added.append((registry, name, obj))
        return obj

    yield add
    for registry, name, obj in reversed(added):
        if name in registry and registry.get(name) is obj:
            registry.remove(name)


@pytest.fixture()
def tiny_mnist(tmp_path: Path, register) -> Path:
    """Fake MNIST in ``tmp_path / "data"`` (returned) and the tiny pair (helpers.TINY_PAIR) registered."""
    from helpers import TINY_PAIR, WRITERS

    from datasets.pairs import PAIRS

    WRITERS["mnist"](tmp_path / "data")
    register(PAIRS, TINY_PAIR.name, TINY_PAIR)
    return tmp_path / "data"


@pytest.fixture(scope="module")
def trained():
    """A 20-16-12 MLP (two groups of hidden units) trained to fit a separable 3-class problem.

    Returns (model, units, x_train, y_train, x_test, y_test).
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(600, 20)
    y = (x[:, :3].argmax(1)).long()
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
        torch.nn.Linear(12, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x[:400]), y[:400]).backward()
        opt.step()
    model.eval()
    return model, ("2", "4"), x[:400], y[:400], x[400:], y[400:]
