"""Optuna tuning of a suite method's parameters (the only module that imports optuna).

The objective is the area under the compression curve on the **validation** split (scores, MCUE and the curve all
use it; the test split is never touched), so tuned parameters can be reported honestly by ``bench run --tuned``.

* Search spaces are plain data declared by the method (``GTAPScorer.search_space``: d, budget and step) and may be
  overridden by the suite's ``tuning`` section.
* Every trial uses the same random streams (common random numbers), so trials differ by their parameters only, and
  the sampler is seeded. The first trial is the method with MCUE's d, so the study measures what tuning gains over it.
* Iterated strategies report the partial curve as each target is reached, at step = that kept fraction in per mille
  (so the Optuna dashboard's x axis is the kept fraction), and a median pruner stops trials that are already behind.
  The reported value is the sum of the validation accuracies reached so far over the grid's size: it only grows, so
  the pruner's "best value so far" is the current one, and trials are compared over the same kept fractions.
* The objective is named "validation AUC" in the study, and each trial carries its MLflow run id as the user
  attribute ``mlflow_run_id``.
* With an RDB storage (e.g. PostgreSQL), several ``bench tune`` processes on several machines share a study: trials
  are handed out by the database, a heartbeat marks the trials of a dead worker as failed, and those are retried.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.streams import Stream, stream
from bench.suite import MethodEntry, Suite, SuiteError
from datasets.errors import one_line

DEFAULT_STORAGE = "sqlite:///optuna.db"
MAX_FAILURES_IN_A_ROW = 5
METRIC_NAME = "validation AUC"
TRIAL_NOTE = ("val_curve/accuracy: step = kept fraction in per mille; val_auc = the trial's objective (validation "
              "AUC). A pruned trial has val_partial_mean, the mean validation accuracy over the fractions it reached.")


@dataclass
class TuneOutcome:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    baseline_value: float | None
    baseline_params: dict[str, Any] | None
    n_complete: int
    n_pruned: int
    n_failed: int
    parent_run_id: str | None
    seconds: float


def study_name_for(suite: Suite, pair: str, method: str) -> str:
    return f"{suite.name}.{suite.profile}.{pair}.{method}"


def search_space(suite: Suite, entry: MethodEntry, n_units: int) -> dict[str, dict[str, Any]]:
    """The entry's search space: the method's declared one, overridden per key by the suite's ``tuning`` section."""
    from methods.scorers import SCORERS

    cls = SCORERS.get(entry.method)
    declared = getattr(cls, "search_space", None)
    override = (suite.tuning or {}).get(entry.method) or {}
    if declared is None and not override:
        raise SuiteError(f"method {entry.method!r} ({entry.name}) declares no search space, so there is nothing to "
                         "tune; give one in the suite's 'tuning' section")
    space = {**(declared or {}), **override}
    if hasattr(cls, "search_space_for"):
        space = cls.search_space_for(entry.params, strategy=entry.strategy, n_units=n_units, space=space)
    if not space:
        raise SuiteError(f"nothing to tune for {entry.name}: its search space is empty for strategy "
                         f"{entry.strategy!r}")
    return space


def _suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    values = {}
    for name, spec in space.items():
        kind = spec.get("type", "float")
        if kind == "float":
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "categorical":
            values[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            raise SuiteError(f"search space of {name!r}: unknown type {kind!r}; valid: float, int, categorical")
    return values


def make_storage(url: str | None, *, heartbeat: int, grace: int, retries: int) -> Any:
    """In-memory (``url`` "memory"), or an RDB storage with a heartbeat and retries of dead workers' trials."""
    import optuna

    from bench.errors import TrackingError

    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if grace <= heartbeat:
        raise SuiteError(f"--grace ({grace}s) must exceed --heartbeat ({heartbeat}s), or live trials are failed")
    for attempt in range(3):  # workers starting together on an empty database race to create its tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url or DEFAULT_STORAGE, heartbeat_interval=heartbeat, grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=retries),
                    engine_kwargs={"pool_pre_ping": True})
        except Exception as err:  # noqa: BLE001 - any failure means the storage is unusable
            if attempt == 2:
                text = one_line(err, 300)
                raise TrackingError(f"cannot use the Optuna storage {url or DEFAULT_STORAGE}: {text}") from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _trial_count(optuna: Any, storage: Any, name: str) -> int:
    try:
        return len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        return 0


