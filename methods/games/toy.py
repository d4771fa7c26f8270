"""Small games with known power indices, for testing estimators (as shapiq tests its approximators).

Each implements the :class:`~methods.games.base.Game` protocol: batched over a bool (k, n_players) coalition
matrix, and counting its evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from methods.games.base import check_coalitions


class _CountingGame:
    """Shared plumbing: validates the coalition matrix, counts rows, delegates to ``coalition_values``."""

    n_players: int
    n_evaluations: int

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        return self.coalition_values(coalitions)

    def coalition_values(self, coalitions: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class UnanimityGame(_CountingGame):
    """v(C) = 1 if C contains every member of T, else 0.

    Closed forms: Shapley phi_i = 1/|T| and beta_d(i) = d^(|T| - 1) for i in T; 0 for everyone else.

    Args:
        n_players: number of players n.
        members: the carrier T (non-empty player indices).
    """

    def __init__(self, n_players: int, members: Sequence[int]) -> None:
        self.n_players = int(n_players)
        self.members = np.unique(np.asarray(members, dtype=np.int64))
        if len(self.members) == 0 or self.members[0] < 0 or self.members[-1] >= self.n_players:
            raise ValueError(f"members must be a non-empty subset of 0..{self.n_players - 1}")
        self.n_evaluations = 0

    def coalition_values(self, coalitions: np.ndarray) -> np.ndarray:
        return coalitions[:, self.members].all(axis=1).astype(np.float64)

    def shapley_values(self) -> np.ndarray:
        """phi_i = 1/|T| for i in T, else 0."""
        return self._on_members(1.0 / len(self.members))

    def banzhaf_values(self, keep_prob: float = 0.5) -> np.ndarray:
        """beta_d(i) = d^(|T| - 1) for i in T, else 0 (keep_prob is d)."""
        return self._on_members(float(keep_prob) ** (len(self.members) - 1))

    def _on_members(self, value: float) -> np.ndarray:
        values = np.zeros(self.n_players)
        values[self.members] = value
        return values


class AdditiveGame(_CountingGame):
    """v(C) = the summed weights of C's members; every semivalue (Shapley, every beta_d) equals the weights.

    Args:
        weights: (n_players,) the weight of each player.
    """

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 1:
            raise ValueError("weights must be 1-d")
        self.n_players = len(self.weights)
        self.n_evaluations = 0

    def coalition_values(self, coalitions: np.ndarray) -> np.ndarray:
        return coalitions @ self.weights


class WeightedVotingGame(_CountingGame):
    """v(C) = 1 if the weights of C's members sum to at least ``quota``, else 0.

    Args:
        weights: (n_players,) voting weights.
        quota: the winning threshold.
    """

    def __init__(self, weights: Sequence[float], quota: float) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 1:
            raise ValueError("weights must be 1-d")
        self.quota = float(quota)
        self.n_players = len(self.weights)
        self.n_evaluations = 0

    def coalition_values(self, coalitions: np.ndarray) -> np.ndarray:
        return (coalitions @ self.weights >= self.quota).astype(np.float64)


class TableGame(_CountingGame):
    """An arbitrary game given by its value table: v(C) = table[sum of 2^j over members j of C].

    Args:
        table: (2^n_players,) the value of every coalition; player j is bit j of the index.
    """

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        n_players = int(np.log2(len(self.table))) if len(self.table) > 0 else -1
        if self.table.ndim != 1 or n_players < 0 or len(self.table) != 1 << n_players:
            raise ValueError("table must be 1-d with a length that is a power of 2")
        self.n_players = n_players
        self.n_evaluations = 0

    def coalition_values(self, coalitions: np.ndarray) -> np.ndarray:
        return self.table[coalition_codes(coalitions)]


class RandomGame(TableGame):
    """A game with an independent standard normal value for every coalition, for property tests.

    Args:
        n_players: number of players n (the table has 2^n entries).
        rng: the source of randomness.
    """

    def __init__(self, n_players: int, rng: np.random.Generator) -> None:
        super().__init__(rng.standard_normal(1 << int(n_players)))


def coalition_codes(coalitions: np.ndarray) -> np.ndarray:
    """The integer code of each coalition row: sum of 2^j over its members j."""
    coalitions = np.asarray(coalitions, dtype=bool)
    return coalitions.astype(np.int64) @ (1 << np.arange(coalitions.shape[1], dtype=np.int64))
