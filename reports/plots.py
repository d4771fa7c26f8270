"""Plots of one suite's stored results: each function writes one or more PNGs and returns their paths.

Every function takes plain DataFrames (or a :class:`~reports.data.SuiteData`), draws with matplotlib's Agg backend
and closes its figures, so it is safe to call from a runner that logs artifacts in a loop. The tables drawn here are
built in :mod:`reports.tables`; this module only draws and names the files.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from reports.data import PARAM_AXIS, SuiteData  # noqa: E402
from reports.leaderboard import per_seed_runs  # noqa: E402
from reports.tables import (  # noqa: E402
    COST_AXES,
    POWER_INDEX_FAMILY,
    accuracy_sd_matrix,
    correlation_matrix,
    cost_curve_summary,
    curve_summary,
    index_vs_magnitude_table,
    learning_curve_summary,
    mcue_matrix,
    mean_keep_prob,
    mean_seed_spearman,
    method_table,
)

P_LABEL = "p (drop probability within S)"
Q_LABEL = "q (1 - |S|/n)"
# Report figures are drawn at dpi 100 no wider than about 1,200 px, the width the report shows them at on a
# 1,400 px page, so these point sizes are what the reader sees (9 pt at dpi 100 is 12.5 px).
DPI = 100
FIGURE_WIDTH = 12.0  # inches
READABLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 12,
}


def _cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells around sorted grid centres (midpoints, extended half a step at both ends).

    Args:
        centres: sorted 1-D grid values, at least one.

    Returns:
        An array of len(centres) + 1 edges.
    """
    if len(centres) == 1:
        return np.array([centres[0] - 0.025, centres[0] + 0.025])
    middles = (centres[:-1] + centres[1:]) / 2
    first = centres[0] - (middles[0] - centres[0])
    last = centres[-1] + (centres[-1] - middles[-1])
    return np.concatenate([[first], middles, [last]])


def mcue_title(t_star: float, keep_prob: float, output: str, title: str = "") -> str:
    """The title of an MCUE heatmap, naming t* and d.

    Args:
        t_star: argmax of the variance on the p = q diagonal.
        keep_prob: d = 1 - t*, the bias of beta_d.
        output: which output's variance is shown ("correct" or "confidence").
        title: an optional prefix, e.g. the pair and seed.

    Returns:
        One or two lines of title text.
    """
    detail = f"Var({output}); t* = {t_star:.3f}, d = 1 - t* = {keep_prob:.3f}"
    return f"{title}\n{detail}" if title else detail


def mcue_description(t_star: float, keep_prob: float, output: str) -> str:
    """Machine-readable summary of an MCUE heatmap, stored in the PNG's Description chunk.

    Args:
        t_star: t* on the diagonal.
        keep_prob: d = 1 - t*.
        output: the variance drawn.

    Returns:
        e.g. "t_star=0.775; keep_prob=0.225; output=correct".
    """
    return f"t_star={t_star:.6g}; keep_prob={keep_prob:.6g}; output={output}"


