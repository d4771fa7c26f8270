"""Plots of one suite's stored results: each function writes one or more PNGs and returns their paths.

Every function takes plain DataFrames (or a :class:`~reports.data.SuiteData`), draws with matplotlib's Agg backend
and closes its figures, so it is safe to call from a runner that logs artifacts in a loop. The tables drawn are built
in :mod:`reports.tables`. Callers import the plots from this module; they are drawn in

- :mod:`reports.figures`: the backend, figure sizes, file names and :func:`~reports.figures.save_figure`;
- :mod:`reports.styles`: each method's colour, line and marker;
- :mod:`reports.plots_curves`: compression, cost and learning curves;
- :mod:`reports.plots_heatmaps`: MCUE heatmaps, rank correlations, spread over seeds;
- :mod:`reports.plots_units`: power index against magnitude, NEUROGAME's glass-box maps;
- :mod:`reports.plots_heads`: attention heads: each layer pruned alone, and a layer x head map per method.

The report (:func:`reports.render.write_plots`) looks its plot functions up here when it runs.
"""

from __future__ import annotations

from reports.figures import DPI, FIGURE_WIDTH, READABLE, file_stem, save_figure
from reports.plots_curves import (
    plot_cost_curves,
    plot_curves,
    plot_learning_curves,
    plot_task_learning_curves,
    plot_variant_curves,
    plot_weight_curves,
)
from reports.plots_heads import plot_head_maps, plot_layer_curves
from reports.plots_heatmaps import (
    ANNOTATE_UP_TO,
    P_LABEL,
    Q_LABEL,
    mcue_description,
    mcue_title,
    plot_correlations,
    plot_mcue,
    plot_mcue_grid,
    plot_seed_variance,
)
from reports.plots_units import plot_glass_box, plot_index_vs_magnitude
from reports.styles import (
    AXIS_MARKERS,
    FAMILY_COLOURS,
    INDEX_COLOURS,
    OTHER_COLOUR,
    STRATEGY_LINES,
    STRATEGY_ORDER,
    UNPRUNED_LINE,
    colour_key,
    method_palette,
    method_styles,
    strategy_panels,
)

__all__ = [
    "ANNOTATE_UP_TO", "AXIS_MARKERS", "DPI", "FAMILY_COLOURS", "FIGURE_WIDTH", "INDEX_COLOURS", "OTHER_COLOUR",
    "P_LABEL", "Q_LABEL", "READABLE", "STRATEGY_LINES", "STRATEGY_ORDER", "UNPRUNED_LINE", "colour_key", "file_stem",
    "mcue_description", "mcue_title", "method_palette", "method_styles", "plot_correlations", "plot_cost_curves",
    "plot_curves", "plot_glass_box", "plot_head_maps", "plot_index_vs_magnitude", "plot_layer_curves",
    "plot_learning_curves", "plot_mcue", "plot_mcue_grid", "plot_seed_variance", "plot_task_learning_curves",
    "plot_variant_curves", "plot_weight_curves", "save_figure", "strategy_panels",
]
