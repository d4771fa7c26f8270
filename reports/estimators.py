"""The report of the estimator benchmark (``python -m bench estimators``): how good each power-index estimator is per
coalition evaluation, ours beside shapiq's.

Input is what the benchmark stored, read back as plain data: a DataFrame of cells, one row per estimator run, with the
columns of ``methods.estimators.benchmark.Cell.row()`` (game, index, keep_prob, estimator, library, budget, seed,
n_evaluations, seconds, mse, precision_10, precision_25, spearman, kendall, optional topn_acc_* / topn_gap_*, and
reference_limited), and a dict of the games' descriptions. Nothing here runs an estimator or talks to MLflow.

Interpretations:

- A cell is ``reference_limited`` when its truth was a reference not 10x more precise than the run, so it cannot
  judge the run. A budget where any seed is reference-limited is left out of the budget-to-reach computation (the
  seeds that stay would be the less precise ones, so their mean would be biased); the plots still draw it, hollow.
- Budget to reach: where the *mean over seeds* first reaches the threshold, interpolated linearly in log budget
  (``methods.estimators.budget_to_reach``, the rule the benchmark itself uses). A budget where some seed's Spearman
  is undefined (a constant estimate ranks nothing) does not count as reaching.
- Where no estimator reaches Spearman 0.9 within the judged budgets (the full LeNet games), the table also gives
  where a fitted rho(B) = (1 + k/B)^-1/2 would (:func:`extrapolated_budget`), so ratios exist beyond the grid; it
  is labelled as fitted, and left out where the curve does not have that shape.
- The band around each curve is the min–max over seeds: with the 3–5 seeds the benchmark runs, quantiles such as
  16–84 % would only interpolate between the same few points.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from methods.estimators import budget_to_reach
from reports.data import ReportError
from reports.documents import render_html, render_markdown
from reports.figures import FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.format import MISSING, Block, format_count, format_mean_sd

GROUP = ["game", "index", "keep_prob"]  # one figure, one comparison
CURVE = [*GROUP, "estimator", "library"]  # one line
BASE_MEASURES = ("mse", "spearman", "kendall", "precision_10", "precision_25", "seconds", "n_evaluations")
BANDED = ("mse", "spearman")  # measures drawn with a min-max band over seeds
BASELINE = "shapiq:PermutationSamplingSV"
SPEARMAN_TARGET = 0.9
PRECISION_TARGET = 0.9
EXTRAPOLATION_RESIDUAL = 0.05  # the worst |residual| of a fitted curve that may be extrapolated
LIBRARY_LINES = {"ours": "-", "shapiq": "--"}
HEADING = "Estimator quality per coalition evaluation"


# ------------------------------------------------------------------------------------------------------ tables


def _limited(cells: pd.DataFrame) -> pd.Series:
    """``reference_limited`` as booleans (a CSV read back may hold the strings "True"/"False")."""
    if "reference_limited" not in cells.columns:
        return pd.Series(False, index=cells.index)
    values = cells["reference_limited"]
    if values.dtype == bool:
        return values
    return values.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def _measures(cells: pd.DataFrame) -> list[str]:
    """The measures present in ``cells``: the base ones, then every Top-n accuracy and gap."""
    topn = sorted(c for c in cells.columns if c.startswith(("topn_acc_", "topn_gap_")))
    return [m for m in BASE_MEASURES if m in cells.columns] + topn


def _prepared(cells: pd.DataFrame) -> pd.DataFrame:
    if cells.empty:
        raise ReportError("no estimator cells to report; run `python -m bench estimators` first")
    cells = cells.copy()
    cells["keep_prob"] = pd.to_numeric(cells["keep_prob"], errors="coerce").astype(float)
    cells["reference_limited"] = _limited(cells)
    for measure in _measures(cells):
        cells[measure] = pd.to_numeric(cells[measure], errors="coerce").astype(float)
    return cells


def curves(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every measure, per (game, index, keep_prob, estimator, library, budget).

    Args:
        cells: one row per estimator run (see the module docstring).

    Returns:
        One row per curve point: the group columns, budget, n_seeds, ``<measure>_mean`` and ``<measure>_sd`` (sample
        sd, NaN for one seed; a seed where the measure is NaN is left out of both) for mse, spearman, kendall,
        precision_10, precision_25, seconds, n_evaluations and any topn_acc_* / topn_gap_*, ``<measure>_min`` /
        ``_max`` of mse and spearman (the plots' band), ``<measure>_count`` (seeds where it is defined) of spearman
        and kendall, and ``reference_limited``: whether any seed was reference-limited.
    """
    cells = _prepared(cells)
    grouped = cells.groupby([*CURVE, "budget"], dropna=False, sort=True)
    named: dict[str, tuple[str, str]] = {"n_seeds": ("seed", "nunique")}
    for measure in _measures(cells):
        named[f"{measure}_mean"] = (measure, "mean")
        named[f"{measure}_sd"] = (measure, "std")
        if measure in BANDED:
            named[f"{measure}_min"] = (measure, "min")
            named[f"{measure}_max"] = (measure, "max")
        if measure in ("spearman", "kendall"):
            named[f"{measure}_count"] = (measure, "count")
    named["reference_limited"] = ("reference_limited", "any")
    return grouped.agg(**named).reset_index()


