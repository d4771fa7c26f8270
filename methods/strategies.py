"""Pruning strategies (GTAP Sec. III-B b): Top-n, Iterated Pruning and Iterated Building, each over any scorer.

A strategy turns scores into a *path*: one keep-mask per target size. The masks of one path nest (a smaller target's
units are a subset of a larger target's), and each target records the cumulative cost of reaching it, so compression
curves compare methods at equal cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from methods.registry import Registry
from methods.scorers import PruningProblem, Scorer


@dataclass
class PruningPath:
    """Keep-masks for a set of target unit counts.

    Attributes:
        masks: target count -> bool (n_units,) keep-mask.
        n_evaluations: target count -> coalition evaluations spent to reach it (cumulative).
        seconds: target count -> wall seconds spent to reach it (cumulative).
        first_scores: the scores of the first scoring round (the unpruned network, or the empty network for
            Iterated Building), used for ranking correlations between methods.
        rounds: number of scoring rounds.
        on_record: called with (target, mask) as each target is reached, e.g. to evaluate a partial curve and stop
            a hopeless tuning trial early (it may raise to abort the strategy).
    """

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    n_evaluations: dict[int, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    first_scores: np.ndarray | None = None
    rounds: int = 0
    on_record: Callable[[int, np.ndarray], None] | None = None

    def record(self, target: int, mask: np.ndarray, evaluations: int, seconds: float) -> None:
        self.masks[target] = mask.copy()
        self.n_evaluations[target] = evaluations
        self.seconds[target] = seconds
        if self.on_record is not None:
            self.on_record(target, self.masks[target])


Strategy = Callable[..., PruningPath]
STRATEGIES: Registry[Strategy] = Registry("strategy")


def _targets(kept_counts: Sequence[int], n: int) -> list[int]:
    targets = sorted({int(c) for c in kept_counts})
    if not targets or targets[0] < 0 or targets[-1] > n:
        raise ValueError(f"target unit counts must lie in [0, {n}], got {list(kept_counts)}")
    return targets


def _step_size(step: int | float, n: int) -> int:
    """``step`` is a unit count, or a fraction of all units when it is a float in (0, 1) ("s" / "d" in the paper)."""
    if isinstance(step, float) and 0 < step < 1:
        return max(1, round(step * n))
    if int(step) != step or step < 1:
        raise ValueError(f"step must be a positive unit count or a fraction in (0, 1), got {step}")
    return int(step)


def _split(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` spread over groups in proportion to ``sizes`` by largest remainder: the parts sum to ``total``."""
    exact = total * sizes / sizes.sum()
    parts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: total - parts.sum()]] += 1
    return parts


