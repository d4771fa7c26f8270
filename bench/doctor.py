"""``python -m bench doctor [--device cuda]``: every compute path once on a device, timed, against the CPU.

GPU time comes in short windows, so one command checks everything a device changes: a training epoch, the dense
coalition path (flat and graph engines), MCUE, one scorer of each family, a NEUROGAME forward and backward, and
physical pruning with its latency. Each path runs on seeded synthetic inputs (no dataset needed) and small, seeded,
untrained models, once on the CPU (the reference) and once on the device; the table gives the device's seconds and
the largest difference from the CPU's result against the path's tolerance. The device's seconds include its first
call (kernel selection, warm-up), which is what a short run pays too.

It imports torch, torchvision and the project's ``datasets`` and ``methods`` only: neither mlflow, optuna nor
pandas, so it runs on a machine that has torch and torchvision alone. Exit status: 0 when every path agrees, 1 when
one does not, 2 when the device cannot be used. A path whose library (Captum, Torch-Pruning) is not installed is
listed as skipped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

LENET = ("lenet300-mnist", (1, 28, 28), 10)
RESNET = ("resnet20-utkface-age", (3, 32, 32), 8)
NEUROGAME = ("neurogame-utkface", (3, 32, 32), 2)


@dataclass(frozen=True)
class Path:
    """One compute path: ``run(device)`` returns its result as a tensor or array (compared with the CPU's)."""

    name: str
    run: Callable[[torch.device], Any]
    atol: float


def _inputs(shape: tuple[int, ...], n: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=generator), torch.randint(classes, (n,), generator=generator)


def _model(pair_name: str, shape: tuple[int, ...], classes: int) -> tuple[torch.nn.Module, tuple[str, ...]]:
    import methods.neurogame  # noqa: F401  (registers the NEUROGAME models and pairs)
    from datasets.models import build_model
    from datasets.pairs import PAIRS

    pair = PAIRS.get(pair_name)
    torch.manual_seed(0)
    model = build_model(pair.model, input_shape=shape, num_classes=classes, **pair.model_options)
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained net has
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
    return model.eval(), tuple(pair.units)


def _coalitions(n: int, count: int, p: float = 0.5) -> np.ndarray:
    return np.random.default_rng(0).random((count, n)) < p


def training_epoch(device: torch.device) -> torch.Tensor:
    from torch.utils.data import TensorDataset

    from datasets.pairs import Recipe
    from datasets.training import fit

    model, _ = _model(*LENET)
    x, y = _inputs(LENET[1], 2048, LENET[2])
    fit(model.to(device), TensorDataset(x, y), Recipe(epochs=1, batch_size=128), seed=0, device=device,
        progress=False)
    with torch.no_grad():
        return model(x[:256].to(device)).cpu()


def dense_flat(device: torch.device) -> np.ndarray:
    from methods.games import neuron_game

    model, units = _model(*LENET)
    x, y = _inputs(LENET[1], 1024, LENET[2])
    game = neuron_game(model, units, x, y, metric="neg_loss", strategy="dense", device=device)
    return game(_coalitions(game.n_players, 256))


def dense_graph(device: torch.device) -> np.ndarray:
    from methods.games import neuron_game

    model, units = _model(*RESNET)
    x, y = _inputs(RESNET[1], 256, RESNET[2])
    game = neuron_game(model, units, x, y, metric="neg_loss", strategy="dense", device=device)
    return game(_coalitions(game.n_players, 32))


def mcue_path(device: torch.device) -> np.ndarray:
    from methods.games import neuron_game
    from methods.games.mcue import mcue

    model, units = _model(*LENET)
    x, y = _inputs(LENET[1], 512, LENET[2])
    game = neuron_game(model, units, x, y, strategy="dense", device=device)
    result = mcue(game, rng=np.random.default_rng(0), grid=(0.25, 0.5, 0.75), samples=16, instances=8,
                  output="confidence")
    return result.mean["confidence"]


def scorer_path(name: str, params: dict[str, Any]) -> Callable[[torch.device], np.ndarray]:
    def run(device: torch.device) -> np.ndarray:
        from methods.scorers import PruningProblem, build_scorer

        model, units = _model(*LENET)
        x, y = _inputs(LENET[1], 512, LENET[2])
        problem = PruningProblem.build(model.to(device), units, x.to(device), y.to(device), metric="neg_loss",
                                       strategy="dense", device=device)
        values = build_scorer(name, **params)(problem, rng=np.random.default_rng(0)).values
        return values / max(float(np.nanmax(np.abs(values))), 1e-12)  # compared on the scores' own scale
    return run


def neurogame_path(device: torch.device) -> torch.Tensor:
    model, _ = _model(*NEUROGAME)
    x, y = _inputs(NEUROGAME[1], 64, NEUROGAME[2])
    model = model.to(device)
    loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
    loss.backward()
    grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return torch.stack([loss.detach(), *grads]).cpu()


def physical_path(device: torch.device) -> torch.Tensor:
    from methods.network import prune_network, unit_groups
    from methods.network.physical import measure_latency

    model, units = _model(*RESNET)
    groups = unit_groups(model, units, RESNET[1])
    mask = _coalitions(sum(g.size for g in groups), 1, 0.6)[0]
    pruned = prune_network(model, groups, mask, RESNET[1]).to(device).eval()
    measure_latency(pruned, RESNET[1], batch_sizes=(1, 64), budget_s=0.2, device=device)
    x, _ = _inputs(RESNET[1], 64, RESNET[2])
    with torch.no_grad():
        return pruned(x.to(device)).cpu()


PATHS = (
    Path("training epoch (LeNet-300-100, 2,048 examples)", training_epoch, 1e-3),
    Path("dense coalitions, flat engine (LeNet-300-100, 256)", dense_flat, 1e-4),
    Path("dense coalitions, graph engine (ResNet-20, 32)", dense_graph, 1e-4),
    Path("MCUE (LeNet-300-100, 3x3 grid)", mcue_path, 1e-4),
    Path("scorer: power index (GTAP Banzhaf, 64 coalitions)", scorer_path("gtap", {"index": "banzhaf",
                                                                                  "budget": 64}), 1e-3),
    Path("scorer: magnitude (WMP)", scorer_path("wmp", {}), 1e-5),
    Path("scorer: gradient (W.GMP)", scorer_path("wgmp", {}), 1e-4),
    Path("scorer: activation", scorer_path("activation", {}), 1e-4),
    Path("scorer: attribution (Captum GxA)", scorer_path("captum-gxa", {}), 1e-4),
    Path("scorer: random", scorer_path("random", {}), 0.0),
    Path("NEUROGAME forward + backward", neurogame_path, 1e-4),
    Path("physical pruning + latency (ResNet-20)", physical_path, 1e-4),
)


def _difference(a: Any, b: Any) -> float:
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    return float(np.max(np.where(both_nan, 0.0, np.abs(a - b)), initial=0.0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_paths(device: torch.device, paths=PATHS, *, compare: bool | None = None) -> list[dict[str, Any]]:
    """Each path on the CPU and on ``device``: seconds and the difference. ``compare`` (default: when ``device`` is
    not the CPU) runs the CPU reference; on the CPU itself that checks that each path is deterministic."""
    from tqdm.auto import tqdm

    rows = []
    cpu = torch.device("cpu")
    compare = device != cpu if compare is None else compare
    for path in tqdm(paths, desc=f"doctor on {device}", leave=False):
        try:
            reference = path.run(cpu) if compare else None
            _sync(device)
            start = time.perf_counter()
            result = path.run(device)
            _sync(device)
            seconds = time.perf_counter() - start
        except ModuleNotFoundError as err:  # Captum or Torch-Pruning absent (a machine with torch alone)
            rows.append({"path": path.name, "device": str(device), "seconds": None, "difference": None,
                         "tolerance": path.atol, "agrees": True, "skipped": f"needs {err.name}"})
            continue
        diff = _difference(result, reference) if reference is not None else None
        rows.append({"path": path.name, "device": str(device), "seconds": seconds, "difference": diff,
                     "tolerance": path.atol, "agrees": diff is None or diff <= path.atol})
    return rows


def main(args: argparse.Namespace) -> int:
    from datasets.training import resolve_device

    try:
        device = resolve_device(args.device)
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as err:
        print(f"error: device {args.device!r} cannot be used: {str(err).splitlines()[0]}")
        return 2
    start = time.perf_counter()
    rows = run_paths(device)
    width = max(len(r["path"]) for r in rows)
    print(f"{'path':{width}s}  {'device':8s}  {'seconds':>8s}  {'max |diff| vs CPU':>18s}  result")
    for r in rows:
        if r.get("skipped"):
            print(f"{r['path']:{width}s}  {r['device']:8s}  {'-':>8s}  {'-':>18s}  skipped ({r['skipped']})")
            continue
        diff = "reference" if r["difference"] is None else f"{r['difference']:.1e} (tol {r['tolerance']:.0e})"
        verdict = "ok" if r["agrees"] else "DIFFERS"
        print(f"{r['path']:{width}s}  {r['device']:8s}  {r['seconds']:8.2f}  {diff:>18s}  {verdict}")
    print(f"{len(rows)} paths in {time.perf_counter() - start:.1f} s (CPU reference runs included), torch "
          f"{torch.__version__}" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    return 0 if all(r["agrees"] for r in rows) else 1
