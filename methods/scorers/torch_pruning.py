"""Torch-Pruning's importances as unit scorers (magnitude, Taylor, Hessian/OBD)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.errors import UsageError
from methods.network.physical import dependency_graph
from methods.network.structure import Submodules, UnitGroup, producer_rows
from methods.scorers.base import (
    SCORERS,
    PruningProblem,
    ScorerBase,
    Scores,
    _fixed,
    _unit_masks,
    _with_nan,
)
from methods.scorers.library import _check_choice, _check_count, _library, private_copy

# Torch-Pruning's "max" and "prod" are left out: for a layer that reads a unit through several columns (a channel
# after a Flatten) they scatter the per-column values onto the unit with repeated indices, so one arbitrary column
# survives instead of the columns' total.
GROUP_REDUCTIONS = ("mean", "sum", "first")


def _local_terms(kind: str, weight: torch.Tensor, p: int) -> torch.Tensor:
    """Per-weight terms of a Torch-Pruning importance: |w|^p (magnitude), |w g| (Taylor), w^2 h (Hessian/OBD), with
    g the weight's gradient and h the mean squared per-example gradient (stored in ``.grad`` for "hessian")."""
    w = weight.detach()
    if kind == "magnitude":
        return w.abs().pow(p)
    if kind == "taylor":
        return (w * weight.grad).abs()
    if kind == "hessian":
        return w.pow(2) * weight.grad
    raise ValueError(f"unknown importance {kind!r}")


def importance_by_hand(group: UnitGroup, stages: dict[str, nn.Module], kind: str, *, p: int = 2,
                       group_reduction: str = "mean") -> torch.Tensor:
    """Torch-Pruning's importance formula for one unit group, computed from our producer/consumer layout.

    Each coupled layer gives one term per unit, the sum of ``_local_terms`` over the unit's weights: its producer's
    row (filter) and its consumer's columns (``fan`` of them after a Flatten); the terms are then reduced over the
    layers like Torch-Pruning's ``group_reduction``. Used for groups Torch-Pruning cannot prune on their own, such as
    flattened conv features (a feature is one input column of the next Linear layer); with the consumer as the only
    layer every reduction returns its term.
    """
    terms = []
    if group.producer is not None:
        terms.append(producer_rows(group, _local_terms(kind, stages[group.producer].weight, p)).sum(1))
    if group.consumer is not None:
        v = _local_terms(kind, stages[group.consumer].weight, p)
        per_column = v.transpose(0, 1).reshape(v.shape[1], -1).sum(1)
        terms.append(per_column.reshape(group.size, group.fan).sum(1))
    stacked = torch.stack(terms).float()
    if group_reduction == "mean":
        return stacked.mean(0)
    if group_reduction == "sum":
        return stacked.sum(0)
    return stacked[0]  # "first"


def tp_pruning_group(graph: Any, stages: dict[str, nn.Module], group: UnitGroup) -> Any:
    """Torch-Pruning's group of everything coupled to the output channels of ``group``'s producer."""
    tp = _library("torch_pruning", "torch-pruning")
    layer = stages[group.producer]
    prune = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
    return graph.get_pruning_group(layer, prune, idxs=list(range(group.size)))


def _coupled_layers(tp_groups: Sequence[Any], groups: Sequence[UnitGroup], stages: dict[str, nn.Module]) -> list:
    """The weighted modules whose weights enter any score: those of the pruning groups, and the producers and
    consumers of the groups scored by hand (heads: their attention's qkv and output projection)."""
    modules: list[nn.Module] = []
    for tp_group in tp_groups:
        for dep, _ in tp_group:
            module = dep.target.module
            if getattr(module, "weight", None) is not None and module not in modules:
                modules.append(module)
    for group in groups:
        for path in (group.producer, group.consumer):
            if path is not None and stages[path] not in modules:
                modules.append(stages[path])
    return modules


