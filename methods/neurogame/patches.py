"""The patch geometry of a NEUROGAME layer and the game inside one patch (the Ising energy,
eq. 4; the payoff, eq. 2)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from methods.games.base import check_coalitions
from methods.neurogame.config import NeuroGameConfig


def patch_edges(coalition_size: int, neighbourhood: int) -> list[tuple[int, int]]:
    """The coupled pairs <i,j> (i < j) of an n x n patch, players numbered row-major.

    In the order of :func:`pair_products`: horizontal, vertical, then (8-neighbourhood) diagonal and anti-diagonal
    pairs, each row-major.
    """
    n = coalition_size
    edges = [(r * n + c, r * n + c + 1) for r in range(n) for c in range(n - 1)]
    edges += [(r * n + c, (r + 1) * n + c) for r in range(n - 1) for c in range(n)]
    if neighbourhood == 8:
        edges += [(r * n + c, (r + 1) * n + c + 1) for r in range(n - 1) for c in range(n - 1)]
        edges += [(r * n + c + 1, (r + 1) * n + c) for r in range(n - 1) for c in range(n - 1)]
    return edges


def pair_products(spins: torch.Tensor, neighbourhood: int) -> torch.Tensor:
    """s_i s_j of every pair <i,j> of (..., n, n) patches, as (..., |edges|) in the order of :func:`patch_edges`.

    Shifted slices rather than an index: an index along a short last axis is several times slower on the CPU.
    """
    parts = [spins[..., :, :-1] * spins[..., :, 1:], spins[..., :-1, :] * spins[..., 1:, :]]
    if neighbourhood == 8:
        parts += [spins[..., :-1, :-1] * spins[..., 1:, 1:], spins[..., :-1, 1:] * spins[..., 1:, :-1]]
    return torch.cat([part.flatten(-2) for part in parts], dim=-1)


@functools.cache
def sub_coalitions(coalition_size: int, neighbourhood: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed matrices of the exact patch Shapley value.

    Row S (0 <= S < 2^m, m = n^2) is the sub-coalition whose members are the set bits of S.

    Returns:
        members: (2^m, m) 0/1, player i in S.
        pair_members: (2^m, |edges|) 0/1, both ends of edge e in S (the edges of :func:`patch_edges`).
        shapley_weights: (2^m, m) float64 W with phi = v @ W for v the values of all sub-coalitions:
            W[S, i] = (|S| - 1)! (m - |S|)! / m! when i is in S, else -|S|! (m - |S| - 1)! / m!.
    """
    m = coalition_size**2
    members = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(np.float64)
    edges = patch_edges(coalition_size, neighbourhood)
    pair_members = np.stack([members[:, i] * members[:, j] for i, j in edges], axis=1)
    size = members.sum(1).astype(int)
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
    joins = weight[np.clip(size - 1, 0, m - 1)][:, None]  # weight of the marginal v(S) - v(S - i), i in S
    leaves = weight[np.clip(size, 0, m - 1)][:, None]  # weight of v(S + i) - v(S), i not in S
    shapley_weights = np.where(members == 1, joins, -leaves)
    for cached in (members, pair_members, shapley_weights):
        cached.flags.writeable = False  # shared by every caller
    return members, pair_members, shapley_weights


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """Where the patches of an H x W map lie.

    Attributes:
        rows, cols: the patch grid (M = rows * cols patches, numbered row-major).
        index: (M, n^2) long, the flat position (r * W + c) of each player of each patch.
        uncovered: (H * W,) bool, positions that no patch covers.
    """

    rows: int
    cols: int
    index: torch.Tensor
    uncovered: torch.Tensor


