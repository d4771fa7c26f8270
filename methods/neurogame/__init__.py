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

from methods.neurogame.config import NeuroGameConfig, configured
from methods.neurogame.layer import NeuroGameLayer, NeuroGameMaps, explain_model, game_layers
from methods.neurogame.model import NeuroGameFamily, neurogame
from methods.neurogame.patches import PatchGame, PatchGrid, ising_energy, patch_edges, patch_grid, sub_coalitions

__all__ = [
    "NeuroGameConfig", "NeuroGameFamily", "NeuroGameLayer", "NeuroGameMaps", "PatchGame", "PatchGrid", "configured",
    "explain_model", "game_layers", "ising_energy", "neurogame", "patch_edges", "patch_grid", "sub_coalitions",
]