@plt.rc_context(READABLE)
def plot_mcue(
    cells: pd.DataFrame, *, t_star: float, keep_prob: float, output: str, path: Path, title: str = ""
) -> Path:
    """Heatmap of MCUE's variance over (p, q) with the p = q diagonal and t* on it (GTAP Fig. 2).

    Args:
        cells: the grid cells of one (pair, seed), or their mean over seeds; columns p, q, var_<output>.
        t_star: t* = argmax_p MCUE(p, p), marked on the diagonal.
        keep_prob: d = 1 - t*, written in the title and legend.
        output: "correct" or "confidence", which variance column to draw.
        path: where to write the PNG; its folder is created.
        title: a prefix for the title, e.g. "lenet5-mnist, seed 0".

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value_column = f"var_{output}"
    fig, ax = plt.subplots(figsize=(6.4, 6.2), layout="constrained")
    try:
        values = pd.to_numeric(cells[value_column], errors="coerce") if value_column in cells.columns else None
        if values is not None and values.notna().any():
            matrix = mcue_matrix(cells, value_column)
            p_values = matrix.index.to_numpy(dtype=float)
            q_values = matrix.columns.to_numpy(dtype=float)
            variance = matrix.to_numpy(dtype=float)
            mesh = ax.pcolormesh(_cell_edges(q_values), _cell_edges(p_values), variance, cmap="viridis", shading="flat")
            fig.colorbar(mesh, ax=ax, label=f"Var({output})")
            low = float(min(p_values.min(), q_values.min()))
            high = float(max(p_values.max(), q_values.max()))
            diagonal_colour = "white"
        else:
            ax.text(0.5, 0.5, f"no {value_column} cells", ha="center", va="center", transform=ax.transAxes)
            low, high, diagonal_colour = 0.0, 1.0, "0.5"
        ax.plot([low, high], [low, high], color=diagonal_colour, linestyle="--", linewidth=1.2, label="p = q")
        if np.isfinite(t_star):
            ax.plot(
                [t_star], [t_star], marker="*", markersize=16, color="red", markeredgecolor="black", linestyle="none",
                label=f"t* = {t_star:.3f} (d = {keep_prob:.3f})",
            )
        ax.set_xlabel(Q_LABEL)
        ax.set_ylabel(P_LABEL)
        ax.set_title(mcue_title(t_star, keep_prob, output, title), fontsize=10)
        # Below the axes, not inside: the heatmap's corner is data.
        fig.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
        # The PNG's text chunks carry t* and d, so a reader (or a test) can check them without parsing pixels.
        metadata = {
            "Title": mcue_title(t_star, keep_prob, output, title),
            "Description": mcue_description(t_star, keep_prob, output),
        }
        fig.savefig(path, dpi=DPI, metadata=metadata)
    finally:
        plt.close(fig)
    return path


# --- Suite plots: one PNG per pair, named <kind>_<pair>.png ---------------------------------------------------------

STRATEGY_ORDER = ("top-n", "iterated-pruning", "iterated-building")
ANNOTATE_UP_TO = 16  # methods; beyond this, heatmap cell labels become unreadable
# One hue per family, and per index within the power-index family, so that a line's colour says what kind of
# method it is; methods that share a hue and a strategy get lighter and darker shades of it.
INDEX_COLOURS = {"shapley": "#1f77b4", "banzhaf": "#9467bd", "beta": "#d62728"}  # blue, purple, red
FAMILY_COLOURS = {
    POWER_INDEX_FAMILY: "#17becf",  # cyan: a power index named by none of INDEX_COLOURS
    "magnitude": "#8c564b",  # brown
    "gradient": "#2ca02c",  # green
    "activation": "#ff7f0e",  # orange
    "random": "#7f7f7f",  # grey
    "attribution": "#bcbd22",  # olive
}
OTHER_COLOUR = "#e377c2"  # pink: a family this table does not know
STRATEGY_LINES = {"top-n": "-", "iterated-pruning": "--", "iterated-building": "-."}
AXIS_MARKERS = {PARAM_AXIS: "s"}  # squares for kept parameters, circles for kept units
UNPRUNED_LINE = (0, (6, 2, 1, 2, 1, 2))  # dash-dot-dot: unlike any strategy's line and MCUE's dotted d


def file_stem(text: str) -> str:
    """A string made safe for a file name (letters, digits, '-', '_' and '.').

    Args:
        text: e.g. a pair name.

    Returns:
        The text with every other character replaced by '_'.
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))


