"""Scorers against oracles written out in the test: brute force over all 2^n coalitions, and hand-computed values.

Nothing here trusts ``methods`` for the expected answer: coalition values come from a forward pass of the tiny network
written below, power indices from their defining sums over coalitions, and the gradient scorers' expected values from
the cross-entropy gradient worked out by hand.
"""

import copy
import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods import indices
from methods.scorers import PruningProblem, build_scorer

UNITS = ("relu1", "relu2")
SIZES = (6, 4)
N_UNITS = sum(SIZES)
GROUPS = (np.arange(0, 6), np.arange(6, 10))
KEEP_PROB = 0.3  # d of beta_d in these tests
INDEX_PARAMS = {"shapley": {"index": "shapley"}, "banzhaf": {"index": "banzhaf"},
                "beta": {"index": "beta", "keep_prob": KEEP_PROB}}
# Units dropped (or fixed in) by the masking tests: two of relu1 and one of relu2, all alive in the tiny net.
DROPPED = np.isin(np.arange(N_UNITS), [1, 4, 8])
FIXED_IN = np.isin(np.arange(N_UNITS), [2, 7])


def build_problem(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, units: tuple[str, ...] = UNITS,
                  **game_options) -> PruningProblem:
    """``PruningProblem.build`` for a float64 model (``unit_groups`` traces a sample of the default dtype).

    float64 throughout, so that exact indices can be compared with the brute force to 1e-9.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return PruningProblem.build(model, units, x, y, **game_options)
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def tiny():
    """A 3-6-4-3 ReLU net, trained briefly on a noisy 3-class problem so that v(C) = -loss is smooth and its units
    differ (a fully trained net makes the loss of small coalitions explode, which only adds sampling noise)."""
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] + 0.5 * torch.randn(64, dtype=torch.float64) > 0).long() + (x[:, 2] > 0.5).long()
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 6), relu1=nn.ReLU(), fc2=nn.Linear(6, 4), relu2=nn.ReLU(),
                                      fc3=nn.Linear(4, 3))).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), x, y


@pytest.fixture(scope="module")
def coalition_values(tiny) -> np.ndarray:
    """v(C) = minus the mean cross-entropy of the net with only C's units, for every C; C is the bit mask of the
    index (bit j = unit j), computed with a masked forward pass written out here."""
    model, x, y = tiny
    members = torch.from_numpy((np.arange(2 ** N_UNITS)[:, None] >> np.arange(N_UNITS)) & 1).double()
    keep1, keep2 = members[:, None, :SIZES[0]], members[:, None, SIZES[0]:]  # (2^n, 1, units)
    with torch.no_grad():
        hidden1 = torch.relu(model.fc1(x))[None] * keep1
        hidden2 = torch.relu(model.fc2(hidden1)) * keep2
        logits = model.fc3(hidden2)  # (2^n, examples, classes)
    losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(members)), reduction="none")
    return -losses.view(len(members), len(y)).mean(1).numpy()


def semivalue_weight(index: str, size: int, n_players: int) -> float:
    """The weight of a coalition of ``size`` other players in player i's index (GTAP eqs. 1 and 2, and beta_d)."""
    if index == "shapley":
        return math.factorial(size) * math.factorial(n_players - size - 1) / math.factorial(n_players)
    d = 0.5 if index == "banzhaf" else KEEP_PROB
    return d ** size * (1 - d) ** (n_players - 1 - size)


def brute_force_index(values: np.ndarray, index: str, players, always_in=()) -> np.ndarray:
    """Each of ``players``' index in the game on ``players`` where the units ``always_in`` are in every coalition
    and all other units in none: sum over C of weight(|C|) [v(C + i) - v(C)]. NaN for units outside ``players``."""
    base = sum(1 << int(p) for p in always_in)
    players = [int(p) for p in players]
    result = np.full(N_UNITS, np.nan)
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(len(players)):
            for members in itertools.combinations(others, size):
                coalition = base | sum(1 << p for p in members)
                total += semivalue_weight(index, size, len(players)) * (values[coalition | 1 << i] - values[coalition])
        result[i] = total
    return result


