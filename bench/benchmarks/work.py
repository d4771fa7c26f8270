"""The work a suite profile asks for, and what it should take on one device and on several:
``python -m bench.benchmarks.work --suite lenet --profile full [--device cuda] [--devices 1,8]``.

Counted from the plan, per pair and seed (a group, the unit a Ray worker gets):

* training: epochs x training examples;
* MCUE: grid^2 x samples sub-networks per band, each on 2 x ``instances`` validation examples;
* GTAP: for each GTAP entry, its budget per estimate x the scoring rounds of its strategy (``scoring_rounds``: 1 for
  Top-n, one per step for the iterated strategies), each evaluation on the profile's validation examples.

Measured on the device, on the pair's real validation and training inputs with an untrained network of the pair's
architecture (a coalition's cost does not depend on the weights): the coalition evaluations per second of the
game's default path at the profile's validation size, and the seconds of a training epoch (timed on up to 20 steps
and scaled). The projection is work / rate; on D devices the groups are packed longest first, one group per device
at a time, so D devices cannot beat the longest group. Left out, and so a lower bound: the other methods' scoring
passes, the test-split curves and the physically pruned networks, and the target at MCUE's d (at most one more round
per iterated run).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

RATE_COALITIONS = 32  # coalitions timed per rate, after a warm-up on the same shape
TRAIN_STEPS = 20  # training steps timed per epoch estimate


@dataclass
class PairWork:
    """One pair's work per seed, and the rates measured for it."""

    pair: str
    seeds: int
    n_units: int
    val_examples: int
    train_examples: int
    epochs: int
    gtap_evaluations: int  # coalition evaluations of every GTAP run of one seed
    mcue_evaluations: int  # MCUE's sub-networks of one seed (all bands)
    mcue_examples: int  # examples per MCUE sub-network
    coalitions_per_second: float = math.nan
    epoch_seconds: float = math.nan

    @property
    def group_seconds(self) -> float:
        """One (pair, seed) group's projected seconds."""
        mcue_rate = self.coalitions_per_second * self.val_examples / self.mcue_examples
        return (self.epochs * self.epoch_seconds + self.gtap_evaluations / self.coalitions_per_second
                + self.mcue_evaluations / mcue_rate)


def count(suite, pair_name: str, n_units: int, val_examples: int, train_examples: int) -> PairWork:
    """The work of one pair of ``suite`` per seed (no measurement)."""
    from bench.plan import plan
    from methods.pruning.curves import kept_counts
    from methods.pruning.strategies import scoring_rounds

    pair = suite.pair(pair_name)
    targets = list(kept_counts(suite.fractions, n_units).values())
    gtap = 0
    seed = suite.seeds[0]
    for spec in plan(suite):
        if spec.kind != "method" or spec.pair != pair_name or spec.seed != seed or spec.entry.method != "gtap":
            continue
        scorer = spec.entry.scorer
        if getattr(scorer, "estimator", None) == "exact":
            per_estimate = 2 ** n_units
        else:
            per_estimate = scorer.budget
        gtap += per_estimate * scoring_rounds(spec.entry.strategy, targets, n_units, spec.config["step"])
    mcue, mcue_examples = 0, 1
    if suite.mcue is not None:
        from methods.games.mcue import DEFAULT_GRID

        grid = len(suite.mcue.get("grid", DEFAULT_GRID))
        bands = 1 + len(suite.mcue.get("bands", ()))
        mcue = bands * grid * grid * suite.mcue.get("samples", 128)
        mcue_examples = 2 * suite.mcue.get("instances", 16)
    return PairWork(pair_name, len(suite.seeds), n_units, val_examples, train_examples, pair.recipe.epochs, gtap,
                    mcue, mcue_examples)


