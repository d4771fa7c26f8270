"""Weight magnitude pruning (WMP), per neuron and unstructured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from datasets.errors import UsageError
from methods.network.structure import Submodules, per_unit_weight_statistic
from methods.scorers.base import (
    PARAM_AXIS,
    SCORERS,
    UNIT_AXIS,
    PruningProblem,
    ScorerBase,
    Scores,
    _attached,
    _fixed,
    _per_unit_max,
    _with_nan,
)


@SCORERS.register("wmp")
@dataclass(frozen=True)
class WeightMagnitude(ScorerBase):
    """Weight magnitude pruning (WMP). ``form="neuron"``: mean |w| over each unit's incoming and outgoing weights.

    ``form="unstructured"`` is the global magnitude pruning the paper compares with (Frankle & Carbin): it prunes
    individual weights, so it is on the parameter axis and gives ``weight_scores`` (|w| of every attached weight,
    which ``methods.pruning.curves.weight_pruning_curve`` ranks network-wide); as unit scores it gives each unit's
    largest attached |w| (a unit survives while any of its weights does).
    """

    form: str = "neuron"

    family: ClassVar[str] = "magnitude"

    def __post_init__(self) -> None:
        if self.form not in ("neuron", "unstructured"):
            raise UsageError(f"unknown form {self.form!r}; valid: neuron, unstructured")

    @property
    def axis(self) -> str:
        return PARAM_AXIS if self.form == "unstructured" else UNIT_AXIS

    def weight_scores(self, problem: PruningProblem) -> dict[str, torch.Tensor]:
        """|w| of each weighted layer attached to the units (the parameter-axis protocol)."""
        stages = Submodules(problem.model)
        return {name: stages[name].weight.detach().abs() for name in _attached(problem)}

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        stages = Submodules(problem.model)
        magnitudes = {name: stages[name].weight.abs() for name in _attached(problem)}
        if self.form == "neuron":
            values = per_unit_weight_statistic(problem.model, problem.groups, magnitudes)
        else:
            values = _per_unit_max(problem.groups, magnitudes)
        return Scores(_with_nan(values, include, exclude))