def tune(suite: Suite, entry: MethodEntry, pair_name: str, *, trials: int, storage: str | None = None,
         study_name: str | None = None, n_jobs: int = 1, seed: int = 0, worker: int = 0, model_seed: int | None = None,
         tracker: Any = None, device: str = "auto", data_dir: str | None = None, heartbeat: int = 10,
         grace: int = 30, retries: int = 2, progress: bool = True,
         on_trial: Callable[[Any], None] | None = None) -> TuneOutcome:
    """Tunes one method of a suite on one pair until the study holds ``trials`` finished (complete or pruned) trials.

    Args:
        suite, entry, pair_name: what to tune, and on which trained model.
        trials: finished trials the study should reach (workers sharing a study share this count; trials started
            concurrently near the end may add up to one per extra worker).
        storage: an Optuna storage URL, "memory", or None for ``sqlite:///optuna.db``.
        study_name: defaults to SUITE.PROFILE.PAIR.METHOD; workers with the same storage and name share the study.
        n_jobs: threads in this process.
        seed: the sampler's seed (offset by ``worker``, so workers explore differently) and the methods' seed.
        model_seed: the training seed of the model (default: the suite's first seed).
        tracker: a ``bench.tracking.Tracker``: the study becomes a parent run, each trial a nested run.
        heartbeat, grace, retries: seconds between heartbeats, seconds after which a silent trial is failed, and how
            often such a trial is retried.
    """
    import optuna

    from bench.pipeline import problem_for, run_mcue
    from datasets.training import train_pair
    from methods.games.graph import neuron_game
    from methods.pruning.curves import area_under_curve, evaluate_path, kept_counts
    from methods.pruning.strategies import STRATEGIES
    from methods.scorers import build_scorer

    start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported below, one line each
    pair = suite.pair(pair_name)
    model_seed = suite.seeds[0] if model_seed is None else model_seed
    trained = train_pair(pair, seed=model_seed, data_dir=data_dir, device=device, progress=False)
    problem = problem_for(trained, val_samples=suite.val_samples)
    # Games keep state between calls (the sparse path's previous coalition), so each thread of --n-jobs gets its own
    # problem and its own curve game (a second game on the same validation data, so measuring the curve is not
    # charged to the method).
    local = threading.local()

    def games() -> tuple[Any, Any]:
        if not hasattr(local, "problem"):
            local.problem = problem if threading.current_thread() is threading.main_thread() else problem_for(
                trained, val_samples=suite.val_samples)
            local.curve_game = neuron_game(trained.model, trained.pair.units, local.problem.x, local.problem.y)
        return local.problem, local.curve_game

    space = search_space(suite, entry, problem.n_units)
    # The first trial is the suite's defaults with MCUE's d: a default outside the space widens that dimension, so
    # the trial stays the defaults.
    defaults = {"step": suite.step, **entry.params}
    from_mcue = {"keep_prob"} if "keep_prob" in space and suite.mcue is not None else set()
    space = _widen_for_defaults(space, defaults, skip=from_mcue, what=f"tune {entry.name} on {pair_name}",
                                whose="the suite's")
    fractions = list(suite.fractions)
    targets = kept_counts(fractions, problem.n_units)
    # A target unit count -> the step its report is filed under: its kept fraction in per mille (the smallest, when
    # two fractions round to one count on a small network).
    steps: dict[int, int] = {}
    for fraction in sorted(targets):
        steps.setdefault(targets[fraction], round(1000 * fraction))
    strategy = STRATEGIES.get(entry.strategy)

    name = study_name or study_name_for(suite, pair_name, entry.name)
    # Steps are kept fractions, not counts: the first report is kept from pruning in on_record instead.
    study, created = _open_study(name, storage, seed=seed, worker=worker, metric=METRIC_NAME, warmup_steps=0,
                                 heartbeat=heartbeat, grace=grace, retries=retries)
    parent_id = _study_parent(tracker, study, created, suite, entry, pair_name, space,
                              str(trained.device)) if tracker else None

    baseline: dict[str, Any] = {}
    if from_mcue:
        d = run_mcue(problem, seed=model_seed, **suite.mcue).keep_prob
        baseline = {"keep_prob": float(np.clip(d, space["keep_prob"]["low"], space["keep_prob"]["high"]))}
    for key in space:
        if key not in baseline and key in defaults and _inside(defaults[key], space[key]):
            baseline[key] = defaults[key]
    if set(baseline) == set(space):
        study.enqueue_trial(baseline, user_attrs={"baseline": "defaults with MCUE's d"}, skip_if_exists=True)

    def objective(trial: Any) -> float:
        began = time.perf_counter()
        trial.set_user_attr("worker", worker)
        values = _suggest(trial, space)
        params = {**entry.params, **{k: v for k, v in values.items() if k != "step"}}
        step = values.get("step", suite.step)
        scorer = build_scorer(entry.method, **params)
        problem, curve_game = games()
        reached: dict[int, float] = {}

        def on_record(target: int, mask: np.ndarray) -> None:
            reached[target] = float(curve_game(mask[None])[0])
            # A running sum, not a mean: MedianPruner compares this trial's best value over its steps with the others'
            # at this step, and a running mean falls as Iterated Pruning reaches smaller fractions, so its first
            # value (the whole network, the same for every trial) would stay "best" and nothing would be pruned.
            trial.report(float(sum(reached.values())) / len(steps), step=steps[target])
            if len(reached) > 1 and trial.should_prune():  # one kept fraction says too little to stop a trial
                raise optuna.TrialPruned()

        before = problem.game.n_evaluations
        state, points = "COMPLETE", []
        try:
            path = strategy(scorer, problem, list(targets.values()), rng=stream(seed, Stream.STRATEGY),
                            step=step, allocation=entry.allocation, on_record=on_record)
            points = evaluate_path(path, fractions, curve_game, trained.model, problem.groups)
            value = area_under_curve(points)
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except Exception as err:
            state = "FAIL"
            trial.set_user_attr("error", one_line(f"{type(err).__name__}: {err}", 300))
            raise
        finally:
            if tracker is not None and parent_id is not None:
                run_id = _log_trial(tracker, parent_id, trial, suite, entry, pair_name, values, points, reached,
                                    state, evaluations=problem.game.n_evaluations - before,
                                    seconds=time.perf_counter() - began)
                # The trial is still running here: afterwards its attributes can no longer be set.
                trial.set_user_attr("mlflow_run_id", run_id)

    failures = _optimize(study, objective, trials=trials, n_jobs=n_jobs, progress=progress,
                         desc=f"tune {entry.name} on {pair_name}", on_trial=on_trial)
    return _finish(study, name, parent_id, tracker, start=start, trials=trials, failures=failures)


