"""Monte Carlo Uncertainty Estimation, MCUE (GTAP Algorithm 1), and the choice of d = 1 - t*.

MCUE(p, q) draws sub-networks S of exactly (1 - q) n units, drops each of their units with probability p, applies
the result S' to a random instance and records the output t; its uncertainty is the sample variance of t. GTAP takes
t* = argmax_p MCUE(p, p) on the diagonal and d = 1 - t* as the bias of beta_d.

Interpretations (the paper leaves them open):

* The output t. A classifier's output has no single scalar, so MCUE reads it four ways and returns a heatmap for
  each; ``output`` says which one chooses d (default "correct"):

  - ``"correct"``: whether the prediction is right (0/1); the cell's value is its sample variance over the cell's
    (S', instance) draws, i.e. about acc (1 - acc) of the diluted networks.
  - ``"confidence"``: the softmax probability of the predicted class; the cell's value is its sample variance.
  - ``"entropy"`` (GTAP Sec. III's "entropy of the model output"): per instance, the Shannon entropy (nats) of the
    empirical distribution of the labels that the cell's ``samples`` sub-networks predict for it; the cell's value
    is the mean over the cell's instances. This is a mean entropy, not a variance (plug-in estimate, so it is biased
    low for few samples and at most log(min(samples, classes))).
  - ``"onehot"``: per instance, the sum over classes of the sample variance (ddof 1) of the indicator "the
    sub-network predicts this class" across the cell's sub-networks, i.e. samples / (samples - 1) times the Gini
    impurity of the predicted labels; the cell's value is the mean over the cell's instances.

  For "correct" and "confidence" the mean heatmap is the mean of t; for "entropy" and "onehot", whose draws are
  labels, it is the mean over instances of the modal label's share among the sub-networks (1: they all agree).
* Shared instances. "correct" and "confidence" apply every sub-network to its own random instances (below). The
  label readings need every sub-network of a cell on the SAME instances, so each cell also draws ``instances``
  instances once, from a child generator spawned from ``rng`` (``rng.spawn``: it does not advance ``rng``, so the
  first two readings draw exactly what they drew before the label readings existed). Both instance sets go through
  the game in one masked pass per sub-network.
* Instances per sub-network. Algorithm 1 applies each S'_i to one instance d_i. Applying it to ``instances``
  independent instances gives ``instances`` draws of the same joint process (S', d) per sub-network, so the pooled
  sample variance estimates the same quantity with far fewer masked passes; ``instances=1`` is Algorithm 1 as
  written.
* Bands over some players (the paper's Fig. 6 for AlexNet: "ablating only within the convolutional layers or the
  fully connected layers"). ``players`` restricts the sub-networks to those players: S and the dropout are drawn
  over them, with n their count, and every other player is always kept.
* The grid. The paper reports t* = 0.825 (LeNet-300-100) and 0.775 (LeNet5), points of a 0.05-spaced grid offset by
  0.025, which is the default here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from torch import nn

from datasets.errors import UsageError
from methods.games.neuron import NeuronGame
from methods.network.structure import Submodules, UnitGroup

DEFAULT_GRID = tuple(np.round(np.arange(0.025, 1.0, 0.05), 3))
Output = Literal["correct", "confidence", "entropy", "onehot"]  # the readings of the output t (see above)
OUTPUTS: tuple[str, ...] = get_args(Output)
LABEL_OUTPUTS = ("entropy", "onehot")  # readings of the predicted labels on instances shared within a cell
# Bands over the units of one kind of layer (GTAP Fig. 6: AlexNet's conv layers, its FC layers): a unit belongs to
# a band by the type of the module that produces it.
BANDS: dict[str, tuple[type[nn.Module], ...]] = {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d), "fc": (nn.Linear,)}


@dataclass(frozen=True)
class MCUEResult:
    """The uncertainty heatmaps and the chosen bias d.

    Attributes:
        grid: the values of p (rows) and q (columns).
        variance: output name -> (len(grid), len(grid)) array, the reading at (p, q): Var(t) for "correct" and
            "confidence", the mean entropy (nats) of the predicted labels for "entropy" (not a variance), the mean
            one-hot variance for "onehot" (see the module docstring).
        mean: output name -> the same shape: mean(t) at (p, q) for "correct" and "confidence"; for "entropy" and
            "onehot", the mean share of the modal predicted label.
        output: the output that chose d.
        diagonal: variance[output] at p = q.
        t_star: argmax of the diagonal.
        keep_prob: d = 1 - t*.
        n_evaluations: sub-networks evaluated (each on ``instances`` own and ``instances`` shared instances).
        samples: sub-networks per cell; instances: instances per sub-network.
        seconds: wall time of the run.
        n_ablated: the players the sub-networks were drawn over (all of them unless ``mcue(players=...)``).
    """

    grid: np.ndarray
    variance: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    output: str
    diagonal: np.ndarray
    t_star: float
    keep_prob: float
    n_evaluations: int
    samples: int
    instances: int
    seconds: float = 0.0
    n_ablated: int = 0

    def t_star_of(self, output: str) -> float:
        """t* = argmax of ``output``'s reading on the p = q diagonal (any output, not only the one that chose d)."""
        check_output(output)
        return float(self.grid[int(np.argmax(np.diag(self.variance[output])))])

    def to_records(self) -> list[dict[str, float]]:
        """One row per (p, q) cell with every output's mean and variance (for tables and plots)."""
        rows = []
        for i, p in enumerate(self.grid):
            for j, q in enumerate(self.grid):
                row = {"p": float(p), "q": float(q)}
                for name in self.variance:
                    row[f"var_{name}"] = float(self.variance[name][i, j])
                    row[f"mean_{name}"] = float(self.mean[name][i, j])
                rows.append(row)
        return rows


