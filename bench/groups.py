"""The work of one trained model, free of any store: train (or load) a pair and seed, run MCUE, each method, then
the training run, and yield each run's result as it is ready.

``bench.runner`` claims the runs, hands a group to an executor (``bench.executors``: in this process, or on a Ray
worker) and writes every result itself, so a worker needs neither MLflow nor the store, and a retried group can
only ever yield results the driver has already deduplicated by config hash. The same function computes a group in
both places, which is why a parallel suite gives the serial suite's numbers.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import pipeline
from bench.naming import LATENCY_BATCHES, auc_metric, latency_metric
from bench.plan import RunSpec
from bench.streams import Stream, stream
from bench.suite import Suite
from methods.analyses.base import AnalysisInput
from methods.pruning.curves import MAC_REDUCTIONS, accuracy_at_mac_fraction, area_under_curve, layer_curves
from methods.scorers import UNIT_AXIS


@dataclass(frozen=True)
class GroupTask:
    """The runs of one (pair, seed) that this invocation holds, and what they read from earlier runs.

    Attributes:
        specs: the runs to compute (the training run, if any, is computed last).
        scores: unit scores of the pair and seed's methods that finished earlier, by method name, for analyses that
            read scores (the group's own methods add theirs as they finish).
        method_order: every method of the pair and seed in plan order (the order analyses see the scores in).
    """

    suite: Suite
    pair: str
    seed: int
    specs: tuple[RunSpec, ...]
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    method_order: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        return self.pair, self.seed


@dataclass(frozen=True)
class Stage:
    """What a group is doing now, and where (host:pid), for the progress bar."""

    text: str
    where: str


@dataclass(frozen=True)
class RunResult:
    """One computed run, ready to be written: everything but the tags and params the driver derives from its spec.

    ``error`` is set (and the rest empty) when the run failed.
    """

    config_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, list] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)  # parameters the method resolved (logged as resolved.*)
    split_rows: dict[str, int] = field(default_factory=dict)  # rows of train, validation and test
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    device: str = ""
    threads: int = 0  # torch's intra-op threads: float results can depend on them (see docs/scaling.md)


def where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def device_name(device: Any) -> str:
    """A device as the runs' ``device`` tag says it: "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def compute_group(task: GroupTask, *, device: str, data_dir: str | None, download: bool,
                  ) -> Iterator[Stage | RunResult]:
    """Computes one group's runs in order, yielding a ``Stage`` before each step and a ``RunResult`` per run.

    A failure to train (or to run MCUE) fails every run of the group with that cause; a failed method fails only
    its own run.
    """
    from datasets.errors import one_line
    from datasets.training import train_pair

    suite, pair_name, seed = task.suite, task.pair, task.seed
    here = where()
    pair = suite.pair(pair_name)
    yield Stage(f"{pair_name} s{seed} training", here)
    began = time.time()
    try:
        trained = train_pair(pair, seed=seed, data_dir=data_dir, device=device, download=download, progress=False)
        # The neuron games are for methods, MCUE and analyses; a suite that compares trained models needs none.
        needs_games = bool(suite.methods or suite.analyses or suite.mcue is not None)
        problem = pipeline.problem_for(trained, val_samples=suite.val_samples) if needs_games else None
        test_game = pipeline.test_game_for(trained) if needs_games else None
        mcue_result, mcue_window, bands = None, (began, began), {}
        if suite.mcue is not None:
            yield Stage(f"{pair_name} s{seed} mcue", here)
            mcue_began = time.time()
            mcue_result = pipeline.run_mcue(problem, seed=seed, **suite.mcue)
            if suite.mcue.get("bands") and any(s.kind == "mcue" for s in task.specs):  # only its own run logs them
                bands = pipeline.run_mcue_bands(problem, seed=seed, **suite.mcue)
            mcue_window = (mcue_began, time.time())
    except Exception as err:  # noqa: BLE001 - every run of this model fails with the same cause
        message = one_line(f"{type(err).__name__}: {err}", 500)
        for spec in task.specs:
            yield RunResult(spec.config_hash, error=message, started=began)
        return
    import torch

    ran_on, threads = device_name(trained.device), torch.get_num_threads()
    trained_metrics = {"trained_test_accuracy": trained.metrics["test_accuracy"],
                       "trained_val_accuracy": trained.metrics["val_accuracy"]}
    split_rows = {"train": len(trained.splits.train), "validation": len(trained.splits.val),
                  "test": len(trained.splits.test)}
    layers = {g.name: np.arange(g.players.start, g.players.stop) for g in problem.groups} if problem else {}
    latency_cache: dict = {}  # pruned-network shapes -> latency, shared by this trained network's runs
    layer_cache: dict = {}  # coalition -> test accuracy of the per-layer head curves, shared the same way
    scores = dict(task.scores)
    for spec in sorted(task.specs, key=lambda s: s.kind == "train"):  # the training run last: analyses read scores
        yield Stage(f"{pair_name} s{seed} {spec.method}", here)
        started = time.time()
        resolved: dict[str, Any] = {}
        try:
            if spec.kind == "train":
                started = began
                ordered = {m: scores[m] for m in task.method_order if m in scores}
                metrics, steps, artifacts = _train_run(suite, trained, problem, mcue_result, ordered)
            elif spec.kind == "mcue":
                assert mcue_result is not None
                started = mcue_window[0]
                metrics, steps, artifacts = _mcue_run(mcue_result, bands, f"{pair_name}, seed {seed}")
                metrics.update(trained_metrics)
            else:
                metrics, steps, artifacts = _method_run(suite, spec, trained, problem, test_game, mcue_result,
                                                        layers, latency_cache, layer_cache)
                metrics.update(trained_metrics)
                resolved = metrics.pop("_params")
                if "scores.csv" in artifacts:
                    scores[spec.method] = artifacts["scores.csv"]["score"].to_numpy(float)
            ended = mcue_window[1] if spec.kind == "mcue" else time.time()
            yield RunResult(spec.config_hash, metrics=metrics, steps=steps, artifacts=artifacts, resolved=resolved,
                            split_rows=split_rows, started=started, ended=ended, device=ran_on,
                            threads=threads)
        except Exception as err:  # noqa: BLE001 - one failed method must not stop the suite
            yield RunResult(spec.config_hash, error=one_line(f"{type(err).__name__}: {err}", 500), started=started,
                            device=ran_on, threads=threads)


