"""The command line: ``python -m bench {list,train,...}``.

The only place that reads argv and environment variables (through ``datasets.paths``). Heavy frameworks are
imported inside the commands that need them, so ``bench list`` stays fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from bench.arguments import build_parser
from datasets.errors import one_line

EXIT_USAGE = 2  # bad input: unknown name, missing data, bad suite, unreachable store


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _tracking_uri(args: argparse.Namespace) -> str:
    import os

    from bench.tracking import DEFAULT_TRACKING_URI

    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _check_device(device: str) -> None:
    from datasets.training import resolve_device

    try:
        resolve_device(device)
    except RuntimeError as err:
        raise CliError(f"--device {device!r}: {one_line(err)}") from None


def _at_least(flag: str, value: int, least: int) -> None:
    """An integer flag's lower bound, checked before any work starts."""
    if value < least:
        kind = "a non-negative integer" if least == 0 else f"an integer >= {least}"
        raise CliError(f"{flag} must be {kind}, got {value}")


def _check_step(step: float) -> int | float:
    """``--step``: a unit count (an integer >= 1) or a fraction of all units in (0, 1); returned as the strategies
    take it."""
    if 0 < step < 1:
        return step
    if step >= 1 and float(step).is_integer():
        return int(step)
    raise CliError(f"--step must be a unit count (an integer >= 1) or a fraction in (0, 1), got {step:g}")


def _check_fractions(text: str) -> list[str]:
    """``--fractions``: comma-separated kept fractions in (0, 1], or 'd' for MCUE's d; returned as written."""
    raw = [f.strip() for f in text.split(",") if f.strip()]
    if not raw:
        raise CliError(f"--fractions is empty ({text!r}): give kept fractions in (0, 1] or 'd', e.g. 0.1,0.5,d")
    for item in raw:
        if item == "d":
            continue
        try:
            value = float(item)
        except ValueError:
            value = None
        if value is None or not 0 < value <= 1:  # NaN fails too
            raise CliError(f"--fractions: {item!r} is not a kept fraction in (0, 1] or 'd'")
    return raw


def _check_storage(storage: str | None) -> None:
    """``bench tune --storage``: "memory" or a database URL, checked before any store or study is opened."""
    if not storage or storage == "memory":
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(storage).get_dialect()
    except ArgumentError as err:
        hint = f"; for a SQLite file write sqlite:///{storage}" if "://" not in storage else ""
        raise CliError(f"--storage {storage!r} is not a database URL ({one_line(err)}){hint}; valid: memory, "
                       "sqlite:///optuna.db or an RDB URL such as postgresql+psycopg://user@host/db") from None


