"""Compression curves on a cost axis: each point's physically pruned network, its MACs and latency."""

import math

import numpy as np
import pytest
import torch

from datasets.models import build_model
from methods.games.neuron import NeuronGame
from methods.pruning.curves import CurvePoint, accuracy_at_mac_fraction, evaluate_path, physical_costs
from methods.pruning.strategies import STRATEGIES
from methods.scorers import PruningProblem, build_scorer

FRACTIONS = [0.05, 0.1, 0.25, 0.5, 1.0]


@pytest.fixture(scope="module")
def lenet300():
    torch.manual_seed(0)
    model = build_model("lenet300", input_shape=(1, 12, 12), num_classes=10).eval()
    x = torch.rand(300, 1, 12, 12)
    y = model(x).argmax(1)  # labels the net fits, so accuracy has room to fall
    return model, PruningProblem.build(model, ("relu1", "relu2"), x[:150], y[:150]), x[150:], y[150:]


def test_every_point_gets_the_pruned_networks_costs_and_accuracy_matches(lenet300):
    model, problem, x_test, y_test = lenet300
    counts = [max(1, round(f * problem.n_units)) for f in FRACTIONS]
    path = STRATEGIES.get("top-n")(build_scorer("wmp"), problem, counts, rng=np.random.default_rng(0))
    points = evaluate_path(path, FRACTIONS, NeuronGame(model, problem.units, x_test, y_test), model, problem.groups)
    masks = [path.masks[c] for c in counts]
    cache: dict = {}
    # x_test given: each pruned network's accuracy is checked against the masked network's (it raises otherwise).
    costed = physical_costs(points, masks, model, problem.groups, (1, 12, 12), latency_cache=cache,
                            x_test=x_test, y_test=y_test)
    assert [p.accuracy for p in costed] == [p.accuracy for p in points]
    macs = [p.mac_fraction for p in costed]
    assert macs == sorted(macs) and macs[-1] == pytest.approx(1.0) and macs[0] < 0.1
    assert all(p.params > 0 and p.latency_b1 > 0 and p.latency_b256 > 0 for p in costed)
    # The unpruned network: 144*300 + 300*100 + 100*10 weights and their biases.
    assert costed[-1].params == 144 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert len(cache) == len({tuple(int(m[g.players].sum()) for g in problem.groups) for m in masks})
    again = physical_costs(points, masks, model, problem.groups, (1, 12, 12), latency_cache=cache, latency=True)
    assert [p.latency_b256 for p in again] == [p.latency_b256 for p in costed]  # shapes seen: timed once


def test_a_pruned_network_that_disagrees_with_the_masked_one_is_an_error(lenet300):
    model, problem, x_test, y_test = lenet300
    mask = np.zeros(problem.n_units, bool)
    mask[:150] = True
    mask[300:350] = True
    wrong = CurvePoint(0.5, 200, 0.5, 0.5, accuracy=0.0, n_evaluations=0, seconds=0.0)
    with pytest.raises(AssertionError, match="differs from the masked network"):
        physical_costs([wrong], [mask], model, problem.groups, (1, 12, 12), latency=False, x_test=x_test,
                       y_test=y_test)


def test_accuracy_at_a_mac_fraction_interpolates_and_is_nan_out_of_reach():
    def point(mac, accuracy):
        return CurvePoint(mac, 1, mac, mac, accuracy, 0, 0.0, mac_fraction=mac)

    curve = [point(1.0, 0.9), point(0.6, 0.8), point(0.4, 0.6), point(0.3, 0.2)]
    assert accuracy_at_mac_fraction(curve, 0.5) == pytest.approx(0.7)
    assert accuracy_at_mac_fraction(curve, 0.3) == pytest.approx(0.2)
    assert math.isnan(accuracy_at_mac_fraction(curve, 0.25))  # never that cheap
    assert math.isnan(accuracy_at_mac_fraction([CurvePoint(1.0, 1, 1.0, 1.0, 0.9, 0, 0.0)], 0.5))  # no MACs
