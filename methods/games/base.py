"""The cooperative-game protocol shared by every power-index estimator.

A game is shapiq's convention: a value function that takes a boolean coalition matrix of shape (k, n_players) and
returns k values. Being batched by construction lets a neuron game evaluate many coalitions in one pass, and lets
shapiq's approximators and exact computer run on our games (and ours on theirs) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Game(Protocol):
    """A transferable-utility game in batched form.

    Attributes:
        n_players: number of players n.
        n_evaluations: coalitions evaluated so far (the cost of everything asked of this game).
    """

    n_players: int
    n_evaluations: int

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of a batch of coalitions.

        Args:
            coalitions: bool array of shape (k, n_players); row j is the coalition C_j.

        Returns:
            float64 array of shape (k,), v(C_j) for each row.
        """
        ...


class FunctionGame:
    """Wraps a plain batched value function into a counting :class:`Game`.

    Args:
        value_function: maps a bool (k, n) array to k values.
        n_players: number of players.
    """

    def __init__(self, value_function: Callable[[np.ndarray], np.ndarray], *, n_players: int) -> None:
        self.value_function = value_function
        self.n_players = int(n_players)
        self.n_evaluations = 0

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        return np.asarray(self.value_function(coalitions), dtype=np.float64).reshape(len(coalitions))


class RestrictedGame:
    """The game on the free players of ``game`` when some players are fixed in or out.

    GTAP's iterated strategies need this: Iterated Pruning re-estimates with the pruned units always excluded, and
    Iterated Building with the chosen units always included (Sec. III-B, the remark after Algorithm 2). Layer-wise
    games are the same construction with every other layer always included.

    Args:
        game: the full game.
        include: bool mask (n_players,) of players that are in every coalition.
        exclude: bool mask (n_players,) of players that are in no coalition.

    Attributes:
        free: indices (into the full game) of the players of this game, in increasing order.
    """

    def __init__(self, game: Game, *, include: np.ndarray | None = None, exclude: np.ndarray | None = None) -> None:
        n = game.n_players
        include = np.zeros(n, dtype=bool) if include is None else np.asarray(include, dtype=bool)
        exclude = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
        if include.shape != (n,) or exclude.shape != (n,):
            raise ValueError(f"include and exclude must have shape ({n},)")
        if np.any(include & exclude):
            raise ValueError("a player cannot be both always included and always excluded")
        self.game = game
        self.include = include
        self.exclude = exclude
        self.free = np.flatnonzero(~(include | exclude))
        self.n_players = len(self.free)

    @property
    def n_evaluations(self) -> int:
        return self.game.n_evaluations

    def embed(self, coalitions: np.ndarray) -> np.ndarray:
        """Full-game coalitions for coalitions over the free players."""
        coalitions = check_coalitions(coalitions, self.n_players)
        full = np.broadcast_to(self.include, (len(coalitions), self.include.size)).copy()
        full[:, self.free] = coalitions
        return full

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        return self.game(self.embed(coalitions))


def check_coalitions(coalitions: np.ndarray, n_players: int) -> np.ndarray:
    """Validates a coalition matrix and returns it as a bool (k, n_players) array."""
    coalitions = np.asarray(coalitions)
    if coalitions.ndim == 1:
        coalitions = coalitions[None, :]
    if coalitions.ndim != 2 or coalitions.shape[1] != n_players:
        raise ValueError(f"coalitions must have shape (k, {n_players}), got {coalitions.shape}")
    if coalitions.dtype != bool:
        if not np.isin(coalitions, (0, 1)).all():
            raise ValueError("coalitions must be boolean (or 0/1)")
        coalitions = coalitions.astype(bool)
    return coalitions
