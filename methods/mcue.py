"""Monte Carlo Uncertainty Estimation, MCUE (GTAP Algorithm 1), and the choice of d = 1 - t*.

MCUE(p, q) draws sub-networks S of exactly (1 - q) n units, drops each of their units with probability p, applies
the result S' to a random instance and records the output t; its uncertainty is the sample variance of t. GTAP takes
t* = argmax_p MCUE(p, p) on the diagonal and d = 1 - t* as the bias of beta_d.

Interpretations (the paper leaves them open):

* The output t. A classifier's output has no single scalar, so MCUE records two per draw and returns a heatmap for
  each: ``"correct"``, whether the prediction is right (0/1; its variance is acc (1 - acc) of the diluted networks),
  and ``"confidence"``, the softmax probability of the predicted class. ``output`` says which one chooses d
  (default "correct").
* Instances per sub-network. Algorithm 1 applies each S'_i to one instance d_i. Applying it to ``instances``
  independent instances gives ``instances`` draws of the same joint process (S', d) per sub-network, so the pooled
  sample variance estimates the same quantity with far fewer masked passes; ``instances=1`` is Algorithm 1 as
  written.
* The grid. The paper reports t* = 0.825 (LeNet-300-100) and 0.775 (LeNet5), points of a 0.05-spaced grid offset by
  0.025, which is the default here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from methods.neuron_game import NeuronGame

DEFAULT_GRID = tuple(np.round(np.arange(0.025, 1.0, 0.05), 3))
OUTPUTS = ("correct", "confidence")


@dataclass(frozen=True)
class MCUEResult:
    """The uncertainty heatmaps and the chosen bias d.

    Attributes:
        grid: the values of p (rows) and q (columns).
        variance: output name -> (len(grid), len(grid)) array, Var(t) at (p, q).
        mean: output name -> the same shape, mean(t) at (p, q).
        output: the output that chose d.
        diagonal: variance[output] at p = q.
        t_star: argmax of the diagonal.
        keep_prob: d = 1 - t*.
        n_evaluations: sub-networks evaluated (each on ``instances`` instances).
        samples: sub-networks per cell; instances: instances per sub-network.
        seconds: wall time of the run.
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
         instances: int = 16, output: str = "correct") -> MCUEResult:
    """Runs MCUE(p, q) on the whole p x q grid and picks d from the p = q diagonal.

    Args:
        game: the neuron game (its evaluation split supplies the instances: use validation data).
        rng: the source of randomness.
        grid: values of p and q, each in [0, 1).
        samples: sub-networks drawn per (p, q) cell (k in Algorithm 1).
        instances: random instances each sub-network is applied to (1 is Algorithm 1 verbatim).
        output: "correct" or "confidence", the output whose variance chooses d.

    Returns:
        Heatmaps for both outputs, the diagonal, t* and d.
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown MCUE output {output!r}; valid: {', '.join(OUTPUTS)}")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or len(grid) == 0 or np.any((grid < 0) | (grid >= 1)):
        raise ValueError("the MCUE grid must be a non-empty list of values in [0, 1)")
    if samples < 2 or instances < 1:
        raise ValueError("MCUE needs samples >= 2 and instances >= 1")
    shape = (len(grid), len(grid))
    variance = {name: np.zeros(shape) for name in OUTPUTS}
    mean = {name: np.zeros(shape) for name in OUTPUTS}
    before, start = game.n_evaluations, time.perf_counter()
    for i, p in enumerate(grid):
        # One batch per row of the heatmap keeps the game's chunks large.
        coalitions = np.concatenate([sample_subnetworks(game.n_players, p, q, samples, rng) for q in grid])
        index = rng.integers(0, game.n_samples, size=(len(coalitions), instances))
        correct, confidence = game.predictions(coalitions, index)
        for name, t in (("correct", correct.double().numpy()), ("confidence", confidence.double().numpy())):
            per_cell = t.reshape(len(grid), samples * instances)
            variance[name][i] = per_cell.var(axis=1, ddof=1)
            mean[name][i] = per_cell.mean(axis=1)
    diagonal = np.diag(variance[output]).copy()
    t_star = float(grid[int(np.argmax(diagonal))])
    return MCUEResult(grid=grid, variance=variance, mean=mean, output=output, diagonal=diagonal, t_star=t_star,
                      keep_prob=round(1.0 - t_star, 6), n_evaluations=game.n_evaluations - before, samples=samples,
                      instances=instances, seconds=time.perf_counter() - start)
