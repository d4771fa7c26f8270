"""Leaderboard reports of a benchmark suite: stored results as DataFrames -> tables, plots, HTML and Markdown.

Nothing here computes a pruning method or talks to MLflow; ``bench/tracking`` fills :class:`SuiteData`.

``build_report`` and ``plot_mcue`` are imported on first use, so importing one module of the package
(``reports.data`` from the MLflow layer) does not load matplotlib and seaborn with the plots and the report. The data
and leaderboard names load with the package: they need no plotting, and ``reports.leaderboard`` is both a module and
the function of that name, which stays the function only if the package binds it once the module is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reports.data import ReportError, SuiteData
from reports.leaderboard import leaderboard, load_references

if TYPE_CHECKING:
    from reports.plots import plot_mcue
    from reports.render import build_report

__all__ = ["ReportError", "SuiteData", "build_report", "leaderboard", "load_references", "plot_mcue"]


def __getattr__(name: str) -> Any:
    """The plotting names, imported when first asked for (``from reports import build_report``)."""
    if name == "build_report":
        from reports.render import build_report

        return build_report
    if name == "plot_mcue":
        from reports.plots import plot_mcue

        return plot_mcue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