def method_palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One distinct colour per method, stable for a given method list.

    Args:
        methods: method names.

    Returns:
        method -> RGB colour.
    """
    names = list(dict.fromkeys(methods))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "husl", len(names))
    return dict(zip(names, colours, strict=True))


def colour_key(method: str, family: str) -> str:
    """What decides a method's hue: its power index for the power-index family (read from the method's name, e.g.
    "gtap-beta-top-n" -> "beta"), else its family.

    Args:
        method: the suite entry's name.
        family: its family (see :func:`reports.tables.method_families`).

    Returns:
        A key of ``INDEX_COLOURS`` or ``FAMILY_COLOURS``, or the family itself when neither knows it.
    """
    if family == POWER_INDEX_FAMILY:
        tokens = set(re.split(r"[^a-z0-9]+", method.lower()))
        return next((index for index in INDEX_COLOURS if index in tokens), family)
    return family


def _shade(colour: str, position: int, count: int) -> tuple[float, float, float]:
    """The position-th of count shades of a colour, from darker to lighter (the colour itself when count is 1)."""
    rgb = np.array(mcolors.to_rgb(colour))
    if count == 1:
        return tuple(rgb)
    amount = -0.35 + 0.7 * position / (count - 1)  # < 0 mixes in black, > 0 white
    mixed = rgb * (1 + amount) if amount < 0 else rgb + (1 - rgb) * amount
    return tuple(np.clip(mixed, 0, 1))


def method_styles(methods: pd.DataFrame) -> dict[str, dict[str, object]]:
    """How each method is drawn: the colour says the family (and the index of a power index), the line style the
    strategy (solid Top-n, dashed Iterated Pruning, dash-dot Iterated Building), the marker the axis (circles kept
    units, squares kept parameters).

    Args:
        methods: rows with method, family, strategy and axis (as :func:`reports.tables.method_table`).

    Returns:
        method -> matplotlib keyword arguments color, linestyle and marker.
    """
    rows = methods.drop_duplicates("method")
    keys = [colour_key(str(method), str(family)) for method, family in zip(rows["method"], rows["family"],
                                                                              strict=True)]
    groups: dict[tuple[str, str], list[str]] = {}
    for method, key, strategy in zip(rows["method"], keys, rows["strategy"], strict=True):
        groups.setdefault((key, str(strategy)), []).append(method)
    styles = {}
    for method, key, strategy, axis in zip(rows["method"], keys, rows["strategy"], rows["axis"], strict=True):
        shared = groups[(key, str(strategy))]
        base = INDEX_COLOURS.get(key) or FAMILY_COLOURS.get(key, OTHER_COLOUR)
        styles[method] = {
            "color": _shade(base, shared.index(method), len(shared)),
            "linestyle": STRATEGY_LINES.get(str(strategy), ":"),
            "marker": AXIS_MARKERS.get(axis, "o"),
        }
    return styles


def _strategy_panels(methods: pd.DataFrame) -> list[str]:
    """The strategies of a pair's methods, in the order top-n, iterated pruning, iterated building, then others."""
    present = list(dict.fromkeys(methods["strategy"].astype(str)))
    return [strategy for strategy in STRATEGY_ORDER if strategy in present] + [
        strategy for strategy in present if strategy not in STRATEGY_ORDER
    ]


