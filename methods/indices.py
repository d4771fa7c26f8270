"""Power indices of a :class:`~methods.games.Game`: exact enumeration and Monte-Carlo estimators.

The indices are those of the GTAP paper, Sec. II-A: the Shapley value phi (eq. 1), the Banzhaf index beta
(eq. 2) and the biased Banzhaf index beta_d, the expected marginal contribution m(i, C) = v(C u {i}) - v(C)
when every other player joins C independently with probability d (C ~ R_d). beta_d is ``index="banzhaf"``
with ``keep_prob=d``; the plain Banzhaf index is d = 1/2.

Estimators draw from an explicit ``numpy.random.Generator`` and spend at most ``budget`` coalition
evaluations (rows passed to the game; "k coalition evaluations" in the paper's terms):

- ``exact_shapley``, ``exact_banzhaf``: all 2^n coalitions (n <= 20).
- ``shapley_permutation``: random permutations, every prefix evaluated once (the paper's Shapley estimator).
- ``shapley_stratified``: one shared sample stratified by coalition size (Stratified SVARM).
- ``banzhaf_per_player``: PIE, Algorithm 2: per player i, pairs C u {i} and C \\ {i} with C ~ R_d.
- ``banzhaf_shared``: footnote 5, one shared sample C_1..C_k ~ R_d and, for each player,
  mean(v | i in C) - mean(v | i not in C).
- ``banzhaf_regression``, ``shapley_regression`` (not in the paper; issue 14): least-squares fits of v(C) on the
  membership indicators, beta_d from R_d samples and the Shapley value from paired Shapley-kernel samples (KernelSHAP).
  Same samples as the shared estimators, but the other players' additive effects are regressed out.

Interpretations, where the paper is silent:

- Budget. ``budget`` counts rows passed to the game. Permutation and stratified sampling spend 2 of it on
  v(empty) and v(N) once; PIE uses k = budget // (2n) samples per player; the shared estimator evaluates
  k = budget coalitions. Budget left over by rounding is not spent. A budget too small for one sample raises
  ``ValueError`` before the game is called.
- Antithetic variates (not in the paper). Banzhaf estimators draw uniforms u and pair C = [u < d] with
  C' = [1 - u < d]: both are R_d, so the estimators stay unbiased for every d; at d = 1/2, C' is the
  complement of C. Permutation sampling pairs each permutation with its reverse. With an odd number of
  samples the last one is unpaired. Antithetic pairs do not always reduce variance (see ``banzhaf_shared``).
- Standard errors treat an antithetic pair as one independent unit (a cluster-robust variance with the
  small-sample factor G / (G - 1) over G units); fewer than two units gives ``inf``. The shared Banzhaf
  estimator's stderr is a delta-method (ratio-estimator) approximation. Exact indices report zeros; the
  stratified estimator reports ``None`` (Stratified SVARM has no variance estimate, and its fallbacks would
  make one misleading).
- Missing data. In the shared Banzhaf estimator, a player that is in every sampled coalition (or in none)
  gets the value 0 and stderr ``inf``: the empty side is taken to have the mean of all samples. In the
  stratified estimator, a size stratum in which no sample contains player i (or every sample does) uses the
  stratum's overall mean for the missing mean.
- Chunking. Every estimator, the exact ones included, passes the game at most ``MAX_ROWS`` coalitions per
  call and builds coalition matrices block by block, so memory stays bounded however large the budget; the
  game batches further inside a call as its memory cap requires. Results do not depend on ``MAX_ROWS``.
"""

from __future__ import annotations

import copy
import functools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from methods.games import Game, RestrictedGame

