"""Cost of NEUROGAME: ``python -m bench.benchmarks.speed_neurogame [--fraction 0.25] [--device auto]
[--out speed.json]``.

Two measurements, in one process:

1. The layer alone: forward, and forward + backward, of NEUROGAME layers against a plain 3x3 conv + ReLU on the same
   batch of maps, shaped as the game layer sees a 64x64 image in the ``neurogame`` model (64 channels of 16x16 after
   two conv blocks), median of ``--repeats`` runs after a warm-up.
2. One training epoch (``datasets.training.fit``, batch 128, Adam) of ``neurogame`` (and ``neurogame-3x3``) against
   the ``face-cnn``, ``face-cnn-dropout`` and ``face-mlp`` baselines on random data of UTKFace's training shape
   (10,080 images of 3x64x64): ``--fraction`` of it is trained on and the time is scaled to the full 10,080 images.

Timings are on ``--device`` (CUDA when there is a GPU), synchronised before each clock read.

The load average is printed before and after, since a busy machine slows every row alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import methods.neurogame  # noqa: F401 - registers the neurogame models and family
from datasets.models import build_model
from datasets.pairs import Recipe
from datasets.training import FAMILIES, fit, resolve_device
from methods.neurogame import NeuroGameConfig, NeuroGameLayer

UTKFACE_TRAIN = 10_080  # training images of the utkface pairs (11,200 minus the 10% validation carve)
UTKFACE_SHAPE = (3, 64, 64)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step: Callable[[], None], repeats: int, device: torch.device) -> float:
    step()  # warm-up (allocations, cached patch grids, CUDA kernels)
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_layers(batch: int, repeats: int, seed: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Median forward and forward + backward seconds of each layer on one (batch, 64, 16, 16) batch of maps."""
    torch.manual_seed(seed)
    maps = torch.relu(torch.randn(batch, 64, 16, 16)).to(device)
    layers: dict[str, nn.Module] = {
        "conv3x3 + relu": nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()),
        "neurogame n=2": NeuroGameLayer(NeuroGameConfig(coalition_size=2)),
        "neurogame n=2, 8-nbhd": NeuroGameLayer(NeuroGameConfig(coalition_size=2, neighbourhood=8)),
        "neurogame n=3": NeuroGameLayer(NeuroGameConfig(coalition_size=3)),
        "neurogame n=3, 8-nbhd": NeuroGameLayer(NeuroGameConfig(coalition_size=3, neighbourhood=8)),
        "neurogame n=2, learnable": NeuroGameLayer(NeuroGameConfig(coalition_size=2, learnable=True)),
        "neurogame n=3, learnable": NeuroGameLayer(NeuroGameConfig(coalition_size=3, learnable=True)),
        "neurogame n=2, random": NeuroGameLayer(NeuroGameConfig(coalition_size=2, filter="random")),
    }
    results = {}
    for name, layer in layers.items():
        layer.to(device).train()

        def forward(layer: nn.Module = layer) -> None:
            with torch.no_grad():
                layer(maps)

        def forward_backward(layer: nn.Module = layer) -> None:
            x = maps.clone().requires_grad_()
            layer(x).sum().backward()

        results[name] = {"forward_s": _median_seconds(forward, repeats, device),
                         "forward_backward_s": _median_seconds(forward_backward, repeats, device)}
    return results


def time_epochs(fraction: float, seed: int, models: list[str], device: torch.device) -> dict[str, dict[str, float]]:
    """Seconds of one training epoch of each model on random UTKFace-shaped data, scaled to 10,080 images."""
    n = max(128, round(fraction * UTKFACE_TRAIN))
    generator = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.rand(n, *UTKFACE_SHAPE, generator=generator),
                         torch.randint(0, 2, (n,), generator=generator))
    recipe = Recipe(epochs=1, batch_size=128, lr=1e-3)
    results = {}
    for name in models:
        torch.manual_seed(seed)
        model = build_model(name, input_shape=UTKFACE_SHAPE, num_classes=2).to(device)
        family = FAMILIES.get("neurogame" if name.startswith("neurogame") else "plain")
        _sync(device)
        start = time.perf_counter()
        history = fit(model, data, recipe, seed=seed, device=device, family=family, progress=False)
        _sync(device)
        seconds = time.perf_counter() - start
        results[name] = {"images": n, "seconds": seconds, "epoch_s_full": seconds * UTKFACE_TRAIN / n,
                         **{k: v for k, v in history[0].items() if k.startswith("neurogame/")}}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmarks.speed_neurogame",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="maps per batch for the layer timings")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per layer (the median is reported)")
    parser.add_argument("--fraction", type=float, default=0.25,
                        help="fraction of UTKFace's 10,080 training images to time an epoch on (then scaled)")
    parser.add_argument("--models", default="neurogame,neurogame-3x3,face-cnn,face-cnn-dropout,face-mlp",
                        help="comma-separated models for the epoch timing")
    parser.add_argument("--skip-epochs", action="store_true", help="time the layers only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu or cuda")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    load_before = os.getloadavg()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {where}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f}")
    results: dict[str, object] = {"device": where, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                                  "load_before": load_before}

    layers = time_layers(args.batch, args.repeats, args.seed, device)
    results["layers"] = layers
    base = layers["conv3x3 + relu"]
    print(f"\nlayer on a ({args.batch}, 64, 16, 16) batch of maps, median of {args.repeats}:")
    print(f"{'layer':28s} {'forward ms':>11s} {'x conv':>7s} {'fwd+bwd ms':>11s} {'x conv':>7s}")
    for name, r in layers.items():
        print(f"{name:28s} {r['forward_s'] * 1e3:11.1f} {r['forward_s'] / base['forward_s']:7.2f} "
              f"{r['forward_backward_s'] * 1e3:11.1f} {r['forward_backward_s'] / base['forward_backward_s']:7.2f}")

    if not args.skip_epochs:
        models = [m for m in args.models.split(",") if m]
        epochs = time_epochs(args.fraction, args.seed, models, device)
        results["epochs"] = epochs
        reference = epochs.get("face-cnn", next(iter(epochs.values())))["epoch_s_full"]
        n = next(iter(epochs.values()))["images"]
        print(f"\none training epoch (batch 128, Adam) on {n} random 3x64x64 images, scaled x{UTKFACE_TRAIN / n:.2f} "
              f"to UTKFace's {UTKFACE_TRAIN}:")
        print(f"{'model':16s} {'measured s':>11s} {'epoch s':>8s} {'x face-cnn':>11s} {'pass fraction':>14s}")
        for name, r in epochs.items():
            passed = r.get("neurogame/pass_fraction/game1")
            passed = f"{passed:14.3f}" if passed is not None else f"{'':14s}"
            print(f"{name:16s} {r['seconds']:11.1f} {r['epoch_s_full']:8.1f} {r['epoch_s_full'] / reference:11.2f} "
                  f"{passed}")

    load_after = os.getloadavg()
    results["load_after"] = load_after
    print(f"\nload average {load_after[0]:.2f} after (busy if well above the {os.cpu_count()} cores' share of "
          f"this process)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