@plt.rc_context(READABLE)
def plot_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Compression curves, one PNG per pair: test accuracy against the kept fraction, one panel per strategy.

    Each line is one method's mean over seeds with a +-1 sample-sd band, styled by :func:`method_styles` (colour:
    family and index, line: strategy, marker: axis). Param-axis methods (unstructured weight pruning) have square
    markers and their x is the kept fraction of parameters. Baselines (methods outside the power-index family) are
    repeated, thin and without markers, in every panel for comparison. The grey vertical line is MCUE's d (mean over
    seeds), the horizontal one the unpruned network's test accuracy (mean over seeds); crosses mark each method's
    accuracy at d. The figure is ``FIGURE_WIDTH`` wide with its legend below the panels, so it is shown unscaled.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair with curve points.
    """
    written = []
    for pair in data.pairs:
        summary = curve_summary(data, pair)
        if summary.empty:
            continue
        methods = method_table(data, pair)
        drawn = methods[["method", "family", "strategy", "axis"]]
        styles = method_styles(methods)
        panels = _strategy_panels(methods)
        keep_prob = mean_keep_prob(data, pair)
        trained = pd.to_numeric(data.runs.loc[data.runs["pair"] == pair, "trained_test_accuracy"], errors="coerce")
        legend_rows = int(np.ceil((len(drawn) + 3) / 4))
        fig, axes = plt.subplots(1, len(panels), figsize=(FIGURE_WIDTH, 4.4 + 0.22 * legend_rows), sharey=True,
                                 squeeze=False, layout="constrained")
        try:
            handles = {}
            for ax, strategy in zip(axes[0], panels, strict=True):
                for method, family, method_strategy, axis in drawn.itertuples(index=False):
                    own = method_strategy == strategy
                    if not own and family == POWER_INDEX_FAMILY:
                        continue
                    style = styles[method]
                    points = summary[(summary["method"] == method) & ~summary["is_mcue_point"]]
                    label = f"{method} (params)" if axis == PARAM_AXIS else method
                    (line,) = ax.plot(
                        points["x"], points["accuracy_mean"], color=style["color"], linestyle=style["linestyle"],
                        linewidth=2.0 if own else 1.0, alpha=1.0 if own else 0.5,
                        marker=style["marker"] if own else None, markersize=4, label=label,
                    )
                    if own:
                        handles[label] = line
                        low = points["accuracy_mean"] - points["accuracy_sd"]
                        high = points["accuracy_mean"] + points["accuracy_sd"]
                        ax.fill_between(points["x"], low, high, color=style["color"], alpha=0.12, linewidth=0)
                        at_d = summary[(summary["method"] == method) & summary["is_mcue_point"]]
                        ax.plot(at_d["x"], at_d["accuracy_mean"], "x", color=style["color"], markersize=8,
                                markeredgewidth=1.5)
                if np.isfinite(keep_prob):
                    ax.axvline(keep_prob, color="0.4", linestyle=":", linewidth=1.2)
                if trained.notna().any():
                    ax.axhline(trained.mean(), color="0.2", linestyle=UNPRUNED_LINE, linewidth=1.0)
                ax.set_title(strategy)
                ax.set_xlabel("kept fraction (of units; squares: of parameters)")
                ax.set_xlim(0, 1.02)
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel("test accuracy (mean ± 1 sd over seeds)")
            extras = [Line2D([], [], color="0.3", marker="x", linestyle="none", label="accuracy at d")]
            if np.isfinite(keep_prob):
                extras.append(Line2D([], [], color="0.4", linestyle=":", label=f"MCUE d = {keep_prob:.3f} (seed mean)"))
            if trained.notna().any():
                extras.append(Line2D([], [], color="0.2", linestyle=UNPRUNED_LINE,
                                     label=f"unpruned = {trained.mean():.4f}"))
            fig.legend(handles=[*handles.values(), *extras], loc="outside lower center", ncols=4, frameon=False)
            fig.suptitle(f"{data.suite}: {pair} — compression curves (thin: baselines repeated from their panel)")
            path = Path(path_dir) / f"curves_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def plot_cost_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Compression curves against what the physically pruned networks cost, one PNG per pair that recorded it.

    Three panels share the accuracy axis: MACs per example, whole-network parameters (both as a fraction of the
    unpruned network's) and measured latency at batch 256. Each line is a unit-axis method's mean over seeds (band
    +-1 sd of accuracy), styled as in :func:`plot_curves`.

    Returns:
        The written paths.
    """
    written = []
    for pair in data.pairs:
        summary = cost_curve_summary(data, pair)
        if summary.empty:
            continue
        methods = method_table(data, pair)
        methods = methods[methods["method"].isin(summary["method"])]
        styles = method_styles(methods)
        legend_rows = int(np.ceil(len(methods) / 4))
        fig, axes = plt.subplots(1, len(COST_AXES), figsize=(FIGURE_WIDTH, 4.2 + 0.22 * legend_rows), sharey=True,
                                 squeeze=False, layout="constrained")
        try:
            handles = {}
            for ax, (column, label) in zip(axes[0], COST_AXES.items(), strict=True):
                for method in methods["method"]:
                    points = summary[summary["method"] == method].sort_values(column)
                    style = styles[method]
                    (line,) = ax.plot(points[column], points["accuracy_mean"], color=style["color"],
                                      linestyle=style["linestyle"], marker=style["marker"], markersize=3,
                                      linewidth=1.5, label=method)
                    ax.fill_between(points[column], points["accuracy_mean"] - points["accuracy_sd"],
                                    points["accuracy_mean"] + points["accuracy_sd"], color=style["color"], alpha=0.1,
                                    linewidth=0)
                    handles[method] = line
                if column == "mac_fraction":
                    for reduction in (2, 4):
                        ax.axvline(1 / reduction, color="0.5", linestyle=":", linewidth=1.0)
                ax.set_xlabel(label)
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel("test accuracy (mean ± 1 sd over seeds)")
            fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=4, frameon=False)
            fig.suptitle(f"{data.suite}: {pair} — accuracy against the pruned network's cost (dotted: 2x and 4x "
                         "fewer MACs)")
            path = Path(path_dir) / f"cost_curves_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def plot_mcue_grid(data: SuiteData, path_dir: Path) -> list[Path]:
    """MCUE heatmaps, one PNG per pair, of the pair's first (lowest) seed that has cells.

    The seed's own stored t* and d are marked (see :func:`plot_mcue`); the title lists d for every seed, so the
    spread over seeds is visible without averaging heatmaps whose argmax differs.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair with MCUE cells.
    """
    written = []
    for pair in data.pairs:
        cells = data.mcue[data.mcue["pair"] == pair]
        if cells.empty:
            continue
        seed = sorted(cells["seed"].unique())[0]
        mcue_runs = data.mcue_runs[data.mcue_runs["pair"] == pair].sort_values("seed")
        chosen = mcue_runs[mcue_runs["seed"] == seed]
        t_star = float(chosen["t_star"].iloc[0]) if len(chosen) else float("nan")
        keep_prob = float(chosen["keep_prob"].iloc[0]) if len(chosen) else float("nan")
        output = str(chosen["output"].iloc[0]) if len(chosen) else "correct"
        d_per_seed = ", ".join(f"{value:.3f}" for value in pd.to_numeric(mcue_runs["keep_prob"], errors="coerce"))
        title = f"{pair}, seed {seed}" + (f" (d over seeds: {d_per_seed})" if d_per_seed else "")
        path = Path(path_dir) / f"mcue_{file_stem(pair)}.png"
        written.append(
            plot_mcue(
                cells[cells["seed"] == seed], t_star=t_star, keep_prob=keep_prob, output=output, path=path, title=title
            )
        )
    return written