MAX_ROWS = 2048  # most coalitions passed to a game in one call; keeps the bool coalition matrix small
MAX_EXACT_PLAYERS = 20  # 2^20 coalitions: about a million evaluations
# Coalitions are built in blocks of at most this many (rows x players) cells: float temporaries stay ~32 MiB.
MAX_BLOCK_CELLS = 1 << 22
INDICES = ("shapley", "banzhaf")


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__ would compare arrays ambiguously
class IndexEstimate:
    """A power index of every player, with its cost.

    Attributes:
        values: (n_players,) float64, the index of each player.
        n_evaluations: coalition evaluations this call spent (rows passed to the game).
        stderr: (n_players,) per-player standard error where the estimator has one (zeros when exact),
            else None.
        index: "shapley" or "banzhaf" (banzhaf with ``keep_prob=d`` is beta_d).
        keep_prob: d for banzhaf / beta_d, None for shapley.
    """

    values: np.ndarray
    n_evaluations: int
    stderr: np.ndarray | None
    index: str
    keep_prob: float | None

    def __post_init__(self) -> None:
        if self.index not in INDICES:
            raise ValueError(f"index must be one of {INDICES}, got {self.index!r}")
        if (self.index == "shapley") != (self.keep_prob is None):
            raise ValueError("keep_prob must be None for shapley and a probability for banzhaf")
        if self.stderr is not None and np.shape(self.stderr) != np.shape(self.values):
            raise ValueError("stderr must have the shape of values")


# ---------------------------------------------------------------------------------------------------- exact


def exact_shapley(game: Game) -> IndexEstimate:
    """The Shapley value phi (GTAP eq. 1) by enumerating all 2^n coalitions.

    phi(i) = sum over C subset of N \\ {i} of |C|! (n - |C| - 1)! / n! [v(C u {i}) - v(C)].

    Args:
        game: a game with at most ``MAX_EXACT_PLAYERS`` players.

    Returns:
        The exact values; ``n_evaluations`` is 2^n and ``stderr`` is zeros.
    """
    n = game.n_players

    def weight(size: np.ndarray) -> np.ndarray:
        return np.array([1.0 / (n * math.comb(n - 1, int(s))) for s in range(n)])[size]

    values, n_evaluations = _exact_semivalue(game, weight)
    return IndexEstimate(values, n_evaluations, np.zeros(n), "shapley", None)


def exact_banzhaf(game: Game, *, keep_prob: float = 0.5) -> IndexEstimate:
    """The biased Banzhaf index beta_d (GTAP Sec. II-A) by enumerating all 2^n coalitions.

    beta_d(i) = sum over C subset of N \\ {i} of d^|C| (1 - d)^(n - 1 - |C|) [v(C u {i}) - v(C)];
    d = 1/2 is the Banzhaf index beta (eq. 2).

    Args:
        game: a game with at most ``MAX_EXACT_PLAYERS`` players.
        keep_prob: d in the GTAP paper, the probability that each other player is in C.

    Returns:
        The exact values; ``n_evaluations`` is 2^n and ``stderr`` is zeros.
    """
    d = _check_keep_prob(keep_prob)
    n = game.n_players

    def weight(size: np.ndarray) -> np.ndarray:
        return np.power(d, size) * np.power(1.0 - d, n - 1 - size)  # numpy has 0.0 ** 0 == 1.0

    values, n_evaluations = _exact_semivalue(game, weight)
    return IndexEstimate(values, n_evaluations, np.zeros(n), "banzhaf", d)


def _exact_semivalue(game: Game, weight: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
    """sum over C not containing i of weight(|C|) [v(C u {i}) - v(C)] for every i (player j is bit j)."""
    n = _check_players(game)
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact enumeration needs 2^{n} coalition evaluations; refusing n_players={n} > "
            f"{MAX_EXACT_PLAYERS}. Use a sampling estimator instead."
        )
    n_coalitions = 1 << n
    bits = 1 << np.arange(n, dtype=np.int64)
    values = np.empty(n_coalitions)
    block = max(1, MAX_ROWS)
    for start in range(0, n_coalitions, block):
        masks = np.arange(start, min(start + block, n_coalitions), dtype=np.int64)
        values[start : start + len(masks)] = _evaluate(game, (masks[:, None] & bits) != 0)
    sizes = np.zeros(n_coalitions, dtype=np.int64)  # popcount of every mask, built bit by bit
    for j in range(n):
        sizes[1 << j : 1 << (j + 1)] = sizes[: 1 << j] + 1
    result = np.empty(n)
    for i in range(n):
        # masks as (high bits, bit i, low bits): [:, 0, :] lack i, [:, 1, :] are the same plus i
        by_bit = values.reshape(-1, 2, 1 << i)
        size_without = sizes.reshape(-1, 2, 1 << i)[:, 0, :]
        result[i] = np.sum(weight(size_without) * (by_bit[:, 1, :] - by_bit[:, 0, :]))
    return result, n_coalitions