def oracle(values: np.ndarray, index: str, *, layerwise: bool, include=None, exclude=None) -> np.ndarray:
    """The exact index of every free unit, globally or layer-wise (each layer's game with every other free unit in).
    ``include`` units are in every coalition, ``exclude`` units in none."""
    include = np.zeros(N_UNITS, bool) if include is None else include
    exclude = np.zeros(N_UNITS, bool) if exclude is None else exclude
    free = ~(include | exclude)
    if not layerwise:
        return brute_force_index(values, index, np.flatnonzero(free), np.flatnonzero(include))
    result = np.full(N_UNITS, np.nan)
    for group in GROUPS:
        players = group[free[group]]
        always_in = np.flatnonzero(include | (free & ~np.isin(np.arange(N_UNITS), group)))
        result[players] = brute_force_index(values, index, players, always_in)[players]
    return result


def zeroed(model: nn.Sequential, drop: np.ndarray) -> nn.Sequential:
    """A copy of the tiny net in which the ``drop`` units are dead: their producing rows and biases are zero, so
    their ReLU outputs are 0 for every input, exactly as if they were masked."""
    dead = copy.deepcopy(model)
    with torch.no_grad():
        for layer, group in zip(("fc1", "fc2"), GROUPS, strict=True):
            rows = torch.from_numpy(drop[group])
            getattr(dead, layer).weight[rows] = 0.0
            getattr(dead, layer).bias[rows] = 0.0
    return dead


# ------------------------------------------------------------------------------------------ GTAP vs brute force


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
@pytest.mark.parametrize("index", list(INDEX_PARAMS))
def test_gtap_exact_matches_brute_force(tiny, coalition_values, index, layerwise):
    problem = build_problem(*tiny, metric="neg_loss")
    scores = build_scorer("gtap", estimator="exact", layerwise=layerwise, **INDEX_PARAMS[index])(
        problem, rng=np.random.default_rng(0))
    np.testing.assert_allclose(scores.values, oracle(coalition_values, index, layerwise=layerwise), rtol=0, atol=1e-9)
    # Exact enumeration costs 2^n, or 2^|L| per layer L.
    assert scores.n_evaluations == (2 ** 6 + 2 ** 4 if layerwise else 2 ** 10)


# Sampling estimators at a large budget. Each is a mean over >= hundreds of independent units (samples, antithetic
# pairs or permutations), so its error is close to normal with the standard error the estimator reports: a deviation
# beyond 5 stderr has probability below 1e-6 per unit. Separately, the budget must be large enough that the estimate
# is close in absolute terms: within 10% of the largest index (the stderrs are 1-5% of it at this budget).
SAMPLED = [("banzhaf", "shared"), ("beta", "shared"), ("banzhaf", "per-player"), ("beta", "per-player"),
           ("shapley", "permutation")]
