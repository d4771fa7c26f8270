"""Compression curves: the test accuracy of pruned networks against the fraction of units (and parameters) kept.

Scores and masks come from the validation split; a curve evaluates them on the *test* split, the only use of it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from datasets import training
from datasets.errors import UsageError
from datasets.pairs import Recipe
from methods.games.neuron import NeuronGame
from methods.network.structure import Submodules, UnitGroup, attached_parameters, parameter_counts, unit_shape
from methods.pruning.strategies import PruningPath


@dataclass(frozen=True)
class CurvePoint:
    """One pruned network.

    Attributes:
        target_fraction: the kept fraction asked for (of units, or of parameters for unstructured pruning).
        units_kept: units kept; unit_fraction: units_kept / all units.
        param_fraction: kept / all parameters of the layers attached to the units.
        accuracy: test accuracy.
        n_evaluations: coalition evaluations spent to find this network (cumulative along a path).
        seconds: wall seconds spent to find it.
        n_forward, n_backward: example forward and backward passes the scorer declared spending to find it.
        params: parameters of the whole physically pruned network; macs: its multiply-accumulates per example;
            mac_fraction: macs / the unpruned network's; latency_b1, latency_b256: its median CPU seconds per
            forward pass at batch 1 and 256 (NaN where not measured; see ``methods.network.physical``).
    """

    target_fraction: float
    units_kept: int
    unit_fraction: float
    param_fraction: float
    accuracy: float
    n_evaluations: int
    seconds: float
    n_forward: int = 0
    n_backward: int = 0
    params: float = math.nan
    macs: float = math.nan
    mac_fraction: float = math.nan
    latency_b1: float = math.nan
    latency_b256: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def kept_counts(fractions: Sequence[float], n_units: int) -> dict[float, int]:
    """Target unit counts for kept fractions: round(f n), at least 1 for a positive fraction."""
    out = {}
    for f in fractions:
        if not 0 <= f <= 1:
            raise UsageError(f"kept fractions must lie in [0, 1], got {f}")
        out[float(f)] = max(1, round(f * n_units)) if f > 0 else 0
    return out


def evaluate_path(path: PruningPath, fractions: Sequence[float], test_game: NeuronGame, model: nn.Sequential,
                  groups: Sequence[UnitGroup]) -> list[CurvePoint]:
    """Test accuracy of each mask of a path; all masks are evaluated in one batched call of the test game."""
    targets = kept_counts(fractions, test_game.n_players)
    order = sorted(targets, key=targets.get)
    masks = np.stack([path.masks[targets[f]] for f in order])
    accuracies = test_game(masks)
    points = []
    for f, mask, accuracy in zip(order, masks, accuracies, strict=True):
        kept, total = parameter_counts(model, groups, mask)
        r = targets[f]
        points.append(CurvePoint(f, int(mask.sum()), float(mask.mean()), kept / total, float(accuracy),
                                 int(path.n_evaluations[r]), float(path.seconds[r]),
                                 int(path.n_forward.get(r, 0)), int(path.n_backward.get(r, 0))))
    return points


MAC_REDUCTIONS = (2, 4)  # the leaderboard's accuracy at 2x and 4x fewer multiply-accumulates


def accuracy_at_mac_fraction(points: Sequence[CurvePoint], fraction: float) -> float:
    """Test accuracy of a compression curve where the pruned network costs ``fraction`` of the unpruned MACs.

    Linear interpolation between the two curve points around ``fraction`` (the curve's MAC fraction grows with the
    kept units); NaN when no point is that cheap (e.g. LeNet5's unit groups leave its conv layers, most of its MACs,
    untouched) or when the curve has no MAC counts (``physical_costs`` not run).
    """
    pts = sorted((p for p in points if np.isfinite(p.mac_fraction)), key=lambda p: p.mac_fraction)
    if not pts or pts[0].mac_fraction > fraction + 1e-12 or pts[-1].mac_fraction < fraction - 1e-12:
        return math.nan
    x = np.array([p.mac_fraction for p in pts])
    y = np.array([p.accuracy for p in pts])
    return float(np.interp(fraction, x, y))


def physical_costs(points: Sequence[CurvePoint], masks: Sequence[np.ndarray], model: nn.Sequential,
                   groups: Sequence[UnitGroup], input_shape: Sequence[int], *, latency: bool = True,
                   latency_cache: dict | None = None, x_test: torch.Tensor | None = None,
                   y_test: torch.Tensor | None = None) -> list[CurvePoint]:
    """The curve's points with their physically pruned network's size, MACs and latency filled in.

    Each mask's network is built by ``methods.network.physical.prune_network`` (the units removed, the dependent layers
    shrunk). Latency depends only on the pruned layers' shapes, so it is measured once per shape signature and kept
    in ``latency_cache`` (pass one dict per trained pair to share it between runs).

    Args:
        points: the curve, in the order of ``masks``.
        masks: each point's keep-mask.
        model, groups, input_shape: the trained network, its unit groups and one example's shape.
        latency: time each pruned network (``methods.network.physical.measure_latency``: median at batch 1 and 256, one
            CPU thread, or on the GPU the model is on).
        latency_cache: shape signature -> latencies, shared between calls.
        x_test, y_test: if given, each pruned network's test accuracy is checked against the point's (the masked
            network's) and a mismatch beyond one example in a thousand raises: the two networks must be one.

    Returns:
        New points with params, macs, mac_fraction and (with ``latency``) latency_b1 and latency_b256.
    """
    from dataclasses import replace

    from methods.network.physical import measure_latency, network_cost, prune_network

    full_macs = network_cost(model, input_shape)["macs"]
    cache = latency_cache if latency_cache is not None else {}
    out = []
    for point, mask in zip(points, masks, strict=True):
        pruned = prune_network(model, groups, mask, input_shape)
        cost = network_cost(pruned, input_shape)
        times = {1: math.nan, 256: math.nan}
        if latency:
            signature = tuple((name, tuple(p.shape)) for name, p in pruned.named_parameters())
            if signature not in cache:
                # One thread on the CPU: a 2-thread median jumped ~200x whenever another process was busy on the
                # 2-core machine, a 1-thread one stayed put. On a GPU the model is timed where it lives.
                device = next(pruned.parameters()).device
                # 15 timed passes (or 0.15 s) per batch size after 2 warm-ups: a suite times hundreds of networks.
                cache[signature] = measure_latency(pruned, input_shape, batch_sizes=(1, 256), device=device,
                                                   threads=1 if device.type == "cpu" else None, repeats=15,
                                                   warmup=2, budget_s=0.15)
            times = cache[signature]
        if x_test is not None and y_test is not None:
            accuracy = _accuracy(pruned.eval(), x_test, y_test)
            if abs(accuracy - point.accuracy) > 1e-3:
                raise AssertionError(f"the pruned network's test accuracy {accuracy:.4f} differs from the masked "
                                     f"network's {point.accuracy:.4f} at {point.units_kept} kept units")
        out.append(replace(point, params=float(cost["params"]), macs=float(cost["macs"]),
                           mac_fraction=cost["macs"] / full_macs, latency_b1=float(times[1]),
                           latency_b256=float(times[256])))
    return out


def area_under_curve(points: Sequence[CurvePoint], axis: str = "unit_fraction") -> float:
    """Trapezoidal area under accuracy vs ``axis``, divided by the axis range: a mean accuracy in [0, 1].

    Normalising by the range makes curves over different fraction grids comparable.
    """
    if axis not in ("unit_fraction", "param_fraction", "target_fraction"):
        raise ValueError(f"unknown axis {axis!r}")
    pts = sorted(points, key=lambda p: getattr(p, axis))
    x = np.array([getattr(p, axis) for p in pts])
    y = np.array([p.accuracy for p in pts])
    if len(pts) < 2 or x[-1] == x[0]:
        return float(y.mean()) if len(y) else math.nan
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return training.accuracy(model, TensorDataset(x, y), device=x.device)


def weight_pruning_curve(model: nn.Sequential, groups: Sequence[UnitGroup], fractions: Sequence[float],
                         weight_scores: dict[str, torch.Tensor], x_test: torch.Tensor,
                         y_test: torch.Tensor) -> list[CurvePoint]:
    """Global unstructured pruning of the attached layers' weights by a score per weight (parameter axis).

    For each kept fraction f, keeps the f highest-scoring weights network-wide (biases stay) and measures test
    accuracy. With |w| as the score this is the WMP of the GTAP paper (after Frankle & Carbin). ``unit_fraction``
    counts units that still have an outgoing weight.

    Args:
        weight_scores: layer name -> a score of the shape of its weight (a scorer's ``weight_scores``).
    """
    names = attached_parameters(model, groups)
    missing = [n for n in names if n not in weight_scores]
    if missing:
        raise ValueError(f"weight_scores lacks the attached layers {missing}")
    weights = torch.cat([weight_scores[n].detach().flatten() for n in names])
    consumers = {g.consumer: g for g in groups if g.consumer is not None}
    points = []
    for f in sorted(float(v) for v in fractions):
        k = int(round(f * weights.numel()))
        threshold = torch.topk(weights, k).values.min() if k > 0 else torch.tensor(math.inf)
        pruned = copy.deepcopy(model)
        alive_units = 0
        pruned_stages = Submodules(pruned)
        for name in names:
            w = pruned_stages[name].weight
            keep = weight_scores[name].detach() >= threshold
            with torch.no_grad():
                w.mul_(keep)
            if name in consumers:
                g = consumers[name]
                per_input = keep.transpose(0, 1).reshape(w.shape[1], -1).any(1).reshape(g.size, g.fan).any(1)
                alive_units += int(per_input.sum())
        n_units = sum(g.size for g in groups)
        points.append(CurvePoint(f, alive_units, alive_units / n_units, k / weights.numel(),
                                 _accuracy(pruned.eval(), x_test, y_test), 0, 0.0))
    return points


def layer_curves(scores: np.ndarray, groups: Sequence[UnitGroup], game: object,
                 layers: Sequence[UnitGroup] | None = None, cache: dict | None = None) -> list[dict[str, object]]:
    """Test accuracy with one layer's units pruned in a method's order and every other layer whole.

    For each unit group of ``layers`` (the layers of attention heads, say) and each count k from its size down to 0,
    the k units of that group with the highest scores are kept (ties: the lower index first) and all other groups
    are whole; every such network is one coalition of ``game`` (the test split's), all evaluated in one call.

    Args:
        scores: one score per unit of all groups (a method's first scores).
        groups: every unit group of the game, in player order.
        game: the neuron game on the test split (accuracy).
        layers: the groups to prune, one at a time (default: all of them).
        cache: coalition (packed bits) -> value, shared between the calls for one trained network: the whole
            network and each emptied layer are the same coalitions for every method, and methods often agree on a
            layer's order, so only coalitions not seen before are evaluated (in one call).

    Returns:
        One record per (layer, kept): ``layer``, ``units_kept``, ``size``, ``accuracy``.
    """
    scores = np.asarray(scores, dtype=float)
    n = sum(g.size for g in groups)
    coalitions, records = [], []
    for group in groups if layers is None else layers:
        order = group.players.start + np.argsort(-np.nan_to_num(scores[group.players], nan=-np.inf), kind="stable")
        for kept in range(group.size, -1, -1):
            coalition = np.ones(n, dtype=bool)
            coalition[order[kept:]] = False
            coalitions.append(coalition)
            records.append({"layer": group.name, "units_kept": kept, "size": group.size})
    cache = {} if cache is None else cache
    keys = [np.packbits(c).tobytes() for c in coalitions]
    new = list(dict.fromkeys(k for k in keys if k not in cache))
    if new:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        for key, value in zip(new, game(np.array([coalitions[first[k]] for k in new])), strict=True):
            cache[key] = float(value)
    return [{**record, "accuracy": cache[key]} for record, key in zip(records, keys, strict=True)]


def fine_tune(model: nn.Sequential, groups: Sequence[UnitGroup], mask: np.ndarray, x: torch.Tensor, y: torch.Tensor,
              *, epochs: int = 1, lr: float = 1e-3, batch_size: int = 128, seed: int = 0) -> nn.Sequential:
    """A copy of ``model`` trained for a few epochs with the pruned units held at zero (their activations masked).

    Trains with the project's one training loop (``datasets.training.fit``: Adam, constant learning rate).

    Args:
        model: the trained network (not modified).
        groups: unit groups; mask: bool (n_units,) keep-mask.
        x, y: training data (the training split, never the test split).
        epochs, lr, batch_size, seed: the fine-tuning recipe (Adam).

    Returns:
        The fine-tuned copy, with forward hooks that keep the pruned units at zero, in eval mode.
    """
    tuned = copy.deepcopy(model)
    stages = Submodules(tuned)
    device = next(tuned.parameters()).device
    for group in groups:
        keep = torch.as_tensor(mask[group.players], dtype=torch.float32, device=device)

        def hook(_module, _inputs, output, keep=keep, group=group):
            return output * keep.view(unit_shape(group, output))

        stages[group.path].register_forward_hook(hook)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam", schedule="constant")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout draws from the global generator; fork it so the caller's stays put
        training.fit(tuned, TensorDataset(x, y), recipe, seed=seed, device=device, progress=False)
    return tuned.eval()


def evaluate_fine_tuned(model: nn.Sequential, groups: Sequence[UnitGroup], path: PruningPath,
                        fractions: Sequence[float], x_train: torch.Tensor, y_train: torch.Tensor,
                        x_test: torch.Tensor, y_test: torch.Tensor, **recipe) -> list[CurvePoint]:
    """Like :func:`evaluate_path`, but each pruned network is fine-tuned first (see :func:`fine_tune`)."""
    n_units = sum(g.size for g in groups)
    targets = kept_counts(fractions, n_units)
    points = []
    for f in sorted(targets, key=targets.get):
        r = targets[f]
        mask = path.masks[r]
        tuned = fine_tune(model, groups, mask, x_train, y_train, **recipe)
        kept, total = parameter_counts(model, groups, mask)
        points.append(CurvePoint(f, int(mask.sum()), float(mask.mean()), kept / total,
                                 _accuracy(tuned, x_test, y_test), int(path.n_evaluations[r]),
                                 float(path.seconds[r]), int(path.n_forward.get(r, 0)),
                                 int(path.n_backward.get(r, 0))))
    return points