def _globs(values: Sequence[str]) -> list[str]:
    return [g.strip() for value in values for g in value.split(",") if g.strip()]


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
    from bench.suite import load_suite, suite_registry

    print("suites:")
    for name in suite_registry().names():
        suite = load_suite(name)
        print(f"  {name:24s} {suite.description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from datasets.training import train_pair

    _at_least("--seed", args.seed, 0)
    trained = train_pair(args.pair, seed=args.seed, data_dir=args.data_dir, device=args.device,
                         download=args.download, force=args.force, progress=not args.no_progress)
    m = trained.metrics
    print(f"{args.pair} seed={args.seed}: val accuracy {m['val_accuracy']:.4f}, test accuracy "
          f"{m['test_accuracy']:.4f}, trained in {m['train_seconds']:.1f}s on {m['device']}")
    print(f"checkpoint: {trained.path}")
    return 0


def _parse_params(items: Sequence[str]) -> dict[str, object]:
    import yaml

    from bench.suite import SuiteLoader

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--param expects KEY=VALUE, got {item!r}")
        params[key] = yaml.load(value, Loader=SuiteLoader)  # 1e4 is a number, as in a suite file
    return params


def cmd_prune(args: argparse.Namespace) -> int:
    import time

    from bench.pipeline import problem_for, run_experiment, run_mcue
    from bench.suite import check_budget_fits
    from datasets.training import train_pair
    from methods.pruning.curves import area_under_curve
    from methods.pruning.strategies import STRATEGIES
    from methods.scorers import build_scorer

    # Every flag is checked before a network is trained.
    _at_least("--seed", args.seed, 0)
    _at_least("--fine-tune-epochs", args.fine_tune_epochs, 0)
    _at_least("--mcue-samples", args.mcue_samples, 1)
    step = _check_step(args.step)
    raw = _check_fractions(args.fractions)
    params = _parse_params(args.param)
    scorer = build_scorer(args.method, **params)
    check_budget_fits(scorer)
    STRATEGIES.get(args.strategy)
    trained = train_pair(args.pair, seed=args.seed, data_dir=args.data_dir, device=args.device,
                         download=args.download, progress=True)
    problem = problem_for(trained)
    mcue_result = None
    needs_d = "d" in raw or "keep_prob" in scorer.needs
    if needs_d:
        start = time.perf_counter()
        mcue_result = run_mcue(problem, seed=args.seed, samples=args.mcue_samples)
        print(f"MCUE: t* = {mcue_result.t_star}, d = {mcue_result.keep_prob} "
              f"({mcue_result.n_evaluations} sub-networks, {time.perf_counter() - start:.1f}s)")
    fractions = sorted({mcue_result.keep_prob if f == "d" else float(f) for f in raw})
    result = run_experiment(trained, method=args.method, params=params, strategy=args.strategy,
                            fractions=fractions, seed=args.seed, step=step, problem=problem,
                            mcue_result=mcue_result, fine_tune_epochs=args.fine_tune_epochs)
    print(f"{args.pair} seed={args.seed} method={args.method} {result.params} strategy={args.strategy} "
          f"(full network: test accuracy {trained.metrics['test_accuracy']:.4f})")
    print(f"{'kept':>6s} {'units':>6s} {'params':>7s} {'test acc':>9s} {'evaluations':>12s} {'seconds':>8s}")
    for p in result.points:
        print(f"{p.target_fraction:6.3f} {p.units_kept:6d} {p.param_fraction:7.3f} {p.accuracy:9.4f} "
              f"{p.n_evaluations:12d} {p.seconds:8.1f}")
    print(f"AUC (units) {area_under_curve(result.points):.4f}; total {result.seconds:.1f}s")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.naming import suite_view
    from bench.plan import plan
    from bench.runner import preflight_data, run_suite
    from bench.selection import check_plan_size, parse_seeds, select
    from bench.suite import load_suite
    from bench.tracking import RunsView, Tracker

    suite = load_suite(args.suite, profile=args.profile)
    as_written = suite
    suite = select(suite, pairs=_globs(args.pairs), methods=_globs(args.methods),
                   seeds=parse_seeds(args.seeds) if args.seeds else None)
    check_plan_size(suite, yes=args.yes)  # a typo in --seeds must not plan (or start) 700,000 runs
    _check_device(args.device)
    uri = _tracking_uri(args)
    if args.tuned:
        import dataclasses

        from bench.frames import load_tuned

        studies = Tracker(uri, args.tune_experiment or f"{suite.name}-tune", create=False)
        models = sorted({suite.pair(name).model for name in suite.pairs})
        tuned = load_tuned(studies, suite.name, suite.profile, suite.pairs, [e.name for e in suite.methods] + models)
        if not tuned:
            raise CliError(f"no finished `bench tune` study of suite {suite.name!r} ({suite.profile}) in experiment "
                           f"{studies.experiment_name!r}; run `python -m bench tune --suite {suite.name} ...` first")
        suite = dataclasses.replace(suite, tuned=tuned, variants={**suite.variants, **{
            name: dataclasses.replace(suite.pair(name), model_options={**suite.pair(name).model_options,
                                                                       **tuned[name][suite.pair(name).model]},
                                      recipe=suite.pair(name).recipe)
            for name in suite.pairs if suite.pair(name).model in tuned.get(name, {})}})
        for pair, methods in tuned.items():
            for method, params in methods.items():
                print(f"tuned: {pair} {method} {params}", file=sys.stderr)
    specs = plan(suite)  # checks every pair and recipe before touching the store
    workers = _check_workers(args.workers)
    if args.threads is not None:
        _at_least("--threads", args.threads, 1)
    preflight_data(suite, data_dir=args.data_dir, download=args.download)
    executor = _executor(args, workers)  # a Ray that is missing or unreachable stops here, before the store
    try:
        tracker = Tracker(uri, args.experiment or suite.name)
    except BaseException:
        executor.close()
        raise
    print(f"suite {suite.name} ({suite.profile}): {len(suite.pairs)} pair(s) x {len(suite.seeds)} seed(s), "
          f"{len(specs)} runs on {executor.describe()}; tracking {uri}, experiment {tracker.experiment_name!r}",
          file=sys.stderr)
    scope = "full" if suite == as_written else "partial"
    # SIGTERM unwinds like Ctrl-C: the parent run is marked KILLED and this invocation's claims are released.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        outcome = run_suite(suite, tracker, device=args.device, data_dir=args.data_dir, download=args.download,
                            progress=not args.no_progress, scope=scope, executor=executor)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{outcome.finished} run(s) done, {outcome.skipped} already in the store, {len(outcome.failed)} failed, "
          f"in {outcome.seconds:.0f}s; parent run {outcome.parent_id}")
    for label, error in outcome.failed:
        print(f"  failed: {label}: {error}", file=sys.stderr)
    if not args.no_report:
        from bench.report import report_suite
        from reports.data import ReportError

        try:
            paths = report_suite(tracker, suite.name, _report_dir(args, suite.name), parent_id=outcome.parent_id)
        except ReportError as err:
            print(f"no report: {err}", file=sys.stderr)
        else:
            print(f"report: {paths[-1]}")
    print(f"see it: {tracker.runs_page(RunsView(**suite_view(as_written)))}")
    return 1 if outcome.failed else 0


