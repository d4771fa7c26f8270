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

from datasets.errors import UsageError
from datasets.registry import Registry
from methods.network.structure import Submodules
from methods.scorers import PruningProblem, Scorer


@dataclass
class PruningPath:
    """Keep-masks for a set of target unit counts.

    Attributes:
        masks: target count -> bool (n_units,) keep-mask.
        n_evaluations: target count -> coalition evaluations spent to reach it (cumulative).
        seconds: target count -> wall seconds spent to reach it (cumulative).
        n_forward, n_backward: target count -> example forward and backward passes the scorer declared spending
            to reach it (cumulative; a scorer's ``Scores.n_forward`` / ``n_backward``).
        first_scores: the scores of the first scoring round (the unpruned network, or the empty network for
            Iterated Building), used for ranking correlations between methods.
        rounds: number of scoring rounds.
        on_record: called with (target, mask) as each target is reached, e.g. to evaluate a partial curve and stop
            a hopeless tuning trial early (it may raise to abort the strategy).
    """

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    n_evaluations: dict[int, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    n_forward: dict[int, int] = field(default_factory=dict)
    n_backward: dict[int, int] = field(default_factory=dict)
    first_scores: np.ndarray | None = None
    rounds: int = 0
    on_record: Callable[[int, np.ndarray], None] | None = None

    def record(self, target: int, mask: np.ndarray, evaluations: int, seconds: float, *, forward: int = 0,
               backward: int = 0) -> None:
        self.masks[target] = mask.copy()
        self.n_evaluations[target] = evaluations
        self.seconds[target] = seconds
        self.n_forward[target] = forward
        self.n_backward[target] = backward
        if self.on_record is not None:
            self.on_record(target, self.masks[target])


Strategy = Callable[..., PruningPath]
STRATEGIES: Registry[Strategy] = Registry("strategy")


def _targets(kept_counts: Sequence[int], n: int) -> list[int]:
    targets = sorted({int(c) for c in kept_counts})
    if not targets or targets[0] < 0 or targets[-1] > n:
        raise UsageError(f"target unit counts must lie in [0, {n}], got {list(kept_counts)}")
    return targets


def _step_size(step: int | float, n: int) -> int:
    """``step`` is a unit count, or a fraction of all units when it is a float in (0, 1) ("s" / "d" in the paper)."""
    if isinstance(step, float) and 0 < step < 1:
        return max(1, round(step * n))
    if int(step) != step or step < 1:
        raise UsageError(f"step must be a positive unit count or a fraction in (0, 1), got {step}")
    return int(step)


def _split(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` spread over groups in proportion to ``sizes`` by largest remainder: the parts sum to ``total``."""
    exact = total * sizes / sizes.sum()
    parts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: total - parts.sum()]] += 1
    return parts


ALLOCATIONS = ("global", "uniform", "normalized")
WMP_ALLOCATION = "wmp@"  # "wmp@F": Top-n per layer, each layer's share taken from unstructured WMP at F


def check_allocation(allocation: str, *, uniform_ok: bool = True) -> None:
    """An unknown allocation fails with one line; the per-layer ones ("uniform", "wmp@F") are Top-n's only."""
    if str(allocation).startswith(WMP_ALLOCATION):
        wmp_keep_fraction(allocation)
        if not uniform_ok:
            raise UsageError(f"allocation {allocation!r} fixes each layer's share: strategy 'top-n' only")
        return
    valid = ALLOCATIONS if uniform_ok else tuple(a for a in ALLOCATIONS if a != "uniform")
    if allocation not in valid:
        extra = f", {WMP_ALLOCATION}F (F in (0, 1], e.g. wmp@0.3)" if uniform_ok else ""
        raise UsageError(f"unknown allocation {allocation!r}; valid here: {', '.join(valid)}{extra}")


def is_per_layer(allocation: str) -> bool:
    """Whether ``allocation`` fixes every layer's kept count (rather than ranking the units network-wide)."""
    return allocation == "uniform" or str(allocation).startswith(WMP_ALLOCATION)


def wmp_keep_fraction(allocation: str) -> float:
    """F of an allocation "wmp@F", checked to lie in (0, 1]."""
    text = str(allocation)[len(WMP_ALLOCATION):]
    try:
        keep = float(text)
    except ValueError:
        keep = float("nan")
    if not 0 < keep <= 1:
        raise UsageError(f"allocation {allocation!r}: F of wmp@F must be a number in (0, 1], e.g. wmp@0.3")
    return keep


def wmp_layer_fractions(problem: PruningProblem, keep: float) -> np.ndarray:
    """Each unit group's share of parameters kept by global unstructured weight magnitude pruning at ``keep``.

    The GTAP paper's AlexNet protocol (Sec. IV-C): "the proportion of model parameters in each layer that are
    selected into the pruned network" by magnitude pruning that keeps 0.3 of the network. Our reading: the weights
    are those of the layers that produce the units (a group's producer, e.g. ``conv2`` for ``relu2``); the
    ``keep`` fraction of them with the largest |w|, ranked across all those layers together, is kept, and a group's
    share is the kept fraction of its producer's weights. A group without a producer gets ``keep``.
    """
    modules = Submodules(problem.model)
    weights = [None if g.producer is None else modules[g.producer].weight.detach().abs().flatten().double()
               for g in problem.groups]
    present = [w for w in weights if w is not None]
    if not present:
        return np.full(len(problem.groups), keep)
    everything = np.sort(np.concatenate([w.cpu().numpy() for w in present]))[::-1]
    kept = max(1, round(keep * len(everything)))
    threshold = everything[kept - 1]
    return np.array([keep if w is None else float((w >= threshold).double().mean()) for w in weights])


def _proportional_counts(total: int, sizes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``total`` units spread over groups in proportion to ``weights``, none above its size (caps filled first)."""
    counts = np.zeros(len(sizes), dtype=int)
    open_ = np.ones(len(sizes), bool)
    remaining = int(total)
    while remaining > 0 and open_.any():
        share = np.where(open_, np.maximum(weights, 1e-12), 0.0)
        parts = _split(remaining, share)
        room = sizes - counts
        over = open_ & (parts >= room)
        if not over.any():
            counts += parts
            break
        counts[over] = sizes[over]  # these layers are full: the rest goes to the others
        remaining = int(total - counts.sum())
        open_ &= ~over
    return counts


def _layer_counts(total: int, sizes: np.ndarray, fractions: np.ndarray | None) -> np.ndarray:
    return _split(total, sizes) if fractions is None else _proportional_counts(total, sizes, sizes * fractions)


def layer_normalized(values: np.ndarray, groups: Sequence) -> np.ndarray:
    """Scores divided by their layer's mean |score| (Torch-Pruning's default ``normalizer="mean"``).

    The fair global ranking for baselines whose raw scale differs between layers: per-neuron WMP on the text FFNs
    scores every unit of the 5,000-fan-in first layer below the medians of the later layers, so a global ranking of
    raw scores deletes that whole layer first. Normalised, each layer's units compete on their relative standing, and
    the layers' kept fractions still differ (unlike ``uniform``). NaN (fixed units) stays NaN; a layer whose free
    scores are all zero is left as is.
    """
    values = np.asarray(values, dtype=np.float64).copy()
    for group in groups:
        part = values[group.players]
        scale = np.nanmean(np.abs(part)) if np.isfinite(part).any() else 0.0
        if scale > 0:
            values[group.players] = part / scale
    return values


def _passes(scores, kind: str) -> int:
    return int(scores.n_forward if kind == "forward" else scores.n_backward)


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
        allocation: "global" ranks all units together; "uniform" keeps the same fraction of every unit group;
            "normalized" ranks all units together on ``layer_normalized`` scores; "wmp@F" (e.g. "wmp@0.3", the
            paper's AlexNet protocol, Sec. IV-C) gives each group a share of every target in proportion to its
            size times ``wmp_layer_fractions(problem, F)`` (no group above its size) and keeps each group's
            highest-scoring units. The per-layer allocations suit layer-wise scores, which do not compare across
            layers.
        step: unused; accepted so every strategy has one signature.
        on_record: see ``PruningPath``.

    Returns:
        The path; all targets share one scoring round's cost.

    The scorer is told the smallest target (``target=min(kept_counts)``): its one ranking serves every target, and
    the smallest is where it decides most (each larger target keeps a superset of its units).
    """
    n = problem.n_units
    targets = _targets(kept_counts, n)
    check_allocation(allocation)
    start, before = time.perf_counter(), problem.game.n_evaluations
    scores = scorer(problem, rng=rng, target=targets[0])
    evaluations = scores.n_evaluations
    passes = {"forward": _passes(scores, "forward"), "backward": _passes(scores, "backward")}
    seconds = time.perf_counter() - start
    path = PruningPath(first_scores=scores.values, rounds=1, on_record=on_record)
    if not is_per_layer(allocation):
        values = layer_normalized(scores.values, problem.groups) if allocation == "normalized" else scores.values
        ranking = _order(values, np.arange(n), rng)[::-1]  # best first
        for r in targets:
            mask = np.zeros(n, bool)
            mask[ranking[:r]] = True
            path.record(r, mask, evaluations, seconds, **passes)
    else:
        rankings = [_order(scores.values, np.arange(g.players.start, g.players.stop), rng)[::-1]
                    for g in problem.groups]
        sizes = np.array([len(ranking) for ranking in rankings])
        fractions = (None if allocation == "uniform"
                     else wmp_layer_fractions(problem, wmp_keep_fraction(allocation)))
        for r in targets:
            mask = np.zeros(n, bool)
            for ranking, keep in zip(rankings, _layer_counts(r, sizes, fractions), strict=True):
                mask[ranking[:keep]] = True
            path.record(r, mask, evaluations, seconds, **passes)
    assert problem.game.n_evaluations - before == evaluations
    return path


DIRECTIONS = ("prune", "build")


def iterated(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *, rng: np.random.Generator,
             direction: str, step: int | float = 0.05, allocation: str = "global",
             on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Iterated Pruning or Iterated Building (GTAP Sec. III-B b), which mirror each other.

    ``direction="prune"`` starts from the full network and repeatedly drops the ``step`` lowest-scoring kept units,
    re-scoring with the dropped units always excluded, down to the smallest target. ``direction="build"`` starts
    from the empty network and repeatedly adds the ``step`` highest-scoring missing units, re-scoring with the added
    units always included, up to the largest target. Ties are broken at random either way. Each round tells the
    scorer the target it is heading to (``target=``): the nearest target not yet reached, the one whose mask this
    round's units will next be judged in (with a single target, that target throughout).

    Args:
        scorer: any scorer.
        problem: model, units and validation data.
        kept_counts: target numbers of kept units.
        rng: randomness (scorer and tie breaks).
        direction: "prune" or "build".
        step: units dropped or added per round (a count, or a fraction of all units); never overshoots a target.
        allocation: "global" ranks the free units on their raw scores each round, "normalized" on
            ``layer_normalized`` scores ("uniform" is Top-n's only).
        on_record: see ``PruningPath``.

    Returns:
        Nested masks, cumulative cost per target.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    check_allocation(allocation, uniform_ok=False)
    building = direction == "build"
    n = problem.n_units
    targets = _targets(kept_counts, n)
    s = _step_size(step, n)
    kept = np.full(n, not building)
    path = PruningPath(on_record=on_record)
    evaluations, start = 0, time.perf_counter()
    passes = {"forward": 0, "backward": 0}
    pending = sorted(targets, reverse=not building)  # the nearest target first
    if pending[0] == int(kept.sum()):
        path.record(pending.pop(0), kept, 0, 0.0)
    while pending:
        # The units already decided stay fixed while the others are scored: in when building, out when pruning.
        fixed = {"include": kept} if building else {"exclude": ~kept}
        scores = scorer(problem, rng=rng, target=pending[0], **fixed)
        path.first_scores = scores.values if path.first_scores is None else path.first_scores
        path.rounds += 1
        evaluations += scores.n_evaluations
        passes = {kind: total + _passes(scores, kind) for kind, total in passes.items()}
        change = min(s, abs(pending[0] - int(kept.sum())))
        values = layer_normalized(scores.values, problem.groups) if allocation == "normalized" else scores.values
        order = _order(values, np.flatnonzero(~kept if building else kept), rng)  # increasing score
        if building:
            kept[order[::-1][:change]] = True  # the best missing units join
        else:
            kept[order[:change]] = False  # the worst kept units go
        if kept.sum() == pending[0]:
            path.record(pending.pop(0), kept, evaluations, time.perf_counter() - start, **passes)
    return path


def scoring_rounds(strategy: str, kept_counts: Sequence[int], n: int, step: int | float = 0.05) -> int:
    """How many times ``strategy`` calls its scorer to reach ``kept_counts`` out of ``n`` units: 1 for Top-n, and
    for the iterated strategies the rounds of ``iterated``'s loop, which depend on the counts alone (a round moves
    ``step`` units, never past the nearest target). A suite's cost in coalition evaluations is this times the
    scorer's budget per estimate."""
    if strategy not in ("iterated-pruning", "iterated-building"):
        return 1
    building = strategy == "iterated-building"
    s, kept = _step_size(step, n), 0 if building else n
    pending = sorted(_targets(kept_counts, n), reverse=not building)
    if pending[0] == kept:
        pending.pop(0)
    rounds = 0
    while pending:
        rounds += 1
        change = min(s, abs(pending[0] - kept))
        kept += change if building else -change
        if kept == pending[0]:
            pending.pop(0)
    return rounds


@STRATEGIES.register("iterated-pruning")
def iterated_pruning(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *,
                     rng: np.random.Generator, step: int | float = 0.05, allocation: str = "global",
                     on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Iterated Pruning: ``iterated`` with ``direction="prune"`` (drop the worst units, re-score without them).

    Args and Returns: as ``iterated``.
    """
    return iterated(scorer, problem, kept_counts, rng=rng, direction="prune", step=step, allocation=allocation,
                    on_record=on_record)


@STRATEGIES.register("iterated-building")
def iterated_building(scorer: Scorer, problem: PruningProblem, kept_counts: Sequence[int], *,
                      rng: np.random.Generator, step: int | float = 0.05, allocation: str = "global",
                      on_record: Callable[[int, np.ndarray], None] | None = None) -> PruningPath:
    """Iterated Building: ``iterated`` with ``direction="build"`` (add the best units, re-score with them in).

    Args and Returns: as ``iterated``.
    """
    return iterated(scorer, problem, kept_counts, rng=rng, direction="build", step=step, allocation=allocation,
                    on_record=on_record)
