"""Heatmap figures of a suite: MCUE's variance over (p, q) (GTAP Fig. 2), rank correlations between methods'
unit scores, and the spread of each method's results over seeds.

Each function draws with matplotlib's Agg backend, writes its PNGs through :func:`reports.figures.save_figure`
(which closes every figure) and returns their paths; the tables drawn are built in :mod:`reports.tables`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects

from reports.data import SuiteData
from reports.figures import FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.leaderboard import per_seed_runs
from reports.tables import accuracy_sd_matrix, correlation_matrix, drawn_methods, mcue_matrix

P_LABEL = "p (drop probability within S)"
Q_LABEL = "q (1 - |S|/n)"
ANNOTATE_UP_TO = 16  # methods; beyond this, heatmap cell labels become unreadable


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
    # The PNG's text chunks carry t* and d, so a reader (or a test) can check them without parsing pixels.
    metadata = {
        "Title": mcue_title(t_star, keep_prob, output, title),
        "Description": mcue_description(t_star, keep_prob, output),
    }
    fig, ax = plt.subplots(figsize=(6.4, 6.2), layout="constrained")
    with save_figure(fig, path, metadata=metadata):
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
        # Outlined, so the line shows on the heatmap's light cells and its legend entry on the white page.
        ax.plot([low, high], [low, high], color=diagonal_colour, linestyle="--", linewidth=1.2, label="p = q",
                path_effects=[patheffects.Stroke(linewidth=2.6, foreground="0.15"), patheffects.Normal()])
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
    return path


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
        with save_figure(fig, Path(path_dir) / f"correlations_{file_stem(pair)}.png") as path:
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
        written.append(path)
    return written


@plt.rc_context(READABLE)
def plot_seed_variance(data: SuiteData, path_dir: Path) -> list[Path]:
    """Spread over seeds, one PNG per pair: AUC per seed and method (box + points), and the sd of accuracy per fraction,
    for the unit-axis methods (baselines at their best variant), in one order: best mean AUC first.

    Args:
        data: the suite's results.
        path_dir: folder for the PNGs.

    Returns:
        The written paths, one per pair.
    """
    written = []
    for pair in data.pairs:
        # Kept units only (a param-axis AUC is over kept weights, another scale), baselines at their best variant,
        # and the same order, best mean AUC first, in both panels.
        drawn = set(drawn_methods(data, pair)["method"])
        runs = per_seed_runs(data.runs[(data.runs["pair"] == pair) & data.runs["method"].isin(drawn)])
        if runs.empty:
            continue
        order = runs.groupby("method", sort=False)["auc"].mean().sort_values(ascending=False).index.tolist()
        sd_matrix = accuracy_sd_matrix(data, pair)
        sd_matrix = sd_matrix.reindex([m for m in order if m in sd_matrix.index])
        height = max(3.5, 0.38 * len(order) + 1.8)
        fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, height), gridspec_kw={"width_ratios": [1, 1.2]},
                                 layout="constrained")
        with save_figure(fig, Path(path_dir) / f"seed_variance_{file_stem(pair)}.png") as path:
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
        written.append(path)
    return written
