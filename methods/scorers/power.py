"""GTAP's scorer: a power index of each unit in the neuron game, and the readings of a d that follows the strategy."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from datasets.errors import UsageError
from methods import indices
from methods.games.base import RestrictedGame
from methods.scorers.base import (
    SCORERS,
    ScorerBase,
    Scores,
    _fixed,
)

Index = Literal["shapley", "banzhaf", "beta"]  # beta: beta_d, the biased Banzhaf index
Follow = Literal["target", "current", "remaining"]  # GTAPScorer's readings of a d that follows the strategy
Estimator = Literal["shared", "per-player", "regression", "permutation", "stratified", "exact"]
INDEX_CHOICES: tuple[str, ...] = get_args(Index)
FOLLOW: tuple[str, ...] = get_args(Follow)
MIN_FOLLOWED_KEEP_PROB = 0.01


def followed_keep_prob(follow: Follow, *, n_units: int, current: int, included: int, free: int,
                       target: int | None) -> float:
    """beta_d's d for one scoring call under a ``follow`` reading (defined in :class:`GTAPScorer`).

    Args:
        follow: "target", "current" or "remaining".
        n_units: all units (n).
        current: units in the current network (K).
        included: units fixed in (|I|); free: units neither fixed in nor out (|F|).
        target: the kept count the strategy is heading to (T); needed by "target" and "remaining".

    Returns:
        d, clipped to [0.01, 1].
    """
    if follow == "current":
        d = current / n_units
    elif target is None:
        raise UsageError(f"follow={follow!r} needs the strategy's target kept count (target=...); "
                         "top-n and the iterated strategies pass one")
    elif follow == "target":
        d = target / n_units
    elif follow == "remaining":
        d = (target - included) / free if free else 1.0
    else:
        raise UsageError(f"unknown follow {follow!r}; valid: {', '.join(FOLLOW)}")
    return float(min(1.0, max(MIN_FOLLOWED_KEEP_PROB, d)))


@SCORERS.register("gtap")
@dataclass(frozen=True)
class GTAPScorer(ScorerBase):
    """GTAP: a power index of each unit in the neuron game (Diaz-Ortiz et al., Sec. III-B).

    Args:
        index: "shapley", "banzhaf" (coalitions from R_1/2) or "beta" (biased Banzhaf beta_d, coalitions from R_d).
        keep_prob: d of beta_d; None (the default) declares that beta_d needs MCUE's d = 1 - t*, which the runner
            supplies through ``resolve(keep_prob=d)``, unless ``follow`` sets d. Not for shapley and banzhaf.
        follow: set beta_d's d afresh at every call from the network size the strategy is heading to, instead of
            one fixed d (index "beta" only, and not with ``keep_prob``). d is the probability that each *free*
            unit (neither included nor excluded) is in a sampled coalition; with n all units, T the ``target``
            the strategy passes, I the included units, F the free ones and K the currently kept ones:

            - "target": d = T / n, the target kept fraction;
            - "current": d = K / n, the current network's kept fraction. K is ``include`` when the caller passes
              it (Iterated Building: the units added so far, none in its first round), otherwise the units not
              excluded (Iterated Pruning; Top-n: all of them);
            - "remaining": d = (T - |I|) / |F|, the d whose expected coalition of the restricted game has T units:
              (T - included) / free when building, T / currently kept when pruning (where I is empty and F = K).

            Each d is clipped to [0.01, 1]. None (the default) keeps one d for every call: ``keep_prob``, or MCUE's.
            "target" and "remaining" need ``target``; called without one they raise. The paper fixes one d per
            run (MCUE's, Sec. III-C); following the target is our addition, so no reading is the default.
        estimator: "shared" (footnote 5: one sample serves every unit), "per-player" (Algorithm 2), "regression"
            (least squares on the same kind of sample; for beta_d it needed 2-2.5x fewer evaluations than "shared"
            to the same Spearman on lenet300-mnist), for Shapley "permutation" or "stratified" ("shared"
            is "stratified" from 1.5 sampled coalitions per size on, "permutation" below: see
            ``indices.shapley_shared``) or "regression" (paired KernelSHAP), or "exact" for tiny games.
        budget: coalition evaluations per estimate (each re-estimation of an iterated strategy spends this much).
        layerwise: estimate per unit group with the other groups always included (the paper's AlexNet setting),
            splitting the budget by group size; otherwise one global game.
        antithetic: antithetic sampling (None: the estimator's default; for "shared" Shapley, its permutation branch);
            an error for "exact" and "stratified".
    """

    family: ClassVar[str] = "power-index"

    index: Index = "beta"
    keep_prob: float | None = None
    follow: Follow | None = None
    estimator: Estimator = "shared"
    budget: int = 2000
    layerwise: bool = False
    antithetic: bool | None = None

    # What tuning may change (GTAP's d, the budget per estimate, and the iterated strategies' "step"), as plain data:
    # bench/tuning turns it into Optuna suggestions and a suite's ``tuning`` section may override it.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "keep_prob": {"type": "float", "low": 0.05, "high": 0.95},
        "budget": {"type": "int", "low": 200, "high": 4000, "log": True},
        "step": {"type": "float", "low": 0.02, "high": 0.25, "log": True},
    }

    @classmethod
    def search_space_for(cls, params: dict[str, Any], *, strategy: str, n_units: int,
                         space: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The part of a search space that matters for one configuration.

        d only matters for beta_d; the step only for the iterated strategies; stratified and permutation Shapley
        need at least n + 1 evaluations per estimate, so the budget's lower bound rises to that.
        """
        space = {k: dict(v) for k, v in (space or cls.search_space).items()}
        if params.get("index", "beta") != "beta" or params.get("follow") is not None:
            space.pop("keep_prob", None)
        if strategy == "top-n":
            space.pop("step", None)
        estimator = params.get("estimator", "shared")
        if params.get("index") == "shapley" and estimator != "exact" and "budget" in space:
            space["budget"]["low"] = max(space["budget"]["low"], n_units + 1)
            space["budget"]["high"] = max(space["budget"]["high"], space["budget"]["low"])
        return space

    def __post_init__(self) -> None:
        if self.index not in INDEX_CHOICES:
            raise UsageError(f"unknown index {self.index!r}; valid: {', '.join(INDEX_CHOICES)}")
        if self.keep_prob is not None:
            if self.index != "beta":
                raise UsageError(f"keep_prob (d) is for index 'beta' only, not {self.index!r}")
            if isinstance(self.keep_prob, bool) or not isinstance(self.keep_prob, int | float) \
                    or not 0 < self.keep_prob <= 1:
                raise UsageError(f"keep_prob (d) must be a number in (0, 1], got {self.keep_prob!r}")
        if self.follow is not None:
            if self.follow not in FOLLOW:
                hint = difflib.get_close_matches(str(self.follow), FOLLOW, n=1)
                did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
                raise UsageError(f"unknown follow {self.follow!r}.{did_you_mean} Valid: {', '.join(FOLLOW)}")
            if self.index != "beta":
                raise UsageError(f"follow sets d of beta_d: index 'beta' only, not {self.index!r}")
            if self.keep_prob is not None:
                raise UsageError(f"follow={self.follow!r} sets d each round; it excludes a fixed keep_prob")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise UsageError(f"budget must be a positive number of coalition evaluations, got {self.budget!r}")
        if not isinstance(self.layerwise, bool):
            raise UsageError(f"layerwise must be true or false, got {self.layerwise!r}")
        if self.antithetic is not None and not isinstance(self.antithetic, bool):
            raise UsageError(f"antithetic must be true, false or absent, got {self.antithetic!r}")
        self._estimator()  # an unknown estimator, or an option it lacks, fails here (at suite load), not mid-run

    @property
    def needs(self) -> frozenset[str]:
        fixed = self.keep_prob is not None or self.follow is not None
        return frozenset({"keep_prob"}) if self.index == "beta" and not fixed else frozenset()

    def _estimator(self, keep_prob: float | None = None):
        if self.index == "shapley":
            return indices.estimator_for("shapley", self.estimator, antithetic=self.antithetic)
        d = self.keep_prob if keep_prob is None else keep_prob
        d = 0.5 if self.index == "banzhaf" or d is None else d  # 1/2 stands in until resolved (or followed)
        return indices.estimator_for("banzhaf", self.estimator, keep_prob=d, antithetic=self.antithetic)

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        if self.needs:
            raise ValueError("index 'beta' needs keep_prob (d), e.g. from MCUE: resolve(keep_prob=d) first")
        building = include is not None  # before _fixed fills in the missing mask: what "current" counts as kept
        include, exclude = _fixed(problem, include, exclude)
        game = RestrictedGame(problem.game, include=include, exclude=exclude)
        d = None
        if self.follow is not None:
            current = int(include.sum()) if building else problem.n_units - int(exclude.sum())
            d = followed_keep_prob(self.follow, n_units=problem.n_units, current=current,
                                   included=int(include.sum()), free=game.n_players, target=target)
        function = self._estimator(d)
        sampling = {} if indices.is_exact(function) else {"budget": self.budget, "rng": rng}
        before = problem.game.n_evaluations
        if self.layerwise:
            position = {player: i for i, player in enumerate(game.free)}
            groups = [np.array([position[p] for p in players if p in position], dtype=int)
                      for players in problem.group_players()]
            groups = [g for g in groups if len(g)]
            result = indices.per_group(function, game, groups, **sampling)
        else:
            result = function(game, **sampling)
        values = np.full(problem.n_units, np.nan)
        values[game.free] = result.values
        # n_forward stays 0: the cost is the coalition evaluations. It is not evaluations x examples, because the
        # game caches the activations up to the first unit group (computed once when the game is built) and
        # evaluates only the suffix, on the sparse path often as a rank-k update of the previous coalition.
        return Scores(values, problem.game.n_evaluations - before)