@plt.rc_context(READABLE)
def plot_correlations(data: SuiteData, path_dir: Path, *, layer: str = "all") -> list[Path]:
    """Rank correlations between methods' unit scores, one PNG per pair: one method x method heatmap with Spearman's
    rho below the diagonal and Kendall's tau above it (both symmetric, so one matrix holds both at a readable size).

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.
        layer: which layer's correlations ("all" for all units together).

    Returns:
        The written paths, one per pair with correlations for that layer.
    """
    written = []
    for pair in data.pairs:
        rows = data.correlations[(data.correlations["pair"] == pair) & (data.correlations["layer"] == layer)]
        if rows.empty:
            continue
        spearman = correlation_matrix(rows, "spearman")
        kendall = correlation_matrix(rows, "kendall")
        n_methods = len(spearman)
        below = np.tril(np.ones((n_methods, n_methods), dtype=bool), k=-1)
        combined = spearman.where(below, kendall)
        combined = combined.mask(np.eye(n_methods, dtype=bool))  # the diagonal is 1 by definition: left blank
        cell = min(0.6, 8.0 / max(n_methods, 1))  # inches per cell: the figure stays within FIGURE_WIDTH
        fig, ax = plt.subplots(figsize=(min(FIGURE_WIDTH, cell * n_methods + 4.2), cell * n_methods + 2.6),
                               layout="constrained")
        try:
            sns.heatmap(
                combined, ax=ax, vmin=-1, vmax=1, cmap="vlag", square=True, annot=n_methods <= ANNOTATE_UP_TO,
                fmt=".2f", annot_kws={"fontsize": 9}, linewidths=0.5, linecolor="white",
                cbar_kws={"shrink": 0.7, "label": "rank correlation"},
            )
            ax.plot([0, n_methods], [0, n_methods], color="0.3", linewidth=1.0)
            ax.set_title("below the diagonal: Spearman's ρ; above: Kendall's τ")
            ax.set_xlabel("")
            ax.set_ylabel("")
            n_seeds = ", ".join(map(str, sorted(set(rows["n_seeds"].dropna().astype(int)))))
            fig.suptitle(f"{data.suite}: {pair} — rank correlation of unit scores, layer {layer} "
                         f"(mean over seeds: {n_seeds})")
            path = Path(path_dir) / f"correlations_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


