"""Figures, a table and the report's section for pairs whose players are attention heads: each layer pruned alone, where
each method puts its heads (a layer x head map), and how many heads a network loses before its test accuracy drops a
point."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from reports.data import SuiteData
from reports.figures import FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.format import Block
from reports.leaderboard import sample_sd
from reports.styles import method_styles
from reports.tables import drawn_methods, method_table

DROP = 0.01  # "before it drops 1 point": test accuracy 0.01 below the unpruned network's


def head_pairs(data: SuiteData) -> list[str]:
    """The pairs with per-layer head curves (their players are attention heads)."""
    return [pair for pair in data.pairs if (data.layer_curves["pair"] == pair).any()]


def layer_curve_summary(data: SuiteData, pair: str) -> pd.DataFrame:
    """Mean and sample sd over seeds of the test accuracy with one layer's heads pruned: columns method, layer,
    units_kept, size, accuracy_mean, accuracy_sd, n_seeds (the drawn methods only, baselines at their best
    variant)."""
    rows = data.layer_curves[data.layer_curves["pair"] == pair]
    rows = rows[rows["method"].isin(drawn_methods(data, pair)["method"])]
    if rows.empty:
        return pd.DataFrame(columns=["method", "layer", "units_kept", "size", "accuracy_mean", "accuracy_sd",
                                     "n_seeds"])
    rows = rows.assign(accuracy=pd.to_numeric(rows["accuracy"], errors="coerce"))
    grouped = rows.groupby(["method", "layer", "units_kept", "size"], sort=False)["accuracy"]
    return grouped.agg(accuracy_mean="mean", accuracy_sd=sample_sd, n_seeds="count").reset_index()


@plt.rc_context(READABLE)
def plot_layer_curves(data: SuiteData, path_dir: Path) -> list[Path]:
    """Test accuracy against heads kept in one layer (the others whole), a panel per layer, one PNG per head pair.

    Returns:
        The written paths.
    """
    written = []
    for pair in head_pairs(data):
        summary = layer_curve_summary(data, pair)
        if summary.empty:
            continue
        layers = list(dict.fromkeys(summary["layer"]))
        styles = method_styles(method_table(data, pair))
        order = [m for m in method_table(data, pair)["method"] if m in set(summary["method"])]
        columns = min(4, len(layers))
        rows = math.ceil(len(layers) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH, 3.2 * rows + 1.4), sharey=True,
                                 squeeze=False, layout="constrained")
        with save_figure(fig, Path(path_dir) / f"layer_curves_{file_stem(pair)}.png") as path:
            handles = {}
            for ax, layer in zip(axes.flat, layers, strict=False):
                for method in order:
                    points = summary[(summary["layer"] == layer) & (summary["method"] == method)]
                    points = points.sort_values("units_kept")
                    style = styles[method]
                    (line,) = ax.plot(points["units_kept"], points["accuracy_mean"], color=style["color"],
                                      linestyle=style["linestyle"], marker=style["marker"], markersize=4,
                                      label=method)
                    handles[method] = line
                ax.set_title(layer)
                ax.set_xlabel("heads kept in this layer")
                ax.set_xticks(sorted(set(summary.loc[summary["layer"] == layer, "units_kept"])))
                ax.grid(alpha=0.3)
            for ax in axes.flat[len(layers):]:
                ax.set_visible(False)
            for ax in axes[:, 0]:
                ax.set_ylabel("test accuracy (seed mean)")
            fig.legend(handles=[handles[m] for m in order], loc="outside lower center", ncols=4, frameon=False)
            fig.suptitle(f"{data.suite}: {pair} — one layer's heads pruned in each method's order, the rest kept")
        written.append(path)
    return written


def head_map(data: SuiteData, pair: str, method: str) -> pd.DataFrame:
    """A method's head scores as a layer x head matrix: each seed's scores ranked within the model (0: its least
    important head, 1: its most), then averaged over seeds, so methods on different scales compare."""
    rows = data.scores[(data.scores["pair"] == pair) & (data.scores["method"] == method)]
    rows = rows.assign(score=pd.to_numeric(rows["score"], errors="coerce"))
    rank = rows.groupby("seed")["score"].rank(method="average")
    size = rows.groupby("seed")["score"].transform("count")
    rows = rows.assign(rank=(rank - 1) / (size - 1).clip(lower=1))
    table = rows.groupby(["layer", "position"], sort=False)["rank"].mean().unstack("position")
    return table.reindex(list(dict.fromkeys(rows["layer"])))


@plt.rc_context(READABLE)
def plot_head_maps(data: SuiteData, path_dir: Path) -> list[Path]:
    """Where each method puts a network's important heads: a layer x head map of its within-model rank (seed mean),
    one small panel per drawn method, one PNG per head pair.

    Returns:
        The written paths.
    """
    written = []
    for pair in head_pairs(data):
        methods = [m for m in drawn_methods(data, pair)["method"]
                   if ((data.scores["pair"] == pair) & (data.scores["method"] == m)).any()]
        if not methods:
            continue
        columns = min(5, len(methods))
        rows = math.ceil(len(methods) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH, 2.3 * rows + 1.2), squeeze=False,
                                 layout="constrained")
        with save_figure(fig, Path(path_dir) / f"head_maps_{file_stem(pair)}.png") as path:
            image = None
            for ax, method in zip(axes.flat, methods, strict=False):
                table = head_map(data, pair, method)
                image = ax.imshow(table.to_numpy(float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
                ax.set_title(method, fontsize=9)
                ax.set_yticks(range(len(table)), [str(layer).split(".attn")[0] for layer in table.index],
                              fontsize=8)
                ax.set_xticks(range(table.shape[1]), [str(h) for h in table.columns], fontsize=8)
                ax.set_xlabel("head", fontsize=8)
            for ax in axes.flat[len(methods):]:
                ax.set_visible(False)
            if image is not None:
                fig.colorbar(image, ax=axes, shrink=0.8, label="rank within the model (1: most important)")
            fig.suptitle(f"{data.suite}: {pair} — head importance per layer and head (seed mean of ranks)")
        written.append(path)
    return written


def heads_before_a_drop(data: SuiteData, pair: str) -> pd.DataFrame:
    """How many heads (units) each drawn method removes before the test accuracy drops more than a point below
    the unpruned network's: the fewest units kept on the suite's grid with seed-mean accuracy at least unpruned
    - 0.01, and every larger grid point above that line too.

    Returns:
        Columns method, removable (units), of (all units), accuracy_there (seed mean), unpruned (seed mean).
    """
    curves = data.curves[(data.curves["pair"] == pair) & ~data.curves["is_mcue_point"].astype(bool)]
    trained = pd.to_numeric(data.runs.loc[data.runs["pair"] == pair, "trained_test_accuracy"], errors="coerce")
    records = []
    for method in drawn_methods(data, pair)["method"]:
        own = curves[curves["method"] == method]
        if own.empty or not trained.notna().any():
            continue
        points = own.groupby("units_kept")["accuracy"].mean().sort_index(ascending=False)
        total = int(own["units_kept"].max())
        line = trained.mean() - DROP
        kept, there = total, float(points.iloc[0])
        for units, accuracy in points.items():
            if accuracy < line:
                break
            kept, there = int(units), float(accuracy)
        records.append({"method": method, "removable": total - kept, "of": total, "accuracy_there": there,
                        "unpruned": float(trained.mean())})
    return pd.DataFrame(records, columns=["method", "removable", "of", "accuracy_there", "unpruned"]).sort_values(
        "removable", ascending=False, kind="stable").reset_index(drop=True)


def head_blocks(data: SuiteData, pair: str, images: dict[tuple[str, str], str]) -> list[Block]:
    """A pair whose players are attention heads: how many heads each method removes before the test accuracy drops
    a point, each layer pruned alone, and where each method puts the important heads."""
    if pair not in head_pairs(data):
        return []
    blocks = [Block("h3", "Attention heads")]
    table = heads_before_a_drop(data, pair)
    if len(table):
        blocks.append(Block("p", "Heads removable before the test accuracy falls more than 0.01 below the unpruned "
                                 "network's (seed means, on the suite's grid of kept fractions; Top-n order unless "
                                 "the name says otherwise)."))
        shown = table.assign(accuracy_there=table["accuracy_there"].map(lambda v: f"{v:.4f}"),
                             unpruned=table["unpruned"].map(lambda v: f"{v:.4f}"))
        blocks.append(Block("table", table=shown.rename(columns={"removable": "heads removable", "of": "of",
                                                                  "accuracy_there": "accuracy there"})))
    for kind, caption in (
        ("layer_curves", "Test accuracy with one layer's heads pruned in each method's order (its highest-scored "
                         "heads kept), every other layer whole; seed means, baselines at their best variant."),
        ("head_maps", "Head importance per layer and head: each method's within-model rank of every head (1: its "
                      "most important), seed mean. The rank correlations of these scores (GTAP against Michel et "
                      "al. and the rest) are under 'Rank correlations between methods'."),
    ):
        if (kind, pair) in images:
            blocks.append(Block("image", text=f"{pair}: {caption}", path=images[(kind, pair)]))
    return blocks
