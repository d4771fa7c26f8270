"""The input of a report: one suite's stored results as DataFrames (filled by bench/tracking, never by reports/).

The axis names (``UNIT_AXIS``, ``PARAM_AXIS``) and MCUE's readings (``MCUE_READINGS``) are the declarations of
``methods``, imported from there so that a store, its columns and the methods that filled it cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from methods.games.mcue import BANDS
from methods.games.mcue import OUTPUTS as MCUE_READINGS
from methods.scorers.base import PARAM_AXIS, UNIT_AXIS  # noqa: F401  (UNIT_AXIS: importable here beside PARAM_AXIS)

RUN_COLUMNS = (
    "run_id", "pair", "method", "scorer", "family", "strategy", "seed", "axis", "allocation", "variant_of", "auc",
    "accuracy_at_d", "keep_prob_d", "acc_at_2x_macs", "acc_at_4x_macs", "n_evaluations", "n_forward", "n_backward",
    "seconds", "trained_test_accuracy",
)
CURVE_COLUMNS = (
    "run_id", "pair", "method", "seed", "target_fraction", "units_kept", "unit_fraction", "param_fraction",
    "accuracy", "n_evaluations", "seconds", "is_mcue_point", "n_forward", "n_backward", "params", "macs",
    "mac_fraction", "latency_b1", "latency_b256",
)
SCORE_COLUMNS = ("run_id", "pair", "method", "scorer", "seed", "unit", "layer", "position", "score")
# Pairs whose players are attention heads: test accuracy with one layer's heads pruned in the method's order.
LAYER_CURVE_COLUMNS = ("run_id", "pair", "method", "seed", "layer", "units_kept", "size", "accuracy")
# MCUE_READINGS: MCUE's readings of the network's output, in its order; var_<reading> holds each one's heatmap (for
# "entropy" the mean entropy, not a variance) and t_star_<reading> its t*, whichever reading chose d.
MCUE_COLUMNS = ("pair", "seed", "p", "q", *(f"{kind}_{name}" for name in MCUE_READINGS for kind in ("var", "mean")))
# t_star_band_<band>, keep_prob_band_<band>: MCUE drawn within one band of layers (``methods.games.mcue.BANDS``).
MCUE_BAND_COLUMNS = tuple(f"{kind}_band_{band}" for band in BANDS for kind in ("t_star", "keep_prob"))
MCUE_RUN_COLUMNS = ("pair", "seed", "t_star", "keep_prob", "output", "n_evaluations", "seconds",
                    *(f"t_star_{name}" for name in MCUE_READINGS), *MCUE_BAND_COLUMNS)
CORRELATION_COLUMNS = ("pair", "layer", "method_a", "method_b", "spearman", "kendall", "n_seeds")
HISTORY_COLUMNS = ("pair", "seed", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")
# One row per training run: the trained network itself (a models leaderboard compares these per task).
MODEL_COLUMNS = (
    "run_id", "pair", "seed", "model", "task", "test_accuracy", "test_macro_f1", "trained_val_accuracy",
    "n_parameters", "seconds_per_epoch", "train_seconds", "epochs_trained", "best_epoch",
)
CLASS_COLUMNS = ("pair", "seed", "class", "index", "support", "precision", "recall", "f1")
PREDICTION_COLUMNS = ("pair", "seed", "index", "label", "prediction")
ANALYSIS_KEY_COLUMNS = ("pair", "seed")  # the first columns of every analysis table; the rest is the analysis's own

# Columns later versions added, with the value a store written before them implies (None: the method's name).
OPTIONAL_COLUMNS = {
    "runs": {"allocation": "global", "variant_of": None, "acc_at_2x_macs": float("nan"),
             "acc_at_4x_macs": float("nan"), "n_forward": float("nan"), "n_backward": float("nan")},
    "curves": {name: float("nan") for name in ("n_forward", "n_backward", "params", "macs", "mac_fraction",
                                               "latency_b1", "latency_b256")},
    "mcue": {f"{kind}_{name}": float("nan") for name in ("entropy", "onehot") for kind in ("var", "mean")},
    "mcue_runs": {f"t_star_{name}": float("nan") for name in MCUE_READINGS} | dict.fromkeys(MCUE_BAND_COLUMNS,
                                                                                           float("nan")),
}

FRAME_COLUMNS = {
    "runs": RUN_COLUMNS,
    "curves": CURVE_COLUMNS,
    "scores": SCORE_COLUMNS,
    "layer_curves": LAYER_CURVE_COLUMNS,
    "mcue": MCUE_COLUMNS,
    "mcue_runs": MCUE_RUN_COLUMNS,
    "correlations": CORRELATION_COLUMNS,
    "histories": HISTORY_COLUMNS,
    "models": MODEL_COLUMNS,
    "classes": CLASS_COLUMNS,
    "predictions": PREDICTION_COLUMNS,
}

class ReportError(Exception):
    """There is nothing to report (e.g. no finished runs in the store); the message says what to run."""


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """A DataFrame with the given columns and no rows.

    Args:
        columns: the column names.

    Returns:
        An empty DataFrame.
    """
    return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})


@dataclass(frozen=True)
class SuiteData:
    """The stored results of one benchmark suite, one DataFrame per kind of record.

    Attributes:
        suite: the suite's name, e.g. "lenet".
        profile: the suite profile that ran, e.g. "default".
        parent_run_id: the MLflow parent run of the suite, if any.
        fractions: the suite's fixed kept-fraction grid, e.g. [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0].
        runs: one row per finished method run (columns ``RUN_COLUMNS``); ``family`` is the family the scorer
            declares ("power-index", "magnitude", ...), missing or empty in stores written before scorers declared
            one (see :func:`reports.tables.method_families`).
        curves: one row per point of each run's compression curve (``CURVE_COLUMNS``).
        scores: one row per unit per run, the unit scores (``SCORE_COLUMNS``).
        layer_curves: for pairs whose players are attention heads, the test accuracy of each layer pruned alone in
            each method's order (``LAYER_CURVE_COLUMNS``; ``methods.pruning.curves.layer_curves``).
        mcue: MCUE heatmap cells, one per (pair, seed, p, q) (``MCUE_COLUMNS``).
        mcue_runs: one row per (pair, seed) MCUE run (``MCUE_RUN_COLUMNS``).
        correlations: rank correlations between methods' unit scores per pair and layer (``CORRELATION_COLUMNS``).
        histories: per-epoch learning curves of every trained pair and seed (``HISTORY_COLUMNS``, plus a
            training family's own per-epoch metrics).
        analyses: "ANALYSIS/TABLE" -> that table of a registered analysis over every pair and seed (pair and seed
            first, then the analysis's own columns). Reports render them without knowing the analysis.
        models: one row per training run (``MODEL_COLUMNS``, plus a training family's rates such as
            ``neurogame/pass_fraction/game1``): the trained network's test accuracy, macro F1, size and cost.
        classes: per-class test precision, recall and F1 of every trained network (``CLASS_COLUMNS``).
        predictions: every trained network's test-split predictions (``PREDICTION_COLUMNS``), for paired tests.
        glass_box: (pair, seed, stage) -> PNG bytes of NEUROGAME's glass-box maps.
    """

    suite: str
    profile: str
    parent_run_id: str | None
    fractions: list[float]
    runs: pd.DataFrame = field(default_factory=lambda: empty_frame(RUN_COLUMNS))
    curves: pd.DataFrame = field(default_factory=lambda: empty_frame(CURVE_COLUMNS))
    scores: pd.DataFrame = field(default_factory=lambda: empty_frame(SCORE_COLUMNS))
    layer_curves: pd.DataFrame = field(default_factory=lambda: empty_frame(LAYER_CURVE_COLUMNS))
    mcue: pd.DataFrame = field(default_factory=lambda: empty_frame(MCUE_COLUMNS))
    mcue_runs: pd.DataFrame = field(default_factory=lambda: empty_frame(MCUE_RUN_COLUMNS))
    correlations: pd.DataFrame = field(default_factory=lambda: empty_frame(CORRELATION_COLUMNS))
    histories: pd.DataFrame = field(default_factory=lambda: empty_frame(HISTORY_COLUMNS))
    analyses: dict[str, pd.DataFrame] = field(default_factory=dict)
    models: pd.DataFrame = field(default_factory=lambda: empty_frame(MODEL_COLUMNS))
    classes: pd.DataFrame = field(default_factory=lambda: empty_frame(CLASS_COLUMNS))
    predictions: pd.DataFrame = field(default_factory=lambda: empty_frame(PREDICTION_COLUMNS))
    glass_box: dict[tuple[str, int, str], bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, defaults in OPTIONAL_COLUMNS.items():
            frame = getattr(self, name)
            absent = {column: (frame["method"] if value is None and "method" in frame else value)
                      for column, value in defaults.items() if column not in frame.columns}
            if absent:
                object.__setattr__(self, name, frame.assign(**absent))
        for name, columns in FRAME_COLUMNS.items():
            missing = [column for column in columns if column not in getattr(self, name).columns]
            if missing:
                raise ValueError(f"SuiteData.{name} lacks columns {missing}")
        for name, table in self.analyses.items():
            missing = [column for column in ANALYSIS_KEY_COLUMNS if column not in table.columns]
            if name.count("/") != 1 or missing:
                raise ValueError(f"SuiteData.analyses[{name!r}]: keys are 'ANALYSIS/TABLE' and tables start with "
                                 f"{list(ANALYSIS_KEY_COLUMNS)}")

    @classmethod
    def empty(cls, suite: str, profile: str, fractions: list[float] | None = None) -> SuiteData:
        """A suite with no stored results (every frame has its columns and no rows).

        Args:
            suite: the suite's name.
            profile: the profile's name.
            fractions: the kept-fraction grid, empty if not given.

        Returns:
            An empty SuiteData.
        """
        return cls(suite=suite, profile=profile, parent_run_id=None, fractions=list(fractions or []))

    @property
    def pairs(self) -> list[str]:
        """The model/dataset pairs with finished runs, in the order they first appear in ``runs``."""
        return list(dict.fromkeys(self.runs["pair"]))


def require_runs(data: SuiteData) -> None:
    """Raise ReportError when the suite has no finished runs (neither method runs nor trained models).

    Args:
        data: the suite's results.

    Raises:
        ReportError: with a one-line message naming the command that fills the store.
    """
    if data.runs.empty and data.models.empty:
        command = f"python -m bench run --suite {data.suite}"
        raise ReportError(f"no finished runs for suite '{data.suite}' in the store; run `{command}` first")
