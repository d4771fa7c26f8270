"""The estimator benchmark's pure parts: games given as tables, the truth they are judged against, the estimators
under test in one registry, and the quality measures per budget."""

from methods.estimators.benchmark import (
    ESTIMATORS,
    INDEX_NAMES,
    EstimatorSpec,
    Truth,
    budget_to_reach,
    enumerate_game,
    exact_index,
    for_index,
    optional_estimators,
    quality,
    reference_index,
    run_cell,
)

__all__ = [
    "ESTIMATORS", "EstimatorSpec", "INDEX_NAMES", "Truth", "budget_to_reach", "enumerate_game", "exact_index",
    "for_index", "optional_estimators", "quality", "reference_index", "run_cell",
]
