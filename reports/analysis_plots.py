"""Optional plots of registered analyses: one registry entry per analysis that wants more than its tables.

Every analysis table is rendered by :func:`reports.tables.analysis_summary` whatever made it; an analysis that
also wants a figure registers a function here under the analysis's name::

    FITS_PER_ROW = 3


@ANALYSIS_PLOTS.register("microstructure")
    def plot_microstructure(tables: dict[str, pd.DataFrame], folder: Path) -> list[tuple[Path, str]]: ...

It gets that analysis's tables ("TABLE" -> the table over every pair and seed) and returns (PNG path, caption)
pairs, which the report shows under the analysis's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from datasets.registry import Registry
from reports.figures import file_stem, save_figure

AnalysisPlot = Callable[[dict[str, pd.DataFrame], Path], list[tuple[Path, str]]]
ANALYSIS_PLOTS: Registry[AnalysisPlot] = Registry("analysis plot")


# scipy's parametrisation with loc = 0: (shape, scale) -> density at x
def _density(distribution: str, x: np.ndarray, shape: float, scale: float) -> np.ndarray:
    from scipy import stats

    families = {"lognormal": lambda: stats.lognorm.pdf(x, shape, scale=scale),
                "gamma": lambda: stats.gamma.pdf(x, shape, scale=scale),
                "weibull": lambda: stats.weibull_min.pdf(x, shape, scale=scale),
                "halfnormal": lambda: stats.halfnorm.pdf(x, scale=scale),
                "exponential": lambda: stats.expon.pdf(x, scale=scale)}
    return families[distribution]() if distribution in families else np.full_like(x, np.nan)


FITS_PER_ROW = 3


@ANALYSIS_PLOTS.register("microstructure")
def plot_microstructure(tables: dict[str, pd.DataFrame], folder: Path) -> list[tuple[Path, str]]:
    """Per pair: histograms with fitted densities (log x), QQ plots against the lognormal, and mu and sigma of
    ln|w| per layer with their intervals, trained against initialisation (the first seed's samples; intervals of
    every seed)."""
    written: list[tuple[Path, str]] = []
    histograms, qq, fits, summary = (tables.get(k) for k in ("histograms", "qq", "fits", "summary"))
    if histograms is None or qq is None or fits is None or summary is None or histograms.empty:
        return written
    for pair in dict.fromkeys(histograms["pair"]):
        seed = sorted(histograms.loc[histograms["pair"] == pair, "seed"])[0]
        cases = (histograms[(histograms["pair"] == pair) & (histograms["seed"] == seed)]
                 [["network", "layer", "quantity"]].drop_duplicates())
        cases = cases[cases["network"].isin(["trained", "initial"])]
        columns = len(cases[["layer", "quantity"]].drop_duplicates())
        if columns == 0:
            continue
        keys = list(cases[["layer", "quantity"]].drop_duplicates().itertuples(index=False, name=None))
        # At most FITS_PER_ROW cases side by side (a histogram over its QQ plot), so the figure is shown at the page's
        # width without shrinking its text.
        width = min(columns, FITS_PER_ROW)
        bands = -(-columns // width)
        fig, axes = plt.subplots(2 * bands, width, figsize=(3.4 * width, 6.2 * bands), squeeze=False)
        for unused in range(columns, bands * width):
            axes[2 * (unused // width)][unused % width].set_axis_off()
            axes[2 * (unused // width) + 1][unused % width].set_axis_off()
        path = Path(folder) / f"microstructure_fits_{file_stem(pair)}.png"
        with save_figure(fig, path, bbox_inches="tight"):
            for column, (layer, quantity) in enumerate(keys):
                band, place = divmod(column, width)
                hist_ax, qq_ax = axes[2 * band][place], axes[2 * band + 1][place]
                for network, colour in (("trained", "tab:blue"), ("initial", "tab:gray")):
                    where = {"pair": pair, "seed": seed, "network": network, "layer": layer, "quantity": quantity}
                    h = _select(histograms, where)
                    if h.empty:
                        continue
                    centres = np.sqrt(h["bin_left"] * h["bin_right"]).to_numpy()
                    hist_ax.step(centres, h["density"] * centres, where="mid", color=colour, alpha=0.8,
                                 label=f"{network} (data)")
                    f = _select(fits, where)
                    x = np.geomspace(h["bin_left"].min(), h["bin_right"].max(), 200)
                    for distribution, style in (("lognormal", "-"), ("weibull", ":"), ("gamma", "--")):
                        row = f[f["distribution"] == distribution]
                        if len(row) and network == "trained":
                            shape, scale = float(row["shape"].iloc[0]), float(row["scale"].iloc[0])
                            hist_ax.plot(x, _density(distribution, x, shape, scale) * x, style, color="tab:red",
                                         linewidth=1, label=f"{distribution} fit (trained)")
                    q = _select(qq, where)
                    qq_ax.loglog(q["lognormal"], q["empirical"], ".", color=colour, markersize=3, label=network)
                hist_ax.set_xscale("log")
                hist_ax.set_title(f"{layer}: {quantity}", fontsize=9)
                hist_ax.set_xlabel("value (log scale)", fontsize=8)
                hist_ax.set_ylabel("density in ln x", fontsize=8)
                lims = qq_ax.get_xlim()
                qq_ax.plot(lims, lims, color="0.5", linewidth=0.8)
                qq_ax.set_xlabel("lognormal quantile (fitted)", fontsize=8)
                qq_ax.set_ylabel("empirical quantile", fontsize=8)
            axes[0][0].legend(fontsize=7)
            axes[1][0].legend(fontsize=7)
            fig.suptitle(f"{pair}, seed {seed}: distributions and QQ plots against the lognormal")
            fig.tight_layout()
        written.append((path, f"{pair}: histograms with fitted densities and lognormal QQ plots (seed {seed})"))
        written.extend(_plot_moments(summary[summary["pair"] == pair], pair, folder))
    return written


def _select(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = np.ones(len(frame), bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def _plot_moments(summary: pd.DataFrame, pair: str, folder: Path) -> list[tuple[Path, str]]:
    rows = summary[(summary["quantity"] == "weights_in") & summary["mu"].notna()]
    if rows.empty:
        return []
    layers = list(dict.fromkeys(rows["layer"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    path = Path(folder) / f"microstructure_moments_{file_stem(pair)}.png"
    with save_figure(fig, path, bbox_inches="tight"):
        for ax, moment in zip(axes, ("mu", "sigma"), strict=True):
            for offset, (network, colour) in enumerate((("trained", "tab:blue"), ("initial", "tab:gray"),
                                                        ("pruned-at-d", "tab:green"))):
                part = rows[rows["network"] == network]
                for seed_offset, (_, seed_rows) in enumerate(part.groupby("seed")):
                    x = np.array([layers.index(layer) for layer in seed_rows["layer"]]) + 0.22 * (offset - 1) \
                        + 0.04 * seed_offset
                    low = seed_rows[moment] - seed_rows[f"{moment}_lo"]
                    high = seed_rows[f"{moment}_hi"] - seed_rows[moment]
                    ax.errorbar(x, seed_rows[moment], yerr=[low, high], fmt="o", color=colour, markersize=4,
                                capsize=2, label=network if seed_offset == 0 else None)
            ax.set_xticks(range(len(layers)), layers)
            ax.set_title(f"{moment} of ln|w| (incoming), per seed, with its bootstrap interval", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{pair}: one mu and sigma across layers? (arbitrage equilibrium)")
        fig.tight_layout()
    return [(path, f"{pair}: mu and sigma of ln|w| per layer, trained vs initialisation")]
