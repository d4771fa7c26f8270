"""The random baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from methods.scorers.base import (
    SCORERS,
    ScorerBase,
    Scores,
    _fixed,
    _with_nan,
)


@SCORERS.register("random")
@dataclass(frozen=True)
class RandomScorer(ScorerBase):
    """Uniformly random scores: the floor every method should beat."""

    family: ClassVar[str] = "random"

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        return Scores(_with_nan(rng.random(problem.n_units), include, exclude))
