"""The stored runs of a plan read back as DataFrames (what the report and the parent run's aggregates are built
from), and the tuned parameters of ``bench tune``'s studies. Reads through ``bench.tracking``; stores written by
earlier versions read the same (a metric's old name is read where it was renamed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.naming import stored_auc
from bench.tracking import Tracker, finished_runs
from reports.data import (
    ANALYSIS_KEY_COLUMNS,
    CLASS_COLUMNS,
    CURVE_COLUMNS,
    HISTORY_COLUMNS,
    LAYER_CURVE_COLUMNS,
    MCUE_BAND_COLUMNS,
    MCUE_COLUMNS,
    MCUE_READINGS,
    MCUE_RUN_COLUMNS,
    MODEL_COLUMNS,
    PREDICTION_COLUMNS,
    RUN_COLUMNS,
    SCORE_COLUMNS,
)


def load_frames(tracker: Tracker, hashes: Sequence[str]) -> dict[str, Any]:
    """The stored results of a plan's finished runs as DataFrames: runs, curves, layer_curves (attention heads
    pruned one layer at a time), scores, mcue, mcue_runs, histories (per-epoch learning curves), and analyses
    ("ANALYSIS/TABLE" -> the table over every pair and seed)."""
    runs, curves, scores, mcue, mcue_runs, histories, layer_curves = [], [], [], [], [], [], []
    models, classes, predictions = [], [], []
    glass_box: dict[tuple[str, int, str], bytes] = {}
    analyses: dict[str, list[pd.DataFrame]] = {}
    for run in finished_runs(tracker, hashes):
        tags, metrics, run_id = run.data.tags, run.data.metrics, run.info.run_id
        key = {"pair": tags["pair"], "seed": int(tags["seed"])}
        if tags["kind"] == "train":
            history = tracker.read_csv(run_id, "history.csv")
            if history is not None:
                histories.append(history.assign(**key))
            row = {"run_id": run_id, **key, "model": tags.get("model", ""), "task": tags.get("task", "")}
            for name in MODEL_COLUMNS[5:]:
                row[name] = metrics.get(name, math.nan)
            if math.isnan(row["test_accuracy"]):  # training runs logged before the classification report
                row["test_accuracy"] = metrics.get("trained_test_accuracy", math.nan)
            row.update({name: value for name, value in metrics.items() if name.startswith("neurogame/")})
            models.append(row)
            for name, into in (("classes.csv", classes), ("predictions.csv", predictions)):
                frame = tracker.read_csv(run_id, name)
                if frame is not None:
                    into.append(frame.assign(**key))
            for artifact in tracker.list_artifacts(run_id, "glass_box"):
                image = tracker.read_bytes(run_id, artifact)
                if image is not None:
                    glass_box[(key["pair"], key["seed"], Path(artifact).stem)] = image
            for name, tables in (tracker.read_json(run_id, "analyses.json") or {}).items():
                for table in tables:
                    frame = tracker.read_csv(run_id, f"analyses/{name}/{table}.csv")
                    if frame is not None:
                        analyses.setdefault(f"{name}/{table}", []).append(frame.assign(**key))
            continue
        if tags["kind"] == "mcue":
            output = run.data.params.get("mcue.output", "correct")
            # Every reading's t*; runs logged before the per-reading metrics still give the one that chose d.
            per_reading = {f"t_star_{name}": metrics.get(f"t_star_{name}", math.nan) for name in MCUE_READINGS}
            if f"t_star_{output}" not in metrics:
                per_reading[f"t_star_{output}"] = metrics.get("t_star", math.nan)
            mcue_runs.append({**key, "t_star": metrics.get("t_star"), "keep_prob": metrics.get("keep_prob"),
                              "output": output, "n_evaluations": metrics.get("n_evaluations"),
                              "seconds": metrics.get("seconds"), **per_reading,
                              **{name: metrics.get(name, math.nan) for name in MCUE_BAND_COLUMNS}})
            cells = tracker.read_csv(run_id, "mcue.csv")
            if cells is not None:
                mcue.append(cells.assign(**key))
            continue
        row = {"run_id": run_id, **key, "method": tags["method"], "scorer": tags.get("scorer", ""),
               "family": tags.get("family", ""),
               "strategy": tags.get("strategy", ""), "axis": tags.get("axis", "unit_fraction"),
               "allocation": tags.get("allocation", "global"), "variant_of": tags.get("variant_of", tags["method"])}
        row["auc"] = stored_auc(metrics)  # logged as auc_units or auc_weights (by axis), or as auc before that
        for name in ("accuracy_at_d", "keep_prob_d", "acc_at_2x_macs", "acc_at_4x_macs", "n_evaluations",
                     "n_forward", "n_backward", "seconds", "trained_test_accuracy"):
            row[name] = metrics.get(name, math.nan)
        runs.append(row)
        curve = tracker.read_csv(run_id, "curve.csv")
        if curve is not None:
            curves.append(curve.assign(run_id=run_id, pair=key["pair"], method=row["method"], seed=key["seed"]))
        per_layer = tracker.read_csv(run_id, "layer_curve.csv")
        if per_layer is not None:
            layer_curves.append(per_layer.assign(run_id=run_id, pair=key["pair"], method=row["method"],
                                                 seed=key["seed"]))
        unit_scores = tracker.read_csv(run_id, "scores.csv")
        if unit_scores is not None:
            scores.append(unit_scores.assign(run_id=run_id, pair=key["pair"], method=row["method"],
                                             scorer=row["scorer"], seed=key["seed"]))
    frames = {
        "runs": pd.DataFrame(runs, columns=list(RUN_COLUMNS)),
        "curves": _concat(curves, CURVE_COLUMNS),
        "scores": _concat(scores, SCORE_COLUMNS),
        "layer_curves": _concat(layer_curves, LAYER_CURVE_COLUMNS),
        "mcue": _concat(mcue, MCUE_COLUMNS),
        "mcue_runs": pd.DataFrame(mcue_runs, columns=list(MCUE_RUN_COLUMNS)),
        "histories": _concat(histories, HISTORY_COLUMNS),
        "models": _concat([pd.DataFrame(models)] if models else [], MODEL_COLUMNS),
        "classes": _concat(classes, CLASS_COLUMNS),
        "predictions": _concat(predictions, PREDICTION_COLUMNS),
        "glass_box": glass_box,
        "analyses": {name: _concat(parts, ANALYSIS_KEY_COLUMNS) for name, parts in analyses.items()},
    }
    frames["runs"]["n_evaluations"] = frames["runs"]["n_evaluations"].astype(float)
    frames["curves"]["is_mcue_point"] = frames["curves"]["is_mcue_point"].astype(bool)
    return frames


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=list(columns))
    out = pd.concat(frames, ignore_index=True)
    return out[[c for c in columns if c in out.columns] + [c for c in out.columns if c not in columns]]


def load_tuned(tracker: Tracker, suite: str, profile: str, pairs: Sequence[str],
               methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The best parameters of the newest finished study of each (pair, method) of a suite and profile:
    pair -> method -> params.

    ``bench tune`` logs them as ``best_params.json`` on the study's parent run.
    """
    tuned: dict[str, dict[str, Any]] = {}
    for run in tracker.runs(f"tags.kind = 'study' AND tags.suite = '{suite}' AND tags.profile = '{profile}'"):
        pair, method = run.tags.get("pair"), run.tags.get("method")
        if run.status != "FINISHED" or pair not in pairs or method not in methods or method in tuned.get(pair, {}):
            continue
        best = tracker.read_json(run.run_id, "best_params.json")
        if best and best.get("params"):
            tuned.setdefault(pair, {})[method] = best["params"]
    return tuned
