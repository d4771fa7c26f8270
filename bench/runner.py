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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import pipeline
from bench.claims import Acquired, Claims
from bench.frames import load_frames
from bench.naming import LATENCY_BATCHES, auc_metric, latency_metric, run_name
from bench.plan import RunSpec, config_hash, plan
from bench.streams import Stream, stream
from bench.suite import Suite, SuiteError
from bench.tracking import DataSplit, Tracker, flatten, git_commit, source_tags
from datasets.errors import one_line
from methods.analyses.base import AnalysisInput, rank_correlations, seed_spread
from methods.pruning.curves import MAC_REDUCTIONS, accuracy_at_mac_fraction, area_under_curve
from methods.scorers import UNIT_AXIS

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
              on_parent: Callable[[str], None] | None = None, poll_seconds: float = 5.0) -> SuiteOutcome:
    """Runs what the store does not hold yet, then logs the suite's aggregates on the parent run.

    Args:
        suite: a loaded (and possibly filtered) suite.
        tracker: the tracking store.
        device: "auto", "cpu", "cuda", ...
        data_dir, download: where the data is, and whether torchvision may download it.
        progress: show the suite's progress bar.
        scope: "full" when the suite runs as written, "partial" when filters, seeds or tuned parameters changed
            it (``bench report`` prefers the newest full invocation).
        on_parent: called with the parent run id once it exists.
        poll_seconds: how often to look again at runs another process holds, once this one has nothing else to do.

    Returns:
        Counts of planned, skipped, finished and failed runs.
    """
    from tqdm.auto import tqdm

    from datasets.training import resolve_device

    start = time.perf_counter()
    torch_device = resolve_device(device)
    specs = plan(suite)
    stored = tracker.suite_runs(suite.name)
    done = {s.config_hash for s in specs if any(r.status == "FINISHED" for r in stored.get(s.config_hash, []))}
    todo = [s for s in specs if s.config_hash not in done]
    commit = git_commit()
    common_tags = {"suite": suite.name, "profile": suite.profile, "git_commit": commit,
                   "device": _device_name(torch_device), **source_tags("bench run", commit)}
    label = suite.profile if scope == "full" else f"{suite.profile}, {scope}"
    parent_id = tracker.open_parent(
        suite_hash=suite_hash(suite, specs), run_name=f"{suite.name} ({label})",
        tags={**common_tags, "scope": scope, "mlflow.note.content": PARENT_NOTE},
        params={"suite": suite.name, "profile": suite.profile, "pairs": list(suite.pairs), "seeds": list(suite.seeds),
                "methods": [e.name for e in suite.methods], "fractions": list(suite.fractions), "step": suite.step,
                "mcue": suite.mcue, "recipe": suite.recipe, "fine_tune_epochs": suite.fine_tune_epochs,
                "physical": suite.physical, "val_samples": suite.val_samples},
        artifacts={"suite.json": suite.to_dict(),
                   "plan.json": [{"config_hash": s.config_hash, "kind": s.kind, "pair": s.pair, "method": s.method,
                                  "seed": s.seed} for s in specs]})
    if on_parent:
        on_parent(parent_id)
    # Each run is claimed before it is computed (bench.claims), so another invocation on this store, with other
    # filters or on another machine, never computes it too; the leftovers of a killed invocation are deleted when
    # their run is claimed again.
    claims = Claims(tracker, suite=suite.name, parent_id=parent_id)
    outcome = SuiteOutcome(parent_id, planned=len(specs), skipped=len(specs) - len(todo), finished=0)
    bar = tqdm(total=len(specs), initial=outcome.skipped, unit="run", disable=not progress, dynamic_ncols=True,
               desc=suite.name)
    try:
        while todo:
            groups: dict[tuple[str, int], list[RunSpec]] = {}
            for spec in todo:
                groups.setdefault((spec.pair, spec.seed), []).append(spec)
            held: list[tuple[RunSpec, str]] = []
            for (pair_name, seed), group in groups.items():
                method_hashes = [s.config_hash for s in specs
                                 if (s.pair, s.seed, s.kind) == (pair_name, seed, "method")]
                held += _run_group(suite, tracker, claims, parent_id, pair_name, seed, group, common_tags, outcome,
                                   bar, device=device, data_dir=data_dir, download=download,
                                   method_hashes=method_hashes)
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
        # parent RUNNING because releasing the claims failed first.
        with contextlib.suppress(Exception):
            claims.release_all()
        with contextlib.suppress(Exception):
            tracker.set_status(parent_id, "KILLED")
        raise
    finally:
        bar.close()
    return outcome


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _run_group(suite: Suite, tracker: Tracker, claims: Claims, parent_id: str, pair_name: str, seed: int,
               group: list[RunSpec], common_tags: dict[str, str], outcome: SuiteOutcome, bar: Any, *, device: str,
               data_dir: str | None, download: bool, method_hashes: list[str]) -> list[tuple[RunSpec, str]]:
    """All outstanding runs of one trained model: train or load it, MCUE, each method, then the training run.

    Returns:
        The runs another live process holds, with who holds them, to come back to.
    """
    from datasets.training import train_pair

    held: list[tuple[RunSpec, str]] = []
    states = {s.config_hash: claims.state(s.config_hash) for s in group}
    finished_elsewhere = sum(state == "finished" for state in states.values())  # by another process meanwhile
    outcome.skipped += finished_elsewhere
    bar.update(finished_elsewhere)
    group = [s for s in group if states[s.config_hash] != "finished"]
    wants_scores = any(entry.analysis.wants_scores for entry in suite.analyses)
    waiting = {s.config_hash for s in group if states[s.config_hash] == "held"}
    if wants_scores and any(s.kind == "method" and s.config_hash in waiting for s in group):
        waiting |= {s.config_hash for s in group if s.kind == "train"}  # its analyses wait for those scores
    if all(s.config_hash in waiting for s in group):
        return [(s, "another process") for s in group]  # nothing to train (or run MCUE) for in this pass
    pair = suite.pair(pair_name)
    bar.set_description(f"{pair_name} seed {seed}: training")
    began = time.time()
    try:
        trained = train_pair(pair, seed=seed, data_dir=data_dir, device=device, download=download, progress=False)
        # The neuron games are for methods, MCUE and analyses; a suite that compares trained models needs none.
        needs_games = bool(suite.methods or suite.analyses or suite.mcue is not None)
        problem = pipeline.problem_for(trained, val_samples=suite.val_samples) if needs_games else None
        test_game = pipeline.test_game_for(trained) if needs_games else None
        mcue_result, mcue_window, bands = None, (began, began), {}
        if suite.mcue is not None:
            bar.set_description(f"{pair_name} mcue seed {seed}")
            mcue_began = time.time()
            mcue_result = pipeline.run_mcue(problem, seed=seed, **suite.mcue)
            if suite.mcue.get("bands") and any(s.kind == "mcue" for s in group):  # only its own run logs them
                bands = pipeline.run_mcue_bands(problem, seed=seed, **suite.mcue)
            mcue_window = (mcue_began, time.time())
    except Exception as err:  # noqa: BLE001 - every run of this model fails with the same cause
        for spec in group:
            got = claims.acquire(spec.config_hash, run_name(spec))
            if got.state != "claimed":
                _count(got, spec, outcome, held, bar)
                continue
            _log_failure(tracker, parent_id, spec, common_tags, err, outcome)
            claims.release(spec.config_hash)
            bar.update(1)
        return held
    trained_metrics = {"trained_test_accuracy": trained.metrics["test_accuracy"],
                       "trained_val_accuracy": trained.metrics["val_accuracy"]}
    splits = _data_splits(pair, trained.splits, data_dir)
    # What each kind of run read: training all three splits, MCUE the validation split, a method the validation
    # split (its scores) and the test split (its curve); the split its headline numbers come from first.
    inputs = {"train": [splits["train"], splits["validation"], splits["test"]], "mcue": [splits["validation"]],
              "method": [splits["test"], splits["validation"]]}
    layers = {g.name: np.arange(g.players.start, g.players.stop) for g in problem.groups} if problem else {}
    latency_cache: dict = {}  # pruned-network shapes -> latency, shared by this trained network's runs
    for spec in sorted(group, key=lambda s: s.kind == "train"):  # the training run last: analyses read scores
        if spec.kind == "train" and wants_scores and any(s.kind == "method" for s, _ in held):
            held.append((spec, "the methods it reads"))  # its analyses wait for every method's scores
            continue
        got = claims.acquire(spec.config_hash, run_name(spec))
        if got.state != "claimed":
            _count(got, spec, outcome, held, bar)
            continue
        bar.set_description(f"{pair_name} {spec.method} seed {seed}")
        tags = {**common_tags, **_spec_tags(spec), "mlflow.note.content": RUN_NOTES[spec.kind]}
        params = flatten(spec.config)
        started = time.time()
        try:
            if spec.kind == "train":
                started = began
                metrics, steps, artifacts = _train_run(suite, trained, problem, mcue_result, tracker, method_hashes)
            elif spec.kind == "mcue":
                assert mcue_result is not None
                started = mcue_window[0]
                metrics = {"t_star": mcue_result.t_star, "keep_prob": mcue_result.keep_prob,
                           "n_evaluations": mcue_result.n_evaluations, "seconds": mcue_result.seconds,
                           **{f"t_star_{name}": mcue_result.t_star_of(name) for name in mcue_result.variance},
                           **trained_metrics}
                artifacts = {"mcue.csv": pd.DataFrame(mcue_result.to_records()),
                             "mcue.png": _mcue_plot(mcue_result, f"{pair_name}, seed {seed}")}
                steps = {"mcue/diagonal_variance": _diagonal_steps(mcue_result)}
                for band, result in bands.items():  # the same MCUE within one kind of layer (GTAP Fig. 6)
                    metrics.update({f"t_star_band_{band}": result.t_star, f"keep_prob_band_{band}": result.keep_prob,
                                    f"n_evaluations_band_{band}": result.n_evaluations,
                                    f"seconds_band_{band}": result.seconds, f"units_band_{band}": result.n_ablated})
                    artifacts[f"mcue_{band}.csv"] = pd.DataFrame(result.to_records())
                    artifacts[f"mcue_{band}.png"] = _mcue_plot(
                        result, f"{pair_name}, seed {seed}: {band} units only ({result.n_ablated})")
                    steps[f"mcue/diagonal_variance_{band}"] = _diagonal_steps(result)
            else:
                metrics, steps, artifacts = _method_run(suite, spec, trained, problem, test_game, mcue_result,
                                                        layers, latency_cache)
                metrics.update(trained_metrics)
                params.update({f"resolved.{k}": v for k, v in metrics.pop("_params").items()})
            ended = mcue_window[1] if spec.kind == "mcue" else time.time()
            tracker.log_run(parent_id=parent_id, run_name=run_name(spec), tags=tags, params=params, metrics=metrics,
                            step_metrics=steps, artifacts=artifacts, datasets=inputs[spec.kind], started=started,
                            ended=ended)
            outcome.finished += 1
        except Exception as err:  # noqa: BLE001 - one failed method must not stop the suite
            _log_failure(tracker, parent_id, spec, common_tags, err, outcome, started=started)
        claims.release(spec.config_hash)
        bar.update(1)
    return held


