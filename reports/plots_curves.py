"""Curve figures of a suite, one PNG per pair (or per task): compression curves against the kept fraction and
against the pruned network's cost, and learning curves of the trained networks.

Each function takes a :class:`~reports.data.SuiteData`, draws with matplotlib's Agg backend, writes its PNGs
through :func:`reports.figures.save_figure` (which closes every figure) and returns their paths; the tables drawn
are built in :mod:`reports.tables`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from reports.data import PARAM_AXIS, SuiteData
from reports.figures import FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.styles import UNPRUNED_LINE, method_styles, strategy_panels
from reports.tables import (
    COST_AXES,
    POWER_INDEX_FAMILY,
    cost_curve_summary,
    curve_summary,
    drawn_methods,
    learning_curve_summary,
    mean_keep_prob,
    method_table,
)


@plt.rc_context(READABLE)
def plot_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Compression curves on kept units, one PNG per pair: test accuracy against the kept fraction of units, one
    panel per strategy.

    Only unit-axis methods are drawn (param-axis ones get :func:`plot_weight_curves`), and each baseline run in
    several variants only at its best variant (all of them: :func:`plot_variant_curves`), as the leaderboard ranks
    them. Each line is one method's mean over seeds with a +-1 sample-sd band, styled by :func:`method_styles`
    (colour: family and index, line: strategy) from the pair's whole method list, so a method has one colour in
    every figure; the legend is in the pair's method order in every figure. Baselines (methods outside the
    power-index family) are repeated, thin and without markers, in every panel for comparison. The grey vertical
    line is MCUE's d (mean over seeds), the horizontal one the unpruned network's test accuracy (mean over seeds);
    crosses mark each method's accuracy at d.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair with unit-axis curve points.
    """
    return [_curve_figure(data, pair, summary, drawn, Path(path_dir) / f"curves_{file_stem(pair)}.png",
                          panels=strategy_panels(drawn), xlabel="kept fraction of units",
                          title="compression curves on kept units (thin: baselines repeated from their panel)")
            for pair, summary, drawn in _pairs_drawing(data)]


@plt.rc_context(READABLE)
def plot_weight_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Compression curves on kept weights (unstructured, param-axis methods), one PNG per pair that has any: their
    AUC is over kept parameters, so they are ranked, and drawn, apart from the unit-level methods.

    Returns:
        The written paths.
    """
    return [_curve_figure(data, pair, summary, drawn, Path(path_dir) / f"curves_weights_{file_stem(pair)}.png",
                          panels=[None], xlabel="kept fraction of parameters",
                          title="compression curves on kept weights", width=FIGURE_WIDTH / 2)
            for pair, summary, drawn in _pairs_drawing(data, axis=PARAM_AXIS)]


@plt.rc_context(READABLE)
def plot_variant_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Every variant of each baseline run in several (global, uniform, normalized allocation), one panel per
    baseline, one PNG per pair that has any: the figure behind the leaderboard's choice of best variant.

    Returns:
        The written paths.
    """
    return [_curve_figure(data, pair, summary, drawn, Path(path_dir) / f"variants_{file_stem(pair)}.png",
                          panels=list(dict.fromkeys(drawn["variant_of"])), panel_column="variant_of",
                          xlabel="kept fraction of units", title="every variant of the baselines run in several")
            for pair, summary, drawn in _pairs_drawing(data, variants=True)]


