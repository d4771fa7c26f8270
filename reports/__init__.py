"""Leaderboard reports of a benchmark suite: stored results as DataFrames -> tables, plots, HTML and Markdown.

Nothing here computes a pruning method or talks to MLflow; ``bench/tracking`` fills :class:`SuiteData`.
"""

from reports.data import ReportError, SuiteData
from reports.leaderboard import leaderboard, load_references
from reports.plots import plot_mcue
from reports.render import build_report

__all__ = ["ReportError", "SuiteData", "build_report", "leaderboard", "load_references", "plot_mcue"]