def _loss_gradients(model: nn.Module, problem: PruningProblem, keep: np.ndarray, batch_size: int) -> None:
    """Accumulates in ``.grad`` the gradient of the mean cross-entropy over all validation examples."""
    model.zero_grad(set_to_none=True)
    with _unit_masks(model, problem.groups, keep):
        for xb, yb in zip(problem.x.split(batch_size), problem.y.split(batch_size), strict=True):
            (F.cross_entropy(model(xb), yb, reduction="sum") / len(problem.y)).backward()


def _squared_gradients(model: nn.Module, problem: PruningProblem, keep: np.ndarray, modules: Sequence[nn.Module],
                       batch_size: int) -> None:
    """Puts in each module's ``weight.grad`` the mean over validation examples of the squared per-example gradient
    of the example's cross-entropy (the empirical Fisher diagonal that OBD uses for the Hessian's)."""
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    wanted = [names[id(m.weight)] for m in modules]
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in wanted}
    rest.update(dict(model.named_buffers()))

    def loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (weights, rest), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    weights = {n: dict(model.named_parameters())[n].detach() for n in wanted}
    totals = {n: torch.zeros_like(w) for n, w in weights.items()}
    with _unit_masks(model, problem.groups, keep):
        for xb, yb in zip(problem.x.split(batch_size), problem.y.split(batch_size), strict=True):
            for n, g in per_example(weights, xb, yb).items():
                totals[n] += g.pow(2).sum(0)
    model.zero_grad(set_to_none=True)
    parameters = dict(model.named_parameters())
    for n, total in totals.items():
        parameters[n].grad = total / len(problem.y)


def tp_scores(problem: PruningProblem, exclude: np.ndarray, *, kind: str, p: int = 2, group_reduction: str = "mean",
              batch_size: int = 256) -> tuple[np.ndarray, int, int]:
    """Torch-Pruning's importance of every unit (see the ``tp-*`` scorers).

    Returns:
        (scores (n_units,), forward passes, backward passes) over single examples; tracing the dependency graph
        forwards one example.
    """
    tp = _library("torch_pruning", "torch-pruning")
    model = private_copy(problem.model)
    stages = Submodules(model)
    n_forward = n_backward = 0
    # Heads are scored by hand: Torch-Pruning's graph sees the qkv layer's rows, not which head each belongs to.
    owned = [g for g in problem.groups if g.producer is not None and not g.heads]
    tp_groups: dict[str, Any] = {}
    if owned:
        graph = dependency_graph(model, problem.x[:1])
        n_forward += 1
        tp_groups = {g.name: tp_pruning_group(graph, stages, g) for g in owned}
    n = len(problem.y)
    if kind == "taylor":
        _loss_gradients(model, problem, ~exclude, batch_size)
        n_forward, n_backward = n_forward + n, n_backward + n
    elif kind == "hessian":
        modules = _coupled_layers(list(tp_groups.values()), problem.groups, stages)
        _squared_gradients(model, problem, ~exclude, modules, batch_size)
        n_forward, n_backward = n_forward + n, n_backward + n
    # Raw scores (normalizer=None): normalising per layer is a choice of the pruning strategy, not of the importance.
    if kind == "magnitude":
        importance = tp.importance.MagnitudeImportance(p=p, group_reduction=group_reduction, normalizer=None)
    elif kind == "taylor":
        importance = tp.importance.TaylorImportance(group_reduction=group_reduction, normalizer=None)
    else:
        importance = tp.importance.HessianImportance(group_reduction=group_reduction, normalizer=None)
    values = []
    for group in problem.groups:
        if group.name in tp_groups:
            scores = importance(tp_groups[group.name])
        else:
            scores = importance_by_hand(group, stages, kind, p=p, group_reduction=group_reduction)
        values.append(scores.detach().double().cpu().numpy())
    model.zero_grad(set_to_none=True)
    return np.concatenate(values), n_forward, n_backward