def _open_study(name: str, storage: str | None, *, seed: int, worker: int, metric: str, warmup_steps: int,
                heartbeat: int, grace: int, retries: int) -> tuple[Any, bool]:
    """The study ``name`` (created, or joined when another worker created it) with a seeded TPE sampler and a median
    pruner, its objective named ``metric`` on the dashboard; and whether this worker created it."""
    import optuna

    rdb = make_storage(storage, heartbeat=heartbeat, grace=grace, retries=retries)
    existing = _trial_count(optuna, rdb, name)
    options = {"study_name": name, "direction": "maximize", "storage": rdb,
               # Mixing in the trials already there keeps a resumed worker from replaying its start-up samples.
               "sampler": optuna.samplers.TPESampler(seed=int(np.random.default_rng([seed, worker, existing])
                                                              .integers(2**31)), n_startup_trials=5),
               "pruner": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup_steps)}
    try:  # the database's unique study name decides which worker created the study (and its MLflow parent run)
        study, created = optuna.create_study(**options), True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.create_study(**options, load_if_exists=True), False
    if study.metric_names != [metric]:  # the dashboard's name for the objective ("Objective 0" otherwise)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    return study, created


def _optimize(study: Any, objective: Callable[[Any], float], *, trials: int, n_jobs: int, progress: bool, desc: str,
              on_trial: Callable[[Any], None] | None = None) -> int:
    """Runs trials until the study holds ``trials`` finished ones, with a progress bar; stops after
    MAX_FAILURES_IN_A_ROW failures in a row. Returns the failures in a row at the end."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    bar = tqdm(total=trials, initial=min(done, trials), unit="trial", disable=not progress, dynamic_ncols=True,
               desc=desc)
    failures_in_a_row = [0]

    def advance(study: Any, trial: Any) -> None:
        failures_in_a_row[0] = failures_in_a_row[0] + 1 if trial.state == TrialState.FAIL else 0
        if trial.state == TrialState.FAIL:
            tqdm.write(f"trial {trial.number} failed: {trial.user_attrs.get('error', '')}", file=sys.stderr)
        if failures_in_a_row[0] >= MAX_FAILURES_IN_A_ROW:  # a broken configuration must not loop forever
            study.stop()
        bar.n = min(len(study.get_trials(deepcopy=False, states=finished)), trials)
        bar.set_postfix_str(f"best {study.best_value:.4f}" if _has_complete(study) else "")
        bar.refresh()
        if on_trial:
            on_trial(trial)

    try:
        if done < trials:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_jobs=n_jobs, callbacks=[MaxTrialsCallback(trials, states=finished),
                                                                    advance],
                               catch=(ValueError, RuntimeError))
    finally:
        bar.close()
    return failures_in_a_row[0]


def _finish(study: Any, name: str, parent_id: str | None, tracker: Any, *, start: float, trials: int, failures: int,
            metric: str = "val_auc") -> TuneOutcome:
    """The study's outcome; its parent run closed by the worker that sees it done. Raises SuiteError when it
    stopped on failures."""
    from optuna.trial import TrialState

    outcome = _outcome(study, name, parent_id, time.perf_counter() - start)
    if failures >= MAX_FAILURES_IN_A_ROW:
        last = study.trials[-1]
        raise SuiteError(f"stopped after {MAX_FAILURES_IN_A_ROW} failed trials in a row (trial {last.number}: "
                         f"{last.user_attrs.get('error', 'see the log above')})")
    still_running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if tracker is not None and parent_id is not None:
        # Only the worker that sees the study done closes its parent, so `--tuned` never reads an interim best.
        _close_parent(tracker, parent_id, outcome, final=outcome.n_complete + outcome.n_pruned >= trials
                      and not still_running, metric=metric)
    return outcome


def _widened(value: Any, spec: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``spec`` grown to hold ``value``, or None when it cannot: a value of another kind (a unit-count step in a space
    of fractions, a float in an int range), or a non-positive one on a log scale."""
    kind = spec.get("type", "float")
    if kind == "categorical":
        if value is None or isinstance(value, bool | int | float | str):
            return {**spec, "choices": [*spec["choices"], value]}
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if kind == "int" and not isinstance(value, int):
        return None
    if spec.get("log") and value <= 0:
        return None
    if key == "step" and (value >= 1) != (spec["high"] >= 1):  # a unit count and a fraction of units differ in kind
        return None
    low, high = min(spec["low"], value), max(spec["high"], value)
    return {**spec, "low": low, "high": high}