def _data_splits(pair: Any, splits: Any, data_dir: str | None) -> dict[str, DataSplit]:
    """The pair's train, validation and test splits as the runs' dataset inputs; a split's digest hashes what
    determines its examples (the dataset, its options, the split and its size)."""
    from datasets.paths import resolve_data_root

    root = str(resolve_data_root(data_dir))
    out = {}
    for split, data in (("train", splits.train), ("validation", splits.val), ("test", splits.test)):
        identity = {"dataset": pair.dataset, "options": pair.dataset_options, "split": split, "rows": len(data)}
        out[split] = DataSplit(dataset=pair.dataset, split=split, digest=config_hash(identity)[:8], source=root,
                               rows=len(data))
    return out


def _count(got: Acquired, spec: RunSpec, outcome: SuiteOutcome, held: list[tuple[RunSpec, str]], bar: Any) -> None:
    """Books a run this process did not claim: finished by another one meanwhile, or still held by it."""
    if got.state == "finished":
        outcome.skipped += 1
        bar.update(1)
    else:
        held.append((spec, got.holder))


def _train_run(suite: Suite, trained: Any, problem: Any, mcue_result: Any, tracker: Tracker,
               method_hashes: list[str]) -> tuple[dict[str, Any], dict[str, list], dict[str, Any]]:
    """The training run of a pair and seed: its learning curves, its test classification report (per-class
    precision, recall and F1, confusion matrix, predictions), NEUROGAME's glass-box maps, and the tables of the
    suite's analyses."""
    from datasets.training import initial_model

    history = pd.DataFrame(trained.metrics.get("history") or [])
    metrics: dict[str, Any] = {
        "trained_test_accuracy": trained.metrics["test_accuracy"],
        "trained_val_accuracy": trained.metrics["val_accuracy"],
        "train_seconds": trained.metrics.get("train_seconds", math.nan),
        "n_parameters": sum(p.numel() for p in trained.model.parameters()),
        "epochs_trained": len(history),
        "best_epoch": trained.metrics.get("best_epoch", len(history)),
    }
    steps: dict[str, list] = {}
    for column in history.columns:
        if column != "epoch":
            # train_loss -> train/loss, val_accuracy -> val/accuracy; the step is the epoch (1-based).
            name = column.replace("_", "/", 1) if column.startswith(("train_", "val_")) else f"epoch/{column}"
            steps[name] = list(zip(history["epoch"].astype(int), history[column], strict=True))
    if "seconds" in history:
        metrics["seconds_per_epoch"] = float(history["seconds"].mean())
    for column in history.columns:  # a family's per-epoch rates (NEUROGAME's pass fraction): their mean as well
        if "/" in column:
            metrics[column] = float(history[column].mean())
    artifacts: dict[str, Any] = {"history.csv": history}
    report, report_artifacts = _classification_outputs(trained)
    metrics.update(report)
    artifacts.update(report_artifacts)
    artifacts.update(_glass_box_outputs(trained))
    if not suite.analyses:
        return metrics, steps, artifacts
    scores: dict[str, np.ndarray] = {}
    if any(entry.analysis.wants_scores for entry in suite.analyses):
        stored = load_frames(tracker, method_hashes)["scores"]
        for method, rows in stored.groupby("method", sort=False):
            scores[method] = rows.sort_values("unit")["score"].to_numpy(float)
    splits = trained.splits
    data = AnalysisInput(
        model=trained.model,
        initial=initial_model(trained.pair, seed=trained.seed, input_shape=splits.input_shape,
                              num_classes=splits.num_classes).to(trained.device),
        units=tuple(trained.pair.units), groups=problem.groups, x=problem.x, y=problem.y, scores=scores,
        keep_prob=mcue_result.keep_prob if mcue_result is not None else None)
    index: dict[str, list[str]] = {}
    for entry in suite.analyses:
        result = entry.analysis(data, rng=stream(trained.seed, Stream.ANALYSIS))
        index[entry.name] = sorted(result.tables)
        for table, records in result.tables.items():
            artifacts[f"analyses/{entry.name}/{table}.csv"] = pd.DataFrame(records)
        metrics.update({f"{entry.name}/{name}": value for name, value in result.metrics.items()})
    artifacts["analyses.json"] = index
    return metrics, steps, artifacts


