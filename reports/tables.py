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


def drawn_methods(data: SuiteData, pair: str, *, axis: str | None = None, variants: bool = False) -> pd.DataFrame:
    """The methods a figure of one pair draws: :func:`method_table`'s rows on one axis, each baseline run in several
    variants at its best variant only (highest mean AUC, as the leaderboard ranks it), unless ``variants``.

    Args:
        data: the suite's results.
        pair: the pair.
        axis: keep only methods on this axis ("unit_fraction", or ``PARAM_AXIS``); None: "not PARAM_AXIS".
        variants: keep every variant instead, of the baselines that have several (for the variants figure).

    Returns:
        The rows, in :func:`method_table`'s order, with a ``variant_of`` column.
    """
    runs = data.runs[data.runs["pair"] == pair]
    table = method_table(data, pair)
    of = runs.drop_duplicates("method").set_index("method")["variant_of"] if "variant_of" in runs else None
    table = table.assign(variant_of=[of.get(m, m) if of is not None and isinstance(of.get(m), str) else m
                                     for m in table["method"]])
    table = table[table["axis"] == axis] if axis is not None else table[table["axis"] != PARAM_AXIS]
    auc = pd.to_numeric(runs["auc"], errors="coerce").groupby(runs["method"]).mean()
    sizes = table.groupby("variant_of")["method"].transform("size")
    if variants:
        return table[sizes > 1].reset_index(drop=True)
    best = (table.assign(_auc=table["method"].map(auc).fillna(-np.inf))
            .sort_values("_auc", ascending=False, kind="stable").drop_duplicates("variant_of"))
    return table[table["method"].isin(best["method"])].reset_index(drop=True)


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


COST_AXES = {  # curve column -> axis label of the cost-axis plot
    "mac_fraction": "MACs per example (fraction of the unpruned network's)",
    "param_share": "parameters (fraction of the unpruned network's)",
    "latency_b256_ms": "CPU latency at batch 256 (ms, median)",
}


def cost_curve_summary(data: SuiteData, pair: str) -> pd.DataFrame:
    """The unit-axis methods' curves of one pair against what the physically pruned networks cost.

    Per method and grid point: the mean over seeds of the accuracy and of each cost in ``COST_AXES`` (MAC fraction,
    whole-network parameter fraction, latency at batch 256 in ms), from runs that recorded them (suites with
    ``physical: true``).

    Returns:
        Columns method, target_fraction, accuracy_mean, accuracy_sd, one column per cost axis, n_seeds and
        latency_b256_ms_sd (the latency's sample sd over seeds); empty when no curve of the pair has MAC counts.
    """
    columns = ["method", "target_fraction", "accuracy_mean", "accuracy_sd", *COST_AXES, "n_seeds"]
    if "mac_fraction" not in data.curves:
        return pd.DataFrame(columns=[*columns, "latency_b256_ms_sd"])
    curves = data.curves[data.curves["pair"] == pair]
    curves = curves[~curves["is_mcue_point"].fillna(False).astype(bool)]
    curves = curves.assign(**{name: pd.to_numeric(curves[name], errors="coerce")
                              for name in ("mac_fraction", "params", "latency_b256", "accuracy")})
    curves = curves[curves["mac_fraction"].notna()]
    if curves.empty:
        return pd.DataFrame(columns=[*columns, "latency_b256_ms_sd"])
    full = curves.groupby("run_id")["params"].transform("max")  # every curve ends at the unpruned network
    curves = curves.assign(param_share=curves["params"] / full, latency_b256_ms=curves["latency_b256"] * 1000)
    per_seed = curves.groupby(["method", "target_fraction", "seed"], as_index=False, sort=False)[
        ["accuracy", *COST_AXES]].mean()
    grouped = per_seed.groupby(["method", "target_fraction"], sort=False)
    summary = grouped[list(COST_AXES)].mean()
    summary["accuracy_mean"] = grouped["accuracy"].mean()
    summary["accuracy_sd"] = grouped["accuracy"].agg(sample_sd)
    summary["n_seeds"] = grouped["seed"].nunique()
    summary["latency_b256_ms_sd"] = grouped["latency_b256_ms"].agg(sample_sd)
    return summary.reset_index()[[*columns, "latency_b256_ms_sd"]].sort_values(
        ["method", "target_fraction"]).reset_index(drop=True)


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


# -- trained models compared per task (suites without methods: NEUROGAME against its baselines) -----------------