@dataclass(frozen=True)
class _TorchPruningScorer(ScorerBase):
    group_reduction: str = "mean"

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_choice("group_reduction", self.group_reduction, GROUP_REDUCTIONS)
        if hasattr(self, "batch_size"):
            _check_count("batch_size", self.batch_size)

    def _options(self) -> dict[str, Any]:
        return {}

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        values, n_forward, n_backward = tp_scores(problem, exclude, kind=self.kind,
                                                  group_reduction=self.group_reduction, **self._options())
        return Scores(_with_nan(values, include, exclude), n_forward=n_forward, n_backward=n_backward)


@SCORERS.register("tp-magnitude")
@dataclass(frozen=True)
class TPMagnitude(_TorchPruningScorer):
    """Torch-Pruning's MagnitudeImportance: per coupled layer, sum of |w|^p over a unit's weights, reduced over the
    layers of its pruning group (producer's row or filter, consumer's columns, a BatchNorm's scale).

    Raw scores (``normalizer=None``; Torch-Pruning's default "mean" divides by the layer's mean score, which is the
    strategy's business) and no bias (Torch-Pruning's default). A group without a producer (flattened conv
    features) gets the same formula by hand on its consumer's input columns (``importance_by_hand``). Reads weights
    only, so ``exclude`` only blanks the pruned units (as ``wmp``).

    Args:
        p: the norm's degree, 1 or 2 (Torch-Pruning's default 2; the term is |w|^p, not its p-th root).
        group_reduction: how the layers' terms combine: "mean" (Torch-Pruning's default), "sum" or "first" (the
            producer only: Li et al.'s filter norm).
    """

    p: int = 2

    family: ClassVar[str] = "magnitude"
    kind: ClassVar[str] = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p not in (1, 2) or isinstance(self.p, bool):
            raise UsageError(f"p must be 1 or 2, got {self.p!r}")

    def _options(self) -> dict[str, Any]:
        return {"p": self.p}


@SCORERS.register("tp-taylor")
@dataclass(frozen=True)
class TPTaylor(_TorchPruningScorer):
    """Torch-Pruning's TaylorImportance (Molchanov et al. 2019): per coupled layer, sum of |w * dL/dw| over a unit's
    weights, with L the mean cross-entropy over all validation examples (pruned units masked); the layers' terms are
    reduced by ``group_reduction``. Raw scores (``normalizer=None``), no bias, one-weight-at-a-time
    (``multivariable=False``), all Torch-Pruning's defaults but the normalizer. Groups without a producer get the
    same formula by hand on their consumer's columns.

    Args:
        group_reduction: "mean" (Torch-Pruning's default), "sum" or "first".
        batch_size: validation examples per backward pass.
    """

    batch_size: int = 1024

    family: ClassVar[str] = "gradient"
    kind: ClassVar[str] = "taylor"

    def _options(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}


@SCORERS.register("tp-hessian")
@dataclass(frozen=True)
class TPHessian(_TorchPruningScorer):
    """Torch-Pruning's HessianImportance (Optimal Brain Damage): per coupled layer, sum of w^2 h over a unit's
    weights, h the diagonal Hessian approximated by the mean over validation examples of the squared per-example
    gradient of the example's cross-entropy (the empirical Fisher), pruned units masked.

    Torch-Pruning's recipe accumulates per-example gradients with ``accumulate_grad``; in torch-pruning 1.6 that
    method keeps only the last example's (it looks its dictionary up by parameter name but stores by parameter), so
    the mean of squared per-example gradients is computed here (``torch.func.vmap``) and handed to the importance in
    ``.grad``, which it then reads as h. Raw scores (``normalizer=None``), no bias; groups without a producer get
    the same formula by hand on their consumer's columns.

    Args:
        group_reduction: "mean" (Torch-Pruning's default), "sum" or "first".
        batch_size: validation examples per vectorised per-example gradient (memory: batch_size x the coupled
            layers' weights).
    """

    batch_size: int = 64

    family: ClassVar[str] = "gradient"
    kind: ClassVar[str] = "hessian"

    def _options(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}
