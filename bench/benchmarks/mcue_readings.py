"""t* and d = 1 - t* of every MCUE reading (correct, confidence, entropy, onehot) on trained pairs and seeds.

One MCUE run computes all four readings, so this runs MCUE once per (pair, seed), exactly as a suite's MCUE run does
(``bench.pipeline.run_mcue``: the MCUE seed is the training seed, on the validation subset of ``val_samples``), and
prints one row per (pair, seed, reading) and the spread over seeds, beside the paper's t* (reports/references.yaml).
It trains nothing it cannot find in the cache unless told to (``--train``).

    python -m bench.benchmarks.mcue_readings --pairs lenet300-mnist lenet5-mnist --seeds 0 1 2 --samples 32 \
        --out readings.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from methods.games.mcue import DEFAULT_GRID, OUTPUTS


def measure(pairs: Sequence[str], seeds: Sequence[int], *, samples: int, instances: int, val_samples: int,
            train: bool = False) -> pd.DataFrame:
    """One row per (pair, seed, reading): t*, d, the reading at t* (the diagonal's maximum), and the MCUE run's
    n_evaluations and seconds (one run gives all four readings, so its rows share them)."""
    from bench.pipeline import problem_for, run_mcue
    from datasets.training import train_pair

    rows = []
    for pair in pairs:
        for seed in seeds:
            trained = train_pair(pair, seed=seed, progress=False) if train else cached_pair(pair, seed)
            problem = problem_for(trained, val_samples=val_samples)
            result = run_mcue(problem, seed=seed, samples=samples, instances=instances, grid=DEFAULT_GRID)
            for name in OUTPUTS:
                t_star = result.t_star_of(name)
                rows.append({"pair": pair, "seed": seed, "reading": name, "samples": samples, "instances": instances,
                             "t_star": t_star, "d": round(1 - t_star, 6),
                             "at_t_star": float(np.diag(result.variance[name]).max()),
                             "n_evaluations": result.n_evaluations, "seconds": round(result.seconds, 2)})
            print(f"{pair} seed {seed}: " + ", ".join(f"{r['reading']} {r['t_star']:.3f}" for r in rows[-4:])
                  + f" ({result.n_evaluations} sub-networks, {result.seconds:.1f}s)", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def cached_pair(pair: str, seed: int):
    """The cached trained pair; refuses to train (training here would take the shared CPUs for minutes)."""
    from datasets.pairs import get_pair
    from datasets.training import cache_key, checkpoint_path, train_pair

    path = checkpoint_path(get_pair(pair), cache_key(get_pair(pair), seed=seed, val_fraction=0.1, split_seed=0))
    if not path.exists():
        raise RuntimeError(f"{pair} seed {seed} is not in the cache ({path}); pass --train to train it")
    return train_pair(pair, seed=seed, progress=False)


def spread(table: pd.DataFrame, references: dict[str, float]) -> pd.DataFrame:
    """Per (pair, samples, reading): t* per seed, its mean, sd and range over seeds, and the paper's t*."""
    grouped = table.groupby(["pair", "samples", "reading"], sort=False)["t_star"]
    out = grouped.agg(t_star_mean="mean", t_star_sd="std", t_star_min="min", t_star_max="max").reset_index()
    out["per_seed"] = grouped.apply(lambda s: ", ".join(f"{v:.3f}" for v in s)).to_numpy()
    out["paper_t_star"] = out["pair"].map(references)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks.mcue_readings",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=["lenet300-mnist", "lenet5-mnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=32, help="sub-networks per (p, q) cell (the lenet suite's 32)")
    parser.add_argument("--instances", type=int, default=16, help="instances per sub-network (the lenet suite's 16)")
    parser.add_argument("--val-samples", type=int, default=2000, help="validation subset (the lenet suite's 2000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train", action="store_true", help="train a pair and seed missing from the cache")
    parser.add_argument("--out", default=None, help="CSV of the per-seed rows")
    args = parser.parse_args(argv)

    import torch

    from reports.leaderboard import load_references

    torch.set_num_threads(args.threads)
    table = measure(args.pairs, args.seeds, samples=args.samples, instances=args.instances,
                    val_samples=args.val_samples, train=args.train)
    references = {r["pair"]: r["value"] for r in load_references() if r["method"] == "mcue" and r["metric"] == "t_star"}
    if args.out:
        table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
        print()
        print(spread(table, references).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
