"""One pruning experiment: a trained pair, a method, a strategy -> a compression curve on the test split.

Scores, MCUE and masks use the validation split only; the test split is touched once, to evaluate the finished
masks. No tracking here: the runner logs what this returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from bench.streams import Stream, stream
from datasets.data import as_tensors
from datasets.training import TrainedPair
from methods.games.graph import GraphGame, neuron_game
from methods.games.mcue import MCUEResult, band_players, mcue
from methods.games.neuron import NeuronGame
from methods.pruning.curves import (
    CurvePoint,
    evaluate_fine_tuned,
    evaluate_path,
    kept_counts,
    physical_costs,
    weight_pruning_curve,
)
from methods.pruning.strategies import STRATEGIES, PruningPath
from methods.scorers import PARAM_AXIS, PruningProblem, build_scorer


@dataclass
class Experiment:
    """What one (pair, method, strategy, seed) produced."""

    points: list[CurvePoint]
    path: PruningPath | None
    mcue: MCUEResult | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def problem_for(trained: TrainedPair, *, val_samples: int | None = None, **game_options: Any) -> PruningProblem:
    """The pruning problem on the validation split.

    Args:
        val_samples: if given, a fixed random subset of this many validation examples (seeded, the same for every
            method and seed) defines v(C); a coalition's cost is proportional to it, and the accuracy of one
            coalition is then known to about sqrt(acc (1 - acc) / val_samples).
    """
    x_val, y_val = as_tensors(trained.splits.val)
    if val_samples is not None and val_samples < len(y_val):
        keep = torch.from_numpy(np.sort(np.random.default_rng(12345).permutation(len(y_val))[:val_samples]))
        x_val, y_val = x_val[keep], y_val[keep]
    device = trained.device
    return PruningProblem.build(trained.model, trained.pair.units, x_val.to(device), y_val.to(device), **game_options)


def test_game_for(trained: TrainedPair, **game_options: Any) -> NeuronGame | GraphGame:
    x_test, y_test = as_tensors(trained.splits.test)
    device = trained.device
    return neuron_game(trained.model, trained.pair.units, x_test.to(device), y_test.to(device), **game_options)


def run_mcue(problem: PruningProblem, *, seed: int, bands: Sequence[str] = (), **options: Any) -> MCUEResult:
    """MCUE over every player; its d is beta_d's. (``bands``: see ``run_mcue_bands``.)"""
    return mcue(problem.game, rng=stream(seed, Stream.MCUE), **options)


def run_mcue_bands(problem: PruningProblem, *, seed: int, bands: Sequence[str] = (),
                   **options: Any) -> dict[str, MCUEResult]:
    """MCUE with the sub-networks drawn within each band only (the other units always kept), one result per band.

    Each band has its own stream (``Stream.MCUE_BAND`` and the band's position), so adding a band changes neither
    the main MCUE's numbers nor another band's.
    """
    return {band: mcue(problem.game, rng=stream(seed, Stream.MCUE_BAND, i),
                       players=band_players(problem.model, problem.groups, band), **options)
            for i, band in enumerate(bands)}


def run_experiment(trained: TrainedPair, *, method: str, params: dict[str, Any], strategy: str,
                   fractions: Sequence[float], seed: int, step: int | float = 0.05,
                   problem: PruningProblem | None = None, test_game: NeuronGame | GraphGame | None = None,
                   mcue_result: MCUEResult | None = None, mcue_options: dict[str, Any] | None = None,
                   fine_tune_epochs: int = 0, allocation: str = "global", physical: bool = False,
                   latency_cache: dict | None = None) -> Experiment:
    """Scores, prunes and evaluates one method.

    Args:
        trained: the trained pair.
        method: a scorer name; params: its parameters. What the scorer declares decides the rest: one that needs
            ``keep_prob`` (beta_d without a fixed d) gets MCUE's d (``mcue_result``, or a fresh MCUE run); one on
            the parameter axis (unstructured WMP) prunes weights by its ``weight_scores``, and ignores the strategy.
        strategy: "top-n", "iterated-pruning" or "iterated-building".
        fractions: kept fractions of units (of parameters on the parameter axis).
        seed: seeds the scorer and tie breaks (the model's training seed is separate).
        step: the iterated strategies' step (a unit count or a fraction of all units).
        problem, test_game: reuse these across experiments on the same trained pair.
        mcue_result: reuse a finished MCUE; mcue_options: options for running one.
        fine_tune_epochs: if > 0, fine-tune each pruned network this many epochs on the training split (pruned
            units held at zero) before measuring its test accuracy.
        allocation: "global" ranks all units together, "uniform" keeps the same fraction of every layer,
            "normalized" ranks all units on scores divided by their layer's mean, "wmp@F" gives each layer the
            share unstructured WMP at F keeps (``methods.pruning.strategies.top_n``).
        physical: build each point's physically pruned network (``methods.network.physical``) and record its parameters,
            MACs and CPU latency (``latency_cache``: shared between the runs of one trained pair).
    """
    start = time.perf_counter()
    problem = problem or problem_for(trained)
    params = dict(params)
    scorer = build_scorer(method, **params)
    overhead = (0, 0.0)  # evaluations and seconds spent before scoring, charged to every point of the curve
    if "keep_prob" in scorer.needs:
        mcue_result = mcue_result or run_mcue(problem, seed=seed, **(mcue_options or {}))
        # Choosing d is part of beta_d's cost, even when the MCUE run is shared between experiments.
        overhead = (mcue_result.n_evaluations, mcue_result.seconds)
        params["keep_prob"] = mcue_result.keep_prob
        scorer = scorer.resolve(keep_prob=mcue_result.keep_prob)
    if scorer.axis == PARAM_AXIS:
        x_test, y_test = as_tensors(trained.splits.test)
        device = trained.device
        points = weight_pruning_curve(trained.model, problem.groups, fractions, scorer.weight_scores(problem),
                                      x_test.to(device), y_test.to(device))
        return Experiment(points, None, mcue_result, params, time.perf_counter() - start)
    targets = list(kept_counts(fractions, problem.n_units).values())
    path = STRATEGIES.get(strategy)(scorer, problem, targets, rng=stream(seed, Stream.STRATEGY), step=step,
                                    allocation=allocation)
    if fine_tune_epochs > 0:
        device = trained.device
        x_train, y_train = as_tensors(trained.splits.train)
        x_test, y_test = as_tensors(trained.splits.test)
        points = evaluate_fine_tuned(trained.model, problem.groups, path, fractions, x_train.to(device),
                                     y_train.to(device), x_test.to(device), y_test.to(device),
                                     epochs=fine_tune_epochs, seed=seed)
    else:
        test_game = test_game or test_game_for(trained)
        points = evaluate_path(path, fractions, test_game, trained.model, problem.groups)
    if physical:
        targets = kept_counts(fractions, problem.n_units)
        masks = [path.masks[targets[p.target_fraction]] for p in points]
        points = physical_costs(points, masks, trained.model, problem.groups, tuple(problem.x.shape[1:]),
                                latency_cache=latency_cache)
    points = [replace(p, n_evaluations=p.n_evaluations + overhead[0], seconds=p.seconds + overhead[1])
              for p in points]
    return Experiment(points, path, mcue_result, params, time.perf_counter() - start)
