"""Unit scorers: one score per prunable unit, higher meaning more important (Torch-Pruning's ``Importance``).

Every method of the benchmark, GTAP and baselines alike, is a scorer in ``SCORERS``; pruning strategies
(``methods.pruning.strategies``) take any of them. A scorer sees a :class:`PruningProblem` (the trained model, its
units and the *validation* data) and may be told that some units are fixed in or out (the iterated strategies); it
returns scores for the free units and what it spent, in coalition evaluations.

Variants are constructor arguments of frozen dataclasses, never subclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from datasets.errors import UsageError
from datasets.registry import Registry
from methods.games.graph import GraphGame, neuron_game
from methods.games.neuron import NeuronGame
from methods.network.structure import Submodules, UnitGroup, producer_rows, unit_groups, unit_shape


@dataclass
class PruningProblem:
    """What a scorer may look at.

    Attributes:
        model: the trained network (never modified).
        units: the unit sites (``datasets.sites``; a flat model's stage names).
        x: validation inputs; y: validation labels (index estimation and tuning never see the test split).
        game: the neuron game on (x, y).
        groups: the unit groups with their producer/consumer layers.
    """

    model: nn.Module
    units: tuple[str, ...]
    x: torch.Tensor
    y: torch.Tensor
    game: NeuronGame | GraphGame
    groups: list[UnitGroup] = field(default_factory=list)

    @classmethod
    def build(cls, model: nn.Module, units: Sequence[str], x: torch.Tensor, y: torch.Tensor,
              **game_options: Any) -> PruningProblem:
        """Builds the game and the unit layout; ``game_options`` go to the game (``methods.games.neuron_game``)."""
        units = tuple(units)
        game = neuron_game(model, units, x, y, **game_options)
        groups = unit_groups(model, units, tuple(x.shape[1:]))
        return cls(model=model, units=units, x=x, y=y, game=game, groups=groups)

    @property
    def n_units(self) -> int:
        return self.game.n_players

    def group_players(self) -> list[np.ndarray]:
        return [np.arange(g.players.start, g.players.stop) for g in self.groups]


@dataclass(frozen=True)
class Scores:
    """Scores of the units (NaN for units fixed in or out) and what computing them cost.

    Attributes:
        values: one score per unit.
        n_evaluations: coalition evaluations of the neuron game.
        n_forward: forward passes over single examples outside the game (examples x passes: a batch of 256
            forwarded once counts 256), whether through the whole network or, as Captum's layer evaluations, a
            full forward whose result is partly discarded.
        n_backward: backward passes over single examples (examples x passes), full or down to a layer only.
    """

    values: np.ndarray
    n_evaluations: int = 0
    n_forward: int = 0
    n_backward: int = 0


UNIT_AXIS = "unit_fraction"  # a curve over kept units (structured pruning)
PARAM_AXIS = "param_fraction"  # a curve over kept weights (unstructured pruning)
FAMILIES = ("power-index", "magnitude", "gradient", "activation", "attribution", "random")


class Scorer(Protocol):
    """Scores units; higher is more important.

    Besides ``__call__``, a scorer declares what the edge (suites, runner, reports) needs to know about it, so that
    no module outside this file names a scorer:

    Attributes:
        family: what kind of evidence it scores with, one of ``FAMILIES`` (reports group and colour by it).
        axis: ``UNIT_AXIS`` for scorers of units; ``PARAM_AXIS`` for scorers that prune individual weights, which
            provide ``weight_scores(problem)`` instead of unit scores.
        needs: names of values the runner must supply before the scorer can run: ``"keep_prob"`` is MCUE's d
            (``resolve(keep_prob=d)`` fills it in).
    """

    family: ClassVar[str]

    @property
    def axis(self) -> str: ...

    @property
    def needs(self) -> frozenset[str]: ...

    def resolve(self, **values: Any) -> Scorer:
        """A copy with the values named in ``needs`` filled in."""
        ...

    def __call__(self, problem: PruningProblem, *, rng: np.random.Generator, include: np.ndarray | None = None,
                 exclude: np.ndarray | None = None, target: int | None = None) -> Scores:
        """Scores the free units.

        Args:
            problem: the model, units and validation data.
            rng: the only source of randomness.
            include: bool (n_units,), units known to stay (Iterated Building).
            exclude: bool (n_units,), units already pruned (Iterated Pruning); they are masked out while scoring.
            target: the kept unit count the calling strategy is heading to (``methods.pruning.strategies`` says which);
                None when the caller has none. Only scorers whose estimate depends on the size of the network
                being sought use it (GTAP's ``follow``); every other scorer accepts it and ignores it.

        Returns:
            Scores with NaN at fixed units.
        """
        ...


class ScorerBase:
    """The defaults of the declarations of :class:`Scorer`: unit axis, nothing needed."""

    family: ClassVar[str] = ""

    @property
    def axis(self) -> str:
        return UNIT_AXIS

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()

    def resolve(self, **values: Any) -> Scorer:
        unknown = sorted(set(values) - set(self.needs))
        if unknown:
            raise UsageError(f"{type(self).__name__} does not need {unknown}; it needs {sorted(self.needs)}")
        return dataclasses.replace(self, **values) if values else self  # type: ignore[type-var]


SCORERS: Registry[type] = Registry("method")  # filled by the modules that ``methods.scorers`` imports


def _fixed(problem: PruningProblem, include, exclude) -> tuple[np.ndarray, np.ndarray]:
    n = problem.n_units
    include = np.zeros(n, bool) if include is None else np.asarray(include, bool)
    exclude = np.zeros(n, bool) if exclude is None else np.asarray(exclude, bool)
    return include, exclude


def _with_nan(values: np.ndarray, include: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).copy()
    values[include | exclude] = np.nan
    return values


def check_method_params(name: str, params: dict[str, Any]) -> type:
    """The scorer class of a registered method, after checking that every parameter name is one of its fields."""
    cls = SCORERS.get(name)
    valid = [f.name for f in dataclasses.fields(cls)]  # not the ClassVars (family, search_space)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(f"unknown parameter(s) {unknown} for method {name!r}; valid: {', '.join(valid) or 'none'}")
    return cls


def build_scorer(name: str, **params: Any) -> Scorer:
    """A registered scorer with its parameters; an unknown parameter is an error that lists the valid ones."""
    return check_method_params(name, params)(**params)


def _attached(problem: PruningProblem) -> list[str]:
    from methods.network.structure import attached_parameters

    return attached_parameters(problem.model, problem.groups)


def _per_unit_max(groups: Sequence[UnitGroup], values: dict[str, torch.Tensor]) -> np.ndarray:
    out = []
    for group in groups:
        best = torch.zeros(group.size, dtype=torch.float64)
        if group.producer is not None:
            best = torch.maximum(best, producer_rows(group, values[group.producer].detach().double()).amax(1))
        if group.consumer is not None:
            v = values[group.consumer].detach().double()
            cols = v.transpose(0, 1).reshape(v.shape[1], -1).amax(1).reshape(group.size, group.fan).amax(1)
            best = torch.maximum(best, cols)
        out.append(best.numpy())
    return np.concatenate(out)


@contextlib.contextmanager
def _unit_masks(model: nn.Module, groups: Sequence[UnitGroup], keep: np.ndarray, *,
                record: list[torch.Tensor] | None = None) -> Iterator[None]:
    """Zeroes the units outside ``keep`` during forward passes; optionally adds sum |a| per unit to ``record``.

    The hooks return the masked output, so hooks registered after them (Captum's, in
    ``methods.scorers.captum``) see the masked activations.
    """
    hooks = []
    for g, group in enumerate(groups):
        mask = torch.as_tensor(keep[group.players], dtype=torch.float32, device=next(model.parameters()).device)

        def hook(_module, _inputs, output, mask=mask, g=g, group=group):
            output = output * mask.view(unit_shape(group, output))
            if record is not None:
                # Statistics are means over a unit's positions (a conv channel's feature map, a token sequence),
                # so channels and neurons stay comparable in a global ranking, summed over the batch.
                per_example = output.detach().abs().movedim(group.dim, 1)
                spatial = list(range(2, per_example.dim()))
                per_example = per_example.mean(spatial) if spatial else per_example
                record[g] += per_example.sum(0).double().cpu()
            return output

        hooks.append(hook)
    with site_hooks(model, groups, hooks):
        yield


@contextlib.contextmanager
def site_hooks(model: nn.Module, groups: Sequence[UnitGroup], hooks: Sequence[Any]) -> Iterator[None]:
    """Registers ``hooks[g]`` as a forward hook on group g's site module for the duration of the block."""
    stages = Submodules(model)
    handles = [stages[group.path].register_forward_hook(hook) for group, hook in zip(groups, hooks, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