def _check_workers(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        workers = int(value)
    except ValueError:
        raise CliError(f"--workers {value!r}: a number of workers, or auto") from None
    _at_least("--workers", workers, 1)
    return workers


def _executor(args: argparse.Namespace, workers: int | str | None):
    from bench.executors import ExecutorError, make_executor

    try:
        return make_executor(workers=workers, address=args.ray_address, gpus_per_run=args.gpus_per_run,
                             device=args.device, data_dir=args.data_dir, download=args.download,
                             threads=args.threads)
    except ExecutorError as err:
        raise CliError(str(err)) from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _report_dir(args: argparse.Namespace, suite: str):
    from pathlib import Path

    return Path(args.out) if args.out else Path("reports") / "out" / suite


def cmd_tune(args: argparse.Namespace) -> int:
    from bench.runner import preflight_data
    from bench.selection import select
    from bench.suite import load_suite
    from bench.tracking import Tracker
    from bench.tuning import model_pairs, search_space, tune

    if args.trials < 1 or args.n_jobs < 1:
        raise CliError("--trials and --n-jobs must be at least 1")
    _at_least("--seed", args.seed, 0)
    _at_least("--worker", args.worker, 0)
    _at_least("--heartbeat", args.heartbeat, 1)
    _check_storage(args.storage)  # before the MLflow store is created
    suite = select(load_suite(args.suite, profile=args.profile), pairs=_globs(args.pairs))
    if not any(e.name == args.method for e in suite.methods) and model_pairs(suite, args.method):
        return _tune_models(args, suite)
    entry = suite.entry(args.method)
    _check_device(args.device)
    if args.grace <= args.heartbeat:
        raise CliError(f"--grace ({args.grace}s) must exceed --heartbeat ({args.heartbeat}s)")
    search_space(suite, entry, n_units=1)  # fails now if the method has nothing to tune
    if args.study and len(suite.pairs) > 1:
        raise CliError("--study names one study; pick one pair with --pairs")
    preflight_data(suite, data_dir=args.data_dir, download=args.download)
    uri = _tracking_uri(args)
    tracker = Tracker(uri, args.experiment or f"{suite.name}-tune")
    for pair in suite.pairs:
        outcome = tune(suite, entry, pair, trials=args.trials, storage=args.storage, study_name=args.study,
                       n_jobs=args.n_jobs, seed=args.seed, worker=args.worker, tracker=tracker, device=args.device,
                       data_dir=args.data_dir, heartbeat=args.heartbeat, grace=args.grace,
                       progress=not args.no_progress)
        print(f"{outcome.study_name}: best validation AUC {outcome.best_value:.4f} with {outcome.best_params} "
              f"({outcome.n_complete} complete, {outcome.n_pruned} pruned, {outcome.n_failed} failed; "
              f"{outcome.seconds:.0f}s)")
        if outcome.baseline_value is not None:
            print(f"  the suite's defaults with MCUE's d {outcome.baseline_params}: {outcome.baseline_value:.4f} "
                  f"(tuning gains {outcome.best_value - outcome.baseline_value:+.4f})")
    print(f"use them: python -m bench run --suite {suite.name} --tuned")
    return 0


def _tune_models(args: argparse.Namespace, suite: object) -> int:
    """``bench tune --method MODEL`` on a suite of trained models: one study per pair that trains MODEL."""
    from bench.runner import preflight_data
    from bench.tracking import Tracker
    from bench.tuning import model_pairs, model_search_space, tune_model

    _check_device(args.device)
    if args.grace <= args.heartbeat:
        raise CliError(f"--grace ({args.grace}s) must exceed --heartbeat ({args.heartbeat}s)")
    if args.n_jobs != 1:
        raise CliError("--n-jobs: a model trial trains a network on every core; run more workers instead")
    model_search_space(suite, args.method)  # fails now if the model has nothing to tune
    pairs = model_pairs(suite, args.method)
    if args.study and len(pairs) > 1:
        raise CliError("--study names one study; pick one pair with --pairs")
    preflight_data(suite, data_dir=args.data_dir, download=args.download)
    tracker = Tracker(_tracking_uri(args), args.experiment or f"{suite.name}-tune")
    for pair in pairs:
        outcome = tune_model(suite, pair, trials=args.trials, storage=args.storage, study_name=args.study,
                             seed=args.seed, worker=args.worker, tracker=tracker, device=args.device,
                             data_dir=args.data_dir, heartbeat=args.heartbeat, grace=args.grace,
                             progress=not args.no_progress)
        print(f"{outcome.study_name}: best validation accuracy {outcome.best_value:.4f} with "
              f"{outcome.best_params} ({outcome.n_complete} complete, {outcome.n_pruned} pruned, "
              f"{outcome.n_failed} failed; {outcome.seconds:.0f}s)")
        if outcome.baseline_value is not None:
            print(f"  the pair's own options {outcome.baseline_params}: {outcome.baseline_value:.4f} "
                  f"(tuning gains {outcome.best_value - outcome.baseline_value:+.4f})")
    print(f"use them: python -m bench run --suite {suite.name} --tuned")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.analyze import analyze

    _at_least("--seed", args.seed, 0)
    _check_device(args.device)
    default = Path("reports") / "out" / "analyze" / args.analysis / f"{args.pair}-s{args.seed}"
    out = Path(args.out) if args.out else default
    paths = analyze(args.analysis, args.pair, seed=args.seed, out_dir=out, data_dir=args.data_dir, device=args.device,
                    download=args.download, val_samples=args.val_samples, params=_parse_params(args.param),
                    progress=not args.no_progress)
    print(f"{args.analysis} on {args.pair} seed {args.seed}: {len(paths)} files in {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import report_suite
    from bench.tracking import Tracker

    uri = _tracking_uri(args)
    tracker = Tracker(uri, args.experiment or args.suite, create=False)
    paths = report_suite(tracker, args.suite, _report_dir(args, args.suite), profile=args.profile,
                         parent_id=args.parent)
    print(f"report: {paths[-1]} ({len(paths) - 2} plots)")
    print(f"        {paths[-2]}")
    return 0


def cmd_estimators(args: argparse.Namespace) -> int:
    from bench.benchmarks import estimators
    from bench.selection import parse_seeds
    from datasets.pairs import get_pair
    from methods.estimators.benchmark import ESTIMATORS, INDEX_NAMES

    def items(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    if args.parent and not args.from_store:
        raise CliError("--parent selects stored invocations for --from-store; pass --from-store too")
    if args.from_store:
        args.tracking_uri = _tracking_uri(args)
        return estimators.report_from_store(args)
    # Every argument is checked before a network is loaded or a run is opened.
    args.pair = items(args.pair)
    for pair in args.pair:
        get_pair(pair)
        if pair not in estimators.EXACT_GROUPS:
            raise CliError(f"--pair {pair}: the estimator benchmark knows {', '.join(estimators.EXACT_GROUPS)}")
    args.index = items(args.index)
    args.games = items(args.games)
    args.metric = items(args.metric)
    for name, given, valid in (("--index", args.index, INDEX_NAMES), ("--games", args.games, estimators.GAME_KINDS),
                               ("--metric", args.metric, ("accuracy", "neg_loss"))):
        bad = [g for g in given if g not in valid]
        if bad or not given:
            raise CliError(f"{name} {','.join(bad) or '(empty)'}: valid values are {', '.join(valid)}")
    try:
        args.budgets = sorted({int(b) for b in items(args.budgets)}) if args.budgets else None
    except ValueError:
        raise CliError(f"--budgets must be integers, got {args.budgets!r}") from None
    if args.budgets is not None and min(args.budgets) < 1:
        raise CliError("--budgets must be positive numbers of coalition evaluations")
    args.seeds = list(parse_seeds(args.seeds))
    args.estimators = _globs(args.estimators)
    for pattern in args.estimators:
        if not any(estimators._match(s.name, pattern) for s in ESTIMATORS.values()):
            raise CliError(f"--estimators {pattern!r} matches none of {', '.join(ESTIMATORS.names())}")
    for name, value, least in (("--reference-budget", args.reference_budget, 1000),
                               ("--reference-runs", args.reference_runs, 2)):
        if value is not None and value < least:
            raise CliError(f"{name} must be at least {least} (the reference's error is estimated from its runs)")
    if not 1 <= args.players <= 20:
        raise CliError(f"--players must be in 1..20 (2^players coalitions are enumerated), got {args.players}")
    if not 0 <= args.context_d <= 1 or (args.keep_prob is not None and not 0 < args.keep_prob < 1):
        raise CliError("--context-d must be in [0, 1] and --keep-prob in (0, 1)")
    if "beta" in args.index and args.keep_prob is None:
        from methods.games.mcue import check_output

        check_output(args.mcue_output)
    _check_device(args.device)
    args.tracking_uri = _tracking_uri(args)
    return estimators.main(args)


COMMANDS = {"list": cmd_list, "train": cmd_train, "prune": cmd_prune, "run": cmd_run, "tune": cmd_tune,
            "analyze": cmd_analyze, "report": cmd_report, "estimators": cmd_estimators}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":  # before the imports below: a GPU machine may have torch alone (no pandas)
        from bench.doctor import main as doctor
        return doctor(args)
    from bench.errors import TrackingError
    from datasets.errors import DataError, UsageError
    from reports.data import ReportError

    try:
        return COMMANDS[args.command](args)
    # The project's own errors only (an unknown name and a bad suite are UsageErrors): any other exception, a
    # ValueError from a shape bug inside a scorer included, is a bug and keeps its traceback.
    except (CliError, DataError, UsageError, TrackingError, ReportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # The tracking store failing mid-run (a server gone, a locked database) is the user's to fix, not a bug.
        if type(err).__module__.split(".")[0] not in ("mlflow", "sqlalchemy", "optuna", "psycopg"):
            raise
        print(f"error: {type(err).__name__}: {one_line(err, 300)}", file=sys.stderr)
        return EXIT_USAGE