def patch_grid(height: int, width: int, *, coalition_size: int, stride: int,
               device: torch.device | str = "cpu") -> PatchGrid:
    """The patches of an H x W map; raises ValueError when an n x n patch does not fit."""
    n = coalition_size
    if n > height or n > width:
        raise ValueError(f"a {n}x{n} coalition does not fit a {height}x{width} activation map; use a smaller "
                         f"coalition_size or a larger map")
    rows, cols = (height - n) // stride + 1, (width - n) // stride + 1
    top = torch.arange(rows) * stride
    left = torch.arange(cols) * stride
    corner = (top[:, None] * width + left[None, :]).reshape(-1)  # (M,)
    offset = (torch.arange(n)[:, None] * width + torch.arange(n)[None, :]).reshape(-1)  # (m,)
    index = corner[:, None] + offset[None, :]
    uncovered = torch.ones(height * width, dtype=torch.bool)
    uncovered[index.reshape(-1)] = False
    return PatchGrid(rows, cols, index.to(device), uncovered.to(device))


# ---------------------------------------------------------------------------------------------- the patch game


def ising_energy(spins: np.ndarray, *, alpha: float, beta: float, neighbourhood: int) -> np.ndarray:
    """E(s) = -alpha sum_i s_i - beta sum_<i,j> s_i s_j (eq. 4) of n x n configurations, written out directly.

    Args:
        spins: (..., n, n) spins.

    Returns:
        (...,) energies.
    """
    s = np.asarray(spins, dtype=np.float64)
    pairs = (s[..., :, :-1] * s[..., :, 1:]).sum((-1, -2)) + (s[..., :-1, :] * s[..., 1:, :]).sum((-1, -2))
    if neighbourhood == 8:
        pairs = pairs + (s[..., :-1, :-1] * s[..., 1:, 1:]).sum((-1, -2))
        pairs = pairs + (s[..., :-1, 1:] * s[..., 1:, :-1]).sum((-1, -2))
    return -alpha * s.sum((-1, -2)) - beta * pairs


class PatchGame:
    """The game inside one patch of a map, in float64 and written out directly: the oracle for the layer.

    v(S) = exp(-E(s_S) / T) / Z, where s_S keeps the spins of the players in S and zeroes the others, and Z sums
    exp(-E / T) over the full configurations of all patches of the map.

    Args:
        map_spins: (H, W) spins of the whole map.
        patch: the patch's number, row-major over the patch grid.
        config: the layer's configuration (coalition size, stride, neighbourhood).
        alpha, beta, temperature: the energy and Gibbs parameters (default: the config's).

    Attributes:
        n_players: n^2.
        n_evaluations: coalitions evaluated so far.
        spins: (n, n) spins of the patch.
        log_partition: log Z of the map.
    """

    def __init__(self, map_spins: np.ndarray, patch: int, *, config: NeuroGameConfig, alpha: float | None = None,
                 beta: float | None = None, temperature: float | None = None) -> None:
        map_spins = np.asarray(map_spins, dtype=np.float64)
        n, stride = config.coalition_size, config.patch_stride
        height, width = map_spins.shape
        grid = patch_grid(height, width, coalition_size=n, stride=stride)
        self.alpha = config.alpha if alpha is None else float(alpha)
        self.beta = config.beta if beta is None else float(beta)
        self.temperature = config.temperature if temperature is None else float(temperature)
        self.neighbourhood = config.neighbourhood
        corners = [(r * stride, c * stride) for r in range(grid.rows) for c in range(grid.cols)]
        all_patches = np.stack([map_spins[r:r + n, c:c + n] for r, c in corners])
        logits = -self._energy(all_patches) / self.temperature
        top = logits.max()
        self.log_partition = float(top + np.log(np.exp(logits - top).sum()))
        self.spins = all_patches[patch]
        self.n_players = n * n
        self.n_evaluations = 0

    def _energy(self, spins: np.ndarray) -> np.ndarray:
        return ising_energy(spins, alpha=self.alpha, beta=self.beta, neighbourhood=self.neighbourhood)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        n = self.spins.shape[0]
        spins = self.spins[None] * coalitions.reshape(-1, n, n)
        return np.exp(-self._energy(spins) / self.temperature - self.log_partition)