def extrapolated_budget(budgets: Sequence[float], means: Sequence[float], threshold: float, *,
                        max_residual: float = EXTRAPOLATION_RESIDUAL) -> tuple[float, float]:
    """The budget where a fitted curve rho(B) = (1 + k / B)^(-1/2) reaches ``threshold``, and the fit's worst residual.

    An estimate that is the truth plus independent noise of variance a / B per unit (an unbiased sampling estimator)
    correlates with the truth as (1 + k / B)^(-1/2), k = a / var(truth); Spearman follows Pearson closely here. So a
    curve that does not reach the level within the judged budgets can still be compared by where its fit does:
    k is fitted by least squares to the judged means in (0.05, 0.99) (at least 3), and the answer is NaN when the
    curve does not have that shape (worst absolute residual above ``max_residual``, e.g. a biased estimator that
    levels off) or when the fitted budget lies below every budget fitted (the curve starts above the level).

    Returns:
        (budget, worst residual); (NaN, NaN) when there are too few points.
    """
    from scipy.optimize import minimize_scalar

    budgets, means = np.asarray(budgets, dtype=float), np.asarray(means, dtype=float)
    keep = np.isfinite(means) & (means > 0.05) & (means < 0.99)
    budgets, means = budgets[keep], means[keep]
    if len(budgets) < 3 or not 0 < threshold < 1:
        return float("nan"), float("nan")

    def loss(log_k: float) -> float:
        return float(np.sum((means - (1 + np.exp(log_k) / budgets) ** -0.5) ** 2))

    log_k = minimize_scalar(loss, bounds=(-10.0, 40.0), method="bounded").x
    k = float(np.exp(log_k))
    residual = float(np.max(np.abs(means - (1 + k / budgets) ** -0.5)))
    budget = k / (threshold ** -2 - 1)
    if residual > max_residual or budget < budgets.min():  # a fit says nothing below the budgets it saw
        return float("nan"), residual
    return budget, residual


def _nearest(budgets: np.ndarray, target: float) -> int:
    """The position of the budget nearest ``target`` in log budget."""
    return int(np.argmin(np.abs(np.log(budgets) - np.log(target))))