def check_output(output: str) -> None:
    """Raises a one-line ValueError unless ``output`` is one of ``OUTPUTS``."""
    if output not in OUTPUTS:
        raise UsageError(f"unknown MCUE output {output!r}; valid: {', '.join(OUTPUTS)}")


def label_readings(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The label readings of cells whose sub-networks share their instances.

    Args:
        labels: int (cells, samples, instances), the label sub-network s of a cell predicts for its instance j.

    Returns:
        "entropy", "onehot" and "agreement" (the modal label's share), each (cells,): the mean over instances of the
        per-instance entropy (nats), one-hot variance (ddof 1) and agreement.
    """
    _, samples, _ = labels.shape
    counts = np.stack([(labels == c).sum(axis=1) for c in range(int(labels.max()) + 1)], axis=-1)
    share = counts / samples  # (cells, instances, classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log(share), 0.0).sum(-1)
    # Var of a 0/1 indicator with share f over `samples` draws, ddof 1: samples / (samples - 1) * f (1 - f).
    onehot = (samples / (samples - 1) * share * (1 - share)).sum(-1)
    return {"entropy": entropy.mean(1), "onehot": onehot.mean(1), "agreement": share.max(-1).mean(1)}


def sample_subnetworks(n: int, p: float, q: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws of S' (bool (count, n)): S of exactly round((1 - q) n) units, then each kept w.p. 1 - p."""
    size = int(round((1 - q) * n))
    keys = rng.random((count, n))
    in_s = np.zeros((count, n), dtype=bool)
    if size > 0:  # a uniformly random subset of exactly `size` units: the smallest `size` random keys
        chosen = np.argpartition(keys, size - 1, axis=1)[:, :size]
        np.put_along_axis(in_s, chosen, True, axis=1)
    survives = rng.random((count, n)) >= p
    return in_s & survives


def mcue(game: NeuronGame, *, rng: np.random.Generator, grid: Sequence[float] = DEFAULT_GRID, samples: int = 128,
         instances: int = 16, output: str = "correct", players: Sequence[int] | np.ndarray | None = None
         ) -> MCUEResult:
    """Runs MCUE(p, q) on the whole p x q grid and picks d from the p = q diagonal.

    Args:
        game: the neuron game (its evaluation split supplies the instances: use validation data).
        rng: the source of randomness.
        grid: values of p and q, each in [0, 1).
        samples: sub-networks drawn per (p, q) cell (k in Algorithm 1).
        instances: random instances each sub-network is applied to (1 is Algorithm 1 verbatim).
        output: one of ``OUTPUTS``, the reading whose diagonal chooses d.
        players: draw the sub-networks over these players only (indices, or a bool mask over all players), every
            other player always kept: an uncertainty band of part of the network (None: all players).

    Returns:
        Heatmaps for every output, the chosen output's diagonal, t* and d.
    """
    check_output(output)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or len(grid) == 0 or np.any((grid < 0) | (grid >= 1)):
        raise ValueError("the MCUE grid must be a non-empty list of values in [0, 1)")
    if samples < 2 or instances < 1:
        raise ValueError("MCUE needs samples >= 2 and instances >= 1")
    ablated = _ablated(players, game.n_players)
    shape = (len(grid), len(grid))
    variance = {name: np.zeros(shape) for name in OUTPUTS}
    mean = {name: np.zeros(shape) for name in OUTPUTS}
    shared_rng = rng.spawn(1)[0]  # leaves rng's stream alone (see "Shared instances" above)
    before, start = game.n_evaluations, time.perf_counter()
    for i, p in enumerate(grid):
        # One batch per row of the heatmap keeps the game's chunks large.
        drawn = np.concatenate([sample_subnetworks(len(ablated), p, q, samples, rng) for q in grid])
        coalitions = np.ones((len(drawn), game.n_players), dtype=bool)
        coalitions[:, ablated] = drawn
        own = rng.integers(0, game.n_samples, size=(len(coalitions), instances))
        shared = np.repeat(shared_rng.integers(0, game.n_samples, size=(len(grid), instances)), samples, axis=0)
        correct, confidence, labels = game.predicted(coalitions, np.concatenate([own, shared], axis=1))
        for name, t in (("correct", correct), ("confidence", confidence)):
            per_cell = t[:, :instances].double().numpy().reshape(len(grid), samples * instances)
            variance[name][i] = per_cell.var(axis=1, ddof=1)
            mean[name][i] = per_cell.mean(axis=1)
        readings = label_readings(labels[:, instances:].numpy().reshape(len(grid), samples, instances))
        for name in LABEL_OUTPUTS:
            variance[name][i] = readings[name]
            mean[name][i] = readings["agreement"]
    diagonal = np.diag(variance[output]).copy()
    t_star = float(grid[int(np.argmax(diagonal))])
    return MCUEResult(grid=grid, variance=variance, mean=mean, output=output, diagonal=diagonal, t_star=t_star,
                      keep_prob=round(1.0 - t_star, 6), n_evaluations=game.n_evaluations - before, samples=samples,
                      instances=instances, seconds=time.perf_counter() - start, n_ablated=len(ablated))


def _ablated(players: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """The player indices MCUE draws sub-networks over, checked."""
    if players is None:
        return np.arange(n)
    chosen = np.asarray(players)
    if chosen.dtype == bool:
        if chosen.shape != (n,):
            raise UsageError(f"MCUE players: a bool mask needs {n} entries, got shape {chosen.shape}")
        chosen = np.flatnonzero(chosen)
    chosen = chosen.astype(np.int64).ravel()
    if len(chosen) == 0 or len(np.unique(chosen)) != len(chosen) or chosen.min() < 0 or chosen.max() >= n:
        raise UsageError(f"MCUE players must be distinct indices in [0, {n}), at least one")
    return np.sort(chosen)


def band_players(model: nn.Module, groups: Sequence[UnitGroup], band: str) -> np.ndarray:
    """The players whose producing module is of ``band``'s kind (``BANDS``), in player order, for ``mcue(players=)``."""
    if band not in BANDS:
        raise UsageError(f"unknown MCUE band {band!r}; valid: {', '.join(BANDS)}")
    modules = Submodules(model)
    chosen = [np.arange(g.players.start, g.players.stop) for g in groups
              if g.producer is not None and isinstance(modules[g.producer], BANDS[band])]
    if not chosen:
        raise UsageError(f"MCUE band {band!r}: no unit group ({', '.join(g.name for g in groups)}) is produced by "
                         f"such a layer")
    return np.concatenate(chosen)