# Test faces shown in the glass-box maps: the first few of the test split, the same for every model and seed.
GLASS_BOX_EXAMPLES = 4


def _classification_outputs(trained: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Test-split metrics per class and overall (macro F1), the confusion matrix and the per-example predictions
    (which the report's paired comparison of two models reads)."""
    import re

    from datasets.training import classification_report, predict

    splits = trained.splits
    labels, predictions = predict(trained.model, splits.test, device=trained.device)
    records, confusion = classification_report(labels, predictions, tuple(splits.classes))
    metrics: dict[str, float] = {"test_accuracy": float((labels == predictions).mean()),
                                 "test_macro_f1": float(np.nanmean([r["f1"] for r in records]))}
    for record in records:
        name = re.sub(r"[^0-9A-Za-z_\-. ]", "_", str(record["class"]))  # MLflow's metric-name alphabet
        for measure in ("precision", "recall", "f1"):
            metrics[f"test/{measure}/{name}"] = record[measure]
    confusion_frame = pd.DataFrame(confusion, columns=list(splits.classes))
    confusion_frame.insert(0, "true", list(splits.classes))
    artifacts = {"classes.csv": pd.DataFrame(records), "confusion.csv": confusion_frame,
                 "predictions.csv": pd.DataFrame({"index": np.arange(len(labels)), "label": labels,
                                                  "prediction": predictions})}
    return metrics, artifacts


def _glass_box_outputs(trained: Any) -> dict[str, Any]:
    """PNGs of what each NEUROGAME layer did with a few fixed test faces (none for other models)."""
    import tempfile
    from pathlib import Path

    import torch

    from datasets.data import as_tensors
    from methods.neurogame import explain_model, game_layers
    from reports.plots import plot_glass_box

    stages = [name for name, _ in game_layers(trained.model)]
    if not stages:
        return {}
    shown = range(min(GLASS_BOX_EXAMPLES, len(trained.splits.test)))
    x, y = as_tensors(torch.utils.data.Subset(trained.splits.test, shown))
    artifacts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="coalition-bench-glass-box-") as tmp:
        for stage in stages:
            maps = explain_model(trained.model, x.to(trained.device), stage=stage)
            title = f"{trained.pair.name}, seed {trained.seed}, {stage}"
            path = plot_glass_box(x, [trained.splits.classes[int(label)] for label in y], maps,
                                  Path(tmp) / f"{stage}.png", title=title)
            artifacts[f"glass_box/{stage}.png"] = path.read_bytes()
    return artifacts


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


def _log_failure(tracker: Tracker, parent_id: str, spec: RunSpec, common_tags: dict[str, str], err: Exception,
                 outcome: SuiteOutcome, *, started: float | None = None) -> None:
    message = one_line(f"{type(err).__name__}: {err}", 500)
    outcome.failed.append((spec.label, message))
    tracker.log_run(parent_id=parent_id, run_name=run_name(spec), tags={**common_tags, **_spec_tags(spec),
                                                                       "error": message},
                    params=flatten(spec.config), metrics={}, status="FAILED", started=started)


def _diagonal_steps(result: Any) -> list[tuple[int, float]]:
    """MCUE's p = q diagonal as step metrics (step = p in per mille)."""
    return [(round(1000 * p), v) for p, v in zip(result.grid, result.diagonal, strict=True)]


def _mcue_plot(result: Any, title: str) -> bytes:
    import tempfile
    from pathlib import Path

    from reports.plots import plot_mcue

    cells = pd.DataFrame(result.to_records())
    with tempfile.TemporaryDirectory(prefix="coalition-bench-mcue-") as tmp:
        path = plot_mcue(cells, t_star=result.t_star, keep_prob=result.keep_prob, output=result.output,
                         path=Path(tmp) / "mcue.png", title=title)
        return path.read_bytes()


def _method_run(suite: Suite, spec: RunSpec, trained: Any, problem: Any, test_game: Any, mcue_result: Any,
                layers: dict[str, np.ndarray], latency_cache: dict | None = None,
                ) -> tuple[dict[str, Any], dict[str, list], dict[str, Any]]:
    entry = spec.entry
    assert entry is not None
    grid = list(suite.fractions)
    d = mcue_result.keep_prob if mcue_result is not None else None
    on_units = entry.axis == UNIT_AXIS
    fractions = sorted(set(grid) | ({d} if d is not None and on_units and d > 0 else set()))
    experiment: pipeline.Experiment = pipeline.run_experiment(
        trained, method=entry.method, params=entry.params, strategy=entry.strategy, fractions=fractions,
        seed=spec.seed, step=spec.config["step"], problem=problem, test_game=test_game, mcue_result=mcue_result,
        fine_tune_epochs=suite.fine_tune_epochs, allocation=entry.allocation,
        physical=bool(spec.config.get("physical")), latency_cache=latency_cache)
    curve = pd.DataFrame([p.as_dict() for p in experiment.points])
    curve["is_mcue_point"] = [bool(d is not None and on_units and math.isclose(f, d) and
                                   not any(math.isclose(f, g) for g in grid)) for f in curve["target_fraction"]]
    on_grid = [p for p in experiment.points if any(math.isclose(p.target_fraction, g) for g in grid)]
    at_d = [p.accuracy for p in experiment.points if d is not None and on_units and math.isclose(p.target_fraction, d)]
    metrics: dict[str, Any] = {
        auc_metric(entry.axis): area_under_curve(on_grid, axis=entry.axis),
        "accuracy_at_d": at_d[0] if at_d else math.nan,
        "keep_prob_d": d if d is not None else math.nan,
        "n_evaluations": max(p.n_evaluations for p in experiment.points),
        **{f"acc_at_{r}x_macs": accuracy_at_mac_fraction(experiment.points, 1 / r) for r in MAC_REDUCTIONS
           if spec.config.get("physical")},
        "n_forward": max(p.n_forward for p in experiment.points),
        "n_backward": max(p.n_backward for p in experiment.points),
        "seconds": experiment.seconds,
        "_params": {k: v for k, v in experiment.params.items() if k not in entry.params},
    }
    physical = bool(spec.config.get("physical"))
    steps = {
        f"curve/{name}": [(round(1000 * p.target_fraction), getattr(p, name)) for p in experiment.points]
        for name in ("accuracy", "unit_fraction", "param_fraction", "n_evaluations", "seconds",
                     *(("mac_fraction",) if physical else ()))
    }
    for batch in LATENCY_BATCHES if physical else ():  # seconds in curve.csv, milliseconds as metrics
        steps[latency_metric(batch)] = [(round(1000 * p.target_fraction), 1000 * getattr(p, f"latency_b{batch}"))
                                        for p in experiment.points]
    artifacts: dict[str, Any] = {"curve.csv": curve}
    if experiment.path is not None and experiment.path.first_scores is not None:
        unit_layer = np.empty(problem.n_units, dtype=object)
        position = np.empty(problem.n_units, dtype=int)
        for name, units in layers.items():
            unit_layer[units] = name
            position[units] = np.arange(len(units))
        artifacts["scores.csv"] = pd.DataFrame({"unit": np.arange(problem.n_units), "layer": unit_layer,
                                                "position": position, "score": experiment.path.first_scores})
    return metrics, steps, artifacts


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
