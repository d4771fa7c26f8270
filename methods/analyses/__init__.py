"""Analyses: ranking correlations and seed spread across methods, and registered analyses of one trained pair.

Every analysis module is imported here, so ``ANALYSES`` is complete once ``methods.analyses`` is imported.
"""

from methods.analyses import microstructure  # noqa: F401  (registers "microstructure")
from methods.analyses.base import (
    ANALYSES,
    Analysis,
    AnalysisInput,
    AnalysisResult,
    build_analysis,
    rank_correlations,
    seed_spread,
)

__all__ = ["ANALYSES", "Analysis", "AnalysisInput", "AnalysisResult", "build_analysis", "rank_correlations",
           "seed_spread"]
