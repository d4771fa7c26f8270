"""Power indices by least squares (not in the GTAP paper): v(C) regressed on the membership indicators, so the other
players' additive effects leave each estimate's noise."""

from __future__ import annotations

import numpy as np

from methods.games.base import Game
from methods.indices.core import (
    IndexEstimate,
    _block_rows,
    _check_budget,
    _check_keep_prob,
    _check_players,
    _check_rng,
    _draw_coalitions,
    _evaluate,
    _require,
)
from methods.indices.sampling import banzhaf_shared


def banzhaf_regression(
    game: Game, *, budget: int, rng: np.random.Generator, keep_prob: float = 0.5, antithetic: bool = True,
    ridge: float | None = None,
) -> IndexEstimate:
    """beta_d as the slopes of a least-squares fit of v(C) on the membership indicators, C ~ R_d (not in the paper).

    Under R_d the indicators x_i = [i in C] are independent Bernoulli(d), so the population least-squares
    coefficient of x_i is Cov(x_i, v) / Var(x_i) = E[v | i in C] - E[v | i not in C] = beta_d(i) exactly: the fit
    estimates the same index as the shared-sample estimator (GTAP footnote 5), from the same kind of sample. It
    is the shared-sample estimator with the other players' additive effects regressed out: its error comes from
    the residual of the best additive fit, not from v's whole variance, so on a nearly additive game it needs
    far fewer evaluations (Banzhaf regression, cf. Fumagalli et al.'s faithful Banzhaf, Liu et al.'s Kernel
    Banzhaf; here for any d).

    The fit accumulates the normal equations block by block (memory O(n^2)). With few samples the normal matrix
    is singular: a ridge penalty ``ridge * k * d (1 - d)`` (default ``n / k``, which vanishes as k grows) shrinks
    the slopes towards 0, and at k <= n the estimate is then close to the shared-sample one scaled down.

    Args:
        game: the game.
        budget: k coalition evaluations at most; k = budget coalitions are sampled (at least 2).
        rng: the source of randomness.
        keep_prob: d, the probability that each player is in C.
        antithetic: pair C = [u < d] with C' = [1 - u < d] (at d = 1/2, C and its complement).
        ridge: the penalty's scale; None for the default.

    Returns:
        The estimate, with the least-squares standard errors (residual variance times the diagonal of the
        inverse normal matrix; an approximation that ignores the antithetic pairing).
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    d = _check_keep_prob(keep_prob)
    _require(budget, 2, "banzhaf_regression", "two coalitions")
    if not 0 < d < 1:
        return banzhaf_shared(game, budget=budget, rng=rng, keep_prob=d, antithetic=antithetic)
    k = budget
    gram = np.zeros((n + 1, n + 1))  # [1, x - d] blocks: centring at the known mean d keeps the system well scaled
    moment = np.zeros(n + 1)
    squares = 0.0
    for start in range(0, k, _block_rows(n)):
        stop = min(start + _block_rows(n), k)
        coalitions = _draw_coalitions(rng, (stop - start,), n, d, antithetic)
        values = _evaluate(game, coalitions)
        design = np.empty((len(values), n + 1))
        design[:, 0] = 1.0
        design[:, 1:] = coalitions - d
        gram += design.T @ design
        moment += design.T @ values
        squares += float(values @ values)
    penalty = (n / k if ridge is None else float(ridge)) * k * d * (1 - d)
    regularised = gram.copy()
    regularised[1:, 1:] += penalty * np.eye(n)
    coefficients = np.linalg.solve(regularised, moment)
    residual = max(squares - 2 * coefficients @ moment + coefficients @ gram @ coefficients, 0.0)
    dof = k - (n + 1)
    if dof > 0:
        inverse_diagonal = np.diag(np.linalg.inv(regularised))[1:]
        stderr = np.sqrt(residual / dof * inverse_diagonal)
    else:
        stderr = np.full(n, np.inf)
    return IndexEstimate(coefficients[1:], k, stderr, "banzhaf", d)


def shapley_regression(game: Game, *, budget: int, rng: np.random.Generator, antithetic: bool = True
                       ) -> IndexEstimate:
    """The Shapley value as KernelSHAP's constrained weighted least squares (Lundberg & Lee; not in the paper).

    Coalition sizes s in 1..n-1 are drawn with probability proportional to the Shapley kernel's mass
    (n - 1) / (s (n - s)), a uniform coalition of that size is drawn, and with ``paired`` its complement is
    evaluated too (Covert & Lee's paired sampling). v(empty) and v(N) are evaluated exactly. The fit minimises the
    squared error of v(C) - v(empty) against sum over i in C of phi_i, with sum of phi_i = v(N) - v(empty) imposed
    exactly; with sampling from the kernel the rows are unweighted. It is consistent; its error comes from the
    residual of the best additive fit, as for ``banzhaf_regression``.

    Args:
        game: the game.
        budget: k coalition evaluations at most: v(empty), v(N) and budget - 2 sampled coalitions.
        rng: the source of randomness.
        antithetic: evaluate each sampled coalition's complement too (paired sampling).

    Returns:
        The estimate, ``stderr=None``.
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    _require(budget, 3 if n > 1 else 2, "shapley_regression", "v(empty), v(N) and one sampled coalition")
    v_empty, v_full = _evaluate(game, np.array([np.zeros(n, bool), np.ones(n, bool)]))
    if n == 1:
        return IndexEstimate(np.array([v_full - v_empty]), 2, None, "shapley", None)
    sizes = np.arange(1, n)
    size_prob = (n - 1) / (sizes * (n - sizes))
    size_prob /= size_prob.sum()
    k = budget - 2
    gram = np.zeros((n, n))
    moment = np.zeros(n)
    block = _block_rows(n)
    for start in range(0, k, block):
        rows = min(block, k - start)
        drawn = -(-rows // 2) if antithetic else rows
        size = rng.choice(sizes, size=drawn, p=size_prob)
        keys = rng.random((drawn, n))
        threshold = np.take_along_axis(np.sort(keys, axis=1), size[:, None] - 1, axis=1)
        coalitions = keys <= threshold
        if antithetic:
            coalitions = np.stack([coalitions, ~coalitions], axis=1).reshape(-1, n)[:rows]
        values = _evaluate(game, coalitions) - v_empty
        x = coalitions.astype(np.float64)
        gram += x.T @ x
        moment += x.T @ values
    # Minimise |X phi - y|^2 subject to 1'phi = total, by a Lagrange multiplier (a tiny ridge keeps it solvable).
    total = v_full - v_empty
    gram += 1e-9 * max(np.trace(gram) / n, 1.0) * np.eye(n)
    inv_moment = np.linalg.solve(gram, moment)
    inv_ones = np.linalg.solve(gram, np.ones(n))
    phi = inv_moment - inv_ones * (inv_moment.sum() - total) / inv_ones.sum()
    return IndexEstimate(phi, 2 + k, None, "shapley", None)
