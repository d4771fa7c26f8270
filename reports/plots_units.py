"""Figures of what single units score: GTAP's power indices against weight magnitude per layer (GTAP Fig. 8), and
NEUROGAME's glass-box maps of a few inputs.

Each function draws with matplotlib's Agg backend, writes its PNGs through :func:`reports.figures.save_figure`
(which closes every figure) and returns their paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from reports.data import SuiteData
from reports.figures import FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.styles import method_styles
from reports.tables import index_vs_magnitude_table, mean_seed_spearman, method_table


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
        with save_figure(fig, Path(path_dir) / f"index_vs_magnitude_{file_stem(pair)}.png") as path:
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
        written.append(path)
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
        with save_figure(fig, path):
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
    return Path(path)