@plt.rc_context(READABLE)
def plot_index_vs_magnitude(data: SuiteData, path_dir: Path, *, max_columns: int = 3) -> list[Path]:
    """GTAP's power indices against weight magnitude (GTAP Fig. 8), one PNG per pair, one panel per layer.

    The GTAP entries are the power-index methods with strategy Top-n (their scores come from the full network), one
    colour each; the magnitude entry is a method of family "magnitude" (see
    :func:`reports.tables.index_vs_magnitude_table`). Points are within-layer ranks (fractions, per seed) of the
    magnitude score (x) and the power index (y), all seeds pooled; each panel gives Spearman's rho per GTAP entry as
    the mean of per-seed values. Pairs without a magnitude run or without a power-index Top-n run are skipped.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.
        max_columns: panels per row.

    Returns:
        The written paths.
    """
    written = []
    for pair in data.pairs:
        magnitude_method, joined = index_vs_magnitude_table(data, pair)
        if magnitude_method is None or joined.empty:
            continue
        layers = joined.groupby("layer", sort=False)["unit"].min().sort_values().index.tolist()
        gtap_methods = list(dict.fromkeys(joined["method"]))
        styles = method_styles(method_table(data, pair))
        n_columns = min(max_columns, len(layers))
        n_rows = int(np.ceil(len(layers) / n_columns))
        fig, axes = plt.subplots(n_rows, n_columns, figsize=(min(FIGURE_WIDTH, 3.9 * n_columns + 0.6),
                                                             3.7 * n_rows + 0.9), squeeze=False, layout="constrained")
        try:
            for ax, layer in zip(axes.ravel(), layers, strict=False):
                lines = []
                for method in gtap_methods:
                    rows = joined[(joined["method"] == method) & (joined["layer"] == layer)]
                    ax.scatter(
                        rows["magnitude_rank"], rows["score_rank"], s=8, alpha=0.45, color=styles[method]["color"],
                        label=method,
                    )
                    lines.append(f"{method}: ρ = {mean_seed_spearman(rows):.2f}")
                ax.plot([0, 1], [0, 1], color="0.5", linewidth=0.8, linestyle=":")
                ax.text(0.02, 0.98, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=9,
                        bbox={"facecolor": "white", "alpha": 0.75, "linewidth": 0})
                ax.set_title(f"layer {layer}")
                ax.set_xlabel(f"{magnitude_method} score (rank within layer)")
                ax.set_ylabel("power index (rank within layer)")
                ax.set_xlim(0, 1.02)
                ax.set_ylim(0, 1.02)
            for ax in axes.ravel()[len(layers) :]:
                ax.set_visible(False)
            handles, labels = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False,
                       markerscale=2)
            fig.suptitle(f"{data.suite}: {pair} — power index vs weight magnitude (all seeds; ρ: mean over seeds)")
            path = Path(path_dir) / f"index_vs_magnitude_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