def _widen_for_defaults(space: dict[str, dict[str, Any]], defaults: dict[str, Any], *, what: str, whose: str,
                        skip: set[str] | frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The search space widened to hold each default outside it (keys in ``skip`` come from elsewhere), so the
    study's first trial can be the defaults; one line on stderr says what was widened, or which default cannot be
    (then there is no such trial). A key without a default leaves the study without that trial, as before."""

    def shown(spec: dict[str, Any]) -> str:
        if spec.get("type") == "categorical":
            return "{" + ", ".join(map(repr, spec["choices"])) + "}"
        return f"[{spec['low']!r}, {spec['high']!r}]"

    widened, notes, missing = dict(space), [], []
    for key, spec in space.items():
        if key in skip or key not in defaults:
            continue
        if not _inside(defaults[key], spec):
            grown = _widened(defaults[key], spec, key)
            if grown is None:
                missing.append(f"{key}={defaults[key]!r} cannot join {shown(spec)}")
            else:
                widened[key] = grown
                notes.append(f"{key}={defaults[key]!r} lies outside the search space {shown(spec)}, widened to "
                             f"{shown(grown)}")
    if missing:
        print(f"{what}: no first trial with {whose} defaults ({'; '.join(missing)})", file=sys.stderr)
        return space
    if notes:
        print(f"{what}: {whose} default {'; '.join(notes)}, so the first trial is the defaults", file=sys.stderr)
    return widened


def _inside(value: Any, spec: dict[str, Any]) -> bool:
    if spec.get("type") == "categorical":
        return value in spec["choices"]
    return isinstance(value, int | float) and spec["low"] <= value <= spec["high"]


def _has_complete(study: Any) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _outcome(study: Any, name: str, parent_id: str | None, seconds: float) -> TuneOutcome:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    baseline = next((t for t in complete if t.user_attrs.get("baseline")), None)
    best = study.best_trial if complete else None
    return TuneOutcome(
        study_name=name, best_params=dict(best.params) if best else {},
        best_value=float(best.value) if best else math.nan,
        baseline_value=float(baseline.value) if baseline else None,
        baseline_params=dict(baseline.params) if baseline else None,
        n_complete=len(complete), n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), parent_run_id=parent_id, seconds=seconds)


# -- tracking ----------------------------------------------------------------------------------------------------


def _study_parent(tracker: Any, study: Any, created: bool, suite: Suite, entry: MethodEntry, pair_name: str,
                  space: dict[str, Any], device: str, *, objective: str = METRIC_NAME, wait: float = 120.0) -> str:
    """The study's parent run: made by the worker that created the study; the others wait for its id."""
    deadline = time.monotonic() + (0 if created else wait)
    while True:
        existing = study.user_attrs.get("mlflow_parent_run_id")  # a fresh read from the storage each time
        if existing or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if existing:
        return existing
    from bench.tracking import git_commit

    tags = {"suite": suite.name, "profile": suite.profile, "pair": pair_name, "method": entry.name,
            "study": study.study_name, "git_commit": git_commit(), "device": device}
    run_id = tracker.open_parent(suite_hash=f"study:{study.study_name}:{time.time_ns()}", kind="study",
                                 run_name=f"tune {entry.name} on {pair_name}", tags=tags,
                                 params={"space": space, "entry": entry.params, "strategy": entry.strategy,
                                         "fractions": list(suite.fractions), "objective": objective},
                                 artifacts={})
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


def _log_trial(tracker: Any, parent_id: str, trial: Any, suite: Suite, entry: MethodEntry, pair_name: str,
               values: dict[str, Any], points: list[Any], reached: dict[int, float], state: str, *,
               evaluations: int, seconds: float) -> str:
    """Logs a trial as a nested run of the study's parent run; returns the run's id."""
    from methods.pruning.curves import area_under_curve

    metrics: dict[str, float] = {"n_evaluations": evaluations, "seconds": seconds}
    steps: dict[str, list[tuple[int, float]]] = {}
    if points:
        metrics["val_auc"] = area_under_curve(points)
        steps["val_curve/accuracy"] = [(round(1000 * p.target_fraction), p.accuracy) for p in points]
    elif reached:
        metrics["val_partial_mean"] = float(np.mean(list(reached.values())))
    tags = {"kind": "trial", "suite": suite.name, "pair": pair_name, "method": entry.name, "state": state,
            "trial_number": str(trial.number), "study": trial.study.study_name, "mlflow.note.content": TRIAL_NOTE}
    if trial.user_attrs.get("baseline"):
        tags["baseline"] = trial.user_attrs["baseline"]
    return tracker.log_run(parent_id=parent_id, run_name=f"trial {trial.number}", tags=tags, params=values,
                           metrics=metrics, step_metrics=steps, status="FINISHED" if state == "COMPLETE" else "KILLED")


def _close_parent(tracker: Any, parent_id: str, outcome: TuneOutcome, *, final: bool, metric: str = "val_auc") -> None:
    metrics = {f"best_{metric}": outcome.best_value, "n_complete": outcome.n_complete, "n_pruned": outcome.n_pruned,
               "n_failed": outcome.n_failed}
    if outcome.baseline_value is not None:
        metrics[f"baseline_{metric}"] = outcome.baseline_value
        metrics["gain_over_baseline"] = outcome.best_value - outcome.baseline_value
    tracker.close_parent(parent_id, status="FINISHED" if final else "RUNNING", metrics=metrics, artifacts={
        "best_params.json": {"params": outcome.best_params, metric: outcome.best_value,
                             "baseline": outcome.baseline_params, f"baseline_{metric}": outcome.baseline_value}})
    tracker.set_tags(parent_id, {f"best.{key}": value for key, value in outcome.best_params.items()})


# -- tuning a model of a suite that compares trained models (NEUROGAME's layer choices) ---------------------------

MODEL_METRIC_NAME = "validation accuracy"
MODEL_TRIAL_NOTE = ("val/accuracy and val/loss: step = epoch. val_accuracy = the trial's objective: the validation "
                    "accuracy of the epoch whose weights training kept (early stopping on the validation loss, "
                    "else the last).")


def model_pairs(suite: Suite, model: str) -> list[str]:
    """The suite's pairs that train ``model`` (a registered model name, e.g. "neurogame")."""
    return [name for name in suite.pairs if suite.pair(name).model == model]


def model_search_space(suite: Suite, model: str) -> dict[str, dict[str, Any]]:
    """The model's declared search space (its factory's ``search_space``), overridden per key by the suite's
    ``tuning`` section under the model's name."""
    from datasets.models import model_search_space as declared_space

    declared = declared_space(model)
    override = (suite.tuning or {}).get(model) or {}
    if declared is None and not override:
        raise SuiteError(f"model {model!r} declares no search space, so there is nothing to tune; give one in the "
                         "suite's 'tuning' section")
    return {**(declared or {}), **override}


def tune_model(suite: Suite, pair_name: str, *, trials: int, storage: str | None = None,
               study_name: str | None = None, seed: int = 0, worker: int = 0, model_seed: int | None = None,
               tracker: Any = None, device: str = "auto", data_dir: str | None = None, heartbeat: int = 10,
               grace: int = 30, retries: int = 2, progress: bool = True) -> TuneOutcome:
    """Tunes the model options of one pair of a models suite on its validation split.

    Each trial trains the pair's model with the trial's options (on top of the pair's own) under the suite's
    recipe and seed ``model_seed``, on the training split; its value is the validation accuracy of the epoch whose
    weights training kept. Every epoch's validation accuracy is reported (step = epoch), so a median pruner stops
    trials that are behind after their second epoch. The first trial is the pair as registered (its defaults), so the
    study shows what tuning gains over them. The test split is never touched; the tuned options are used by
    ``bench run --tuned``. Trained trial models are not cached.

    Args: as :func:`tune`, with ``pair_name`` the pair whose model is tuned.
    """
    import optuna

    from datasets.models import build_model, model_option_defaults
    from datasets.training import FAMILIES, best_epoch, fit, load_splits, resolve_device, seed_everything

    start = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pair = suite.pair(pair_name)
    space = model_search_space(suite, pair.model)
    defaults = {**model_option_defaults(pair.model), **pair.model_options}
    space = _widen_for_defaults(space, defaults, what=f"tune {pair.model} on {pair_name}", whose="the pair's")
    model_seed = suite.seeds[0] if model_seed is None else model_seed
    splits = load_splits(pair, data_dir=data_dir)
    torch_device = resolve_device(device)
    name = study_name or study_name_for(suite, pair_name, pair.model)
    study, created = _open_study(name, storage, seed=seed, worker=worker, metric=MODEL_METRIC_NAME, warmup_steps=1,
                                 heartbeat=heartbeat, grace=grace, retries=retries)
    parent_id = None
    if tracker is not None:
        entry = MethodEntry(pair.model, pair.model, dict(pair.model_options), strategy="train")
        parent_id = _study_parent(tracker, study, created, suite, entry, pair_name, space, str(torch_device),
                                  objective=MODEL_METRIC_NAME)
    baseline = {}
    for key in space:
        if key in defaults and _inside(defaults[key], space[key]):
            baseline[key] = defaults[key]
    if set(baseline) == set(space):
        study.enqueue_trial(baseline, user_attrs={"baseline": "the pair's model options"}, skip_if_exists=True)

    def objective(trial: Any) -> float:
        began = time.perf_counter()
        trial.set_user_attr("worker", worker)
        values = _suggest(trial, space)
        model_options = {**pair.model_options, **values}
        history: list[dict[str, float]] = []
        state = "COMPLETE"

        def on_epoch(record: dict[str, float]) -> None:
            history.append(record)
            trial.report(record["val_accuracy"], step=int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            seed_everything(model_seed)
            model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                                **model_options).to(torch_device)
            fit(model, splits.train, pair.recipe, seed=model_seed, device=torch_device,
                family=FAMILIES.get(pair.family), val=splits.val, progress=False, on_epoch=on_epoch)
            kept = best_epoch(history, pair.recipe)
            return float(next(r for r in history if int(r["epoch"]) == kept)["val_accuracy"])
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except Exception as err:
            state = "FAIL"
            trial.set_user_attr("error", one_line(f"{type(err).__name__}: {err}", 300))
            raise
        finally:
            if tracker is not None and parent_id is not None:
                metrics = {"seconds": time.perf_counter() - began, "epochs_trained": len(history)}
                if state == "COMPLETE" and history:
                    kept = best_epoch(history, pair.recipe)
                    metrics["val_accuracy"] = next(r for r in history if int(r["epoch"]) == kept)["val_accuracy"]
                steps = {f"val/{k}": [(int(r["epoch"]), r[f"val_{k}"]) for r in history]
                         for k in ("accuracy", "loss")}
                tags = {"kind": "trial", "suite": suite.name, "pair": pair_name, "method": pair.model,
                        "state": state, "trial_number": str(trial.number), "study": trial.study.study_name,
                        "mlflow.note.content": MODEL_TRIAL_NOTE}
                if trial.user_attrs.get("baseline"):
                    tags["baseline"] = trial.user_attrs["baseline"]
                run_id = tracker.log_run(parent_id=parent_id, run_name=f"trial {trial.number}", tags=tags,
                                         params=values, metrics=metrics, step_metrics=steps,
                                         status="FINISHED" if state == "COMPLETE" else "KILLED")
                trial.set_user_attr("mlflow_run_id", run_id)

    failures = _optimize(study, objective, trials=trials, n_jobs=1, progress=progress,
                         desc=f"tune {pair.model} on {pair_name}")
    return _finish(study, name, parent_id, tracker, start=start, trials=trials, failures=failures,
                   metric="val_accuracy")