def _order(values: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidates sorted by increasing score, ties broken at random (so equal scores do not favour low indices)."""
    tie_break = rng.random(len(candidates))
    return candidates[np.lexsort((tie_break, values[candidates]))]


@STRATEGIES.register("top-n")
def top_n(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *, rng: np.random.Generator,
          allocation: str = "global", step: int | float | None = None,
          on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Top-n Pruning: score once, keep the r highest-scoring units for each target r.

    Args:
        scorer: any scorer.
        problem: model, units and validation data.
        kept_counts: target numbers of kept units.
        rng: randomness (scorer and tie breaks).
        allocation: "global" ranks all units together; "uniform" keeps the same fraction of every unit group
            (the layer-wise selection of the paper's AlexNet experiment).
        step: unused; accepted so every strategy has one signature.
        on_record: see ``PruningPath``.

    Returns:
        The path; all targets share one scoring round's cost.
    """
    n = problem.n_units
    targets = _targets(kept_counts, n)
    if allocation not in ("global", "uniform"):
        raise ValueError(f"unknown allocation {allocation!r}; valid: global, uniform")
    start, before = time.perf_counter(), problem.game.n_evaluations
    scores = scorer(problem, rng=rng)
    evaluations = scores.n_evaluations
    seconds = time.perf_counter() - start
    path = PruningPath(first_scores=scores.values, rounds=1, on_record=on_record)
    if allocation == "global":
        ranking = _order(scores.values, np.arange(n), rng)[::-1]  # best first
        for r in targets:
            mask = np.zeros(n, bool)
            mask[ranking[:r]] = True
            path.record(r, mask, evaluations, seconds)
    else:
        rankings = [_order(scores.values, np.arange(g.players.start, g.players.stop), rng)[::-1]
                    for g in problem.groups]
        sizes = np.array([len(ranking) for ranking in rankings])
        for r in targets:
            mask = np.zeros(n, bool)
            for ranking, keep in zip(rankings, _split(r, sizes), strict=True):
                mask[ranking[:keep]] = True
            path.record(r, mask, evaluations, seconds)
    assert problem.game.n_evaluations - before == evaluations
    return path


@STRATEGIES.register("iterated-pruning")
def iterated_pruning(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *,
                     rng: np.random.Generator, step: int | float = 0.05, allocation: str = "global",
                     on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Iterated Pruning: from the full network, repeatedly drop the ``step`` lowest-scoring units and re-score with
    the dropped units always excluded, until the smallest target is reached.

    Args:
        step: units dropped per round (a count, or a fraction of all units); never overshoots a target.
        allocation: accepted for a uniform signature; only "global" is meaningful here.
        on_record: see ``PruningPath``.

    Returns:
        Nested masks, cumulative cost per target.
    """
    n = problem.n_units
    targets = _targets(kept_counts, n)
    s = _step_size(step, n)
    kept = np.ones(n, bool)
    path = PruningPath(on_record=on_record)
    evaluations, start = 0, time.perf_counter()
    pending = sorted(targets, reverse=True)
    if pending[0] == n:
        path.record(n, kept, 0, 0.0)
        pending.pop(0)
    while pending:
        scores = scorer(problem, rng=rng, exclude=~kept)
        path.first_scores = scores.values if path.first_scores is None else path.first_scores
        path.rounds += 1
        evaluations += scores.n_evaluations
        remove = min(s, int(kept.sum()) - pending[0])
        order = _order(scores.values, np.flatnonzero(kept), rng)
        kept[order[:remove]] = False
        if kept.sum() == pending[0]:
            path.record(pending.pop(0), kept, evaluations, time.perf_counter() - start)
    return path


@STRATEGIES.register("iterated-building")
def iterated_building(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *,
                      rng: np.random.Generator, step: int | float = 0.05, allocation: str = "global",
                      on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Iterated Building: from the empty network, repeatedly add the ``step`` highest-scoring units and re-score with
    the added units always included, until the largest target is reached.

    Args:
        step: units added per round (a count, or a fraction of all units); never overshoots a target.
        allocation: accepted for a uniform signature; only "global" is meaningful here.
        on_record: see ``PruningPath``.

    Returns:
        Nested masks, cumulative cost per target.
    """
    n = problem.n_units
    targets = _targets(kept_counts, n)
    s = _step_size(step, n)
    kept = np.zeros(n, bool)
    path = PruningPath(on_record=on_record)
    evaluations, start = 0, time.perf_counter()
    pending = sorted(targets)
    if pending[0] == 0:
        path.record(0, kept, 0, 0.0)
        pending.pop(0)
    while pending:
        scores = scorer(problem, rng=rng, include=kept)
        path.first_scores = scores.values if path.first_scores is None else path.first_scores
        path.rounds += 1
        evaluations += scores.n_evaluations
        add = min(s, pending[0] - int(kept.sum()))
        order = _order(scores.values, np.flatnonzero(~kept), rng)
        kept[order[::-1][:add]] = True
        if kept.sum() == pending[0]:
            path.record(pending.pop(0), kept, evaluations, time.perf_counter() - start)
    return path
