"""Leaderboard tables: one row per (pair, method), aggregated over seeds, beside the GTAP paper's figures."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reports.data import BANDS, MCUE_READINGS, SuiteData

DEFAULT_REFERENCES = Path(__file__).with_name("references.yaml")
REFERENCE_KEYS = ("pair", "method", "metric", "value", "source")
FRACTION_TOLERANCE = 1e-9
# Paper metrics that sit on a method row of the leaderboard (the rest, like d, belong to the pair).
ROW_METRICS = ("auc", "acc_at_d")
# Accuracy where the physically pruned network needs 2x and 4x fewer multiply-accumulates (runs with `physical`).
MAC_COLUMNS = ("acc_at_2x_macs", "acc_at_4x_macs")
DESCRIPTIVE_COLUMNS = ("scorer", "strategy", "axis", "allocation", "variant_of")


def load_references(path: Path | str | None = None) -> list[dict]:
    """Read the GTAP paper's figures from a YAML list.

    Args:
        path: the YAML file; ``reports/references.yaml`` if None.

    Returns:
        One dict per figure with keys pair, method, metric, value, source and optional sd and note.

    Raises:
        ValueError: an entry lacks a required key or has a non-numeric value.
    """
    path = Path(path) if path is not None else DEFAULT_REFERENCES
    entries = yaml.safe_load(path.read_text()) or []
    references = []
    for number, entry in enumerate(entries):
        missing = [key for key in REFERENCE_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{path}: reference #{number} lacks {missing}")
        reference = dict(entry)
        reference["value"] = float(reference["value"])
        reference["sd"] = float(reference["sd"]) if reference.get("sd") is not None else float("nan")
        reference.setdefault("note", "")
        references.append(reference)
    return references


def matching_references(references: Sequence[dict], pair: str, method: str, metric: str | None = None) -> list[dict]:
    """The references for one pair and method (the reference's method may be a shell pattern).

    Args:
        references: as returned by :func:`load_references`.
        pair: our pair name.
        method: our suite entry name, or a pair-level name such as "mcue" or "unpruned".
        metric: only this metric if given.

    Returns:
        The matching references, in file order.
    """
    return [
        reference
        for reference in references
        if reference["pair"] == pair
        and fnmatch.fnmatchcase(method, reference["method"])
        and (metric is None or reference["metric"] == metric)
    ]


def fraction_label(fraction: float) -> str:
    """The column stem of the accuracy at a kept fraction, e.g. 0.1 -> "acc_at_0.1".

    Args:
        fraction: a kept fraction.

    Returns:
        The column stem.
    """
    return f"acc_at_{fraction:g}"


def sample_sd(values: pd.Series) -> float:
    """Sample standard deviation (ddof 1) over the non-NaN values; NaN for fewer than two.

    Args:
        values: numbers, may contain NaN.

    Returns:
        The sd.
    """
    finite = values.dropna()
    return float(finite.std(ddof=1)) if len(finite) >= 2 else float("nan")


def per_seed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with repeated (pair, method, seed) rows averaged, so that every seed counts once.

    Args:
        runs: ``SuiteData.runs``.

    Returns:
        One row per (pair, method, seed) with the numeric columns averaged and n_runs counting the repeats.
    """
    keys = ["pair", "method", "seed"]
    numeric = ["auc", "accuracy_at_d", "keep_prob_d", *MAC_COLUMNS, "n_evaluations", "n_forward", "n_backward",
               "seconds", "trained_test_accuracy"]
    frame = runs.copy()
    for column in numeric:
        if column not in frame:  # runs stored before scorers declared their passes
            frame[column] = np.nan
    if "allocation" not in frame:  # runs stored before allocation variants were tagged
        frame["allocation"] = "global"
    if "variant_of" not in frame:
        frame["variant_of"] = frame["method"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    grouped = frame.groupby(keys, sort=False)
    collapsed = grouped[numeric].mean()
    collapsed["n_runs"] = grouped.size()
    for column in DESCRIPTIVE_COLUMNS:
        collapsed[column] = grouped[column].first()
    return collapsed.reset_index()


def accuracy_at_fraction(curves: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Each seed's accuracy at one kept fraction of the fixed grid (the extra MCUE points are left out).

    Args:
        curves: ``SuiteData.curves``.
        fraction: a target kept fraction; matched within 1e-9.

    Returns:
        Columns pair, method, seed, accuracy (repeated runs of a seed averaged); empty if the fraction is not on the
        grid.
    """
    target = pd.to_numeric(curves["target_fraction"], errors="coerce")
    on_grid = ~curves["is_mcue_point"].fillna(False).astype(bool)
    points = curves[on_grid & ((target - fraction).abs() <= FRACTION_TOLERANCE)]
    accuracy = pd.to_numeric(points["accuracy"], errors="coerce").rename("accuracy")
    return pd.concat([points[["pair", "method", "seed"]], accuracy], axis=1).groupby(
        ["pair", "method", "seed"], as_index=False, sort=False
    )["accuracy"].mean()


def missing_seeds(seeds: Sequence[int], expected: Sequence[int]) -> str:
    """The expected seeds that have no run, as text.

    Args:
        seeds: the seeds that have runs.
        expected: every seed seen for the pair.

    Returns:
        e.g. "2" or "1, 2"; "" when none is missing.
    """
    return ", ".join(str(seed) for seed in sorted(set(expected) - set(seeds)))


def coverage(data: SuiteData) -> pd.DataFrame:
    """How many runs and seeds each (pair, method) has, so missing seeds are visible in a partial store.

    A seed counts as expected for a pair when any method of that pair has a run with it; the store does not record
    which seeds the suite asked for.

    Args:
        data: the suite's results.

    Returns:
        Columns pair, method, n_runs, n_seeds, seeds (text), missing_seeds (text, "" when none).
    """
    rows = []
    for pair, pair_runs in data.runs.groupby("pair", sort=False):
        expected = sorted(set(pair_runs["seed"].astype(int)))
        for method, method_runs in pair_runs.groupby("method", sort=False):
            seeds = sorted(set(method_runs["seed"].astype(int)))
            rows.append(
                {
                    "pair": pair,
                    "method": method,
                    "n_runs": len(method_runs),
                    "n_seeds": len(seeds),
                    "seeds": ", ".join(map(str, seeds)),
                    "missing_seeds": missing_seeds(seeds, expected),
                }
            )
    return pd.DataFrame(rows, columns=["pair", "method", "n_runs", "n_seeds", "seeds", "missing_seeds"])


def _paper_columns(table: pd.DataFrame, references: Sequence[dict]) -> pd.DataFrame:
    """Add paper_<metric>, paper_<metric>_sd and paper_<metric>_source for each row metric the references give."""
    metrics = [metric for metric in ROW_METRICS if any(reference["metric"] == metric for reference in references)]
    for metric in metrics:
        values, sds, sources = [], [], []
        for pair, method in zip(table["pair"], table["method"], strict=True):
            found = matching_references(references, pair, method, metric)
            values.append(found[0]["value"] if found else np.nan)
            sds.append(found[0]["sd"] if found else np.nan)
            sources.append(found[0]["source"] if found else "")
        table[f"paper_{metric}"] = values
        table[f"paper_{metric}_sd"] = sds
        table[f"paper_{metric}_source"] = sources
    return table


def leaderboard(
    data: SuiteData, *, fixed_fractions: Sequence[float] = (0.1, 0.2, 0.5), references: Sequence[dict] | None = None
) -> pd.DataFrame:
    """One row per (pair, method), ranked by mean AUC (descending) within each pair and axis.

    Means and sample sds are over seeds (repeated runs of one seed are averaged first). A ranking compares methods on
    one axis only: unit-axis methods (AUC over kept units) and param-axis methods (unstructured pruning, AUC over
    kept weights) are ranked separately, since an AUC over weights is not an AUC over units.

    Args:
        data: the suite's results.
        fixed_fractions: kept fractions whose accuracy gets its own columns (NaN where not on the grid).
        references: the paper's figures (:func:`load_references`); their row metrics become paper_* columns.

    Returns:
        Columns pair, rank (within pair and axis), method, scorer, strategy, axis, allocation, variant_of, n_seeds,
        n_runs, missing_seeds, auc_mean, auc_sd,
        acc_at_d_mean, acc_at_d_sd, d_mean, acc_at_{2,4}x_macs_mean, _sd and _n (NaN where the curve never gets
        that cheap or has no MAC counts; _n counts the seeds whose curve does), acc_at_<f>_mean, acc_at_<f>_sd for
        each fixed fraction,
        n_evaluations_mean, n_forward_mean, n_backward_mean (example passes the scorers declared), seconds_mean, then
        paper_<metric>[_sd|_source] for matched references.
    """
    seeds = per_seed_runs(data.runs)
    for fraction in fixed_fractions:
        at_fraction = accuracy_at_fraction(data.curves, fraction).rename(columns={"accuracy": fraction_label(fraction)})
        seeds = seeds.merge(at_fraction, on=["pair", "method", "seed"], how="left")
    grouped = seeds.groupby(["pair", "method"], sort=False)
    table = grouped[list(DESCRIPTIVE_COLUMNS)].first()
    table["n_seeds"] = grouped["seed"].nunique()
    table["n_runs"] = grouped["n_runs"].sum()
    summaries = {"auc": "auc", "acc_at_d": "accuracy_at_d", **{column: column for column in MAC_COLUMNS}}
    summaries.update({fraction_label(fraction): fraction_label(fraction) for fraction in fixed_fractions})
    for name, column in summaries.items():
        table[f"{name}_mean"] = grouped[column].mean()
        table[f"{name}_sd"] = grouped[column].agg(sample_sd)
        if name == "acc_at_d":
            table["d_mean"] = grouped["keep_prob_d"].mean()
        if name in MAC_COLUMNS:  # a curve may get that cheap for some seeds only
            table[f"{name}_n"] = grouped[column].count()
    table["n_evaluations_mean"] = grouped["n_evaluations"].mean()
    table["n_forward_mean"] = grouped["n_forward"].mean()
    table["n_backward_mean"] = grouped["n_backward"].mean()
    table["seconds_mean"] = grouped["seconds"].mean()
    table = table.reset_index()

    gaps = coverage(data)[["pair", "method", "missing_seeds"]]
    table = table.merge(gaps, on=["pair", "method"], how="left")
    pair_order = {pair: position for position, pair in enumerate(data.pairs)}
    table["_pair_order"] = table["pair"].map(pair_order)
    table["_axis_order"] = (table["axis"] != "unit_fraction").astype(int)  # units first
    table = table.sort_values(["_pair_order", "_axis_order", "auc_mean", "method"],
                              ascending=[True, True, False, True], na_position="last")
    table["rank"] = table.groupby(["pair", "axis"], sort=False).cumcount() + 1
    table = table.drop(columns=["_pair_order", "_axis_order"]).reset_index(drop=True)

    lead = ["pair", "rank", "method", *DESCRIPTIVE_COLUMNS, "n_seeds", "n_runs", "missing_seeds"]
    table = table[lead + [column for column in table.columns if column not in lead]]
    return _paper_columns(table, references or [])


def best_variants(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard with each baseline at its best variant: one row per (pair, axis, variant_of).

    A suite entry with a list of allocations (``wmp`` with ``[uniform, normalized]``) runs one entry per variant; a
    fair comparison shows each such baseline at its strongest, with the variant named. The best variant is the one
    with the highest mean AUC (the same criterion as the ranking). Ranks are recomputed within pair and axis.

    Args:
        board: :func:`leaderboard`.

    Returns:
        The board's columns plus n_variants (1 for a plain entry); ``method`` is still the winning variant's name.
    """
    if board.empty:
        return board.assign(n_variants=pd.Series(dtype=int))
    keys = ["pair", "axis", "variant_of"]
    counts = board.groupby(keys, sort=False)["method"].transform("size")
    ordered = board.assign(n_variants=counts, _auc=board["auc_mean"].fillna(-np.inf))
    best = ordered.sort_values("_auc", ascending=False, kind="stable").drop_duplicates(keys)
    best = best.loc[sorted(best.index)].drop(columns="_auc")  # back in leaderboard order
    best["rank"] = best.groupby(["pair", "axis"], sort=False).cumcount() + 1
    return best.reset_index(drop=True)


def mcue_summary(data: SuiteData, references: Sequence[dict] | None = None) -> pd.DataFrame:
    """Per pair: MCUE's t* and d over seeds, the unpruned accuracy, and the paper's values of both.

    Args:
        data: the suite's results.
        references: the paper's figures; pair-level ones (method "mcue" or "unpruned") are matched.

    Returns:
        Columns pair, n_mcue_seeds, output, t_star_mean, t_star_sd, d_mean, d_sd, d_per_seed (text),
        trained_accuracy_mean, trained_accuracy_sd, paper_t_star, paper_d, paper_trained_accuracy, and per MCUE
        reading R (correct, confidence, entropy, onehot; whichever chose d) t_star_R_mean, t_star_R_sd over seeds,
        and per band B of layers (conv, fc; NaN without band runs) t_star_band_B_mean, t_star_band_B_sd.
    """
    references = references or []
    rows = []
    for pair in data.pairs:
        mcue_runs = data.mcue_runs[data.mcue_runs["pair"] == pair].sort_values("seed")
        trained = per_seed_runs(data.runs[data.runs["pair"] == pair]).groupby("seed")["trained_test_accuracy"].mean()
        t_star = pd.to_numeric(mcue_runs["t_star"], errors="coerce")
        keep_prob = pd.to_numeric(mcue_runs["keep_prob"], errors="coerce")
        per_reading = {}
        for name in MCUE_READINGS:
            values = pd.to_numeric(mcue_runs[f"t_star_{name}"], errors="coerce").dropna()
            per_reading[f"t_star_{name}_mean"] = float(values.mean()) if len(values) else np.nan
            per_reading[f"t_star_{name}_sd"] = sample_sd(values)
        for band in BANDS:  # MCUE drawn within one band of layers (GTAP Fig. 6)
            values = pd.to_numeric(mcue_runs[f"t_star_band_{band}"], errors="coerce").dropna()
            per_reading[f"t_star_band_{band}_mean"] = float(values.mean()) if len(values) else np.nan
            per_reading[f"t_star_band_{band}_sd"] = sample_sd(values)
        paper = {
            name: next(iter(matching_references(references, pair, method, metric)), {}).get("value", np.nan)
            for name, method, metric in (
                ("paper_t_star", "mcue", "t_star"),
                ("paper_d", "mcue", "d"),
                ("paper_trained_accuracy", "unpruned", "trained_test_accuracy"),
            )
        }
        rows.append(
            {
                "pair": pair,
                "n_mcue_seeds": int(mcue_runs["seed"].nunique()),
                "output": ", ".join(dict.fromkeys(mcue_runs["output"].astype(str))),
                "t_star_mean": float(t_star.mean()) if len(t_star) else np.nan,
                "t_star_sd": sample_sd(t_star),
                "d_mean": float(keep_prob.mean()) if len(keep_prob) else np.nan,
                "d_sd": sample_sd(keep_prob),
                "d_per_seed": ", ".join(
                    f"{int(seed)}: {value:.3f}" for seed, value in zip(mcue_runs["seed"], keep_prob, strict=True)
                ),
                "trained_accuracy_mean": float(trained.mean()) if len(trained) else np.nan,
                "trained_accuracy_sd": sample_sd(trained),
                **paper,
                **per_reading,
            }
        )
    return pd.DataFrame(rows)