# -------------------------------------------------------------------------------------------------- shapley


def shapley_permutation(
    game: Game, *, budget: int, rng: np.random.Generator, antithetic: bool = True
) -> IndexEstimate:
    """The Shapley value by permutation sampling (GTAP Sec. III-B a), phi(i) = mean over pi of m(i, pi)).

    v(empty) and v(N) are evaluated once; each permutation pi then costs its n - 1 proper non-empty prefixes,
    emitted as consecutive rows in prefix order, so consecutive rows differ by one player. Every permutation's
    marginal contributions sum to v(N) - v(empty), so the estimate is exactly efficient.

    Args:
        game: the game.
        budget: k coalition evaluations at most; m = (budget - 2) // (n - 1) permutations are drawn.
        rng: the source of randomness.
        antithetic: pair each permutation with its reverse.

    Returns:
        The estimate, with the stderr over permutations (an antithetic pair counted as one unit).
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    if n == 1:
        _require(budget, 2, "shapley_permutation", "v(empty) and v(N)")
        v_empty, v_full = _evaluate(game, np.array([[False], [True]]))
        return IndexEstimate(np.array([v_full - v_empty]), 2, np.zeros(1), "shapley", None)
    _require(budget, n + 1, "shapley_permutation", "v(empty), v(N) and the n - 1 prefixes of a permutation")
    n_permutations = (budget - 2) // (n - 1)
    n_drawn = -(-n_permutations // 2) if antithetic else n_permutations
    permutations = rng.permuted(np.tile(np.arange(n, dtype=np.int32), (n_drawn, 1)), axis=1)
    if antithetic:
        permutations = np.stack([permutations, permutations[:, ::-1]], axis=1).reshape(-1, n)
        permutations = permutations[:n_permutations]

    v_empty, v_full = _evaluate(game, np.array([np.zeros(n, bool), np.ones(n, bool)]))
    n_rows = n_permutations * (n - 1)
    prefix_values = np.empty(n_rows)
    block = _block_rows(n)
    for start in range(0, n_rows, block):
        rows = np.arange(start, min(start + block, n_rows))
        which, length = np.divmod(rows, n - 1)  # row -> (permutation, prefix length - 1)
        first = which[0]
        # ranks[p, j] = the position of player j in permutation first + p
        ranks = np.empty((which[-1] - first + 1, n), dtype=np.int32)
        positions = np.arange(n, dtype=np.int32)[None, :]
        np.put_along_axis(ranks, permutations[first : which[-1] + 1], positions, axis=1)
        prefix_values[rows] = _evaluate(game, ranks[which - first] <= length[:, None])

    chain = np.empty((n_permutations, n + 1))  # v of the prefixes of length 0..n of every permutation
    chain[:, 0] = v_empty
    chain[:, 1:n] = prefix_values.reshape(n_permutations, n - 1)
    chain[:, n] = v_full
    marginals = np.empty((n_permutations, n))
    np.put_along_axis(marginals, permutations, np.diff(chain, axis=1), axis=1)
    return IndexEstimate(
        values=marginals.mean(axis=0),
        n_evaluations=2 + n_rows,
        stderr=_clustered_stderr(marginals, 2 if antithetic else 1),
        index="shapley",
        keep_prob=None,
    )


def shapley_stratified(game: Game, *, budget: int, rng: np.random.Generator) -> IndexEstimate:
    """The Shapley value from one shared sample stratified by coalition size (Stratified SVARM).

    phi_i = (1/n) sum_{s=0}^{n-1} [mu+_i(s + 1) - mu-_i(s)], where mu+_i(t) is the mean value of the sampled
    size-t coalitions that contain i and mu-_i(s) the mean of the sampled size-s coalitions without i
    (Kolpaczki et al., AAAI 2024). Every sampled coalition serves every player, as in GTAP's footnote 5.
    v(empty) and v(N) are evaluated exactly; the rest of the budget goes round-robin over sizes 1..n-1,
    uniform subsets within a size (with replacement). Unlike Kolpaczki et al.'s Stratified SVARM+, the
    border strata are not computed exactly and the sizes are not weighted.

    A stratum where no sample contains i (or every sample does) falls back to the stratum's overall mean for
    the missing mean. Memory is O(n^2): per-size, per-player sums.

    Args:
        game: the game.
        budget: k coalition evaluations at most; needs n + 1 (v(empty), v(N) and one coalition of each size).
        rng: the source of randomness.

    Returns:
        The estimate, with ``stderr=None``.
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    _require(budget, n + 1, "shapley_stratified", "v(empty), v(N) and one coalition of each size 1..n-1")
    v_empty, v_full = _evaluate(game, np.array([np.zeros(n, bool), np.ones(n, bool)]))
    if n == 1:
        return IndexEstimate(np.array([v_full - v_empty]), 2, None, "shapley", None)

    n_rows = budget - 2
    count = np.zeros(n + 1)  # samples of each size
    total = np.zeros(n + 1)  # their summed value
    count_in = np.zeros((n + 1, n), dtype=np.int32)  # samples of each size containing player i
    total_in = np.zeros((n + 1, n))  # their summed value
    block = _block_rows(n)
    for start in range(0, n_rows, block):
        sizes = 1 + np.arange(start, min(start + block, n_rows)) % (n - 1)
        keys = rng.random((len(sizes), n))
        threshold = np.take_along_axis(np.sort(keys, axis=1), sizes[:, None] - 1, axis=1)
        # the players with the `size` smallest keys: a uniform subset of that size
        coalitions = keys <= threshold
        values = _evaluate(game, coalitions)
        weighted = np.where(coalitions, values[:, None], 0.0)
        if n <= 32:  # few sizes: sum the rows of each size with a one-hot matrix product
            one_hot = np.zeros((len(sizes), n + 1))
            one_hot[np.arange(len(sizes)), sizes] = 1.0
            count += one_hot.sum(axis=0)
            total += values @ one_hot
            count_in += (one_hot.T @ coalitions).astype(np.int32)
            total_in += one_hot.T @ weighted
            continue
        # sizes cycle with period n - 1, so the sizes within n - 1 consecutive rows are distinct and a fancy-
        # indexed += adds every row
        for first in range(0, len(sizes), n - 1):
            run = slice(first, first + n - 1)
            count[sizes[run]] += 1
            total[sizes[run]] += values[run]
            count_in[sizes[run]] += coalitions[run]
            total_in[sizes[run]] += weighted[run]

    stratum_mean = np.divide(total, count, out=np.zeros(n + 1), where=count > 0)[:, None]
    count_out = count[:, None] - count_in
    mean_in = np.where(count_in > 0, total_in / np.maximum(count_in, 1), stratum_mean)
    mean_out = np.where(count_out > 0, (total[:, None] - total_in) / np.maximum(count_out, 1), stratum_mean)
    mean_in[n] = v_full
    mean_out[0] = v_empty
    phi = (mean_in[1:].sum(axis=0) - mean_out[:n].sum(axis=0)) / n
    return IndexEstimate(phi, 2 + n_rows, None, "shapley", None)