def _mcue_run(mcue_result: Any, bands: dict[str, Any], title: str,
              ) -> tuple[dict[str, Any], dict[str, list], dict[str, Any]]:
    metrics: dict[str, Any] = {
        "t_star": mcue_result.t_star, "keep_prob": mcue_result.keep_prob,
        "n_evaluations": mcue_result.n_evaluations, "seconds": mcue_result.seconds,
        **{f"t_star_{name}": mcue_result.t_star_of(name) for name in mcue_result.variance}}
    artifacts: dict[str, Any] = {"mcue.csv": pd.DataFrame(mcue_result.to_records()),
                                 "mcue.png": _mcue_plot(mcue_result, title)}
    steps = {"mcue/diagonal_variance": _diagonal_steps(mcue_result)}
    for band, result in bands.items():  # the same MCUE within one kind of layer (GTAP Fig. 6)
        metrics.update({f"t_star_band_{band}": result.t_star, f"keep_prob_band_{band}": result.keep_prob,
                        f"n_evaluations_band_{band}": result.n_evaluations,
                        f"seconds_band_{band}": result.seconds, f"units_band_{band}": result.n_ablated})
        artifacts[f"mcue_{band}.csv"] = pd.DataFrame(result.to_records())
        artifacts[f"mcue_{band}.png"] = _mcue_plot(result, f"{title}: {band} units only ({result.n_ablated})")
        steps[f"mcue/diagonal_variance_{band}"] = _diagonal_steps(result)
    return metrics, steps, artifacts


def _train_run(suite: Suite, trained: Any, problem: Any, mcue_result: Any, scores: dict[str, np.ndarray],
               ) -> tuple[dict[str, Any], dict[str, list], dict[str, Any]]:
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
                layers: dict[str, np.ndarray], latency_cache: dict | None = None, layer_cache: dict | None = None,
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
        if on_units and any(g.heads for g in problem.groups):  # a few heads per layer: each layer pruned alone
            artifacts["layer_curve.csv"] = pd.DataFrame(layer_curves(
                experiment.path.first_scores, problem.groups, test_game, [g for g in problem.groups if g.heads],
                cache=layer_cache))
    return metrics, steps, artifacts
