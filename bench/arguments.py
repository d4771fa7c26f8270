"""The command line's arguments: ``python -m bench {list,train,...} --help`` (``bench.cli`` runs the commands)."""

from __future__ import annotations

import argparse

DESCRIPTION = "The command line: ``python -m bench {list,train,...}``."


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="data root (default: $COALITION_BENCH_DATA, else ~/.cache/coalition-bench/data)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing data (online)")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1, ...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list registered datasets, models, pairs, methods and suites")

    train = sub.add_parser("train", help="train a pair (or load it from the checkpoint cache)")
    train.add_argument("pair", help="a registered pair, e.g. lenet300-mnist")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--force", action="store_true", help="retrain even if a cached checkpoint exists")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_args(train)

    prune = sub.add_parser("prune", help="prune one trained pair with one method and print its compression curve")
    prune.add_argument("pair")
    prune.add_argument("--seed", type=int, default=0, help="training seed of the pair, and the method's seed")
    prune.add_argument("--method", default="gtap", help="a registered method (see `list`)")
    prune.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="method parameter, e.g. --param index=beta --param budget=4000 (repeatable)")
    prune.add_argument("--strategy", default="top-n", help="top-n, iterated-pruning or iterated-building")
    prune.add_argument("--step", type=float, default=0.05, help="iterated step: units, or a fraction of all units")
    prune.add_argument("--fractions", default="0.05,0.1,0.2,0.3,0.5,0.75,1.0",
                       help="comma-separated kept fractions; 'd' stands for MCUE's d")
    prune.add_argument("--mcue-samples", type=int, default=64, help="MCUE sub-networks per (p, q) cell")
    prune.add_argument("--fine-tune-epochs", type=int, default=0,
                       help="fine-tune each pruned network this many epochs on the training split first")
    _add_data_args(prune)

    run = sub.add_parser("run", help="run a suite and track every run in MLflow (resumable)")
    run.add_argument("--suite", required=True, help="a suite in bench/suites (see `list`) or a path to a YAML file")
    run.add_argument("--profile", default="default", help="default (a 2-core CPU in minutes) or full (paper scale)")
    run.add_argument("--seeds", default=None, help="replace the suite's seeds: 0,1,2 or 0-4")
    run.add_argument("--pairs", action="append", default=[], metavar="GLOB",
                     help="only these pairs (glob; comma-separated or repeated)")
    run.add_argument("--methods", action="append", default=[], metavar="GLOB",
                     help="only these methods, by suite entry name (glob, e.g. 'gtap-beta-*'; comma-separated or "
                          "repeated)")
    _add_tracking_args(run)
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    run.add_argument("--yes", action="store_true",
                     help="run the plan even when it holds more runs than the cap (bench.selection.MAX_RUNS), which "
                          "guards against a typo in --seeds")
    run.add_argument("--tuned", action="store_true",
                     help="use the best parameters of `bench tune` (its newest finished study per pair and method)")
    run.add_argument("--out", default=None, help="report directory (default: reports/out/SUITE)")
    run.add_argument("--tune-experiment", default=None, help="where --tuned looks (default: SUITE-tune)")
    run.add_argument("--workers", default=None, metavar="N|auto",
                     help="run the suite's (pair, seed) groups on N Ray workers at once (auto: every core, or as many "
                          "runs as --gpus-per-run packs onto the GPUs); default: serial, in this process")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="run on an existing Ray cluster (e.g. ray://head:10001, or auto); its nodes need this "
                          "project installed and the data root and checkpoint cache on shared paths")
    run.add_argument("--threads", type=int, default=None, metavar="T",
                     help="torch threads per run (default: every core serially, cores // workers on Ray); float "
                          "results can differ in the last bits between thread counts, so compare runs at equal T")
    run.add_argument("--gpus-per-run", type=float, default=0.0, metavar="F",
                     help="each worker's share of a GPU (0.25 packs four runs onto one GPU); default 0: CPU workers")
    _add_data_args(run)

    tune = sub.add_parser("tune", help="tune a suite method's parameters with Optuna (validation AUC)")
    tune.add_argument("--suite", required=True)
    tune.add_argument("--method", required=True, help="a method entry of the suite (gtap-beta-iter-build), or in a "
                      "suite of trained models a model its pairs train (neurogame)")
    tune.add_argument("--trials", type=int, required=True, help="finished trials the study should reach")
    tune.add_argument("--profile", default="default")
    tune.add_argument("--pairs", action="append", default=[], metavar="GLOB",
                      help="tune on these pairs (default: each pair of the suite, one study each)")
    tune.add_argument("--storage", default=None,
                      help="Optuna storage: sqlite:///optuna.db (default), memory, or an RDB URL such as "
                           "postgresql+psycopg://user@host/db shared by several workers")
    tune.add_argument("--study", default=None, help="study name (default: SUITE.PROFILE.PAIR.METHOD)")
    tune.add_argument("--n-jobs", type=int, default=1, help="trials in parallel threads of this process")
    tune.add_argument("--seed", type=int, default=0, help="sampler and method seed")
    tune.add_argument("--worker", type=int, default=0, help="this worker's index (offsets the sampler's seed)")
    tune.add_argument("--heartbeat", type=int, default=10, help="seconds between a running trial's heartbeats")
    tune.add_argument("--grace", type=int, default=30, help="seconds of silence after which a trial is failed "
                                                             "and retried")
    tune.add_argument("--no-progress", action="store_true")
    tune.add_argument("--tracking-uri", default=None,
                      help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    tune.add_argument("--experiment", default=None, help="MLflow experiment (default: SUITE-tune)")
    _add_data_args(tune)

    analyze = sub.add_parser("analyze", help="run one registered analysis on one trained pair and write its files")
    analyze.add_argument("analysis", help="a registered analysis, e.g. microstructure")
    analyze.add_argument("pair", help="a registered pair, e.g. lenet300-mnist")
    analyze.add_argument("--seed", type=int, default=0, help="training seed of the pair")
    analyze.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="analysis parameter, e.g. --param direction=both (repeatable)")
    analyze.add_argument("--val-samples", type=int, default=None,
                         help="a fixed validation subset of this size, as a suite's val_samples (default: all)")
    analyze.add_argument("--out", default=None, help="output folder (default: reports/out/analyze/ANALYSIS/PAIR-sN)")
    analyze.add_argument("--no-progress", action="store_true")
    _add_data_args(analyze)

    est = sub.add_parser("estimators", help="power-index estimators (ours and shapiq's) per coalition evaluation on "
                                            "real neuron games, against exact or reference values")
    est.add_argument("--pair", default="lenet300-mnist,lenet5-mnist", help="comma-separated pairs")
    est.add_argument("--index", default="shapley,banzhaf,beta",
                     help="shapley, banzhaf (beta_d at d = 1/2), beta (beta_d at MCUE's d); comma-separated")
    est.add_argument("--games", default="exact", help="exact (a 16-unit game, enumerated), full, or both: exact,full")
    est.add_argument("--metric", default="accuracy,neg_loss", help="the game's v: accuracy, neg_loss, or both")
    est.add_argument("--budgets", default=None,
                     help="coalition evaluations, comma-separated (default: powers of 2 from n to 2^16 on exact "
                          "games, from above n to 2^13 on full games)")
    est.add_argument("--seeds", default="0-4", help="estimator seeds: 0,1,2 or 0-4 (default 0-4)")
    est.add_argument("--estimators", action="append", default=[], metavar="GLOB",
                     help="only these estimators (glob on 'ours:permutation', 'shapiq:KernelSHAP', ...)")
    est.add_argument("--players", type=int, default=16, help="players of an exact game (default 16)")
    est.add_argument("--context-d", type=float, default=0.5,
                     help="an exact game's other units are kept with this probability (default 0.5, about MCUE's d)")
    est.add_argument("--keep-prob", type=float, default=None, help="d for --index beta (default: MCUE's d)")
    est.add_argument("--mcue-output", default="correct", help="the MCUE reading that gives d (default correct)")
    est.add_argument("--training-seed", type=int, default=0, help="which trained network (default 0)")
    est.add_argument("--time-limit", type=float, default=60.0,
                     help="an estimator is not run at larger budgets once one run takes longer (seconds)")
    est.add_argument("--reference-budget", type=int, default=None,
                     help="a full game's reference: evaluations per run (default per index: 150,000 for Shapley, "
                          "100,000 for beta_d); a larger one judges larger budgets")
    est.add_argument("--reference-runs", type=int, default=None, help="a full game's reference: runs (default 4)")
    est.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    est.add_argument("--out", default=None, help="report directory (default: reports/out/estimators)")
    est.add_argument("--from-store", action="store_true",
                     help="run nothing: build the report from every invocation in the store not still running "
                          "(where two ran the same estimator, budget and seed on a game, the newer one's)")
    est.add_argument("--parent", action="append", default=[], metavar="RUN_ID",
                     help="with --from-store, only these invocations (repeatable)")
    _add_tracking_args(est)
    _add_data_args(est)

    doctor = sub.add_parser("doctor", help="run every compute path once on a device, timed, against the CPU")
    doctor.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1, ...")
    report = sub.add_parser("report", help="build a suite's leaderboard report from the tracking store")
    report.add_argument("--suite", required=True, help="the suite's name")
    report.add_argument("--profile", default=None, help="the profile's newest invocation (default: any profile)")
    report.add_argument("--parent", default=None,
                        help="the parent run of the invocation to report (default: the newest one that ran the "
                             "whole suite, else the newest)")
    report.add_argument("--out", default=None, help="report directory (default: reports/out/SUITE)")
    _add_tracking_args(report)
    return parser


def _add_tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: the suite's name)")
