"""The command line: ``python -m bench {list,train,...}``.

The only place that reads argv and environment variables (through ``datasets.paths``). Heavy frameworks are
imported inside the commands that need them, so ``bench list`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USAGE = 2  # bad input: unknown name, missing data, bad suite, unreachable store


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="data root (default: $COALITION_BENCH_DATA, else ~/.cache/coalition-bench/data)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing data (online)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1, ...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list registered datasets, models, pairs, methods and suites")

    train = sub.add_parser("train", help="train a pair (or load it from the checkpoint cache)")
    train.add_argument("pair", help="a registered pair, e.g. lenet300-mnist")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--force", action="store_true", help="retrain even if a cached checkpoint exists")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_args(train)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from datasets.data import DATASETS
    from datasets.models import MODELS
    from datasets.pairs import PAIRS

    print("datasets:", ", ".join(DATASETS.names()))
    print("models:  ", ", ".join(MODELS.names()))
    print("pairs:")
    for name in PAIRS.names():
        pair = PAIRS.get(name)
        gpu = "  [GPU-sized]" if pair.gpu_sized else ""
        print(f"  {name:24s} {pair.description}{gpu}")
    try:
        from methods.scorers import SCORERS
    except ImportError:  # arrives with the GTAP core
        pass
    else:
        print("methods: ", ", ".join(SCORERS.names()))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from datasets.training import train_pair

    trained = train_pair(args.pair, seed=args.seed, data_dir=args.data_dir, device=args.device,
                         download=args.download, force=args.force, progress=not args.no_progress)
    m = trained.metrics
    print(f"{args.pair} seed={args.seed}: val accuracy {m['val_accuracy']:.4f}, test accuracy "
          f"{m['test_accuracy']:.4f}, trained in {m['train_seconds']:.1f}s on {m['device']}")
    print(f"checkpoint: {trained.path}")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from datasets.errors import DataError
    from methods.registry import UnknownNameError

    try:
        return COMMANDS[args.command](args)
    except (CliError, DataError, UnknownNameError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
