"""The named random streams of a run: every random draw of the benchmark comes from one of these.

A stream is ``numpy.random.default_rng([seed, STREAM])``: the run's seed and a fixed id per purpose, so the draws of
one purpose never depend on how many another made, and ``bench tune`` reproduces a run's numbers by asking for the
same stream. The ids are part of every stored result: changing one changes the numbers.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """What a stream is for; the value is its id."""

    MCUE = 1  # MCUE's sub-networks and instances
    STRATEGY = 2  # the scorer and the pruning strategy of a method run (GTAP's coalitions, random scores, ...)
    ANALYSIS = 3  # an analysis of a trained pair
    MCUE_BAND = 4  # MCUE within one band of layers (the band's position is the stream's third key)
    ESTIMATOR_BENCHMARK = 14  # the estimator benchmark: its games' validation subset (its caches are keyed on it), and
    # the coalitions bench.benchmarks.estimator_limits samples


def stream(seed: int, purpose: Stream, *keys: int) -> np.random.Generator:
    """The generator of ``purpose`` for ``seed`` (``keys`` tell apart several streams of one purpose)."""
    return np.random.default_rng([int(seed), int(purpose), *map(int, keys)])