BUDGET = 20_000


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
@pytest.mark.parametrize(("index", "estimator"), SAMPLED)
def test_gtap_sampling_estimators_converge_to_brute_force(tiny, coalition_values, index, estimator, layerwise):
    problem = build_problem(*tiny, metric="neg_loss", strategy="dense")  # dense: batched, fast for random coalitions
    exact = oracle(coalition_values, index, layerwise=layerwise)
    scorer = build_scorer("gtap", estimator=estimator, budget=BUDGET, layerwise=layerwise, **INDEX_PARAMS[index])
    scores = scorer(problem, rng=np.random.default_rng(0))
    # The scorer hides the estimator's stderr: ask the estimator itself, with the same draws, for it.
    function = indices.ESTIMATORS["shapley" if index == "shapley" else "banzhaf"][estimator]
    kwargs = {} if index == "shapley" else {"keep_prob": 0.5 if index == "banzhaf" else KEEP_PROB}
    if layerwise:
        reference = indices.per_group(function, problem.game, list(GROUPS), budget=BUDGET,
                                      rng=np.random.default_rng(0), **kwargs)
    else:
        reference = function(problem.game, budget=BUDGET, rng=np.random.default_rng(0), **kwargs)
    np.testing.assert_array_equal(scores.values, reference.values)
    error = np.abs(scores.values - exact)
    scale = np.abs(exact).max()
    assert np.all(error <= 5 * reference.stderr + 1e-12), (error / reference.stderr).max()
    assert error.max() <= 0.1 * scale and reference.stderr.max() <= 0.08 * scale


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
def test_gtap_stratified_shapley_converges_to_brute_force(tiny, coalition_values, layerwise):
    """Stratified Shapley reports no stderr, so it comes from the spread of R independent runs: the mean of R runs of
    budget B / R has stderr std / sqrt(R), and with R = 16 a deviation beyond 5 of them (Student t, 15 degrees of
    freedom) has probability below 2e-4 per unit."""
    problem = build_problem(*tiny, metric="neg_loss", strategy="dense")
    exact = oracle(coalition_values, "shapley", layerwise=layerwise)
    runs = 16
    scorer = build_scorer("gtap", index="shapley", estimator="stratified", budget=BUDGET // runs, layerwise=layerwise)
    estimates = np.stack([scorer(problem, rng=np.random.default_rng(seed)).values for seed in range(runs)])
    stderr = estimates.std(axis=0, ddof=1) / np.sqrt(runs)
    error = np.abs(estimates.mean(axis=0) - exact)
    scale = np.abs(exact).max()
    assert np.all(error <= 5 * stderr + 1e-12), (error / stderr).max()
    assert error.max() <= 0.1 * scale and stderr.max() <= 0.08 * scale


# ------------------------------------------------------------------------------------------ include and exclude


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
@pytest.mark.parametrize("index", list(INDEX_PARAMS))
def test_gtap_include_and_exclude_fix_units_in_every_coalition(tiny, coalition_values, index, layerwise):
    problem = build_problem(*tiny, metric="neg_loss")
    scorer = build_scorer("gtap", estimator="exact", layerwise=layerwise, **INDEX_PARAMS[index])
    scores = scorer(problem, rng=np.random.default_rng(0), include=FIXED_IN, exclude=DROPPED)
    expected = oracle(coalition_values, index, layerwise=layerwise, include=FIXED_IN, exclude=DROPPED)
    assert np.isnan(scores.values[FIXED_IN | DROPPED]).all()
    np.testing.assert_allclose(scores.values, expected, rtol=0, atol=1e-9)


MASKED_SCORERS = {
    "gtap-shapley": ("gtap", {"index": "shapley", "estimator": "exact"}),
    "gtap-beta": ("gtap", {"index": "beta", "keep_prob": KEEP_PROB, "estimator": "exact"}),
    "wgmp": ("wgmp", {}),
    "activation": ("activation", {}),
    "taylor": ("taylor", {}),
}


@pytest.mark.parametrize("name", list(MASKED_SCORERS))
def test_exclude_scores_as_if_the_units_were_removed(tiny, name):
    """Scoring with ``exclude`` equals scoring the network in which those units are dead. (For GTAP: a dead unit is a
    null player, and adding null players changes no other player's Shapley value or beta_d.)"""
    model, x, y = tiny
    method, params = MASKED_SCORERS[name]
    scorer = build_scorer(method, **params)
    problem = build_problem(model, x, y, metric="neg_loss", strategy="dense")
    masked = scorer(problem, rng=np.random.default_rng(0), exclude=DROPPED).values
    removed = scorer(build_problem(zeroed(model, DROPPED), x, y, metric="neg_loss", strategy="dense"),
                     rng=np.random.default_rng(0))
    np.testing.assert_allclose(masked[~DROPPED], removed.values[~DROPPED], rtol=1e-9, atol=1e-12)
    assert np.isnan(masked[DROPPED]).all()
    np.testing.assert_allclose(removed.values[DROPPED], 0.0, atol=1e-12)  # dead units score nothing
    unmasked = scorer(problem, rng=np.random.default_rng(0)).values
    assert not np.allclose(masked[~DROPPED], unmasked[~DROPPED], rtol=1e-3), "the mask must matter for this scorer"


@pytest.mark.parametrize("name", ["wmp", "wgmp", "activation", "taylor"])
def test_network_scorers_include_changes_nothing_and_wmp_ignores_exclude(tiny, name):
    """A unit fixed in is in the full network anyway, so ``include`` only blanks it. WMP reads weights, not the
    masked network, so ``exclude`` only blanks the pruned units too (by design: its docstring names no masking)."""
    problem = build_problem(*tiny, metric="neg_loss")
    scorer = build_scorer(name)
    plain = scorer(problem, rng=np.random.default_rng(0)).values
    fixed = scorer(problem, rng=np.random.default_rng(0), include=FIXED_IN).values
    np.testing.assert_allclose(fixed[~FIXED_IN], plain[~FIXED_IN], rtol=1e-12)
    if name == "wmp":
        masked = scorer(problem, rng=np.random.default_rng(0), exclude=DROPPED).values
        np.testing.assert_array_equal(masked[~DROPPED], plain[~DROPPED])


# ------------------------------------------------------------------------------------------ hand-computed values

W1 = np.array([[0.5, -1.0, 0.25], [-0.75, 0.5, 1.0]])
B1 = np.array([0.1, -0.2])
W2 = np.array([[1.0, -0.5], [-1.5, 2.0]])
B2 = np.array([0.0, 0.3])
X = np.array([[1.0, 0.5, -0.5], [-1.0, 0.2, 0.8], [0.3, -0.9, 0.4], [0.6, 0.8, 1.2]])
Y = np.array([0, 1, 1, 0])


def hand_scores(name: str) -> np.ndarray:
    """The expected score of the two hidden units of Linear(3, 2)-ReLU-Linear(2, 2) on (X, Y), by hand.

    With z1 = X W1^T + b1, a = relu(z1), z2 = a W2^T + b2, p = softmax(z2) and e the one-hot labels, the gradient
    of an example's cross-entropy is dCE/dz2 = p - e, dCE/da = (p - e) W2, dCE/dz1 = dCE/da * [z1 > 0].
    """
    z1 = X @ W1.T + B1
    a = np.maximum(z1, 0.0)
    z2 = a @ W2.T + B2
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = p - np.eye(2)[Y]  # (examples, classes)
    if name == "wmp":  # mean |w| over the unit's 3 incoming and 2 outgoing weights
        return np.array([(np.abs(W1[j]).sum() + np.abs(W2[:, j]).sum()) / 5 for j in range(2)])
    if name == "activation":  # mean |a| over the examples
        return np.abs(a).mean(0)
    if name == "wgmp":  # L = mean cross-entropy; mean |w dL/dw| over the unit's 3 incoming and 2 outgoing weights
        dz2 = residual / len(Y)
        grad_w2 = dz2.T @ a  # (classes, units)
        grad_w1 = ((dz2 @ W2) * (z1 > 0)).T @ X  # (units, inputs)
        return np.array([(np.abs(W1[j] * grad_w1[j]).sum() + np.abs(W2[:, j] * grad_w2[:, j]).sum()) / 5
                         for j in range(2)])
    if name == "taylor":  # per example |a dCE/da| (a neuron's feature map is one value), averaged over examples
        return np.abs(a * (residual @ W2)).mean(0)
    raise ValueError(name)


@pytest.mark.parametrize(("name", "params"), [
    ("wmp", {}), ("activation", {}), ("wgmp", {}), ("wgmp", {"batch_size": 3}), ("taylor", {}),
    ("taylor", {"batch_size": 3}),  # two batches of 3 and 1 examples: the averages must not depend on batching
])
def test_scorers_match_hand_computed_values(name, params):
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 2), relu1=nn.ReLU(), fc2=nn.Linear(2, 2))).double()
    with torch.no_grad():
        for layer, weight, bias in ((model.fc1, W1, B1), (model.fc2, W2, B2)):
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
    problem = build_problem(model, torch.from_numpy(X), torch.from_numpy(Y), units=("relu1",))
    expected = hand_scores(name)
    assert (np.maximum(X @ W1.T + B1, 0) == 0).any(0).all(), "each unit is off for some example (the ReLU matters)"
    scores = build_scorer(name, **params)(problem, rng=np.random.default_rng(0))
    np.testing.assert_allclose(scores.values, expected, rtol=1e-12)