STRATIFIED_MIN_PER_SIZE = 1.5  # below this many sampled coalitions per size, "shared" Shapley samples permutations


def shapley_shared(game: Game, *, budget: int, rng: np.random.Generator, antithetic: bool = True) -> IndexEstimate:
    """GTAP's shared sample for the Shapley value: :func:`shapley_stratified` once the budget gives every coalition
    size at least ``STRATIFIED_MIN_PER_SIZE`` sampled coalitions, else :func:`shapley_permutation`.

    With about one coalition per size, most of a stratum's in/out means come from a single coalition or fall back to
    the stratum's mean, and the ranking is close to random. Measured with ``bench estimators`` (issue 14; full
    accuracy games, Spearman against the reference, mean of 5 seeds), stratified against antithetic permutation
    sampling: LeNet5 (604 units) at 650 evaluations 0.01 against 0.19, and 0.27 against 0.17 at 1,024;
    LeNet-300-100 (400 units) 0.21 against 0.27 at 512, 0.33 against 0.20 at 650; ffn-emotion (768 units) 0.02
    against 0.37 at 800 (and behind at every budget to 6,400 there). 1.5 per size sits between the crossovers.

    Args:
        game: the game.
        budget: k coalition evaluations at most (n + 1 at least).
        rng: the source of randomness.
        antithetic: for the permutation branch.
    """
    n = _check_players(game)
    if _check_budget(budget) - 2 >= STRATIFIED_MIN_PER_SIZE * max(n - 1, 1):
        return shapley_stratified(game, budget=budget, rng=rng)
    return shapley_permutation(game, budget=budget, rng=rng, antithetic=antithetic)


