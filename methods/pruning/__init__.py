"""Pruning: strategies that turn any scorer's scores into nested keep-masks, and the compression curves of those
masks on the test split."""

from methods.pruning.curves import CurvePoint, area_under_curve, evaluate_path, kept_counts, weight_pruning_curve
from methods.pruning.strategies import ALLOCATIONS, STRATEGIES, PruningPath, iterated_building, iterated_pruning, top_n

__all__ = ["ALLOCATIONS", "STRATEGIES", "CurvePoint", "PruningPath", "area_under_curve", "evaluate_path",
           "iterated_building", "iterated_pruning", "kept_counts", "top_n", "weight_pruning_curve"]