@plt.rc_context(READABLE)
def plot_seed_variance(data: SuiteData, path_dir: Path) -> list[Path]:
    """Spread over seeds, one PNG per pair: AUC per seed and method (box + points), and the sd of accuracy per fraction.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair.
    """
    written = []
    for pair in data.pairs:
        runs = per_seed_runs(data.runs[data.runs["pair"] == pair])
        order = runs.groupby("method", sort=False)["auc"].mean().sort_values(ascending=False).index.tolist()
        sd_matrix = accuracy_sd_matrix(data, pair)
        height = max(3.5, 0.38 * len(order) + 1.8)
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, height), gridspec_kw={"width_ratios": [1, 1.2]},
                                 layout="constrained")
        try:
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert` to boxplot
                warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
                sns.boxplot(
                    data=runs, x="auc", y="method", order=order, ax=axes[0], color="0.9", fliersize=0, width=0.6
                )
            sns.stripplot(
                data=runs, x="auc", y="method", order=order, ax=axes[0], hue="seed", palette="dark", size=5, jitter=0.15
            )
            axes[0].set_title("AUC per seed (box: quartiles over seeds)")
            axes[0].set_xlabel("AUC (mean test accuracy over the kept-fraction grid)")
            axes[0].set_ylabel("")
            axes[0].legend(title="seed", loc="best")
            if sd_matrix.empty:
                axes[1].text(0.5, 0.5, "no curve points", ha="center", va="center", transform=axes[1].transAxes)
                axes[1].set_axis_off()
            else:
                sd_matrix.columns = [f"{fraction:g}" for fraction in sd_matrix.columns]
                sns.heatmap(
                    sd_matrix, ax=axes[1], cmap="rocket_r", vmin=0, annot=len(sd_matrix) <= ANNOTATE_UP_TO, fmt=".3f",
                    annot_kws={"fontsize": 9}, cbar_kws={"label": "sd of test accuracy"},
                )
                axes[1].set_title("sd over seeds of test accuracy at each kept fraction")
                axes[1].set_xlabel("kept fraction (grid)")
                axes[1].set_ylabel("")
            fig.suptitle(f"{data.suite}: {pair} — spread over seeds")
            path = Path(path_dir) / f"seed_variance_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


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
        try:
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
            path = Path(path_dir) / f"learning_curves_{file_stem(pair)}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def plot_glass_box(images: object, labels: Sequence[str], maps: object, path: Path, *, title: str = "") -> Path:
    """NEUROGAME's glass-box maps for a few inputs: one row per input, columns input, activation map, energy,
    payoff, Shapley map and strong-unit mask.

    Each row shows the channel of that input's game layer that passed the most units (the map the layer found most
    to keep). Energy and payoff are per coalition (patch grid); activation, Shapley values and the mask per unit.

    Args:
        images: (B, C, H, W) tensor of inputs in [0, 1].
        labels: the true class name of each input (row titles).
        maps: a ``methods.neurogame.NeuroGameMaps`` of these inputs.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        ``path``.
    """
    x = np.asarray(images.detach().cpu().numpy(), dtype=float)  # type: ignore[attr-defined]
    fields = {name: np.asarray(getattr(maps, name).detach().cpu().numpy(), dtype=float)
              for name in ("activation", "energy", "payoff", "shapley", "mask")}
    columns = (("activation", "activation map", "viridis"), ("energy", "energy E (patch)", "magma_r"),
               ("payoff", "payoff e^(-E/T)/Z", "magma"), ("shapley", "Shapley value", "RdBu_r"),
               ("mask", "strong units", "gray"))
    rows = len(x)
    with plt.rc_context(READABLE):
        fig, axes = plt.subplots(rows, 1 + len(columns), figsize=(FIGURE_WIDTH, 2.0 * rows + 0.6),
                                 layout="constrained", squeeze=False)
        try:
            for i in range(rows):
                channel = int(fields["mask"][i].reshape(fields["mask"].shape[1], -1).sum(1).argmax())
                picture = x[i].transpose(1, 2, 0)
                axes[i, 0].imshow(picture[..., 0] if picture.shape[2] == 1 else picture,
                                  cmap="gray" if picture.shape[2] == 1 else None, vmin=0, vmax=1)
                axes[i, 0].set_title(f"input: {labels[i]}")
                for j, (name, caption, cmap) in enumerate(columns, start=1):
                    values = fields[name][i, channel]
                    if name == "shapley":
                        bound = float(np.abs(values).max()) or 1.0
                        shown = axes[i, j].imshow(values, cmap=cmap, vmin=-bound, vmax=bound)
                    elif name == "mask":
                        shown = axes[i, j].imshow(values, cmap=cmap, vmin=0, vmax=1)
                    else:
                        shown = axes[i, j].imshow(values, cmap=cmap)
                    if name != "mask":
                        fig.colorbar(shown, ax=axes[i, j], shrink=0.8)
                    else:
                        axes[i, j].set_xlabel(f"{values.mean():.0%} passed")
                    axes[i, j].set_title(f"{caption}, ch {channel}" if i == 0 else f"ch {channel}")
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            if title:
                fig.suptitle(title)
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)
    return Path(path)


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
            try:
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
                path = Path(path_dir) / f"task_curves_{file_stem(str(task))}.png"
                fig.savefig(path, dpi=DPI)
                written.append(path)
            finally:
                plt.close(fig)
    return written
