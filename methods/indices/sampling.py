"""Monte-Carlo power indices: permutation and stratified sampling of the Shapley value, PIE and the shared sample
for beta_d (GTAP Algorithm 2 and footnote 5)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np

from methods.games.base import Game
from methods.indices.core import (
    IndexEstimate,
    _block_rows,
    _check_budget,
    _check_keep_prob,
    _check_players,
    _check_rng,
    _clustered_stderr,
    _draw_coalitions,
    _evaluate,
    _per_player_blocks,
    _require,
)


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
    the stratum's mean, and the ranking is close to random. Measured with ``bench estimators`` (full
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
