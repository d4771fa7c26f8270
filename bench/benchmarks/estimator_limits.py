"""How much a size-stratified Shapley estimator can gain on a full neuron game (why Spearman 0.9 is
out of reach at a quarter of permutation sampling's budget).

On the full LeNet games no estimator of ours gets to Spearman 0.9 with a quarter of shapiq's permutation budget.
This measures why: v's spread within each coalition size, how much of it an additive control variate could remove
(with the reference Shapley values themselves as the proxy, and with a ridge fit), the spread of marginal
contributions per position, and the variance ratios that the best allocation over sizes (or positions) and such
control variates would give over round-robin stratification (or permutation sampling); see
``methods.estimators.benchmark.SizeStrata``. It reuses the reference that ``bench estimators --games full`` cached
and refuses to compute one (that takes many minutes).

    python -m bench.benchmarks.estimator_limits --pairs lenet300-mnist lenet5-mnist --samples 400 --out limits.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.streams import Stream, stream


def measure(pair: str, *, samples: int, n_sizes: int, seed: int, training_seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """One row per size measured, and the gains (a dict) for ``pair``'s full accuracy game."""
    import time

    from bench.benchmarks.estimators import GameSpec, build_game, truth_for
    from bench.benchmarks.mcue_readings import cached_pair
    from methods.estimators.benchmark import size_strata

    trained = cached_pair(pair, training_seed)
    spec = GameSpec(pair, "full", "accuracy", training_seed=training_seed)
    built = build_game(spec, trained, progress=False)
    built.info["cache_key"] = spec.key(trained.metrics["cache_key"])
    truth = truth_for(built, index="shapley", keep_prob=None, progress=False, cached_only=True)
    n = built.game.n_players
    sizes = np.unique(np.round(np.geomspace(1, n - 1, n_sizes)).astype(int))
    start, before = time.perf_counter(), built.game.n_evaluations
    strata = size_strata(built.game, proxy=truth.values, sizes=sizes, samples=samples,
                         rng=stream(seed, Stream.ESTIMATOR_BENCHMARK))
    seconds = time.perf_counter() - start
    rows = pd.DataFrame({"pair": pair, "size": strata.sizes, "mean": strata.mean, "sd": strata.sd,
                         "proxy_corr": strata.proxy_corr, "fitted_r2": strata.fitted_r2,
                         "marginal_mean": strata.marginal_mean, "marginal_sd": strata.marginal_sd})
    gains = {"pair": pair, "n_players": n, "samples": samples, "n_evaluations": int(built.game.n_evaluations - before),
             "seconds": round(seconds, 1), **{k: round(v, 3) for k, v in strata.gains().items()}}
    return rows, gains


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks.estimator_limits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=["lenet300-mnist", "lenet5-mnist"])
    parser.add_argument("--samples", type=int, default=400, help="uniform coalitions per size (half fit the ridge)")
    parser.add_argument("--sizes", type=int, default=32, help="sizes measured, log-spaced over 1..n-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="CSV of the per-size rows")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    tables, summary = [], []
    try:
        for pair in args.pairs:
            rows, gains = measure(pair, samples=args.samples, n_sizes=args.sizes, seed=args.seed)
            tables.append(rows)
            summary.append(gains)
    except (RuntimeError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = pd.concat(tables, ignore_index=True)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.round(4).to_string(index=False))
        print()
        print(pd.DataFrame(summary).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
