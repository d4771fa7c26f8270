"""The one dispatch from an index and an estimator name to a function, and layer-wise (per group) estimation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from datasets.errors import UsageError
from datasets.registry import Registry
from methods.games.base import Game, RestrictedGame
from methods.indices.core import IndexEstimate, _check_budget, _check_groups, _check_keep_prob, _check_players
from methods.indices.exact import exact_banzhaf, exact_shapley
from methods.indices.regression import banzhaf_regression, shapley_regression
from methods.indices.sampling import (
    banzhaf_per_player,
    banzhaf_shared,
    shapley_permutation,
    shapley_shared,
    shapley_stratified,
)


def per_group(
    estimator: Callable[..., IndexEstimate],
    game: Game,
    groups: Sequence[np.ndarray],
    *,
    budget: int | None = None,
    rng: np.random.Generator | None = None,
    **kwargs: Any,
) -> IndexEstimate:
    """Layer-wise estimation: each group's index in the game where every player outside it is always in.

    This is GTAP's setting for large networks (Sec. III-B a): "compute the power indices of the neurons in a
    specific layer L ... always including these neurons not in L". Estimating on the whole game ("global") is
    just calling the estimator on it.

    Args:
        estimator: any function of this module, e.g. ``banzhaf_per_player`` or ``exact_shapley``.
        game: the full game.
        groups: disjoint player index arrays (or bool masks of length n_players), e.g. one per layer.
        budget: k coalition evaluations at most, split across groups in proportion to group size (largest
            remainder); None for the exact estimators.
        rng: the source of randomness, used by the groups in order; ignored when ``budget`` is None.
        **kwargs: further keyword arguments of ``estimator`` (``keep_prob``, ``antithetic``).

    Returns:
        The full-length estimate: each group's values at its indices and NaN for players in no group; the
        stderr likewise, or None if any group has none; ``n_evaluations`` summed over groups.
    """
    n = _check_players(game)
    index_sets = _check_groups(groups, n)
    sizes = np.array([len(g) for g in index_sets])
    if budget is not None:
        budget = _check_budget(budget)
        shares = budget * sizes / sizes.sum()
        group_budgets = np.floor(shares).astype(np.int64)
        leftover = budget - int(group_budgets.sum())
        group_budgets[np.argsort(-(shares - group_budgets), kind="stable")[:leftover]] += 1
        kwargs["rng"] = rng  # sampling estimators only: the exact ones take neither budget nor rng

    values = np.full(n, np.nan)
    stderr: np.ndarray | None = np.full(n, np.nan)
    n_evaluations = 0
    results = []
    for g, members in enumerate(index_sets):
        outside = np.ones(n, dtype=bool)
        outside[members] = False
        if budget is not None:
            kwargs["budget"] = int(group_budgets[g])
        try:
            result = estimator(RestrictedGame(game, include=outside), **kwargs)
        except ValueError as error:
            raise ValueError(f"group {g} ({len(members)} players): {error}") from error
        values[members] = result.values
        if stderr is not None and result.stderr is not None:
            stderr[members] = result.stderr
        else:
            stderr = None
        n_evaluations += result.n_evaluations
        results.append(result)
    return IndexEstimate(values, n_evaluations, stderr, results[0].index, results[0].keep_prob)


# ------------------------------------------------------------------------------------------------- dispatch

def _estimators(index: str, functions: dict[str, Callable[..., IndexEstimate]]
                ) -> Registry[Callable[..., IndexEstimate]]:
    registry: Registry[Callable[..., IndexEstimate]] = Registry(f"{index} estimator")
    for name, function in functions.items():
        registry.add(name, function)
    return registry


ESTIMATORS: dict[str, Registry[Callable[..., IndexEstimate]]] = {
    "shapley": _estimators("shapley", {"exact": exact_shapley, "permutation": shapley_permutation,
                                       "stratified": shapley_stratified, "shared": shapley_shared,
                                       "regression": shapley_regression}),
    "banzhaf": _estimators("banzhaf", {"exact": exact_banzhaf, "per-player": banzhaf_per_player,
                                       "shared": banzhaf_shared, "regression": banzhaf_regression}),
}
"""index -> estimator name -> function; :func:`estimator_for` is the one dispatch through it."""


def estimator_for(index: str, name: str, *, keep_prob: float | None = None,
              antithetic: bool | None = None) -> Callable[..., IndexEstimate]:
    """The one dispatch from names to an estimator: validates the combination and binds its options.

    Args:
        index: "shapley" or "banzhaf" (beta_d with ``keep_prob=d``).
        name: a name in ``ESTIMATORS[index]``.
        keep_prob: d in the GTAP paper; banzhaf only (default 1/2).
        antithetic: antithetic sampling on or off; None keeps the estimator's default. Not for "exact" or
            "stratified", which have no such option (asking for it is an error, never silently dropped).

    Returns:
        A function of the game; sampling estimators also take ``budget`` and ``rng``, "exact" takes neither.

    Raises:
        ValueError: an unknown combination or an option the estimator does not have.
    """
    combos = ", ".join(f"{i}/{e}" for i, registry in ESTIMATORS.items() for e, _ in registry.items())
    if index not in ESTIMATORS or name not in ESTIMATORS[index]:
        raise UsageError(f"unknown index/estimator {index}/{name}; valid combinations: {combos}")
    kwargs: dict[str, Any] = {}
    if index == "banzhaf":
        kwargs["keep_prob"] = 0.5 if keep_prob is None else _check_keep_prob(keep_prob)
    elif keep_prob is not None:
        raise UsageError("keep_prob (d) applies to index='banzhaf' only; the Shapley value has no d")
    if antithetic is not None:
        if name in ("exact", "stratified"):
            raise UsageError(f"estimator {name!r} has no antithetic option")
        kwargs["antithetic"] = bool(antithetic)
    return functools.partial(ESTIMATORS[index][name], **kwargs)


def is_exact(function: Callable[..., IndexEstimate]) -> bool:
    """Whether an estimator from :func:`estimator_for` enumerates every coalition (and takes no budget or rng)."""
    inner = function.func if isinstance(function, functools.partial) else function
    return inner in (exact_shapley, exact_banzhaf)


def estimate(
    game: Game,
    *,
    index: str,
    estimator: str,
    budget: int | None = None,
    rng: np.random.Generator | None = None,
    keep_prob: float | None = None,
    antithetic: bool | None = None,
) -> IndexEstimate:
    """Estimates a power index by name, e.g. ``estimate(game, index="banzhaf", estimator="shared", ...)``.

    Args:
        game: the game.
        index: "shapley" or "banzhaf" (beta_d with ``keep_prob=d``).
        estimator: a name in ``ESTIMATORS[index]``.
        budget: k coalition evaluations at most; required by sampling estimators; "exact" refuses a budget
            below 2^n.
        rng: the source of randomness; required by sampling estimators.
        keep_prob: d in the GTAP paper; banzhaf only (default 1/2).
        antithetic: antithetic sampling on or off; None keeps the estimator's default. Not for "exact" or
            "stratified".

    Returns:
        The estimator's result.
    """
    function = estimator_for(index, estimator, keep_prob=keep_prob, antithetic=antithetic)
    if is_exact(function):
        if budget is not None and _check_budget(budget) < 2**game.n_players:
            raise ValueError(f"exact {index} needs 2^{game.n_players} evaluations, more than budget={budget}")
        return function(game)
    if budget is None or rng is None:
        raise ValueError(f"estimator {estimator!r} needs a budget and an rng (numpy.random.Generator)")
    return function(game, budget=budget, rng=rng)