PASS_FRACTION_PREFIX = "neurogame/pass_fraction/"


def kept_epoch_val_loss(data: SuiteData) -> pd.DataFrame:
    """The validation loss of each trained network at the epoch whose weights it kept (``best_epoch``; the last
    epoch for runs that do not record one): pair, seed, val_loss."""
    models, histories = data.models, data.histories
    if models.empty or histories.empty or "val_loss" not in histories.columns:
        return pd.DataFrame(columns=["pair", "seed", "val_loss"])
    last = histories.groupby(["pair", "seed"])["epoch"].max().rename("last_epoch").reset_index()
    kept = models[["pair", "seed", "best_epoch"]].merge(last, on=["pair", "seed"], how="left")
    kept["epoch"] = kept["best_epoch"].where(kept["best_epoch"].notna() & (kept["best_epoch"] > 0),
                                             kept["last_epoch"])
    merged = kept.merge(histories[["pair", "seed", "epoch", "val_loss"]], on=["pair", "seed", "epoch"], how="left")
    return merged[["pair", "seed", "val_loss"]]


def model_leaderboard(data: SuiteData) -> pd.DataFrame:
    """The trained networks of each task, ranked by mean test accuracy: one row per (task, pair).

    Args:
        data: the suite's results (``data.models``, and ``data.histories`` for the validation loss).

    Returns:
        Columns task, pair, model, n_seeds, seeds, test_accuracy (mean, sd), test_macro_f1 (mean, sd), val_loss
        (mean, sd; at the kept epoch), n_parameters, seconds_per_epoch (mean), epochs (mean trained), and
        pass_fraction (mean over epochs and seeds of the first NEUROGAME layer's rate; NaN for other models).
    """
    models = data.models
    columns = ["task", "pair", "model", "n_seeds", "seeds", "test_accuracy", "test_accuracy_sd", "test_macro_f1",
               "test_macro_f1_sd", "val_loss", "val_loss_sd", "n_parameters", "seconds_per_epoch", "epochs",
               "pass_fraction"]
    if models.empty:
        return pd.DataFrame(columns=columns)
    models = models.merge(kept_epoch_val_loss(data), on=["pair", "seed"], how="left")
    pass_columns = sorted(c for c in models.columns if c.startswith(PASS_FRACTION_PREFIX))
    rows = []
    for (task, pair), group in models.groupby(["task", "pair"], sort=False):
        rows.append({
            "task": task, "pair": pair, "model": group["model"].iloc[0], "n_seeds": group["seed"].nunique(),
            "seeds": ",".join(str(s) for s in sorted(group["seed"].unique())),
            "test_accuracy": group["test_accuracy"].mean(), "test_accuracy_sd": sample_sd(group["test_accuracy"]),
            "test_macro_f1": group["test_macro_f1"].mean(), "test_macro_f1_sd": sample_sd(group["test_macro_f1"]),
            "val_loss": group["val_loss"].mean(), "val_loss_sd": sample_sd(group["val_loss"]),
            "n_parameters": group["n_parameters"].mean(), "seconds_per_epoch": group["seconds_per_epoch"].mean(),
            "epochs": group["epochs_trained"].mean(),
            "pass_fraction": group[pass_columns[0]].mean() if pass_columns else np.nan,
        })
    board = pd.DataFrame(rows, columns=columns)
    order = list(dict.fromkeys(models["task"]))
    board["_task"] = board["task"].map(order.index)
    return (board.sort_values(["_task", "test_accuracy"], ascending=[True, False], kind="stable")
            .drop(columns="_task").reset_index(drop=True))


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, resamples: int = 2000,
                     rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of mean accuracy(A) - accuracy(B) over seeds and test examples, paired on both.

    Each resample draws the seeds with replacement and, independently, the test examples with replacement (the
    same examples for every seed); its statistic is the mean over the drawn seeds of the accuracy difference on the
    drawn examples. Both sources of noise, the training seed and the finite test split, are in its spread.

    Args:
        correct_a, correct_b: (seeds, examples) 0/1 arrays: whether model A (B) trained with that seed got that
            test example right; row i of both is the same seed.
        resamples: bootstrap resamples.
        rng: the generator (the report seeds it, so the interval is reproducible).

    Returns:
        The ``resamples`` bootstrap statistics.
    """
    diff = np.asarray(correct_a, dtype=float) - np.asarray(correct_b, dtype=float)
    n_seeds, n_examples = diff.shape
    out = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n_examples, 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        example_counts = np.stack([np.bincount(rng.integers(0, n_examples, n_examples), minlength=n_examples)
                                   for _ in range(size)])                       # (size, examples)
        per_seed = example_counts @ diff.T / n_examples                           # (size, seeds)
        seed_weights = np.stack([np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
                                 for _ in range(size)]) / n_seeds                 # (size, seeds)
        out[start:start + size] = (per_seed * seed_weights).sum(1)
    return out


def paired_comparisons(data: SuiteData, *, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> pd.DataFrame:
    """Every two trained networks of the same task, compared on the seeds and test examples they share.

    The better-ranked (by mean test accuracy) is A. ``beyond_noise`` is True when the paired-bootstrap interval
    of accuracy(A) - accuracy(B) (:func:`paired_bootstrap`) excludes 0; ``p`` is the two-sided bootstrap p-value
    (twice the share of resamples on the other side of 0, at most 1).

    Args:
        data: the suite's results (``data.models`` for the tasks, ``data.predictions`` for the examples).
        resamples, level: the bootstrap's resamples and the interval's coverage.
        seed: seeds the bootstrap.

    Returns:
        Columns task, a, b, diff (mean over shared seeds of the accuracy difference), ci_low, ci_high, p,
        beyond_noise, n_seeds, n_examples.
    """
    columns = ["task", "a", "b", "diff", "ci_low", "ci_high", "p", "beyond_noise", "n_seeds", "n_examples"]
    board = model_leaderboard(data)
    predictions = data.predictions
    if board.empty or predictions.empty:
        return pd.DataFrame(columns=columns)
    correct = predictions.assign(correct=(predictions["label"] == predictions["prediction"]).astype(float))
    tables = {pair: rows.pivot(index="seed", columns="index", values="correct")
              for pair, rows in correct.groupby("pair", sort=False)}
    labels = {pair: rows.drop_duplicates("index").set_index("index")["label"]
              for pair, rows in predictions.groupby("pair", sort=False)}
    rng = np.random.default_rng(seed)
    rows = []
    for task, ranked in board.groupby("task", sort=False):
        pairs = [p for p in ranked["pair"] if p in tables]
        for i, a in enumerate(pairs):
            for b in pairs[i + 1:]:
                seeds = sorted(set(tables[a].index) & set(tables[b].index))
                same_examples = labels[a].index.equals(labels[b].index) and labels[a].equals(labels[b])
                if not seeds or not same_examples:
                    continue  # not the same test split: nothing to pair
                correct_a = tables[a].loc[seeds].to_numpy()
                correct_b = tables[b].loc[seeds].to_numpy()
                stats = paired_bootstrap(correct_a, correct_b, resamples=resamples, rng=rng)
                low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
                p = min(1.0, 2 * min((stats <= 0).mean(), (stats >= 0).mean()))
                rows.append({"task": task, "a": a, "b": b, "diff": float((correct_a - correct_b).mean()),
                             "ci_low": float(low), "ci_high": float(high), "p": float(p),
                             "beyond_noise": bool(low > 0 or high < 0), "n_seeds": len(seeds),
                             "n_examples": correct_a.shape[1]})
    return pd.DataFrame(rows, columns=columns)


def class_summary(data: SuiteData, task_pairs: list[str]) -> pd.DataFrame:
    """Per-class test precision, recall and F1 of the given pairs (one task): mean ± sd over seeds, one row per
    (class, pair) — the paper reports precision per gender and age category."""
    classes = data.classes[data.classes["pair"].isin(task_pairs)]
    if classes.empty:
        return pd.DataFrame(columns=["class", "pair", "support", "precision", "precision_sd", "recall",
                                     "recall_sd", "f1", "f1_sd", "n_seeds"])
    grouped = classes.groupby(["index", "class", "pair"], sort=True)
    out = grouped.agg(support=("support", "mean"), precision=("precision", "mean"), recall=("recall", "mean"),
                      f1=("f1", "mean"), n_seeds=("seed", "nunique"))
    for column in ("precision", "recall", "f1"):
        out[f"{column}_sd"] = grouped[column].agg(sample_sd)
    out = out.reset_index()
    out["_pair"] = out["pair"].map(task_pairs.index)
    out = out.sort_values(["index", "_pair"]).drop(columns=["index", "_pair"])
    return out[["class", "pair", "support", "precision", "precision_sd", "recall", "recall_sd", "f1", "f1_sd",
                "n_seeds"]].reset_index(drop=True)