def _pairs_drawing(data: SuiteData, **selection: object) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(pair, curve summary, methods to draw) for each pair with curve points and methods of the selection
    (:func:`reports.tables.drawn_methods`'s keywords)."""
    out = []
    for pair in data.pairs:
        summary, drawn = curve_summary(data, pair), drawn_methods(data, pair, **selection)
        if not summary.empty and not drawn.empty:
            out.append((pair, summary, drawn))
    return out


def _curve_figure(data: SuiteData, pair: str, summary: pd.DataFrame, drawn: pd.DataFrame, target: Path, *,
                  panels: list, xlabel: str, title: str, panel_column: str = "strategy",
                  width: float = FIGURE_WIDTH) -> Path:
    """One figure of curves: a panel per value of ``panel_column`` (``[None]``: one panel with every method)."""
    all_methods = method_table(data, pair)
    styles = method_styles(all_methods)  # the pair's whole list: the same colour in every figure
    order = list(all_methods["method"])
    keep_prob = mean_keep_prob(data, pair)
    trained = pd.to_numeric(data.runs.loc[data.runs["pair"] == pair, "trained_test_accuracy"], errors="coerce")
    columns = 4 if width >= FIGURE_WIDTH else 2
    legend_rows = int(np.ceil((len(drawn) + 3) / columns))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.4 + 0.22 * legend_rows), sharey=True,
                             squeeze=False, layout="constrained")
    with save_figure(fig, target) as path:
        handles = {}
        for ax, panel in zip(axes[0], panels, strict=True):
            for row in drawn.itertuples(index=False):
                own = panel is None or getattr(row, panel_column) == panel
                if not own and (panel_column != "strategy" or row.family == POWER_INDEX_FAMILY):
                    continue
                style = styles[row.method]
                points = summary[(summary["method"] == row.method) & ~summary["is_mcue_point"]]
                (line,) = ax.plot(
                    points["x"], points["accuracy_mean"], color=style["color"], linestyle=style["linestyle"],
                    linewidth=2.0 if own else 1.0, alpha=1.0 if own else 0.5,
                    marker=style["marker"] if own else None, markersize=4, label=row.method,
                )
                if own:
                    handles[row.method] = line
                    low = points["accuracy_mean"] - points["accuracy_sd"]
                    high = points["accuracy_mean"] + points["accuracy_sd"]
                    ax.fill_between(points["x"], low, high, color=style["color"], alpha=0.12, linewidth=0)
                    at_d = summary[(summary["method"] == row.method) & summary["is_mcue_point"]]
                    ax.plot(at_d["x"], at_d["accuracy_mean"], "x", color=style["color"], markersize=8,
                            markeredgewidth=1.5)
            if np.isfinite(keep_prob):
                ax.axvline(keep_prob, color="0.4", linestyle=":", linewidth=1.2)
            if trained.notna().any():
                ax.axhline(trained.mean(), color="0.2", linestyle=UNPRUNED_LINE, linewidth=1.0)
            if panel is not None:
                ax.set_title(str(panel))
            ax.set_xlabel(xlabel)
            ax.set_xlim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test accuracy (mean ± 1 sd over seeds)")
        extras = [Line2D([], [], color="0.3", marker="x", linestyle="none", label="accuracy at d")]
        if np.isfinite(keep_prob):
            extras.append(Line2D([], [], color="0.4", linestyle=":", label=f"MCUE d = {keep_prob:.3f} (seed mean)"))
        if trained.notna().any():
            extras.append(Line2D([], [], color="0.2", linestyle=UNPRUNED_LINE,
                                 label=f"unpruned = {trained.mean():.4f}"))
        ordered = [handles[m] for m in order if m in handles]
        fig.legend(handles=[*ordered, *extras], loc="outside lower center", ncols=columns, frameon=False)
        fig.suptitle(f"{data.suite}: {pair} — {title}")
    return path