# -------------------------------------------------------------------------------------------------- banzhaf


def banzhaf_per_player(
    game: Game, *, budget: int, rng: np.random.Generator, keep_prob: float = 0.5, antithetic: bool = True
) -> IndexEstimate:
    """beta_d by PIE, GTAP Algorithm 2: per player i, the mean of v(C_j u {i}) - v(C_j \\ {i}) over C_j ~ R_d.

    Each player gets its own k = budget // (2n) coalitions over the other players; the two rows of a pair are
    emitted adjacent (they differ only in player i), players one after another.

    Args:
        game: the game.
        budget: k coalition evaluations at most (2 per sample per player).
        rng: the source of randomness.
        keep_prob: d in the GTAP paper (t in Algorithm 2), the probability that each other player is in C_j.
        antithetic: pair C = [u < d] with C' = [1 - u < d] for the same uniforms u (both are R_d).

    Returns:
        The estimate, with each player's stderr over its samples (an antithetic pair counted as one unit).
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    d = _check_keep_prob(keep_prob)
    _require(budget, 2 * n, "banzhaf_per_player", "a pair v(C u {i}), v(C \\ {i}) for each of the n players")
    k = budget // (2 * n)
    differences = np.empty((n, k))
    for players, first, stop in _per_player_blocks(n, k):
        m = stop - first
        coalitions = _draw_coalitions(rng, (len(players), m), n, d, antithetic)
        with_i = coalitions.copy()
        with_i[np.arange(len(players)), :, players] = True
        coalitions[np.arange(len(players)), :, players] = False
        rows = np.stack([with_i, coalitions], axis=2).reshape(-1, n)  # (with i, without i) adjacent
        values = _evaluate(game, rows).reshape(len(players), m, 2)
        differences[players, first:stop] = values[..., 0] - values[..., 1]
    return IndexEstimate(
        values=differences.mean(axis=1),
        n_evaluations=2 * n * k,
        stderr=_clustered_stderr(differences.T, 2 if antithetic else 1),
        index="banzhaf",
        keep_prob=d,
    )


def banzhaf_shared(
    game: Game, *, budget: int, rng: np.random.Generator, keep_prob: float = 0.5, antithetic: bool = False
) -> IndexEstimate:
    """beta_d with maximum sample reuse (GTAP footnote 5): mean(v | i in C) - mean(v | i not in C).

    One sample C_1..C_k ~ R_d over all players, each evaluated once, serves every player. A player's
    membership is Bernoulli(d) independent of the others', so the difference of conditional means estimates
    E[v(C u {i})] - E[v(C \\ {i})] = beta_d(i) (consistent, with a ratio-estimator bias of order 1/k; the
    estimates are not independent across players, as the footnote warns). A player in every sampled coalition,
    or in none, gets 0 and stderr ``inf``.

    Antithetic sampling can hurt here: at d = 1/2 the pair is C and its complement, which fall on opposite
    sides of every player, and for a monotone game v(C) and v(N \\ C) are negatively correlated, which
    inflates the variance of the difference of means (on an 8-player additive game, about 40% more RMSE than
    independent sampling at the same budget). So it is off by default here.

    Args:
        game: the game.
        budget: k coalition evaluations at most; k = budget coalitions are sampled (at least 2).
        rng: the source of randomness.
        keep_prob: d in the GTAP paper, the probability that each player is in C_j.
        antithetic: pair C = [u < d] with C' = [1 - u < d] for the same uniforms u (both are R_d).

    Returns:
        The estimate, with a delta-method stderr (an antithetic pair counted as one unit).
    """
    n = _check_players(game)
    budget = _check_budget(budget)
    _check_rng(rng)
    d = _check_keep_prob(keep_prob)
    _require(budget, 2, "banzhaf_shared", "two coalitions, one with and one without a player at best")
    k = budget
    block = _block_rows(n)
    replay = copy.deepcopy(rng)  # the second pass below redraws exactly the coalitions of the first

    def blocks(source: np.random.Generator) -> Iterator[tuple[slice, np.ndarray]]:
        for start in range(0, k, block):
            stop = min(start + block, k)
            yield slice(start, stop), _draw_coalitions(source, (stop - start,), n, d, antithetic)

    values = np.empty(k)
    count_in = np.zeros(n)
    total_in = np.zeros(n)
    for rows, coalitions in blocks(rng):
        values[rows] = _evaluate(game, coalitions)
        count_in += coalitions.sum(axis=0)
        total_in += values[rows] @ coalitions
    count_out = k - count_in
    both_sides = (count_in > 0) & (count_out > 0)
    mean_in = np.where(both_sides, total_in / np.maximum(count_in, 1), 0.0)
    mean_out = np.where(both_sides, (values.sum() - total_in) / np.maximum(count_out, 1), 0.0)

    # Delta method for a difference of ratio estimators: unit g contributes
    # sum over its rows of [i in C](v - mean_in) / count_in - [i not in C](v - mean_out) / count_out.
    scale_in, scale_out = 1.0 / np.maximum(count_in, 1), 1.0 / np.maximum(count_out, 1)
    squares = np.zeros(n)
    for rows, coalitions in blocks(replay):
        v = values[rows][:, None]
        influence = np.where(coalitions, (v - mean_in) * scale_in, (mean_out - v) * scale_out)
        if antithetic:
            if len(influence) % 2:  # the unpaired last sample
                squares += np.square(influence[-1])
            influence = influence[0 : len(influence) - 1 : 2] + influence[1::2]
        squares += np.einsum("ij,ij->j", influence, influence)
    n_units = -(-k // 2) if antithetic else k
    stderr = np.sqrt(squares * n_units / (n_units - 1)) if n_units > 1 else np.full(n, np.inf)
    stderr = np.where(both_sides, stderr, np.inf)
    return IndexEstimate(mean_in - mean_out, k, stderr, "banzhaf", d)


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


# ------------------------------------------------------------------------------------------------ per group


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

ESTIMATORS: dict[str, dict[str, Callable[..., IndexEstimate]]] = {
    "shapley": {"exact": exact_shapley, "permutation": shapley_permutation, "stratified": shapley_stratified,
                "shared": shapley_shared, "regression": shapley_regression},
    "banzhaf": {"exact": exact_banzhaf, "per-player": banzhaf_per_player, "shared": banzhaf_shared,
                "regression": banzhaf_regression},
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
    combos = ", ".join(f"{i}/{e}" for i, names in ESTIMATORS.items() for e in names)
    if index not in ESTIMATORS or name not in ESTIMATORS[index]:
        raise ValueError(f"unknown index/estimator {index}/{name}; valid combinations: {combos}")
    kwargs: dict[str, Any] = {}
    if index == "banzhaf":
        kwargs["keep_prob"] = 0.5 if keep_prob is None else _check_keep_prob(keep_prob)
    elif keep_prob is not None:
        raise ValueError("keep_prob (d) applies to index='banzhaf' only; the Shapley value has no d")
    if antithetic is not None:
        if name in ("exact", "stratified"):
            raise ValueError(f"estimator {name!r} has no antithetic option")
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


# -------------------------------------------------------------------------------------------------- helpers


def _evaluate(game: Game, coalitions: np.ndarray) -> np.ndarray:
    """v of every row, calling the game on at most ``MAX_ROWS`` rows at a time."""
    values = np.empty(len(coalitions))
    step = max(1, MAX_ROWS)
    for start in range(0, len(coalitions), step):
        chunk = coalitions[start : start + step]
        out = np.asarray(game(chunk), dtype=np.float64)
        if out.shape != (len(chunk),):
            raise ValueError(f"the game returned shape {out.shape} for {len(chunk)} coalitions")
        values[start : start + len(chunk)] = out
    return values


def _draw_coalitions(
    rng: np.random.Generator, shape: tuple[int, ...], n: int, keep_prob: float, antithetic: bool
) -> np.ndarray:
    """Bool coalitions of shape (*shape, n) from R_d.

    With ``antithetic``, entries 2j and 2j + 1 along the last axis of ``shape`` use uniforms u and 1 - u. The
    stream of draws does not depend on how a long axis is split into blocks of even length.
    """
    *lead, m = shape
    if not antithetic:
        return rng.random((*lead, m, n)) < keep_prob
    u = rng.random((*lead, -(-m // 2), 1, n))
    return (np.concatenate([u, 1.0 - u], axis=-2).reshape(*lead, -1, n) < keep_prob)[..., :m, :]


def _per_player_blocks(n: int, k: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """(players, first sample, stop sample) blocks of about MAX_ROWS rows for PIE; a block never splits an
    antithetic pair, since a player's samples are split only at even offsets."""
    samples = max(2, 2 * (_block_rows(n) // 4))  # even; 2 rows per sample
    if k <= samples:
        step = max(1, samples // k)
        for first in range(0, n, step):
            yield np.arange(first, min(first + step, n)), 0, k
    else:
        for player in range(n):
            for first in range(0, k, samples):
                yield np.array([player]), first, min(first + samples, k)


def _block_rows(n: int) -> int:
    """How many coalitions to build at once: at most MAX_ROWS and MAX_BLOCK_CELLS / n, and even.

    Even, so that an antithetic pair never straddles two blocks; results do not depend on the block size.
    """
    rows = min(MAX_ROWS, MAX_BLOCK_CELLS // n)
    return max(2, rows - rows % 2)


def _clustered_stderr(samples: np.ndarray, unit: int) -> np.ndarray:
    """Standard error of samples.mean(axis=0) when runs of ``unit`` consecutive rows are independent units."""
    k = len(samples)
    n_units = -(-k // unit)
    if n_units < 2:
        return np.full(samples.shape[1], np.inf)
    starts = np.arange(0, k, unit)
    unit_sums = np.add.reduceat(samples, starts, axis=0)
    unit_sizes = np.diff(np.append(starts, k))[:, None]
    deviations = unit_sums - unit_sizes * samples.mean(axis=0)
    return np.sqrt(np.square(deviations).sum(axis=0) * n_units / (n_units - 1)) / k


def _check_groups(groups: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    if len(groups) == 0:
        raise ValueError("groups is empty")
    index_sets = []
    seen = np.zeros(n, dtype=bool)
    for g, group in enumerate(groups):
        group = np.asarray(group)
        if group.dtype == bool:
            if group.shape != (n,):
                raise ValueError(f"group {g}: a bool mask must have shape ({n},), got {group.shape}")
            group = np.flatnonzero(group)
        if group.ndim != 1 or len(group) == 0 or not np.issubdtype(group.dtype, np.integer):
            raise ValueError(f"group {g} must be a non-empty 1-d array of player indices")
        if group.min() < 0 or group.max() >= n:
            raise ValueError(f"group {g} has player indices outside 0..{n - 1}")
        if len(np.unique(group)) != len(group) or seen[group].any():
            raise ValueError(f"group {g} repeats a player (groups must be disjoint)")
        seen[group] = True
        index_sets.append(group)
    return index_sets


def _check_players(game: Game) -> int:
    n = int(game.n_players)
    if n < 1:
        raise ValueError(f"the game has {n} players; power indices need at least one")
    return n


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool):
        raise TypeError("budget must be an int (a number of coalition evaluations), not a bool")
    budget = operator.index(budget)
    if budget < 0:
        raise ValueError(f"budget must be non-negative, got {budget}")
    return budget


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, from np.random.default_rng; got {type(rng)}")


def _check_keep_prob(keep_prob: float) -> float:
    d = float(keep_prob)
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"keep_prob (d in the GTAP paper) must be in [0, 1], got {keep_prob}")
    return d


def _require(budget: int, needed: int, name: str, what: str) -> None:
    if budget < needed:
        raise ValueError(f"{name} needs a budget of at least {needed} evaluations ({what}); got {budget}")
