"""Optional plots of registered analyses: one registry entry per analysis that wants more than its tables.

Every analysis table is rendered by :func:`reports.tables.analysis_summary` whatever made it; an analysis that
also wants a figure registers a function here under the analysis's name::

    @ANALYSIS_PLOTS.register("microstructure")
    def plot_microstructure(tables: dict[str, pd.DataFrame], folder: Path) -> list[tuple[Path, str]]: ...

It gets that analysis's tables ("TABLE" -> the table over every pair and seed) and returns (PNG path, caption)
pairs, which the report shows under the analysis's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from datasets.registry import Registry

AnalysisPlot = Callable[[dict[str, pd.DataFrame], Path], list[tuple[Path, str]]]
ANALYSIS_PLOTS: Registry[AnalysisPlot] = Registry("analysis plot")
