"""The fair variants of a per-unit baseline: layer-normalised scores and uniform per-layer allocation."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from methods.pruning.strategies import STRATEGIES, layer_normalized
from methods.scorers import PruningProblem, ScorerBase, Scores


@dataclass(frozen=True)
class FixedScores(ScorerBase):
    """Scores set by hand: the first layer's all far below the second's, as per-neuron WMP scores the text FFNs."""

    values: tuple[float, ...] = ()
    family = "magnitude"

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        values = np.array(self.values, dtype=float)
        for fixed in (include, exclude):
            if fixed is not None:
                values[np.asarray(fixed, bool)] = np.nan
        return Scores(values)


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10),
                                torch.nn.ReLU(), torch.nn.Linear(10, 3)).eval()
    x = torch.randn(50, 6)
    return PruningProblem.build(model, ("2", "4"), x, model(x).argmax(1))


SMALL_FIRST = tuple(np.r_[np.linspace(0.010, 0.020, 10), np.linspace(1.0, 2.0, 10)])


def test_layer_normalized_divides_each_layer_by_its_mean_and_keeps_nan(problem):
    values = np.array(SMALL_FIRST)
    values[3] = np.nan
    out = layer_normalized(values, problem.groups)
    np.testing.assert_allclose(np.nanmean(out[:10]), 1.0)
    np.testing.assert_allclose(out[10:], values[10:] / values[10:].mean())
    assert np.isnan(out[3]) and np.isnan(values[3])  # the input is not modified either
    assert np.array_equal(layer_normalized(np.zeros(20), problem.groups), np.zeros(20))  # an all-zero layer stays


@pytest.mark.parametrize("strategy", ["top-n", "iterated-pruning", "iterated-building"])
def test_global_ranking_of_raw_scores_empties_a_layer_and_normalized_does_not(problem, strategy):
    scorer = FixedScores(SMALL_FIRST)
    run = STRATEGIES.get(strategy)
    raw = run(scorer, problem, [10], rng=np.random.default_rng(0), allocation="global", step=2)
    normalized = run(scorer, problem, [10], rng=np.random.default_rng(0), allocation="normalized", step=2)
    assert raw.masks[10][:10].sum() == 0  # the straw man: the whole first layer goes first
    kept = normalized.masks[10]
    assert kept.sum() == 10 and 3 <= kept[:10].sum() <= 7
    # Within a layer the order is still the scores' order: the kept units are the layer's best.
    for part in (slice(0, 10), slice(10, 20)):
        chosen = np.flatnonzero(kept[part])
        assert sorted(chosen) == list(range(10 - len(chosen), 10))


def test_uniform_is_top_n_only_and_unknown_allocations_fail(problem):
    scorer = FixedScores(SMALL_FIRST)
    with pytest.raises(ValueError, match="valid here: global, normalized"):
        STRATEGIES.get("iterated-pruning")(scorer, problem, [10], rng=np.random.default_rng(0), allocation="uniform")
    with pytest.raises(ValueError, match="unknown allocation 'layer'"):
        STRATEGIES.get("top-n")(scorer, problem, [10], rng=np.random.default_rng(0), allocation="layer")


def test_wmp_allocation_gives_each_layer_the_share_unstructured_magnitude_pruning_keeps(problem):
    """The GTAP paper's AlexNet protocol: per-layer counts from global unstructured WMP at F (here 0.3)."""
    from methods.pruning.strategies import wmp_layer_fractions

    w1, w2 = problem.model[1].weight.detach().abs(), problem.model[3].weight.detach().abs()
    with torch.no_grad():  # make the second layer's weights larger, so magnitude pruning keeps more of them
        problem.model[3].weight.mul_(3.0)
    try:
        every = torch.cat([w1.flatten(), 3 * w2.flatten()]).sort(descending=True).values
        threshold = every[round(0.3 * len(every)) - 1]
        expected = [float((w1 >= threshold).float().mean()), float((3 * w2 >= threshold).float().mean())]
        fractions = wmp_layer_fractions(problem, 0.3)
        np.testing.assert_allclose(fractions, expected, atol=1e-6)
        assert fractions[1] > fractions[0]
        scorer = FixedScores(SMALL_FIRST)
        path = STRATEGIES.get("top-n")(scorer, problem, [4, 10, 20], rng=np.random.default_rng(0),
                                       allocation="wmp@0.3")
        for r in (4, 10):
            kept = path.masks[r]
            assert kept.sum() == r
            share = kept[:10].sum() / r  # the first layer's share of r, in proportion to 10 * fraction
            assert abs(share - fractions[0] / fractions.sum()) <= 1 / r + 1e-9
            for part in (slice(0, 10), slice(10, 20)):  # within a layer: its best units
                chosen = np.flatnonzero(kept[part])
                assert sorted(chosen) == list(range(10 - len(chosen), 10))
        assert path.masks[20].all()  # a layer that fills up passes the rest to the others
    finally:
        with torch.no_grad():
            problem.model[3].weight.div_(3.0)


def test_wmp_allocation_is_checked(problem):
    scorer = FixedScores(SMALL_FIRST)
    for bad in ("wmp@0", "wmp@1.5", "wmp@x"):
        with pytest.raises(ValueError, match="must be a number in"):
            STRATEGIES.get("top-n")(scorer, problem, [10], rng=np.random.default_rng(0), allocation=bad)
    with pytest.raises(ValueError, match="strategy 'top-n' only"):
        STRATEGIES.get("iterated-building")(scorer, problem, [10], rng=np.random.default_rng(0),
                                            allocation="wmp@0.3")