def plot_cost_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Compression curves against what the physically pruned networks cost, one PNG per pair that recorded it.

    Panels share the accuracy axis: MACs per example, whole-network parameters (both as a fraction of the unpruned
    network's) and measured latency at batch 256, with its sd over seeds as error bars. The latency panel is left
    out, and the title says so, when pruning changes the latency (median over methods of unpruned minus most
    pruned) by less than twice its typical sd over seeds: the machine's noise, not an effect. Each line is a
    unit-axis method (baselines at their best variant) as in :func:`plot_curves`, in the same colours and legend
    order.

    Returns:
        The written paths.
    """
    written = []
    for pair in data.pairs:
        summary = cost_curve_summary(data, pair)
        if summary.empty:
            continue
        all_methods = method_table(data, pair)
        styles = method_styles(all_methods)
        drawn = drawn_methods(data, pair)
        methods = [m for m in all_methods["method"] if m in set(drawn["method"]) & set(summary["method"])]
        summary = summary[summary["method"].isin(methods)]
        latency = summary["latency_b256_ms"]
        spread, effect = float(summary["latency_b256_ms_sd"].median()), _latency_effect(summary)
        # Kept when pruning moves latency (either way) by more than twice its seed sd, and when one seed gives no sd.
        noisy = not np.isfinite(effect) or (np.isfinite(spread) and abs(effect) <= 2 * spread)
        axes_drawn = {k: v for k, v in COST_AXES.items() if not (noisy and k == "latency_b256_ms")}
        legend_rows = int(np.ceil(len(methods) / 4))
        fig, axes = plt.subplots(1, len(axes_drawn), figsize=(FIGURE_WIDTH, 4.2 + 0.22 * legend_rows), sharey=True,
                                 squeeze=False, layout="constrained")
        with save_figure(fig, Path(path_dir) / f"cost_curves_{file_stem(pair)}.png") as path:
            handles = {}
            for ax, (column, label) in zip(axes[0], axes_drawn.items(), strict=True):
                for method in methods:
                    points = summary[summary["method"] == method].sort_values(column)
                    style = styles[method]
                    (line,) = ax.plot(points[column], points["accuracy_mean"], color=style["color"],
                                      linestyle=style["linestyle"], marker=style["marker"], markersize=3,
                                      linewidth=1.5, label=method)
                    if column == "latency_b256_ms":
                        ax.errorbar(points[column], points["accuracy_mean"], xerr=points["latency_b256_ms_sd"],
                                    fmt="none", ecolor=style["color"], elinewidth=0.8, alpha=0.7)
                    ax.fill_between(points[column], points["accuracy_mean"] - points["accuracy_sd"],
                                    points["accuracy_mean"] + points["accuracy_sd"], color=style["color"], alpha=0.1,
                                    linewidth=0)
                    handles[method] = line
                if column == "mac_fraction":
                    for reduction in (2, 4):
                        ax.axvline(1 / reduction, color="0.5", linestyle=":", linewidth=1.0)
                ax.set_xlabel(label + (" ± 1 sd over seeds" if column == "latency_b256_ms" else ""))
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel("test accuracy (mean ± 1 sd over seeds)")
            fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=4, frameon=False)
            note = (f"\nlatency left out: pruning changes it by {abs(effect):.2g} ms, less than twice its sd over "
                    f"seeds ({spread:.2g} ms)" if noisy and latency.notna().any() else "")
            fig.suptitle(f"{data.suite}: {pair} — accuracy against the pruned network's cost (dotted: 2x and 4x "
                         f"fewer MACs){note}")
        written.append(path)
    return written


def _latency_effect(summary: pd.DataFrame) -> float:
    """How much pruning changes the latency: per method, the mean latency of the unpruned end of its curve minus
    that of its most pruned point; the median over methods (NaN without latencies)."""
    changes = []
    for _, points in summary.dropna(subset=["latency_b256_ms"]).groupby("method"):
        ordered = points.sort_values("target_fraction")
        changes.append(float(ordered["latency_b256_ms"].iloc[-1] - ordered["latency_b256_ms"].iloc[0]))
    return float(np.median(changes)) if changes else float("nan")


@plt.rc_context(READABLE)
def plot_learning_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Learning curves, one PNG per pair: train and validation loss (left) and accuracy (right) per epoch.

    Lines are means over seeds with a +-1 sample-sd band.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair with a stored history.
    """
    written = []
    for pair in dict.fromkeys(data.histories["pair"]):
        summary = learning_curve_summary(data.histories, pair)
        if summary.empty:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        with save_figure(fig, Path(path_dir) / f"learning_curves_{file_stem(pair)}.png") as path:
            for ax, quantity in zip(axes, ("loss", "accuracy"), strict=True):
                for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
                    rows = summary[summary["metric"] == f"{split}_{quantity}"].sort_values("epoch")
                    if rows.empty:
                        continue
                    ax.plot(rows["epoch"], rows["mean"], marker="o", markersize=3, color=colour,
                            label="validation" if split == "val" else "train")
                    sd = rows["sd"].fillna(0.0)
                    ax.fill_between(rows["epoch"], rows["mean"] - sd, rows["mean"] + sd, color=colour, alpha=0.2,
                                    linewidth=0)
                ax.set_xlabel("epoch")
                ax.set_ylabel(quantity)
                ax.grid(alpha=0.3)
                ax.legend()
            n_seeds = int(summary["n_seeds"].max())
            fig.suptitle(f"{data.suite}: {pair} — learning curves (mean ± 1 sd over {n_seeds} seed(s))")
        written.append(path)
    return written


def plot_task_learning_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """The trained networks of each task side by side, one PNG per task: validation loss and accuracy per epoch
    (mean over seeds, +-1 sd band), one line per pair; the training loss dashed in the loss panel.

    Args:
        data: the suite's results (``data.models`` for the tasks, ``data.histories`` for the curves).
        path_dir: folder for the PNGs.

    Returns:
        The written paths, named ``task_curves_<task>.png``, for tasks with at least one stored history.
    """
    written = []
    models = data.models
    if models.empty or data.histories.empty:
        return written
    for task, group in models.groupby("task", sort=False):
        pairs = [p for p in dict.fromkeys(group["pair"]) if (data.histories["pair"] == p).any()]
        if not pairs:
            continue
        palette = dict(zip(pairs, sns.color_palette("tab10", len(pairs)), strict=True))
        with plt.rc_context(READABLE):
            fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 4.2), layout="constrained")
            with save_figure(fig, Path(path_dir) / f"task_curves_{file_stem(str(task))}.png") as path:
                for pair in pairs:
                    summary = learning_curve_summary(data.histories, pair)
                    for ax, metric, style in ((axes[0], "val_loss", "-"), (axes[0], "train_loss", "--"),
                                              (axes[1], "val_accuracy", "-")):
                        rows = summary[summary["metric"] == metric].sort_values("epoch")
                        if rows.empty:
                            continue
                        label = pair if style == "-" else None
                        ax.plot(rows["epoch"], rows["mean"], style, marker="o", markersize=3,
                                color=palette[pair], label=label)
                        if style == "-":
                            sd = rows["sd"].fillna(0.0)
                            ax.fill_between(rows["epoch"], rows["mean"] - sd, rows["mean"] + sd,
                                            color=palette[pair], alpha=0.15, linewidth=0)
                axes[0].set_ylabel("loss (validation solid, train dashed)")
                axes[1].set_ylabel("validation accuracy")
                for ax in axes:
                    ax.set_xlabel("epoch")
                    ax.grid(alpha=0.3)
                    ax.xaxis.get_major_locator().set_params(integer=True)
                axes[1].legend(loc="lower right")
                n_seeds = int(group["seed"].nunique())
                fig.suptitle(f"{data.suite}: {task} — learning curves (mean ± 1 sd over {n_seeds} seed(s))")
            written.append(path)
    return written