def budgets_to_reach(cells: pd.DataFrame, *, spearman: float = SPEARMAN_TARGET,
                     precision_25: float = PRECISION_TARGET, baseline: str = BASELINE) -> pd.DataFrame:
    """Per estimator and game, the budget where the mean Spearman (and the mean Precision@25%) first reach a level.

    Budgets where any seed is reference-limited are left out; a budget where some seed's measure is undefined does
    not reach.

    Args:
        cells: one row per estimator run.
        spearman: the Spearman level to reach.
        precision_25: the Precision@25% level to reach.
        baseline: the estimator the ratios divide by, on the same game, index and keep_prob.

    Returns:
        One row per (game, index, keep_prob, estimator): library, ``budget_spearman`` and ``budget_precision_25``
        (NaN: never within the judged grid), ``ratio_spearman`` / ``ratio_precision_25`` (the budget over the
        baseline's; NaN when either is missing), ``seconds_at_spearman`` (mean seconds at the budget nearest
        ``budget_spearman`` in log budget), ``largest_budget`` (the largest tried), ``judged_budgets`` (budgets not
        reference-limited), ``limited_budgets``, and ``best``: fewest evaluations to the Spearman level in its
        (game, index, keep_prob) (ties all best; none when no estimator reaches it).
    """
    points = curves(cells)
    rows = []
    for keys, curve in points.groupby(CURVE, dropna=False, sort=True):
        curve = curve.sort_values("budget")
        judged = curve[~curve["reference_limited"]]
        budgets = judged["budget"].to_numpy(dtype=float)
        spearman_means = judged["spearman_mean"].where(judged["spearman_count"] >= judged["n_seeds"])
        reach_spearman = budget_to_reach(budgets, spearman_means, spearman)
        reach_precision = budget_to_reach(budgets, judged["precision_25_mean"], precision_25)
        seconds = float("nan")
        if np.isfinite(reach_spearman):
            all_budgets = curve["budget"].to_numpy(dtype=float)
            seconds = float(curve["seconds_mean"].iloc[_nearest(all_budgets, reach_spearman)])
        extrapolated, residual = extrapolated_budget(budgets, spearman_means, spearman)
        rows.append({**dict(zip(CURVE, keys, strict=True)), "budget_spearman": reach_spearman,
                     "extrapolated_spearman": extrapolated, "extrapolation_residual": residual,
                     "budget_precision_25": reach_precision, "seconds_at_spearman": seconds,
                     "largest_budget": int(curve["budget"].max()), "judged_budgets": len(judged),
                     "limited_budgets": int(curve["reference_limited"].sum())})
    table = pd.DataFrame(rows)
    table["ratio_spearman"] = np.nan
    table["ratio_precision_25"] = np.nan
    table["ratio_extrapolated"] = np.nan
    table["best"] = False
    for _, group in table.groupby(GROUP, dropna=False, sort=False):
        base = group[group["estimator"] == baseline]
        for measure, column in (("spearman", "budget_spearman"), ("precision_25", "budget_precision_25"),
                                ("extrapolated", "extrapolated_spearman")):
            if len(base):
                table.loc[group.index, f"ratio_{measure}"] = group[column] / float(base[column].iloc[0])
        fewest = group["budget_spearman"].min()
        if np.isfinite(fewest):
            table.loc[group.index, "best"] = group["budget_spearman"] == fewest
    columns = [*CURVE, "budget_spearman", "ratio_spearman", "extrapolated_spearman", "ratio_extrapolated",
               "extrapolation_residual", "budget_precision_25", "ratio_precision_25",
               "seconds_at_spearman", "largest_budget", "judged_budgets", "limited_budgets", "best"]
    return table.sort_values([*GROUP, "budget_spearman", "estimator"], na_position="last",
                             ignore_index=True)[columns]


def common_budget_metrics(cells: pd.DataFrame) -> pd.DataFrame:
    """The curve points at the largest budget every estimator of a (game, index, keep_prob) ran.

    Args:
        cells: one row per estimator run.

    Returns:
        Rows of :func:`curves` at that budget (groups without a common budget are left out).
    """
    points = curves(cells)
    chosen = []
    for _, group in points.groupby(GROUP, dropna=False, sort=True):
        sets = [set(curve["budget"]) for _, curve in group.groupby("estimator")]
        common = set.intersection(*sets)
        if common:
            chosen.append(group[group["budget"] == max(common)])
    return pd.concat(chosen, ignore_index=True) if chosen else points.iloc[0:0]


