"""Analyses: across methods (ranking correlations between unit scores, seed variance of compression curves), and
the seam for analyses of a trained pair.

An analysis of a trained pair is a registered frozen dataclass in ``ANALYSES``: a pure function of the trained model
(with its initialisation as a control, the validation data, and the methods' unit scores if it wants them) to
tables and headline metrics. A suite lists the analyses it wants; the runner logs their tables as artifacts of the
run that trained the pair, and reports render any table without knowing which analysis made it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from scipy import stats
from torch import nn

from datasets.errors import UsageError
from datasets.registry import Registry
from methods.network.structure import UnitGroup


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


# -- the analysis seam --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisInput:
    """What an analysis of one trained pair and seed may look at.

    Attributes:
        model: the trained flat ``nn.Sequential``, in eval mode (never modified).
        initial: the same architecture at its initialisation (the same seed, before training): the control.
        units: the unit-group stage names; groups: the unit groups with their producer/consumer layers.
        x, y: evaluation data: the validation split (an analysis never sees the test split).
        scores: method -> unit scores (NaN for units a method did not score), when the analysis ``wants_scores``.
        keep_prob: MCUE's d when the suite ran MCUE, else None.
    """

    model: nn.Sequential
    initial: nn.Sequential | None
    units: tuple[str, ...]
    groups: list[UnitGroup]
    x: torch.Tensor
    y: torch.Tensor
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    keep_prob: float | None = None


@dataclass(frozen=True)
class AnalysisResult:
    """Tables (name -> records, one dict per row) and a few headline metrics (name -> number)."""

    tables: dict[str, list[dict[str, Any]]]
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.tables, *self.metrics]:
            if not name or "/" in name or name != name.strip():
                raise UsageError(f"analysis table and metric names must be plain words, got {name!r}")


class Analysis(Protocol):
    """A registered analysis: a pure function of a trained pair (and optionally the methods' scores) to tables.

    Variants are fields of a frozen dataclass, validated on construction (so a suite fails when it loads).

    Attributes:
        wants_scores: the runner passes the unit scores of the suite's methods on this pair and seed.
    """

    wants_scores: ClassVar[bool]

    def __call__(self, data: AnalysisInput, *, rng: np.random.Generator) -> AnalysisResult: ...


ANALYSES: Registry[type] = Registry("analysis")  # filled by the modules that ``methods.analyses`` imports


def build_analysis(name: str, **params: Any) -> Analysis:
    """A registered analysis with its parameters; an unknown parameter is an error that lists the valid ones."""
    cls = ANALYSES.get(name)
    valid = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(f"unknown parameter(s) {unknown} for analysis {name!r}; valid: {', '.join(valid) or 'none'}")
    return cls(**params)
