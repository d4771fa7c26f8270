"""Exact power indices: every one of the 2^n coalitions enumerated (n <= MAX_EXACT_PLAYERS)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from methods.games.base import Game
from methods.indices import core
from methods.indices.core import (
    MAX_EXACT_PLAYERS,
    IndexEstimate,
    _check_keep_prob,
    _check_players,
    _evaluate,
)


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
    block = max(1, core.MAX_ROWS)  # read at call time: tests shrink it
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
