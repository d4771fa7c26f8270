"""NEUROGAME's choices where the paper is silent, as one frozen dataclass
(see the package docstring for each reading)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from datasets.errors import UsageError

COALITION_SIZES = (2, 3)
NEIGHBOURHOODS = (4, 8)
SCHEDULES = ("warmup", "constant")
FILTERS = ("shapley", "random")
UNCOVERED = ("drop", "keep")
# Most (patch x sub-coalition) cells evaluated in one chunk: float temporaries of the exact Shapley stay ~32 MiB.
MAX_SUBSET_CELLS = 1 << 23


@dataclass(frozen=True)
class NeuroGameConfig:
    """Every choice of a NEUROGAME layer (see the module docstring for the reading of the paper behind each).

    Args:
        coalition_size: n, the side of the n x n simple coalitions (2 or 3).
        stride: step between patches; None means n (non-overlapping).
        neighbourhood: 4 or 8, the pairs <i,j> coupled by beta inside a patch.
        alpha: the field term of the energy (alpha in eq. 4).
        beta: the coupling term of the energy (beta in eq. 4).
        temperature: T of the Gibbs distribution (eq. 2), > 0.
        learnable: make alpha, beta and T parameters (trained through a straight-through surrogate).
        spin_scale: spins are tanh(activation / spin_scale).
        top_p: p, the fraction of each map's coalitions that win, in (0, 1].
        quantile: the quantile of the winning units' Shapley values that sets rho (0.25: the first quartile).
        schedule: "warmup" (rho = min(1, epoch / min(warmup_epochs, epochs - 1)) * q) or "constant" (rho = q).
        warmup_epochs: epochs until rho reaches q under "warmup" (fewer when training is shorter).
        filter: "shapley" (strong units) or "random" (the same number of units per map, at random).
        uncovered: "drop" or "keep" the units that no patch covers.
        seed: seed of the random filter in eval mode.
    """

    coalition_size: int = 2
    stride: int | None = None
    neighbourhood: int = 4
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 1.0
    learnable: bool = False
    spin_scale: float = 1.0
    top_p: float = 0.5
    quantile: float = 0.25
    schedule: str = "warmup"
    warmup_epochs: int = 3
    filter: str = "shapley"
    uncovered: str = "drop"
    seed: int = 0

    def __post_init__(self) -> None:
        n = self.coalition_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise UsageError(f"coalition_size n must be an integer >= 2, got {n!r}")
        if n not in COALITION_SIZES:
            raise UsageError(f"coalition_size n must be 2 or 3 (exact Shapley enumerates 2^(n*n) sub-coalitions), "
                             f"got {n}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise UsageError(f"stride must be an integer >= 1 (or None for n), got {self.stride!r}")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise UsageError(f"neighbourhood must be 4 or 8, got {self.neighbourhood!r}")
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise UsageError(f"alpha and beta must be finite, got alpha={self.alpha}, beta={self.beta}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UsageError(f"temperature T must be > 0, got {self.temperature}")
        if not (self.spin_scale > 0 and math.isfinite(self.spin_scale)):
            raise UsageError(f"spin_scale must be > 0, got {self.spin_scale}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.quantile <= 1:
            raise UsageError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 1:
            raise UsageError(f"warmup_epochs must be an integer >= 1, got {self.warmup_epochs!r}")
        if self.filter not in FILTERS:
            raise UsageError(f"unknown filter {self.filter!r}; valid: {', '.join(FILTERS)}")
        if self.uncovered not in UNCOVERED:
            raise UsageError(f"unknown uncovered {self.uncovered!r}; valid: {', '.join(UNCOVERED)}")

    @property
    def patch_stride(self) -> int:
        return self.coalition_size if self.stride is None else self.stride

    @property
    def n_players(self) -> int:
        """Players of one patch game, n^2."""
        return self.coalition_size**2


def configured(config: NeuroGameConfig | None, options: dict[str, Any]) -> NeuroGameConfig:
    """``config`` (default ``NeuroGameConfig()``) with ``options`` replacing its fields; a ValueError names an
    unknown field or a bad value."""
    valid = [f.name for f in dataclasses.fields(NeuroGameConfig)]
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise UsageError(f"NEUROGAME has no option {unknown[0]!r}; valid: {', '.join(valid)}")
    return dataclasses.replace(config or NeuroGameConfig(), **options)
