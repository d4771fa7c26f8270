"""Coalition-evaluation throughput of the neuron game: ``python -m bench.benchmarks.speed [--pair lenet300-mnist]``.

Times, in one process and on the same evaluation images, the naive evaluation (one hooked forward pass of the whole
network per coalition) against the game's strategies (for a model that is not a flat ``nn.Sequential``, such as a
residual net, the batched hooked pass of ``methods.games.graph`` and, on the CPU, its channel-skipping sparse
path), on random coalitions (R_1/2 and R_0.2) and
on the structured batches the estimators emit (permutation prefixes, paired coalitions). It also measures the
machine's fp32 GEMM throughput, so the game's executed GEMM FLOP/s can be quoted as a fraction of it, and the peak
memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch


def gemm_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of a large square matmul: the machine's practical GEMM ceiling."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_game(game, coalitions: np.ndarray, device: torch.device, *, full_warmup: bool = False) -> dict[str, float]:
    # Warm-up. oneDNN builds a convolution's kernels per batch shape, so a conv game warms up on the timed batch.
    game(coalitions if full_warmup else coalitions[:2])
    game.gemm_flops = 0
    _sync(device)
    start = time.perf_counter()
    values = game(coalitions)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"coalitions": len(coalitions), "seconds": seconds, "per_second": len(coalitions) / seconds,
            "gemm_flops_per_second": game.gemm_flops / seconds, "mean_value": float(values.mean())}


def time_naive(model, units, x, y, coalitions: np.ndarray, device: torch.device) -> dict[str, float]:
    from methods.games.neuron import naive_site_logits as naive_logits  # every engine's oracle
    naive_logits(model, units, x, coalitions[0])
    _sync(device)
    start = time.perf_counter()
    values = [float((naive_logits(model, units, x, c).argmax(1) == y).float().mean()) for c in coalitions]
    _sync(device)
    seconds = time.perf_counter() - start
    return {"coalitions": len(coalitions), "seconds": seconds, "per_second": len(coalitions) / seconds,
            "mean_value": float(np.mean(values))}


def structured_batches(n: int, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """What the estimators emit: permutation prefixes (Shapley) and adjacent C, C+i pairs (per-player Banzhaf)."""
    chains = []
    while sum(len(c) for c in chains) < rows:
        chain = np.zeros((n - 1, n), dtype=bool)
        for j, player in enumerate(rng.permutation(n)[: n - 1]):
            chain[j:, player] = True
        chains.append(chain)
    base = rng.random((rows // 2, n)) < 0.5
    players = rng.integers(0, n, size=rows // 2)
    without, with_ = base.copy(), base.copy()
    without[np.arange(len(players)), players] = False
    with_[np.arange(len(players)), players] = True
    pairs = np.stack([without, with_], axis=1).reshape(-1, n)
    return {"permutation-prefixes": np.concatenate(chains)[:rows], "paired": pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="lenet300-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=10_000, help="evaluation images")
    parser.add_argument("--coalitions", type=int, default=400, help="random coalitions per timing")
    parser.add_argument("--naive-coalitions", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--memory-cap", type=int, default=None, help="bytes for the dense path (default: the game's)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    from datasets.data import as_tensors
    from datasets.training import resolve_device, train_pair
    from methods.games.graph import GraphGame, neuron_game
    from methods.games.neuron import DEFAULT_MEMORY_CAP

    device = resolve_device(args.device)
    trained = train_pair(args.pair, seed=args.seed, data_dir=args.data_dir, device=device, progress=False)
    # Speed does not depend on which images are used; the training split is the one with 10,000+ of them.
    x, y = as_tensors(trained.splits.train)
    x, y = x[: args.images].to(device), y[: args.images].to(device)
    model, units = trained.model, trained.pair.units
    rng = np.random.default_rng(args.seed)
    cap = args.memory_cap or DEFAULT_MEMORY_CAP

    results: dict[str, object] = {
        "pair": args.pair, "images": len(y), "device": str(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "memory_cap": cap,
        "gemm_peak_flops": gemm_peak(device),
    }
    probe = neuron_game(model, units, x, y, strategy="dense", memory_cap=cap, device=device)
    graph = isinstance(probe, GraphGame)
    results["engine"] = "graph (hooked, batched)" if graph else "flat"
    n = probe.n_players
    batches = {"random-R0.5": rng.random((args.coalitions, n)) < 0.5,
               "random-R0.2": rng.random((args.coalitions, n)) < 0.2}
    batches.update(structured_batches(n, rng, args.coalitions))
    results["naive"] = time_naive(model, units, x, y, batches["random-R0.5"][: args.naive_coalitions], device)
    strategies = ["dense"] + (["sparse"] if device.type == "cpu" and (not graph or probe.chains) else [])
    for strategy in strategies:
        game = neuron_game(model, units, x, y, strategy=strategy, memory_cap=cap, device=device)
        if graph:
            skips = f"{len(game.chains)} of {len(game.sites)} sites skip their dropped channels, " \
                if strategy == "sparse" else ""
            results[f"{strategy}/engine"] = f"{skips}{game.folded} BatchNorms folded into their convs"
        for name, coalitions in batches.items():
            results[f"{strategy}/{name}"] = time_game(game, coalitions, device, full_warmup=graph)
    results["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        results["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)

    naive = results["naive"]["per_second"]
    peak = results["gemm_peak_flops"]
    print(f"{args.pair}: {n} players, {len(y)} images, {device}, {torch.get_num_threads()} threads, "
          f"{results['engine']} engine, GEMM peak {peak / 1e9:.0f} GFLOP/s")
    for key, note in results.items():
        if key.endswith("/engine"):
            print(f"{key.split('/')[0]}: {note}")
    print(f"{'evaluation':34s} {'coalitions/s':>13s} {'x naive':>8s} {'GEMM GFLOP/s':>13s} {'of peak':>8s}")
    print(f"{'naive (hooked full forward)':34s} {naive:13.1f} {1.0:8.1f}")
    for key, r in results.items():
        if isinstance(r, dict) and "gemm_flops_per_second" in r:
            share = r["gemm_flops_per_second"] / peak
            flops = f"{r['gemm_flops_per_second'] / 1e9:13.1f} {share:8.0%}" if share else f"{'(not counted)':>22s}"
            print(f"{key:34s} {r['per_second']:13.1f} {r['per_second'] / naive:8.1f} {flops}")
    print(f"peak RSS {results['peak_rss_bytes'] / 2**20:.0f} MiB"
          + (f", peak GPU {results['peak_gpu_bytes'] / 2**20:.0f} MiB" if "peak_gpu_bytes" in results else ""))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