# ------------------------------------------------------------------------------------------------------- plots


def index_label(index: str, keep_prob: float) -> str:
    """e.g. "shapley", "banzhaf" or "beta (d = 0.225)"."""
    if index == "beta" and keep_prob is not None and np.isfinite(keep_prob):
        return f"beta (d = {keep_prob:.3g})"
    return str(index)


def figure_name(game: str, index: str, keep_prob: float | None) -> str:
    """The PNG file name of one (game, index, keep_prob)'s error curves."""
    suffix = f"_d{keep_prob:.4g}" if keep_prob is not None and np.isfinite(keep_prob) else ""
    return f"estimators_{file_stem(game)}_{file_stem(index)}{suffix}.png"


def estimator_palette(estimators: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per estimator, from the sorted names, so an estimator keeps its colour in every figure.

    Args:
        estimators: every estimator of the report.

    Returns:
        estimator -> RGB colour.
    """
    names = sorted(set(estimators))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "husl", len(names))
    return dict(zip(names, colours, strict=True))


@plt.rc_context(READABLE)
def plot_error_curves(cells: pd.DataFrame, folder: Path) -> list[Path]:
    """Error curves, one PNG per (game, index, keep_prob): MSE against budget (log-log) and Spearman against budget
    (log x, dashed line at 0.9), one line per estimator (mean over seeds) with its min–max band over seeds.

    Ours are solid, shapiq's dashed; an estimator has the same colour in every figure (:func:`estimator_palette`).
    Points where some seed is reference-limited are hollow. MSE of zero (exact) is not drawn on the log axis.

    Args:
        cells: one row per estimator run.
        folder: where the PNGs go (created).

    Returns:
        The written paths, named by :func:`figure_name`.
    """
    points = curves(cells)
    palette = estimator_palette(points["estimator"].astype(str).tolist())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (game, index, keep_prob), group in points.groupby(GROUP, dropna=False, sort=True):
        estimators = list(dict.fromkeys(group.sort_values(["library", "estimator"])["estimator"]))
        legend_rows = int(np.ceil((len(estimators) + 2) / 4))
        fig, (mse_ax, rank_ax) = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 4.4 + 0.22 * legend_rows),
                                              layout="constrained")
        with save_figure(fig, folder / figure_name(game, index, keep_prob)) as path:
            handles = []
            for estimator in estimators:
                curve = group[group["estimator"] == estimator].sort_values("budget")
                library = str(curve["library"].iloc[0])
                style = {"color": palette[estimator], "linestyle": LIBRARY_LINES.get(library, ":")}
                budgets = curve["budget"].to_numpy(dtype=float)
                limited = curve["reference_limited"].to_numpy(dtype=bool)
                for ax, measure in ((mse_ax, "mse"), (rank_ax, "spearman")):
                    mean = curve[f"{measure}_mean"].to_numpy(dtype=float)
                    low = curve[f"{measure}_min"].to_numpy(dtype=float)
                    high = curve[f"{measure}_max"].to_numpy(dtype=float)
                    if measure == "mse":  # a log axis cannot show 0 (an exact estimate)
                        mean, low, high = (np.where(a > 0, a, np.nan) for a in (mean, low, high))
                    (line,) = ax.plot(budgets, mean, linewidth=1.8, label=estimator, **style)
                    ax.fill_between(budgets, low, high, color=style["color"], alpha=0.12, linewidth=0)
                    ax.plot(budgets[~limited], mean[~limited], "o", markersize=4, color=style["color"])
                    ax.plot(budgets[limited], mean[limited], "o", markersize=5, markerfacecolor="none",
                            markeredgecolor=style["color"])
                    if measure == "mse":
                        handles.append(line)
            mse_ax.set_xscale("log")
            positive = group["mse_mean"].to_numpy(dtype=float)
            if np.any(positive > 0):  # every MSE 0 (a constant game, or exact estimates): keep a linear axis
                mse_ax.set_yscale("log")
            mse_ax.set_ylabel("MSE against the truth")
            mse_ax.set_title("MSE (log-log)")
            rank_ax.set_xscale("log")
            rank_ax.axhline(SPEARMAN_TARGET, color="0.3", linestyle="--", linewidth=1.0)
            rank_ax.set_ylabel("Spearman correlation with the truth")
            rank_ax.set_title(f"Spearman (dashed: {SPEARMAN_TARGET})")
            ticks = np.sort(group["budget"].unique().astype(float))
            ticks = ticks[:: int(np.ceil(len(ticks) / 8))]  # at most 8 labelled budgets
            for ax in (mse_ax, rank_ax):
                ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)  # explicit: a panel with nothing finite still has limits
                ax.set_xticks(ticks, [f"{t:,.0f}" for t in ticks])
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("budget (coalition evaluations)")
                ax.grid(alpha=0.3, which="both")
            extras = [Line2D([], [], color="0.3", linestyle="-", label="ours (solid)"),
                      Line2D([], [], color="0.3", linestyle="--", label="shapiq (dashed)"),
                      Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                             label="reference-limited (not judged)")]
            fig.legend(handles=[*handles, *extras], loc="outside lower center", ncols=4, frameon=False)
            n_seeds = int(group["n_seeds"].max())
            fig.suptitle(f"{game}, {index_label(index, keep_prob)}: mean over seeds, band min–max over "
                         f"{n_seeds} seed{'s' if n_seeds != 1 else ''}")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------------------ report


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{float(value):.{digits}g}"


def game_paragraph(game: str, info: Mapping[str, Any] | None, indices: Sequence[str]) -> str:
    """One paragraph describing a game: its players, v(∅), v(N), each index's truth and its RMSE, and the seconds one
    coalition evaluation costs.

    Args:
        game: the game's name.
        info: its entry in the games dict (None: not stored).
        indices: the indices estimated on it (a per-index ``truth_<index>`` / ``truth_rmse_<index>`` wins over the
            plain ``truth`` / ``truth_rmse``).
    """
    if not info:
        return f"{game}: no description stored."
    parts = [str(info.get("description", "")).rstrip(".") + "." if info.get("description") else ""]
    parts.append(f"{info.get('n_players', MISSING)} players; v(∅) = {_number(info.get('v_empty'))}, "
                 f"v(N) = {_number(info.get('v_full'))}.")
    truths = []
    for index in indices:
        truth = info.get(f"truth_{index}", info.get("truth"))
        rmse = info.get(f"truth_rmse_{index}", info.get("truth_rmse"))
        if truth is not None:
            if rmse is None or not math.isfinite(float(rmse)):
                note = ""
            elif float(rmse) == 0:
                note = "" if "exact" in str(truth) else " (exact)"
            else:
                note = f" (its own RMSE {_number(rmse, 3)})"
            truths.append(f"{index}: {truth}{note}")
    if truths:
        parts.append("Truth — " + "; ".join(truths) + ".")
    per_evaluation = info.get("seconds_per_evaluation")
    if per_evaluation is not None and math.isfinite(float(per_evaluation)):
        parts.append(f"One coalition evaluation costs {float(per_evaluation):.3g} s on the real game.")
    return " ".join(p for p in parts if p)


def _budget_cell(value: float, judged: int) -> str:
    if judged == 0:
        return "not judged"
    return format_count(value)


def reach_table(reach: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """The budget-to-reach table as text cells (columns as the report shows them).

    Args:
        reach: from :func:`budgets_to_reach`.
        baseline: the estimator the ratios divide by (named in the column).
    """
    short = baseline.split(":")[-1]
    return pd.DataFrame({
        "game": reach["game"],
        "index": [index_label(i, k) for i, k in zip(reach["index"], reach["keep_prob"], strict=True)],
        "estimator": [f"{e} (best)" if b else e for e, b in zip(reach["estimator"], reach["best"], strict=True)],
        "budget to Spearman 0.9": [_budget_cell(v, j) for v, j in
                                   zip(reach["budget_spearman"], reach["judged_budgets"], strict=True)],
        f"ratio to {short}": [_number(v, 3) for v in reach["ratio_spearman"]],
        "fitted (1 + k/B)^-1/2 reaches 0.9 at": [
            "" if not np.isfinite(v) else f"≈{format_count(v)} ({_number(r, 3)}×)"
            for v, r in zip(reach["extrapolated_spearman"], reach["ratio_extrapolated"], strict=True)],
        "budget to P@25 0.9": [_budget_cell(v, j) for v, j in
                               zip(reach["budget_precision_25"], reach["judged_budgets"], strict=True)],
        "ratio": [_number(v, 3) for v in reach["ratio_precision_25"]],
        "seconds at that budget": [_number(v, 3) for v in reach["seconds_at_spearman"]],
        "largest budget tried": [f"{v:,}" + (f" ({n} limited)" if n else "") for v, n in
                                 zip(reach["largest_budget"], reach["limited_budgets"], strict=True)],
    })


def metrics_table(points: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds at the largest common budget, as text cells (a † marks a reference-limited point).

    Args:
        points: from :func:`common_budget_metrics`.
    """
    table = pd.DataFrame({
        "game": points["game"],
        "index": [index_label(i, k) for i, k in zip(points["index"], points["keep_prob"], strict=True)],
        "estimator": points["estimator"],
        "budget": [f"{int(b):,}" + (" †" if limited else "") for b, limited in
                   zip(points["budget"], points["reference_limited"], strict=True)],
    })
    for column, measure, digits in (("Spearman", "spearman", 3), ("Kendall", "kendall", 3),
                                    ("P@25%", "precision_25", 3), ("MSE", "mse", None),
                                    ("Top-n acc 20%", "topn_acc_20", 3), ("Top-n acc 50%", "topn_acc_50", 3),
                                    ("seconds", "seconds", None)):
        if f"{measure}_mean" not in points.columns:
            continue
        if digits is None:
            table[column] = [_number(m, 3) + (f" ± {_number(s, 2)}" if pd.notna(s) else "") if pd.notna(m)
                             else MISSING for m, s in zip(points[f"{measure}_mean"], points[f"{measure}_sd"],
                                                          strict=True)]
        else:
            table[column] = [format_mean_sd(m, s, digits) for m, s in
                             zip(points[f"{measure}_mean"], points[f"{measure}_sd"], strict=True)]
    return table


def estimator_blocks(cells: pd.DataFrame, games: Mapping[str, Mapping[str, Any]],
                     images: Sequence[Path | str]) -> list[Block]:
    """The report section: the games, their error curves, the budget-to-reach table and metrics at a common budget.

    Args:
        cells: one row per estimator run.
        games: game name -> n_players, truth, truth_rmse, seconds_per_evaluation, v_empty, v_full, description.
        images: the PNGs from :func:`plot_error_curves` (matched to their game by :func:`figure_name`).

    Returns:
        The blocks, starting with the h2 heading.
    """
    cells = _prepared(cells)
    names = {Path(p).name for p in images}
    seeds = sorted(cells["seed"].unique())
    budgets = sorted(cells["budget"].unique())
    blocks = [Block("h2", HEADING)]
    blocks.append(Block("p", (
        f"{cells['estimator'].nunique()} estimators ({', '.join(sorted(cells['estimator'].unique()))}) on "
        f"{cells['game'].nunique()} game(s), at budgets {budgets[0]:,} to {budgets[-1]:,} coalition evaluations "
        f"and {len(seeds)} seed(s) each ({len(cells)} runs). Each run is judged against the game's truth: MSE, "
        "Precision@k (the top 10 % / 25 % of units by signed value, the units Top-n keeps), and the Spearman and "
        "Kendall rank correlations. A run is reference-limited when its truth is a reference not 10x more precise "
        "than the run: such runs are drawn hollow and not used to judge."
    )))
    for game in sorted(cells["game"].unique()):
        own = cells[cells["game"] == game]
        blocks.append(Block("h3", str(game)))
        blocks.append(Block("p", game_paragraph(game, games.get(game), list(dict.fromkeys(own["index"])))))
        for (index, keep_prob), _ in own.groupby(["index", "keep_prob"], dropna=False, sort=True):
            name = figure_name(game, index, keep_prob)
            if name in names:
                blocks.append(Block("image", path=name, text=(
                    f"{game}, {index_label(index, keep_prob)}: MSE (log-log) and Spearman against the budget; line: "
                    "mean over seeds, band: min–max over seeds; ours solid, shapiq's dashed; hollow points: "
                    "reference-limited (some seed's truth is not 10x more precise than the run)."
                )))
    reach = budgets_to_reach(cells)
    blocks.append(Block("h3", f"Budget to reach Spearman {SPEARMAN_TARGET} and Precision@25% {PRECISION_TARGET}"))
    blocks.append(Block("p", (
        "Coalition evaluations at which the mean over seeds first reaches the level, interpolated linearly in log "
        f"budget; the ratio divides by {BASELINE}'s on the same game and index (– where it is missing: it does not "
        "estimate that index or never reaches the level). – in a budget column: never reached within the grid. "
        "Budgets where any seed is reference-limited are left out (\"not judged\": none was left). Seconds: mean "
        "wall time of one run at the budget nearest the Spearman one. (best): fewest evaluations to Spearman "
        f"{SPEARMAN_TARGET} for that game and index. Fitted: where rho(B) = (1 + k/B)^-1/2, the shape of an "
        "unbiased estimator's correlation with the truth, fitted to the judged means, reaches the level, with its "
        f"ratio to {BASELINE}'s fit; an extrapolation where the grid stops short, left blank where the curve is not "
        f"of that shape (a residual above {EXTRAPOLATION_RESIDUAL})."
    )))
    blocks.append(Block("table", table=reach_table(reach)))
    common = common_budget_metrics(cells)
    blocks.append(Block("h3", "Measures at the largest common budget"))
    if common.empty:
        blocks.append(Block("p", "No budget was run by every estimator of a game and index."))
    else:
        blocks.append(Block("p", (
            "Mean ± sd over seeds at the largest budget every estimator of the game and index ran. Top-n acc: test "
            "accuracy of the network Top-n keeps (20 % / 50 % of units) when ranked by the estimate. † some seed is "
            "reference-limited."
        )))
        blocks.append(Block("table", table=metrics_table(common)))
    return blocks


def write_estimator_report(cells: pd.DataFrame, games: Mapping[str, Mapping[str, Any]], folder: Path, *,
                           title: str) -> Path:
    """Write the estimator report: its PNGs, report.md and report.html in ``folder``.

    Everything is rendered into a temporary folder beside ``folder`` and moved into place at the end, so a failure
    leaves no half-written report.

    Args:
        cells: one row per estimator run.
        games: the games' descriptions (see :func:`estimator_blocks`).
        folder: the output folder (created; files of an earlier report with the same names are replaced).
        title: the h1 and the page title.

    Returns:
        The path of report.md.

    Raises:
        ReportError: ``cells`` is empty; nothing is written.
    """
    _prepared(cells)  # fails before anything is created
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        images = plot_error_curves(cells, staging)
        blocks = [Block("h1", title), *estimator_blocks(cells, games, images)]
        (staging / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (staging / "report.html").write_text(render_html(blocks, title, image_dir=staging), encoding="utf-8")
        folder.mkdir(parents=True, exist_ok=True)
        for name in [*sorted(Path(p).name for p in images), "report.md", "report.html"]:
            os.replace(staging / name, folder / name)
        return folder / "report.md"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
