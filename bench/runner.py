"""Runs a suite: trains (or loads) each pair and seed, runs MCUE, every method and the analyses, and logs each run
to MLflow.

Per (pair, seed), MCUE runs first: its d is both beta_d's bias and an extra point of every unit curve ("accuracy at
the critical size"). MCUE is seeded, so when a rerun needs d for methods that are still missing, recomputing it gives
the same d as the finished MCUE run. The training run (learning curves, the suite's analyses) is logged last, since
an analysis may read the methods' unit scores. Work is skipped by config hash (see ``bench.plan``); after the runs,
the parent run gets the seed variance and the ranking correlations, computed from what the store holds, so runs
finished by an earlier, interrupted invocation count too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.claims import Claims
from bench.executors import Executor, GroupFailed, SerialExecutor
from bench.frames import load_frames
from bench.groups import GroupTask, RunResult, Stage, device_name, where
from bench.naming import run_name
from bench.plan import RunSpec, config_hash, plan
from bench.suite import Suite, SuiteError
from bench.tracking import DataSplit, Tracker, flatten, git_commit, source_tags
from methods.analyses.base import rank_correlations, seed_spread

# Each kind's run description in the MLflow UI (tag mlflow.note.content): what the step of its step metrics counts,
# which the UI's charts label only "Step".
RUN_NOTES = {
    "method": "curve/* metrics: step = kept fraction in per mille (step 200 = 20 % of units kept, of parameters for "
              "param-axis methods); a step off the grid is MCUE's d; curve/latency_ms_* in milliseconds. auc_units "
              "(unit-axis methods) or auc_weights (param-axis methods) = test accuracy averaged over the "
              "kept-fraction grid; the two are not comparable.",
    "mcue": ("mcue/diagonal_variance: step = p = q in per mille; t_star is its argmax, keep_prob = d = 1 - t_star; "
             "t_star_READING is the argmax for each reading (correct, confidence, entropy, onehot); *_band_BAND and "
             "mcue_BAND.* are MCUE drawn within one band of layers (conv or fc units only, the rest kept)."),
    "train": "train/* and val/* metrics: step = epoch.",
}
PARENT_NOTE = ("One nested run per (pair, method, seed), named PAIR METHOD sN in abbreviations (the tags 'pair' and "
               "'method' say them in full; docs/tracking.md has the table). AUC mean and sd over seeds per pair and "
               "method: seed_variance.csv; the leaderboard: report/report.html.")


@dataclass
class SuiteOutcome:
    """What a suite invocation did."""

    parent_id: str
    planned: int
    skipped: int
    finished: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run label, error)
    seconds: float = 0.0


def suite_hash(suite: Suite, specs: list[RunSpec]) -> str:
    return config_hash({"suite": suite.name, "profile": suite.profile, "runs": sorted(s.config_hash for s in specs)})


def preflight_data(suite: Suite, *, data_dir: str | None, download: bool) -> None:
    """Loads every pair's data once, so missing data stops the suite before anything is written (the CLI calls
    this before it opens the store)."""
    from datasets.models import build_model
    from datasets.training import load_splits

    for name in suite.pairs:
        pair = suite.pair(name)
        splits = load_splits(pair, data_dir=data_dir, download=download)
        try:  # a model that cannot take this data (a NEUROGAME patch larger than its maps) stops here too
            build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                        **pair.model_options)
        except (ValueError, TypeError) as err:
            raise SuiteError(f"pair {name!r}: {err}") from None


def run_suite(suite: Suite, tracker: Tracker, *, device: str = "auto", data_dir: str | None = None,
              download: bool = False, progress: bool = True, scope: str = "full",
              on_parent: Callable[[str], None] | None = None, poll_seconds: float = 5.0,
              executor: Executor | None = None) -> SuiteOutcome:
    """Runs what the store does not hold yet, then logs the suite's aggregates on the parent run.

    Args:
        suite: a loaded (and possibly filtered) suite.
        tracker: the tracking store.
        device: "auto", "cpu", "cuda", ... (of the serial executor; Ray workers take the executor's).
        data_dir, download: where the data is, and whether torchvision may download it.
        progress: show the suite's progress bar.
        scope: "full" when the suite runs as written, "partial" when filters, seeds or tuned parameters changed
            it (``bench report`` prefers the newest full invocation).
        on_parent: called with the parent run id once it exists.
        poll_seconds: how often to look again at runs another process holds, once this one has nothing else to do.
        executor: where groups are computed (``bench.executors``); default: serially, in this process. It is
            closed on the way out.

    Returns:
        Counts of planned, skipped, finished and failed runs.
    """
    from tqdm.auto import tqdm

    from datasets.training import resolve_device

    start = time.perf_counter()
    executor = executor or SerialExecutor(device=device, data_dir=data_dir, download=download)
    try:
        torch_device = resolve_device(device if isinstance(executor, SerialExecutor) else "cpu")
        specs = plan(suite)
        stored = tracker.suite_runs(suite.name)
    except BaseException:
        executor.close()
        raise
    done = {s.config_hash for s in specs if any(r.status == "FINISHED" for r in stored.get(s.config_hash, []))}
    todo = [s for s in specs if s.config_hash not in done]
    commit = git_commit()
    common_tags = {"suite": suite.name, "profile": suite.profile, "git_commit": commit,
                   "device": device_name(torch_device), **source_tags("bench run", commit)}
    label = suite.profile if scope == "full" else f"{suite.profile}, {scope}"
    try:
        parent_id = tracker.open_parent(
            suite_hash=suite_hash(suite, specs), run_name=f"{suite.name} ({label})",
            tags={**common_tags, "scope": scope, "executor": executor.describe(), "mlflow.note.content": PARENT_NOTE},
            params={"suite": suite.name, "profile": suite.profile, "pairs": list(suite.pairs),
                    "seeds": list(suite.seeds), "methods": [e.name for e in suite.methods],
                    "fractions": list(suite.fractions), "step": suite.step, "mcue": suite.mcue, "recipe": suite.recipe,
                    "fine_tune_epochs": suite.fine_tune_epochs, "physical": suite.physical,
                    "val_samples": suite.val_samples},
            artifacts={"suite.json": suite.to_dict(),
                       "plan.json": [{"config_hash": s.config_hash, "kind": s.kind, "pair": s.pair,
                                      "method": s.method, "seed": s.seed} for s in specs]})
    except BaseException:
        executor.close()
        raise
    if on_parent:
        on_parent(parent_id)
    # Each run is claimed before it is computed (bench.claims), so another invocation on this store, with other
    # filters or on another machine, never computes it too; the leftovers of a killed invocation are deleted when
    # their run is claimed again, or at once where their run was finished before the kill.
    claims = Claims(tracker, suite=suite.name, parent_id=parent_id)
    claims.sweep()
    outcome = SuiteOutcome(parent_id, planned=len(specs), skipped=len(specs) - len(todo), finished=0)
    bar = tqdm(total=len(specs), initial=outcome.skipped, unit="run", disable=not progress, dynamic_ncols=True,
               desc=suite.name)
    driver = _Driver(suite, tracker, claims, parent_id, common_tags, outcome, bar, specs, data_dir)
    try:
        while todo:
            groups: dict[tuple[str, int], list[RunSpec]] = {}
            for spec in todo:
                groups.setdefault((spec.pair, spec.seed), []).append(spec)
            held: list[tuple[RunSpec, str]] = []
            for task, event in executor.run(driver.tasks(groups, held)):
                driver.consume(task, event)
            todo = [spec for spec, _ in held]
            if todo:  # runs another process is computing: wait for them, or take them over if it dies
                holders = sorted({holder for _, holder in held})
                bar.set_description(f"{suite.name}: waiting for {len(todo)} run(s) held by {', '.join(holders)}")
                time.sleep(poll_seconds)
        bar.set_description(f"{suite.name}: aggregating")
        metrics, artifacts = aggregates(load_frames(tracker, [s.config_hash for s in specs]))
        outcome.seconds = time.perf_counter() - start
        metrics.update(wall_seconds=outcome.seconds, n_failed=len(outcome.failed))
        tracker.close_parent(parent_id, status="FAILED" if outcome.failed else "FINISHED", metrics=metrics,
                             artifacts=artifacts)
    except BaseException:
        # Each clean-up on its own: the store error (or second signal) that brought us here must not leave the
        # parent RUNNING because stopping the workers or releasing the claims failed first.
        with contextlib.suppress(Exception):
            executor.close()
        with contextlib.suppress(Exception):
            claims.release_all()
        with contextlib.suppress(Exception):
            tracker.set_status(parent_id, "KILLED")
        raise
    finally:
        bar.close()
    executor.close()
    return outcome


class _Driver:
    """Claims each group's runs when an executor is ready for it, and writes each result as it arrives."""

    def __init__(self, suite: Suite, tracker: Tracker, claims: Claims, parent_id: str, common_tags: dict[str, str],
                 outcome: SuiteOutcome, bar: Any, specs: list[RunSpec], data_dir: str | None) -> None:
        self.suite, self.tracker, self.claims, self.parent_id = suite, tracker, claims, parent_id
        self.common_tags, self.outcome, self.bar, self.data_dir = common_tags, outcome, bar, data_dir
        self.by_hash = {s.config_hash: s for s in specs}
        self.methods = {}  # (pair, seed) -> its method runs, in plan order
        for spec in specs:
            if spec.kind == "method":
                self.methods.setdefault((spec.pair, spec.seed), []).append(spec)
        self.written: set[str] = set()  # config hashes this invocation wrote: a retried group's repeats are dropped
        self.open: dict[tuple[str, int], set[str]] = {}  # a group's claimed runs not yet written
        self.running: dict[tuple[str, int], Stage] = {}

    def tasks(self, groups: dict[tuple[str, int], list[RunSpec]],
              held: list[tuple[RunSpec, str]]) -> Iterator[GroupTask]:
        """Each group's claimed runs, claimed only when the executor asks for the group; runs another process holds
        go to ``held``."""
        wants_scores = any(entry.analysis.wants_scores for entry in self.suite.analyses)
        for (pair_name, seed), group in groups.items():
            states = {s.config_hash: self.claims.state(s.config_hash) for s in group}
            finished_elsewhere = sum(state == "finished" for state in states.values())  # by another process
            self.outcome.skipped += finished_elsewhere
            self.bar.update(finished_elsewhere)
            group = [s for s in group if states[s.config_hash] != "finished"]
            methods = self.methods.get((pair_name, seed), [])
            mine: list[RunSpec] = []
            for spec in sorted(group, key=lambda s: s.kind == "train"):
                if spec.kind == "train" and wants_scores and not self._scores_ready(methods, mine):
                    held.append((spec, "the methods it reads"))  # its analyses wait for every method's scores
                    continue
                if states[spec.config_hash] == "held":
                    held.append((spec, "another process"))
                    continue
                got = self.claims.acquire(spec.config_hash, run_name(spec))
                if got.state == "finished":
                    self.outcome.skipped += 1
                    self.bar.update(1)
                elif got.state == "held":
                    held.append((spec, got.holder))
                else:
                    mine.append(spec)
            if not mine:
                continue
            scores: dict[str, np.ndarray] = {}
            if wants_scores and any(s.kind == "train" for s in mine):  # scores of methods finished earlier
                stored = load_frames(self.tracker, [s.config_hash for s in methods
                                                    if s not in mine])["scores"]
                for method, rows in stored.groupby("method", sort=False):
                    scores[method] = rows.sort_values("unit")["score"].to_numpy(float)
            self.open[(pair_name, seed)] = {s.config_hash for s in mine}
            yield GroupTask(self.suite, pair_name, seed, tuple(mine), scores=scores,
                            method_order=tuple(s.method for s in methods))

    def _scores_ready(self, methods: list[RunSpec], mine: list[RunSpec]) -> bool:
        """Whether every method run of the group is finished, or computed in this task before the training run."""
        return all(s in mine or self.claims.state(s.config_hash) == "finished" for s in methods)

    def consume(self, task: GroupTask, event: Stage | RunResult | GroupFailed) -> None:
        if isinstance(event, Stage):
            self.running[task.key] = event
            self._show()
            return
        if isinstance(event, GroupFailed):  # its unwritten runs fail with the worker's cause; a rerun retries them
            for config_hash in sorted(self.open.pop(task.key, set())):
                self._write(RunResult(config_hash, error=event.error))
            self.running.pop(task.key, None)
            self._show()
            return
        if event.config_hash in self.written:
            return
        self._write(event)
        left = self.open.get(task.key, set())
        left.discard(event.config_hash)
        if not left:
            self.open.pop(task.key, None)
            self.running.pop(task.key, None)
            self._show()

    def _write(self, result: RunResult) -> None:
        spec = self.by_hash[result.config_hash]
        common = {**self.common_tags, **({"device": result.device} if result.device else {}),
                  **({"torch_threads": str(result.threads)} if result.threads else {})}
        if result.error is not None:
            _log_failure(self.tracker, self.parent_id, spec, common, result.error, self.outcome,
                         started=result.started)
        else:
            pair = self.suite.pair(spec.pair)
            splits = _data_splits(pair, result.split_rows, self.data_dir)
            # What each kind of run read: training all three splits, MCUE the validation split, a method the
            # validation split (its scores) and the test split (its curve); its headline numbers' split first.
            inputs = {"train": [splits["train"], splits["validation"], splits["test"]],
                      "mcue": [splits["validation"]], "method": [splits["test"], splits["validation"]]}
            params = flatten(spec.config)
            params.update({f"resolved.{k}": v for k, v in result.resolved.items()})
            self.tracker.log_run(parent_id=self.parent_id, run_name=run_name(spec),
                                 tags={**common, **_spec_tags(spec), "mlflow.note.content": RUN_NOTES[spec.kind]},
                                 params=params, metrics=result.metrics, step_metrics=result.steps,
                                 artifacts=result.artifacts, datasets=inputs[spec.kind], started=result.started,
                                 ended=result.ended)
            self.outcome.finished += 1
        self.written.add(result.config_hash)
        self.claims.release(result.config_hash)
        self.bar.update(1)

    def _show(self) -> None:
        stages = list(self.running.values())
        if len(stages) == 1 and stages[0].where == where():  # serial: what it is doing, as before
            self.bar.set_description(stages[0].text)
        elif stages:
            self.bar.set_description(f"{self.suite.name}: {len(stages)} running: "
                                     + "; ".join(f"{s.text} @{s.where}" for s in stages))


def _data_splits(pair: Any, rows: dict[str, int], data_dir: str | None) -> dict[str, DataSplit]:
    """The pair's train, validation and test splits as the runs' dataset inputs; a split's digest hashes what
    determines its examples (the dataset, its options, the split and its size)."""
    from datasets.paths import resolve_data_root

    root = str(resolve_data_root(data_dir))
    out = {}
    for split in ("train", "validation", "test"):
        identity = {"dataset": pair.dataset, "options": pair.dataset_options, "split": split, "rows": rows[split]}
        out[split] = DataSplit(dataset=pair.dataset, split=split, digest=config_hash(identity)[:8], source=root,
                               rows=rows[split])
    return out


def _spec_tags(spec: RunSpec) -> dict[str, str]:
    entry = spec.entry
    tags = {"kind": spec.kind, "pair": spec.pair, "method": spec.method, "seed": str(spec.seed),
            "config_hash": spec.config_hash}
    if entry is not None:
        tags.update({"scorer": entry.method, "family": entry.family, "strategy": entry.strategy,
                     "axis": entry.axis, "allocation": entry.allocation, "variant_of": entry.variant_of or entry.name})
    if spec.kind == "train":  # what a models leaderboard groups by
        tags.update({"model": spec.config["model"], "task": spec.config["task"]})
    return tags


def _log_failure(tracker: Tracker, parent_id: str, spec: RunSpec, common_tags: dict[str, str], message: str,
                 outcome: SuiteOutcome, *, started: float | None = None) -> None:
    outcome.failed.append((spec.label, message))
    tracker.log_run(parent_id=parent_id, run_name=run_name(spec), tags={**common_tags, **_spec_tags(spec),
                                                                       "error": message},
                    params=flatten(spec.config), metrics={}, status="FAILED", started=started)


# -- aggregates on the parent run -------------------------------------------------------------------------------


def aggregates(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, float], dict[str, Any]]:
    """Seed variance of the AUC and of each point, and rank correlations between methods, from stored results.

    Args:
        frames: ``bench.frames.load_frames`` of the suite's runs.

    Returns:
        Metrics for the parent run (``n_method_runs``, the finished method runs these aggregates are computed from;
        ``n_train_runs``) and its artifacts: ``seed_variance.csv`` (the AUC mean and sd per pair and method among them),
        ``models.csv`` (test accuracy mean and sd over seeds of each trained pair, when training runs are stored),
        ``rank_correlations.csv`` (means over seeds) and ``rank_correlations_per_seed.csv``. Per-method numbers are
        not parent metrics: as one MLflow column each, they buried the runs' own metrics in the UI.
    """
    runs, curves, scores = frames["runs"], frames["curves"], frames["scores"]
    metrics: dict[str, float] = {"n_method_runs": len(runs)}
    variance_rows = []
    for (pair, method), group in runs.groupby(["pair", "method"], sort=False):
        auc = seed_spread(group["auc"])
        at_d = seed_spread(group["accuracy_at_d"].dropna())
        variance_rows.append({"pair": pair, "method": method, "fraction": "auc", **auc})
        if at_d["n_seeds"]:
            variance_rows.append({"pair": pair, "method": method, "fraction": "d", **at_d})
        points = curves[(curves["pair"] == pair) & (curves["method"] == method) & ~curves["is_mcue_point"]]
        for fraction, at in points.groupby("target_fraction"):
            variance_rows.append({"pair": pair, "method": method, "fraction": float(fraction),
                                  **seed_spread(at["accuracy"])})
    correlation_rows = []
    for (pair, seed), group in scores.groupby(["pair", "seed"], sort=False):
        vectors: dict[str, np.ndarray] = {}
        for method, unit_scores in group.groupby("method", sort=False):
            values = unit_scores.sort_values("unit")["score"].to_numpy(float)
            if any(np.array_equal(values, v, equal_nan=True) for v in vectors.values()):
                continue  # the same scores as a method already in (e.g. Top-n and Iterated Pruning's first round)
            vectors[method] = values
        first = group[group["method"] == next(iter(vectors))].sort_values("unit")
        layers = {name: units["unit"].to_numpy() for name, units in first.groupby("layer", sort=False)}
        for record in rank_correlations(vectors, layers):
            correlation_rows.append({"pair": pair, "seed": seed, **record})
    correlations = pd.DataFrame(correlation_rows, columns=["pair", "seed", "layer", "method_a", "method_b",
                                                           "spearman", "kendall", "n_units"])
    mean_correlations = (correlations.groupby(["pair", "layer", "method_a", "method_b"], sort=False)
                         .agg(spearman=("spearman", "mean"), kendall=("kendall", "mean"),
                              n_seeds=("seed", "nunique"), n_units=("n_units", "first")).reset_index())
    artifacts = {"seed_variance.csv": pd.DataFrame(variance_rows), "rank_correlations.csv": mean_correlations,
                 "rank_correlations_per_seed.csv": correlations}
    models = frames.get("models")
    if models is not None and len(models):  # the trained networks themselves: test accuracy over seeds, per pair
        metrics["n_train_runs"] = len(models)
        artifacts["models.csv"] = pd.DataFrame([
            {"task": task, "pair": pair, "model": group["model"].iloc[0], **seed_spread(group["test_accuracy"]),
             "seconds_per_epoch": float(group["seconds_per_epoch"].mean())}
            for (task, pair), group in models.groupby(["task", "pair"], sort=False)])
    return metrics, artifacts
