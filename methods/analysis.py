"""Analyses across methods: ranking correlations between unit scores, and seed variance of compression curves."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def rank_correlations(scores: Mapping[str, np.ndarray], layers: Mapping[str, np.ndarray]) -> list[dict[str, object]]:
    """Spearman and Kendall correlations between the unit scores of every pair of methods, per layer.

    Args:
        scores: method name -> scores of all units (NaN where a method gave no score).
        layers: layer name -> the unit indices of that layer; a row for all units together is added as "all".

    Returns:
        One record per (layer, method_a, method_b) with method_a < method_b in the given order: spearman, kendall
        and n_units (units scored by both). A correlation is NaN when fewer than 3 units are scored by both or one
        method's scores are constant there.
    """
    names = list(scores)
    n = len(next(iter(scores.values()))) if scores else 0
    groups = {**{name: np.asarray(units) for name, units in layers.items()}, "all": np.arange(n)}
    records = []
    for layer, units in groups.items():
        for a, b in itertools.combinations(names, 2):
            x, y = np.asarray(scores[a], float)[units], np.asarray(scores[b], float)[units]
            both = ~(np.isnan(x) | np.isnan(y))
            x, y = x[both], y[both]
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                spearman = kendall = math.nan
            else:
                spearman = float(stats.spearmanr(x, y).statistic)
                kendall = float(stats.kendalltau(x, y).statistic)
            records.append({"layer": layer, "method_a": a, "method_b": b, "spearman": spearman,
                            "kendall": kendall, "n_units": int(both.sum())})
    return records


def seed_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (NaN for one value), min and max of per-seed values."""
    v = np.asarray(values, float)
    return {"n_seeds": len(v), "mean": float(v.mean()) if len(v) else math.nan,
            "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "min": float(v.min()) if len(v) else math.nan, "max": float(v.max()) if len(v) else math.nan}
