"""The mean-activation baseline (network trimming)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from methods.scorers.base import (
    SCORERS,
    ScorerBase,
    Scores,
    _fixed,
    _unit_masks,
    _with_nan,
)


@SCORERS.register("activation")
@dataclass(frozen=True)
class MeanActivation(ScorerBase):
    """Mean absolute activation of each unit (over its feature map and the validation data), after Hu et al.'s
    network trimming: units that are rarely active score low."""

    batch_size: int = 2048

    family: ClassVar[str] = "activation"

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        sums = [torch.zeros(g.size, dtype=torch.float64) for g in problem.groups]
        with torch.no_grad(), _unit_masks(problem.model, problem.groups, ~exclude, record=sums):
            for xb in problem.x.split(self.batch_size):
                problem.model(xb)
        values = torch.cat(sums).numpy() / len(problem.y)
        return Scores(_with_nan(values, include, exclude), n_forward=len(problem.y))
