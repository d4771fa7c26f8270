"""Tables behind the report's plots: pure functions from a suite's DataFrames to smaller DataFrames (no drawing).

:mod:`reports.plots` draws these; tests check their numbers without looking at pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.data import PARAM_AXIS, SuiteData
from reports.leaderboard import sample_sd

TOP_N = "top-n"
POWER_INDEX_FAMILY = "power-index"
MAGNITUDE_FAMILY = "magnitude"
# Runs stored before scorers declared a family carry only the scorer's name; these are the scorers of that time.
# Only method_families reads this: nothing else in reports/ decides what a method is from its scorer's name.
SCORER_FAMILIES = {
    "gtap": POWER_INDEX_FAMILY,
    "wmp": MAGNITUDE_FAMILY,
    "wgmp": "gradient",
    "taylor": "gradient",
    "activation": "activation",
    "random": "random",
}


def method_families(runs: pd.DataFrame) -> pd.Series:
    """The method family of each run: its declared ``family``, else one inferred from its scorer.

    Families are e.g. "power-index" (GTAP), "magnitude" (WMP), "gradient", "activation", "random", "attribution".
    A run stored before runs declared a family (no ``family`` column, or a missing or empty value) gets the family
    of its scorer from ``SCORER_FAMILIES``; an unknown scorer gets "".

    Args:
        runs: rows with a ``scorer`` column and, from stores that record it, a ``family`` column.

    Returns:
        A string Series aligned with ``runs``.
    """
    declared = runs["family"] if "family" in runs.columns else pd.Series(pd.NA, index=runs.index, dtype=object)
    declared = declared.astype("string").str.strip().replace("", pd.NA)
    inferred = runs["scorer"].map(SCORER_FAMILIES)
    return declared.fillna(inferred).fillna("").astype(str)


def method_table(data: SuiteData, pair: str) -> pd.DataFrame:
    """The methods of one pair with their scorer, family, strategy and axis (first run of each method).

    Args:
        data: the suite's results.
        pair: the pair.

    Returns:
        Columns method, scorer, family (see :func:`method_families`), strategy, axis; one row per method in order of
        appearance.
    """
    runs = data.runs[data.runs["pair"] == pair]
    runs = runs.assign(family=method_families(runs))
    return runs.drop_duplicates("method")[["method", "scorer", "family", "strategy", "axis"]].reset_index(drop=True)


def mean_keep_prob(data: SuiteData, pair: str) -> float:
    """MCUE's d for a pair, averaged over seeds (from mcue_runs, else from the runs' keep_prob_d).

    Args:
        data: the suite's results.
        pair: the pair.

    Returns:
        The mean d, NaN if none is stored.
    """
    stored = pd.to_numeric(data.mcue_runs.loc[data.mcue_runs["pair"] == pair, "keep_prob"], errors="coerce").dropna()
    if stored.empty:
        stored = pd.to_numeric(data.runs.loc[data.runs["pair"] == pair, "keep_prob_d"], errors="coerce").dropna()
    return float(stored.mean()) if len(stored) else float("nan")


def curve_summary(data: SuiteData, pair: str) -> pd.DataFrame:
    """Each method's compression curve of one pair, mean and sample sd over seeds at each grid fraction.

    The x value is the method's own axis (kept units, or kept parameters for param-axis methods), averaged over
    seeds. MCUE's extra points at d are summarised separately (is_mcue_point True, grouped per method).

    Args:
        data: the suite's results.
        pair: the pair.

    Returns:
        Columns method, is_mcue_point, target_fraction, x, accuracy_mean, accuracy_sd, n_seeds.
    """
    methods = method_table(data, pair)
    curves = data.curves[data.curves["pair"] == pair].merge(methods[["method", "axis"]], on="method", how="inner")
    if curves.empty:
        return pd.DataFrame(
            columns=["method", "is_mcue_point", "target_fraction", "x", "accuracy_mean", "accuracy_sd", "n_seeds"]
        )
    curves = curves.assign(
        x=np.where(curves["axis"] == PARAM_AXIS, curves["param_fraction"], curves["unit_fraction"]).astype(float),
        accuracy=pd.to_numeric(curves["accuracy"], errors="coerce"),
        is_mcue_point=curves["is_mcue_point"].fillna(False).astype(bool),
        # MCUE points of different seeds sit at different d; group them together.
        target_fraction=np.where(curves["is_mcue_point"].fillna(False).astype(bool), -1.0, curves["target_fraction"]),
    )
    per_seed = curves.groupby(["method", "is_mcue_point", "target_fraction", "seed"], as_index=False, sort=False)[
        ["x", "accuracy"]
    ].mean()
    grouped = per_seed.groupby(["method", "is_mcue_point", "target_fraction"], sort=False)
    summary = grouped.agg(x=("x", "mean"), accuracy_mean=("accuracy", "mean"), n_seeds=("seed", "nunique"))
    summary["accuracy_sd"] = grouped["accuracy"].agg(sample_sd)
    return summary.reset_index().sort_values(["method", "x"]).reset_index(drop=True)


def accuracy_sd_matrix(data: SuiteData, pair: str) -> pd.DataFrame:
    """Sample sd over seeds of each method's test accuracy at each fraction of the fixed grid.

    Args:
        data: the suite's results.
        pair: the pair.

    Returns:
        A method x target_fraction DataFrame (methods in order of appearance).
    """
    summary = curve_summary(data, pair)
    summary = summary[~summary["is_mcue_point"]]
    if summary.empty:
        return pd.DataFrame()
    matrix = summary.pivot_table(index="method", columns="target_fraction", values="accuracy_sd", dropna=False)
    order = [method for method in method_table(data, pair)["method"] if method in matrix.index]
    return matrix.loc[order]


def mcue_matrix(cells: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """The MCUE cells of one (pair, seed) as a p x q matrix (rows p ascending, columns q ascending).

    Args:
        cells: rows with columns p, q and ``value_column``; duplicate (p, q) cells are averaged.
        value_column: e.g. "var_correct".

    Returns:
        A DataFrame indexed by p with one column per q.
    """
    numeric = cells[["p", "q", value_column]].apply(pd.to_numeric, errors="coerce")
    matrix = numeric.pivot_table(index="p", columns="q", values=value_column, aggfunc="mean")
    return matrix.sort_index().sort_index(axis=1)


def correlation_matrix(correlations: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """A symmetric method x method matrix from pairwise correlation rows (1 on the diagonal).

    Args:
        correlations: rows of one pair and layer with method_a, method_b and ``value_column``.
        value_column: "spearman" or "kendall".

    Returns:
        A square DataFrame indexed and columned by method (sorted); NaN where a pair of methods has no row.
    """
    methods = sorted(set(correlations["method_a"]) | set(correlations["method_b"]))
    matrix = pd.DataFrame(np.nan, index=methods, columns=methods)
    for method_a, method_b, value in correlations[["method_a", "method_b", value_column]].itertuples(index=False):
        matrix.loc[method_a, method_b] = value
        matrix.loc[method_b, method_a] = value
    for method in methods:
        matrix.loc[method, method] = 1.0
    return matrix


def index_vs_magnitude_table(data: SuiteData, pair: str) -> tuple[str | None, pd.DataFrame]:
    """Power-index Top-n scores joined to the weight-magnitude scores of the same (seed, unit), with within-layer ranks.

    The power-index entries are the methods of family "power-index" with strategy Top-n; the magnitude entry is the
    first method of family "magnitude", a Top-n one if there is one.

    Args:
        data: the suite's results.
        pair: the pair.

    Returns:
        The magnitude method's name (None if the pair has no magnitude run or no power-index Top-n run) and a frame
        with columns method, seed, layer, unit, score, magnitude, score_rank, magnitude_rank (ranks as fractions in
        (0, 1] within method, seed and layer).
    """
    columns = ["method", "seed", "layer", "unit", "score", "magnitude", "score_rank", "magnitude_rank"]
    methods = method_table(data, pair)
    magnitude_methods = methods[methods["family"] == MAGNITUDE_FAMILY].sort_values(
        "strategy", key=lambda strategy: strategy != TOP_N, kind="stable"
    )
    is_index = (methods["family"] == POWER_INDEX_FAMILY) & (methods["strategy"] == TOP_N)
    index_methods = methods.loc[is_index, "method"].tolist()
    if magnitude_methods.empty or not index_methods:
        return None, pd.DataFrame(columns=columns)
    magnitude_method = magnitude_methods["method"].iloc[0]
    scores = data.scores[data.scores["pair"] == pair]
    magnitude = scores[scores["method"] == magnitude_method][["seed", "unit", "score"]]
    magnitude = magnitude.groupby(["seed", "unit"], as_index=False)["score"].mean()
    magnitude = magnitude.rename(columns={"score": "magnitude"})
    index_scores = scores[scores["method"].isin(index_methods)]
    index_scores = index_scores.groupby(["method", "seed", "layer", "unit"], as_index=False, sort=False)["score"].mean()
    joined = index_scores.merge(magnitude, on=["seed", "unit"], how="inner").dropna(subset=["score", "magnitude"])
    by_layer = joined.groupby(["method", "seed", "layer"], sort=False)
    joined["score_rank"] = by_layer["score"].rank(pct=True)
    joined["magnitude_rank"] = by_layer["magnitude"].rank(pct=True)
    return magnitude_method, joined[columns].reset_index(drop=True)


def mean_seed_spearman(joined: pd.DataFrame) -> float:
    """Spearman rho between score and magnitude per seed, averaged over seeds.

    Args:
        joined: rows of one method and layer from :func:`index_vs_magnitude_table`.

    Returns:
        The mean rho, NaN where no seed has two distinct values on both sides.
    """
    rhos = [
        seed_rows["score"].corr(seed_rows["magnitude"], method="spearman")
        for _, seed_rows in joined.groupby("seed")
        if len(seed_rows) >= 2
    ]
    rhos = [rho for rho in rhos if np.isfinite(rho)]
    return float(np.mean(rhos)) if rhos else float("nan")


def analysis_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Any analysis table, summarised over seeds without knowing which analysis made it.

    Rows are grouped by every non-numeric column (pair, layer, distribution, ...); each numeric column becomes its
    mean over the seeds (and the rows within a seed), with ``<column> sd``, the sample sd over seeds, beside it when
    there is more than one seed.

    Args:
        table: an analysis table with pair and seed columns (``SuiteData.analyses`` values).

    Returns:
        One row per group, in order of first appearance, with an ``n_seeds`` column.
    """
    numeric = [c for c in table.columns if c != "seed" and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    keys = [c for c in table.columns if c not in numeric and c != "seed"]
    if table.empty or not keys:
        return table.drop(columns=["seed"], errors="ignore")
    per_seed = table.groupby([*keys, "seed"], sort=False, dropna=False)[numeric].mean().reset_index()
    grouped = per_seed.groupby(keys, sort=False, dropna=False)
    out = grouped[numeric].mean()
    n_seeds = grouped["seed"].nunique()
    if int(n_seeds.max()) > 1:
        spread = grouped[numeric].agg(sample_sd)
        columns = []
        for column in numeric:
            columns += [out[column], spread[column].rename(f"{column} sd")]
        out = pd.concat(columns, axis=1)
    out["n_seeds"] = n_seeds
    return out.reset_index()


def learning_curve_summary(histories: pd.DataFrame, pair: str) -> pd.DataFrame:
    """Per-epoch train and validation loss and accuracy of one pair: mean and sample sd over seeds.

    Args:
        histories: ``SuiteData.histories``.
        pair: the pair.

    Returns:
        Columns epoch, metric (train_loss, val_loss, train_accuracy, val_accuracy), mean, sd, n_seeds.
    """
    rows = histories[histories["pair"] == pair]
    metrics = [m for m in ("train_loss", "val_loss", "train_accuracy", "val_accuracy") if m in rows.columns]
    if rows.empty or not metrics:
        return pd.DataFrame(columns=["epoch", "metric", "mean", "sd", "n_seeds"])
    long = rows.melt(id_vars=["seed", "epoch"], value_vars=metrics, var_name="metric").dropna(subset=["value"])
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    grouped = long.groupby(["metric", "epoch"], sort=False)
    out = grouped.agg(mean=("value", "mean"), n_seeds=("seed", "nunique"))
    out["sd"] = grouped["value"].agg(sample_sd)
    return out.reset_index()[["epoch", "metric", "mean", "sd", "n_seeds"]]
