"""NEUROGAME ("Game Theory Meets Statistical Mechanics in Deep Learning Design", arXiv 2410.12264): a layer that lets
only the strong coalitions of an activation map through, with its model and its training family.

A NEUROGAME layer plays one game per activation map (per sample and channel): the players are the map's units
(positions), their actions are their activations. The map is cut into M simple coalitions, n x n patches. Each
patch's configuration has an Ising-like energy (eq. 4), its payoff is its Gibbs probability (eq. 2) among the map's
patches, the top-p patches by payoff win, and inside each winning patch the units' Shapley values (eq. 1) pick the
strong units, the only ones that propagate. Everything is batched tensor work, with no Python loop over maps,
patches or units: the energies of all patches are sum-pools of the spins and of their neighbour products, patches are
a reshape of the map (an index when they overlap), and the exact Shapley values of every unit of every winning patch
are two matrix products over all 2^(n^2) sub-coalitions (see :func:`sub_coalitions`).

Interpretations, where the paper is silent (each is a field of :class:`NeuroGameConfig`):

- Where the layer sits: input -> conv blocks -> NEUROGAME layer -> fully connected head (:func:`neurogame`); the
  layer filters the pooled maps of the last conv block. Maps are independent games, so a channel's output depends on
  that channel's input only (the layer keeps the unit axis one-to-one, like a ReLU).
- Coalitions (``coalition_size`` n, ``stride``): n x n patches at the given stride (default n: non-overlapping),
  numbered row-major over the patch grid; players inside a patch are numbered row-major (player r * n + c is bit
  r * n + c of a sub-coalition's index, as in ``methods.indices``). n is 2 or 3 (exact Shapley enumerates
  2^(n^2) sub-coalitions). Units no patch covers (the last rows or columns when the map size is not a multiple of the
  stride) are dropped by default (``uncovered="drop"``: only strong units propagate) or passed unfiltered
  (``uncovered="keep"``). With overlapping patches a unit is strong when it is strong in any patch covering it.
- Spins: s = tanh(a / ``spin_scale``) of the activation a. Bounded like Ising spins, so |E| <= |alpha| n^2 +
  |beta| |edges| and the float32 exp(-E(s_S) / T - log Z) cannot overflow unless 2 (|alpha| n^2 + |beta| |edges|) / T
  exceeds ~88 (at the defaults it is at most 16); a silent ReLU unit (a = 0) has s = 0, which is exactly
  the "inactive" state used for players outside a sub-coalition; and s depends on the unit alone (no statistics of
  the batch or the map), so a sample's output never depends on the rest of its batch.
- Energy (eq. 4, ``alpha``, ``beta``, ``neighbourhood``): E(s) = -alpha sum_i s_i - beta sum_<i,j> s_i s_j, the
  pairs <i,j> being the 4- or 8-neighbours inside the patch (no coupling across patches).
- Payoff (eq. 2, ``temperature`` T): P_m = exp(-E_m / T) / Z with Z = sum over the M patches of the same map of
  exp(-E / T): a softmax over the map's patches of -E / T.
- Winning coalitions (``top_p`` p): the ceil(p M) patches of each map with the largest payoff (at least one).
- The patch game: v(S) = exp(-E(s_S) / T) / Z, where s_S keeps the spins of the players in S and sets the others to
  0 (inactive), and Z is the partition function of the map's full configuration, a constant of the map. So
  v(N) = P_m, v(empty) = 1 / Z, and the Shapley values of a patch sum to P_m - 1 / Z. The coupling beta and the
  exponential both make it a real game: a unit's value depends on its neighbours' spins, it is not its own payoff.
  A silent unit is a null player; its Shapley value is set to exactly 0, which the matrix product only reproduces up
  to rounding. Z scales every value of a map alike and rho is a quantile of the same map's values, so which units
  are strong does not depend on the choice of Z; only the reported values do.
- Strong units (``quantile``, ``schedule``, ``warmup_epochs``): units of winning patches whose Shapley value exceeds
  rho = f(epoch) * q, q the first quartile (``quantile=0.25``) of the Shapley values of all units of the winning
  patches of the same map and sample (per map and per sample, so eval is batch-independent). f is 1 for
  ``schedule="constant"``; for ``"warmup"`` it is min(1, epoch / min(warmup_epochs, epochs - 1)), advanced by the
  family's ``on_epoch_start`` (epoch 0-based): the filter starts at rho = 0 (every active unit of a winning patch
  passes) and tightens, reaching rho = q by the last epoch even when training is shorter than the warm-up (one
  epoch: constant). f is a persistent buffer, so a loaded checkpoint filters as the trained model did at its last
  epoch (its kept epoch, under early stopping); a fresh layer starts at f = 1. Evaluation applies the same
  deterministic filter as training (no train/eval switch).
- Gradient: output = a * mask with the mask a constant, so the kept activations get their gradient and the dropped
  ones none. With ``learnable=False`` (default) alpha, beta and T are fixed and the game runs without autograd. With
  ``learnable=True`` they are parameters (T as log T) trained through a straight-through surrogate: the mask's value
  is the hard mask, its gradient is that of sigmoid((phi - rho) / mean |phi|) of the winning units (rho and the map's
  mean |phi| held constant, spins detached, the top-p selection giving no gradient). The activations' gradient is
  the hard mask in both cases.
- Ablation (``filter="random"``): the Shapley mask is computed, then replaced by a uniformly random mask over the
  whole map that keeps exactly as many units per map and sample. Training draws from torch's global generator; eval
  draws from a generator seeded with ``seed`` at every call, so it is deterministic for a given batch.
- Pass fraction: the fraction of input units the layer passed, a running mean over the training forward passes of
  the epoch (eval passes are not counted), reset by ``on_epoch_start`` and reported by the family as
  ``neurogame/pass_fraction/<stage name>``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.models import MODELS
from datasets.training import FAMILIES
from methods.games import check_coalitions

COALITION_SIZES = (2, 3)
NEIGHBOURHOODS = (4, 8)
SCHEDULES = ("warmup", "constant")
FILTERS = ("shapley", "random")
UNCOVERED = ("drop", "keep")
# Most (patch x sub-coalition) cells evaluated in one chunk: float temporaries of the exact Shapley stay ~32 MiB.
MAX_SUBSET_CELLS = 1 << 23


@dataclass(frozen=True)
class NeuroGameConfig:
    """Every choice of a NEUROGAME layer (see the module docstring for the reading of the paper behind each).

    Args:
        coalition_size: n, the side of the n x n simple coalitions (2 or 3).
        stride: step between patches; None means n (non-overlapping).
        neighbourhood: 4 or 8, the pairs <i,j> coupled by beta inside a patch.
        alpha: the field term of the energy (alpha in eq. 4).
        beta: the coupling term of the energy (beta in eq. 4).
        temperature: T of the Gibbs distribution (eq. 2), > 0.
        learnable: make alpha, beta and T parameters (trained through a straight-through surrogate).
        spin_scale: spins are tanh(activation / spin_scale).
        top_p: p, the fraction of each map's coalitions that win, in (0, 1].
        quantile: the quantile of the winning units' Shapley values that sets rho (0.25: the first quartile).
        schedule: "warmup" (rho = min(1, epoch / min(warmup_epochs, epochs - 1)) * q) or "constant" (rho = q).
        warmup_epochs: epochs until rho reaches q under "warmup" (fewer when training is shorter).
        filter: "shapley" (strong units) or "random" (the same number of units per map, at random).
        uncovered: "drop" or "keep" the units that no patch covers.
        seed: seed of the random filter in eval mode.
    """

    coalition_size: int = 2
    stride: int | None = None
    neighbourhood: int = 4
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 1.0
    learnable: bool = False
    spin_scale: float = 1.0
    top_p: float = 0.5
    quantile: float = 0.25
    schedule: str = "warmup"
    warmup_epochs: int = 3
    filter: str = "shapley"
    uncovered: str = "drop"
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.coalition_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"coalition_size n must be an integer >= 2, got {n!r}")
        if n not in COALITION_SIZES:
            raise ValueError(f"coalition_size n must be 2 or 3 (exact Shapley enumerates 2^(n*n) sub-coalitions), "
                             f"got {n}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(f"stride must be an integer >= 1 (or None for n), got {self.stride!r}")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"neighbourhood must be 4 or 8, got {self.neighbourhood!r}")
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise ValueError(f"alpha and beta must be finite, got alpha={self.alpha}, beta={self.beta}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature T must be > 0, got {self.temperature}")
        if not (self.spin_scale > 0 and math.isfinite(self.spin_scale)):
            raise ValueError(f"spin_scale must be > 0, got {self.spin_scale}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be an integer >= 1, got {self.warmup_epochs!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}; valid: {', '.join(FILTERS)}")
        if self.uncovered not in UNCOVERED:
            raise ValueError(f"unknown uncovered {self.uncovered!r}; valid: {', '.join(UNCOVERED)}")

    @property
    def patch_stride(self) -> int:
        return self.coalition_size if self.stride is None else self.stride

    @property
    def n_players(self) -> int:
        """Players of one patch game, n^2."""
        return self.coalition_size**2


# ------------------------------------------------------------------------------------------------- geometry


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


# ------------------------------------------------------------------------------------------------- the layer


@dataclass(frozen=True, eq=False)
class NeuroGameMaps:
    """What a NEUROGAME layer saw and did for a batch, for glass-box plots.

    Attributes:
        activation: (B, C, H, W) the layer's input.
        energy: (B, C, rows, cols) energy E of each patch's configuration.
        payoff: (B, C, rows, cols) its Gibbs payoff exp(-E / T) / Z.
        winning: (B, C, rows, cols) bool, the top-p patches of each map.
        shapley: (B, C, H, W) each unit's Shapley value in its winning patch (the largest, where patches overlap);
            0 outside winning patches.
        coalition_shapley: (B, C, M, n^2) the Shapley values per patch and player; NaN for losing patches.
        threshold: (B, C) rho of each map.
        mask: (B, C, H, W) 1 where the unit propagates (the strong units, or the random filter's choice).
    """

    activation: torch.Tensor
    energy: torch.Tensor
    payoff: torch.Tensor
    winning: torch.Tensor
    shapley: torch.Tensor
    coalition_shapley: torch.Tensor
    threshold: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class _Play:
    """One batched play of the layer's games (internal: what forward and explain share)."""

    grid: PatchGrid
    logits: torch.Tensor  # (B, C, M) -E / T of each patch
    log_partition: torch.Tensor  # (B, C) log Z
    winners: torch.Tensor  # (B, C, K) patch numbers
    shapley: torch.Tensor  # (B, C, K, m)
    threshold: torch.Tensor  # (B, C)
    mask: torch.Tensor  # (B, C, H, W) hard 0/1
    gate: torch.Tensor  # (B, C, H, W) the mask, with the surrogate gradient when learnable


class NeuroGameLayer(nn.Module):
    """A NEUROGAME layer: passes only the strong units of each activation map (see the module docstring).

    Args:
        config: the layer's choices (default: ``NeuroGameConfig()``).

    Input (B, C, H, W) activation maps; output the same maps with every unit that is not strong zeroed.
    """

    preserves_units = True  # channels map one-to-one (methods.structure treats the layer like a ReLU)

    def __init__(self, config: NeuroGameConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NeuroGameConfig()
        members, pair_members, weights = sub_coalitions(config.coalition_size, config.neighbourhood)
        # (m, 2^m) and (|edges|, 2^m) 0/1: spin s_i, pair product s_i s_j, counts in sub-coalition S
        self.register_buffer("members", torch.tensor(members.T, dtype=torch.float32), persistent=False)
        self.register_buffer("pair_members", torch.tensor(pair_members.T, dtype=torch.float32), persistent=False)
        self.register_buffer("shapley_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        alpha = torch.tensor(float(config.alpha))
        beta = torch.tensor(float(config.beta))
        log_temperature = torch.tensor(math.log(config.temperature))
        if config.learnable:
            self.alpha, self.beta = nn.Parameter(alpha), nn.Parameter(beta)
            self.log_temperature = nn.Parameter(log_temperature)
        else:  # fixed: the config is the truth, so they stay out of checkpoints
            self.register_buffer("alpha", alpha, persistent=False)
            self.register_buffer("beta", beta, persistent=False)
            self.register_buffer("log_temperature", log_temperature, persistent=False)
        # f(epoch) of rho's schedule; persistent, so a loaded checkpoint filters as the trained model last did
        self.register_buffer("threshold_scale", torch.tensor(1.0))
        self.register_buffer("kept_units", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("seen_units", torch.zeros((), dtype=torch.float64), persistent=False)
        self._grids: dict[tuple[int, int, str], PatchGrid] = {}

    def extra_repr(self) -> str:
        c = self.config
        return (f"n={c.coalition_size}, stride={c.patch_stride}, neighbourhood={c.neighbourhood}, top_p={c.top_p}, "
                f"filter={c.filter!r}, learnable={c.learnable}")

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    # ------------------------------------------------------------------------------------------ schedule

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Advances rho's schedule to ``epoch`` (0-based, of ``epochs``) and resets the pass-fraction counters."""
        c = self.config
        # The ramp ends by the last epoch even when training is shorter than the warm-up, so a network always
        # finishes training under the filter it is evaluated with (rho = q).
        ramp = min(c.warmup_epochs, epochs - 1)
        scale = 1.0 if c.schedule == "constant" or ramp <= 0 else min(1.0, epoch / ramp)
        self.threshold_scale.fill_(scale)
        self.kept_units.zero_()
        self.seen_units.zero_()

    def pass_fraction(self) -> float | None:
        """Fraction of input units passed by the training forward passes since the epoch started (None: none)."""
        seen = float(self.seen_units)
        return float(self.kept_units) / seen if seen else None

    # ------------------------------------------------------------------------------------------ geometry

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raises ValueError when maps of shape (C, H, W) cannot hold one coalition."""
        if len(shape) != 3:
            raise ValueError(f"a NEUROGAME layer takes (C, H, W) activation maps, got shape {tuple(shape)}")
        self.grid(shape[1], shape[2])

    def grid(self, height: int, width: int, device: torch.device | str = "cpu") -> PatchGrid:
        """The patch layout of an H x W map (cached per size and device)."""
        key = (height, width, str(device))
        if key not in self._grids:
            self._grids[key] = patch_grid(height, width, coalition_size=self.config.coalition_size,
                                          stride=self.config.patch_stride, device=device)
        return self._grids[key]

    def spins(self, activation: torch.Tensor) -> torch.Tensor:
        """s = tanh(a / spin_scale), detached: the game never sends gradient into the activations."""
        return torch.tanh(activation.detach() / self.config.spin_scale)

    # ------------------------------------------------------------------------------------------ the games

    def _play(self, activation: torch.Tensor, *, training: bool) -> _Play:
        if activation.dim() != 4:
            raise ValueError(f"a NEUROGAME layer takes (B, C, H, W) maps, got shape {tuple(activation.shape)}")
        c = self.config
        grid = self.grid(activation.shape[2], activation.shape[3], activation.device)
        n_patches, m = grid.index.shape
        spins = self.spins(activation).float()
        patches = self.to_patches(spins)  # (B, C, M, m)
        n = c.coalition_size
        field, coupling = self._patch_sums(spins)  # sum_i s_i and sum_<i,j> s_i s_j of every patch, (B, C, M)
        temperature = self.temperature
        logits = (self.alpha * field + self.beta * coupling) / temperature  # -E / T (eq. 4), (B, C, M)
        log_partition = torch.logsumexp(logits, dim=-1)  # (B, C), log Z over the map's patches (eq. 2)
        k = max(1, math.ceil(c.top_p * n_patches - 1e-9))
        winners = logits.detach().topk(k, dim=-1).indices  # (B, C, K)
        won = patches.gather(2, winners[..., None].expand(-1, -1, -1, m))  # (B, C, K, m)
        pairs = pair_products(won.unflatten(-1, (n, n)), c.neighbourhood)  # (B, C, K, |edges|)
        shapley = self._patch_shapley(won, pairs, log_partition)  # (B, C, K, m)
        shapley = torch.where(won == 0, torch.zeros((), device=shapley.device), shapley)  # silent: null players
        threshold = self.threshold_scale * _quantile(shapley.detach().flatten(2), c.quantile)  # rho, (B, C)
        strong = (shapley.detach() > threshold[..., None, None]).float()
        height, width = activation.shape[2:]
        mask = self.from_patches(self._place(strong, winners, n_patches), height, width,
                                 fill=float(c.uncovered == "keep"))
        gate = mask
        if c.filter == "random":
            mask = gate = self._random_like(mask, training=training)
        elif c.learnable and torch.is_grad_enabled():
            scale = shapley.detach().abs().flatten(2).mean(-1).clamp_min(1e-30)[..., None, None]
            soft = torch.sigmoid((shapley - threshold[..., None, None]) / scale)
            soft_map = self.from_patches(self._place(soft, winners, n_patches), height, width)
            gate = mask + (soft_map - soft_map.detach())  # value: exactly the hard mask; gradient: the surrogate's
        return _Play(grid, logits, log_partition, winners, shapley, threshold, mask, gate)

    def _patch_sums(self, spins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_i s_i and sum_<i,j> s_i s_j over every patch, as sum-pools of the map and of its neighbour products.

        A pair lies in a patch exactly when its first unit's position lies in the pool window of that pair kind
        (n x (n - 1) for horizontal pairs, (n - 1) x n for vertical, (n - 1) x (n - 1) for diagonal ones).
        """
        n, stride = self.config.coalition_size, self.config.patch_stride

        def pooled_sum(maps: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
            return F.avg_pool2d(maps, (rows, cols), stride=stride, divisor_override=1).flatten(2)

        field = pooled_sum(spins, n, n)
        coupling = pooled_sum(spins[..., :, :-1] * spins[..., :, 1:], n, n - 1)
        coupling = coupling + pooled_sum(spins[..., :-1, :] * spins[..., 1:, :], n - 1, n)
        if self.config.neighbourhood == 8:
            coupling = coupling + pooled_sum(spins[..., :-1, :-1] * spins[..., 1:, 1:], n - 1, n - 1)
            coupling = coupling + pooled_sum(spins[..., :-1, 1:] * spins[..., 1:, :-1], n - 1, n - 1)
        return field, coupling

    @staticmethod
    def _place(values: torch.Tensor, winners: torch.Tensor, n_patches: int, fill: float = 0.0) -> torch.Tensor:
        """(B, C, K, m) values of the winning patches -> (B, C, M, m), ``fill`` for the losing patches."""
        placed = values.new_full((*values.shape[:2], n_patches, values.shape[-1]), fill)
        return placed.scatter(2, winners[..., None].expand_as(values), values)

    def to_patches(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) maps -> (B, C, M, n^2) patches (players row-major); a reshape when the stride is n."""
        batch, channels, height, width = maps.shape
        grid = self.grid(height, width, maps.device)
        n = self.config.coalition_size
        if self.config.patch_stride == n:
            covered = maps[..., :grid.rows * n, :grid.cols * n].reshape(batch, channels, grid.rows, n, grid.cols, n)
            return covered.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, grid.rows * grid.cols, n * n)
        return maps.flatten(2)[..., grid.index]

    def from_patches(self, patches: torch.Tensor, height: int, width: int, *, fill: float = 0.0) -> torch.Tensor:
        """(B, C, M, n^2) per-patch values -> (B, C, H, W) maps: ``fill`` where no patch covers a unit, the largest
        value where patches overlap."""
        batch, channels = patches.shape[:2]
        grid = self.grid(height, width, patches.device)
        n = self.config.coalition_size
        if self.config.patch_stride == n:
            maps = patches.reshape(batch, channels, grid.rows, grid.cols, n, n).permute(0, 1, 2, 4, 3, 5)
            maps = maps.reshape(batch, channels, grid.rows * n, grid.cols * n)
            return F.pad(maps, (0, width - grid.cols * n, 0, height - grid.rows * n), value=fill)
        out = patches.new_full((batch, channels, height * width), -math.inf)
        out = out.scatter_reduce(2, grid.index.reshape(-1).expand(batch, channels, -1), patches.flatten(2),
                                 reduce="amax")
        return torch.where(grid.uncovered, torch.full((), fill, device=out.device), out).view(
            batch, channels, height, width)

    def _patch_shapley(self, spins: torch.Tensor, pairs: torch.Tensor, log_partition: torch.Tensor) -> torch.Tensor:
        """Exact Shapley values of the winning patches: phi = v @ W over all 2^m sub-coalitions of each patch.

        log v(S) = -E(s_S) / T - log Z = (alpha / T) sum_(i in S) s_i + (beta / T) sum_(<i,j> in S) s_i s_j - log Z
        is linear in the features (s_i, s_i s_j, -log Z) of a patch, with 0/1 coefficients for each S: one GEMM gives
        the values of all sub-coalitions of all patches, a second their Shapley values. Chunked over patches to bound
        memory (a loop over chunks of rows, never over patches or units).

        Args:
            spins: (B, C, K, m) spins of the K winning patches of each map.
            pairs: (B, C, K, |edges|) their pair products.
            log_partition: (B, C) log Z of each map.
        """
        *lead, m = spins.shape
        temperature = self.temperature
        projection = torch.cat([(self.alpha / temperature) * self.members,
                                (self.beta / temperature) * self.pair_members,
                                torch.ones_like(self.members[:1])])  # (m + |edges| + 1, 2^m)
        features = torch.cat([spins, pairs, -log_partition[..., None, None].expand(*lead, 1)], dim=-1)
        features = features.reshape(-1, features.shape[-1])
        chunk = max(1, MAX_SUBSET_CELLS // projection.shape[1])
        parts = [(features[s:s + chunk] @ projection).exp_() @ self.shapley_weights
                 for s in range(0, len(features), chunk)]
        return torch.cat(parts).reshape(*lead, m)

    def _random_like(self, mask: torch.Tensor, *, training: bool) -> torch.Tensor:
        """A uniformly random mask with as many ones as ``mask`` in every map."""
        generator = None
        if not training:
            generator = torch.Generator(device=mask.device).manual_seed(self.config.seed)
        keys = torch.rand(mask.shape, generator=generator, device=mask.device)
        ranks = keys.argsort(dim=-1).argsort(dim=-1)
        return (ranks < mask.sum(-1, keepdim=True)).float()

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.learnable):
            play = self._play(activation, training=self.training)
        if self.training:
            self.kept_units += play.mask.sum().double()
            self.seen_units += play.mask.numel()
        return activation * play.gate.to(activation.dtype)

    # ------------------------------------------------------------------------------------------ glass box

    @torch.no_grad()
    def explain(self, activation: torch.Tensor) -> NeuroGameMaps:
        """Every map of the layer's games for a batch of its inputs (eval semantics; counts nothing)."""
        play = self._play(activation, training=False)
        batch, channels, height, width = activation.shape
        grid = play.grid
        n_patches = grid.index.shape[0]
        shape = (batch, channels, grid.rows, grid.cols)
        winning = torch.zeros(batch, channels, n_patches, dtype=torch.bool, device=activation.device)
        winning.scatter_(2, play.winners, True)
        shapley = self.from_patches(self._place(play.shapley, play.winners, n_patches, -math.inf), height, width)
        return NeuroGameMaps(
            activation=activation.detach().clone(),
            energy=(-play.logits * self.temperature).reshape(shape),
            payoff=(play.logits - play.log_partition[..., None]).exp().reshape(shape),
            winning=winning.reshape(shape),
            shapley=torch.where(torch.isinf(shapley), torch.zeros((), device=shapley.device), shapley),
            coalition_shapley=self._place(play.shapley, play.winners, n_patches, math.nan),
            threshold=play.threshold,
            mask=play.mask,
        )

    @torch.no_grad()
    def patch_game(self, activation: torch.Tensor, *, sample: int, channel: int, patch: int) -> PatchGame:
        """The game inside patch ``patch`` of map (sample, channel) of a batch, as a :class:`~methods.games.Game`."""
        spins = self.spins(activation[sample, channel]).double().cpu().numpy()
        return PatchGame(spins, patch, config=self.config, alpha=float(self.alpha), beta=float(self.beta),
                         temperature=float(self.temperature))


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile along the last axis, interpolated as torch.quantile does (which refuses over 2^24 values).

    Only the two order statistics around the quantile are needed: a partial top-k is ~2.5x faster than a sort.
    """
    position = q * (values.shape[-1] - 1)
    low = math.floor(position)
    high = min(low + 1, values.shape[-1] - 1)
    smallest = values.topk(high + 1, dim=-1, largest=False).values  # ascending
    return smallest[..., low] + (position - low) * (smallest[..., high] - smallest[..., low])


def game_layers(model: nn.Module) -> Iterator[tuple[str, NeuroGameLayer]]:
    """The NEUROGAME layers of a model with their stage names, in forward order."""
    for name, module in model.named_modules():
        if isinstance(module, NeuroGameLayer):
            yield name, module


def explain_model(model: nn.Sequential, x: torch.Tensor, *, stage: str) -> NeuroGameMaps:
    """The glass-box maps of the NEUROGAME stage ``stage`` of a flat model for inputs ``x`` (eval, no gradient)."""
    stages = dict(model.named_children())
    if not isinstance(stages.get(stage), NeuroGameLayer):
        layers = [name for name, _ in game_layers(model)]
        raise ValueError(f"{stage!r} is not a NEUROGAME stage of the model; NEUROGAME stages: {layers}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a = x
            for name, module in model.named_children():
                if name == stage:
                    return module.explain(a)
                a = module(a)
    finally:
        model.train(was_training)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------- the model


@MODELS.register("neurogame")
def neurogame(*, input_shape: tuple[int, ...], num_classes: int, config: NeuroGameConfig | None = None,
              channels: tuple[int, int] = (32, 64), hidden: int = 256, **options: Any) -> nn.Sequential:
    """NEUROGAME for face attributes: two conv blocks, a NEUROGAME layer on the pooled maps, a ``hidden`` ReLU head.

    For 64x64 inputs the game layer plays on 64 maps of 16x16 (n = 2: 64 coalitions per map).

    Args:
        input_shape: (C, H, W).
        num_classes: outputs.
        config: the NEUROGAME layer's choices (default ``NeuroGameConfig()``).
        channels: output channels of the two conv layers.
        hidden: width of the fully connected hidden layer.
        options: fields of :class:`NeuroGameConfig` that replace ``config``'s (a pair's ``model_options``, a suite's
            ablation, a tuning trial: ``top_p=0.8``, ``coalition_size=3``, ...).

    Returns:
        A flat nn.Sequential: conv1, relu1, pool1, conv2, relu2, pool2, game1, flatten, fc1, relu3, fc2.
    """
    in_channels, height, width = input_shape
    game = NeuroGameLayer(_configured(config, options))
    map_shape = (channels[1], height // 4, width // 4)
    game.check_input_shape(map_shape)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(channels[0], channels[1], kernel_size=3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            game1=game,
            flatten=nn.Flatten(),
            fc1=nn.Linear(math.prod(map_shape), hidden),
            relu3=nn.ReLU(),
            fc2=nn.Linear(hidden, num_classes),
        )
    )


def _configured(config: NeuroGameConfig | None, options: dict[str, Any]) -> NeuroGameConfig:
    """``config`` (default ``NeuroGameConfig()``) with ``options`` replacing its fields; a ValueError names an
    unknown field or a bad value."""
    valid = [f.name for f in dataclasses.fields(NeuroGameConfig)]
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise ValueError(f"NEUROGAME has no option {unknown[0]!r}; valid: {', '.join(valid)}")
    return dataclasses.replace(config or NeuroGameConfig(), **options)


# What a pair, a suite or a tuning trial may set (checked at suite load, before the data or the shape is known;
# a patch larger than the game layer's maps is caught when the model is first built, also before any training).
neurogame.options = tuple(f.name for f in dataclasses.fields(NeuroGameConfig))  # type: ignore[attr-defined]
neurogame.check_options = lambda **options: _configured(None, options)  # type: ignore[attr-defined]
neurogame.option_defaults = lambda config=None, **_: dataclasses.asdict(  # type: ignore[attr-defined]
    config or NeuroGameConfig())
# `bench tune --method neurogame`: top-p, coalition size, rho's schedule (schedule, warmup, quantile), alpha, beta, T.
neurogame.search_space = {  # type: ignore[attr-defined]
    "top_p": {"type": "float", "low": 0.2, "high": 0.9},
    "coalition_size": {"type": "categorical", "choices": [2, 3]},
    "schedule": {"type": "categorical", "choices": ["warmup", "constant"]},
    "warmup_epochs": {"type": "int", "low": 1, "high": 4},
    "quantile": {"type": "float", "low": 0.05, "high": 0.5},
    "alpha": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "beta": {"type": "float", "low": 0.0, "high": 2.0},
    "temperature": {"type": "float", "low": 0.25, "high": 4.0, "log": True},
}

# The paper's second coalition size and the random-filter ablation, as models a pair can name.
MODELS.add("neurogame-3x3", functools.partial(neurogame, config=NeuroGameConfig(coalition_size=3)))
MODELS.add("neurogame-random", functools.partial(neurogame, config=NeuroGameConfig(filter="random")))


# ------------------------------------------------------------------------------------------- the training family


@dataclass(frozen=True)
class NeuroGameFamily:
    """Cross-entropy of the logits; each epoch advances every NEUROGAME layer's rho schedule and reports what it passed.

    Attributes:
        name: the registry name.
    """

    name: str = "neurogame"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        for _, layer in game_layers(model):
            layer.start_epoch(epoch, epochs)

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        metrics = {}
        for name, layer in game_layers(model):
            fraction = layer.pass_fraction()
            if fraction is not None:
                metrics[f"neurogame/pass_fraction/{name}"] = fraction
        return metrics


FAMILIES.add("neurogame", NeuroGameFamily())