def measure(work: PairWork, suite, splits, *, device) -> PairWork:
    """Fills in the coalition rate and the epoch seconds of ``work`` on ``device`` (``splits``: the pair's data)."""
    import torch
    from torch.utils.data import Subset

    from bench.benchmarks.speed import _sync
    from datasets.data import as_tensors
    from datasets.models import build_model
    from datasets.training import fit
    from methods.games import neuron_game

    pair = suite.pair(work.pair)
    torch.manual_seed(0)
    model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                        **pair.model_options).to(device).eval()
    x, y = as_tensors(Subset(splits.val, range(min(work.val_examples, len(splits.val)))))
    game = neuron_game(model, pair.units, x.to(device), y.to(device), device=device)
    coalitions = np.random.default_rng(0).random((RATE_COALITIONS, game.n_players)) < 0.5
    game(coalitions)  # warm-up on the timed shape (kernel selection, caches)
    _sync(device)
    start = time.perf_counter()
    game(coalitions)
    _sync(device)
    work.coalitions_per_second = RATE_COALITIONS / (time.perf_counter() - start)
    recipe = pair.recipe
    steps = min(TRAIN_STEPS, math.ceil(len(splits.train) / recipe.batch_size))
    subset = Subset(splits.train, range(min(len(splits.train), steps * recipe.batch_size)))
    one_epoch = dataclasses.replace(recipe, epochs=1, patience=0)
    start = time.perf_counter()
    fit(model.train(), subset, one_epoch, seed=0, device=device, progress=False)
    _sync(device)
    work.epoch_seconds = (time.perf_counter() - start) * len(splits.train) / len(subset)
    return work


def makespan(group_seconds: list[float], devices: int) -> float:
    """Seconds to run the groups on ``devices`` devices, one group per device at a time, longest first."""
    loads = [0.0] * devices
    for seconds in sorted(group_seconds, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + seconds)
    return max(loads)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    from bench.suite import SuiteError, load_suite
    from datasets.errors import UsageError, one_line
    from datasets.training import load_splits, resolve_device

    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks.work", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--device", default="auto", help="where to measure the rates (auto: a GPU when there is one)")
    parser.add_argument("--devices", default="1,8", help="device counts to project for, comma-separated")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-measure", action="store_true", help="count the work only")
    args = parser.parse_args(argv)
    try:
        suite = load_suite(args.suite, args.profile)
        device = resolve_device(args.device)
        counts = [int(d) for d in args.devices.split(",")]
        rows = []
        for pair_name in suite.pairs:
            pair = suite.pair(pair_name)
            splits = load_splits(pair, data_dir=args.data_dir)
            n_units = _n_units(pair, splits)
            val = min(suite.val_samples or len(splits.val), len(splits.val))
            work = count(suite, pair_name, n_units, val, len(splits.train))
            if not args.no_measure:
                print(f"measuring {pair_name} on {device} ...", file=sys.stderr)
                measure(work, suite, splits, device=device)
            rows.append(work)
    except (SuiteError, UsageError, ValueError, FileNotFoundError) as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    print(f"suite {suite.name}, profile {suite.profile}, {len(suite.seeds)} seed(s); rates on {device}")
    print("| pair | units | val examples | GTAP evaluations / seed | MCUE sub-networks / seed | epochs / seed | "
          "coalitions/s | s/epoch | one group |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    groups: list[float] = []
    for w in rows:
        groups += [w.group_seconds] * w.seeds
        print(f"| {w.pair} | {w.n_units} | {w.val_examples:,} | {w.gtap_evaluations:,} | {w.mcue_evaluations:,} | "
              f"{w.epochs} | {w.coalitions_per_second:.3g} | {w.epoch_seconds:.3g} | {_duration(w.group_seconds)} |")
    if not args.no_measure:
        for d in counts:
            print(f"{len(groups)} groups on {d} device(s): {_duration(makespan(groups, d))} "
                  f"(the longest group: {_duration(max(groups))})")
    return 0


def _n_units(pair, splits) -> int:
    import torch

    from datasets.models import build_model
    from datasets.sites import resolve_sites

    model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                        **pair.model_options)
    with torch.no_grad():
        return sum(site.size for site in resolve_sites(model, pair.units, splits.input_shape))


if __name__ == "__main__":
    raise SystemExit(main())
