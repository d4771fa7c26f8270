"""What every power-index estimator shares: the result type, the chunked evaluation of a game, coalition drawing,
and the checks of budgets, groups and probabilities."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from datasets.errors import UsageError
from methods.games.base import Game

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
        raise UsageError(f"keep_prob (d in the GTAP paper) must be in [0, 1], got {keep_prob}")
    return d


def _require(budget: int, needed: int, name: str, what: str) -> None:
    if budget < needed:
        raise ValueError(f"{name} needs a budget of at least {needed} evaluations ({what}); got {budget}")
