"""Scorers, strategies, MCUE and compression curves on a tiny trained MLP (contract tests over the registries)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets.models import build_model
from methods.games.mcue import OUTPUTS, mcue, sample_subnetworks
from methods.games.neuron import NeuronGame, naive_logits
from methods.network.structure import parameter_counts, unit_groups
from methods.pruning.curves import area_under_curve, evaluate_path, fine_tune, kept_counts, weight_pruning_curve
from methods.pruning.strategies import STRATEGIES, iterated, scoring_rounds
from methods.scorers import SCORERS, PruningProblem, build_scorer

SCORER_PARAMS = {"gtap": {"index": "beta", "keep_prob": 0.3, "budget": 300},
                 "captum-ig": {"n_steps": 8}, "captum-conductance": {"n_steps": 8}}
# Coalition evaluations a scorer declares per call: gtap's shared beta_d estimator evaluates exactly `budget`
# coalitions; every other scorer reads weights or activations and never plays the game.
DECLARED_EVALUATIONS = {"gtap": 300}


@pytest.fixture()
def problem(trained):
    model, units, x, y, *_ = trained
    return PruningProblem.build(model, units, x, y)


@pytest.mark.parametrize("name", SCORERS.names())
def test_scorer_contract(problem, name):
    scorer = build_scorer(name, **SCORER_PARAMS.get(name, {}))
    n = problem.n_units
    declared = DECLARED_EVALUATIONS.get(name, 0)

    def score(seed, **fixed):
        before = problem.game.n_evaluations
        scores = scorer(problem, rng=np.random.default_rng(seed), **fixed)
        # What a scorer reports is what the game counted, and what it declares for its configuration.
        assert scores.n_evaluations == problem.game.n_evaluations - before == declared
        # Forward and backward passes over single examples (tests/test_library_scorers.py counts them).
        assert all(isinstance(k, int) and k >= 0 for k in (scores.n_forward, scores.n_backward))
        return scores

    scores = score(0)
    assert scores.values.shape == (n,) and np.isfinite(scores.values).all()
    again = score(0)
    np.testing.assert_array_equal(scores.values, again.values)  # same seed, same scores
    assert (scores.n_forward, scores.n_backward) == (again.n_forward, again.n_backward)
    # Every scorer takes the strategies' target; one configured without a use for it scores exactly as before.
    np.testing.assert_array_equal(score(0, target=n // 4).values, scores.values)
    exclude = np.zeros(n, bool)
    exclude[:5] = True
    include = np.zeros(n, bool)
    include[-3:] = True
    fixed = score(1, include=include, exclude=exclude)
    assert np.isnan(fixed.values[exclude | include]).all() and np.isfinite(fixed.values[~(exclude | include)]).all()


def test_gtap_spends_its_budget_and_beats_random(problem):
    scorer = build_scorer("gtap", index="beta", keep_prob=0.3, budget=400)
    before = problem.game.n_evaluations
    scores = scorer(problem, rng=np.random.default_rng(0))
    assert 0 < scores.n_evaluations <= 400
    assert scores.n_evaluations == problem.game.n_evaluations - before
    # Iterated Building with beta_d (d near the target size 8/28, as GTAP prescribes) finds 8 units that beat
    # random 8-unit networks. (A one-shot Top-n of the same index need not on so small a net: it ignores the
    # interactions between the units it picks, which is why the paper iterates.)
    path = STRATEGIES.get("iterated-building")(scorer, problem, [8], rng=np.random.default_rng(0), step=2)
    rng = np.random.default_rng(0)
    randoms = [rng.permutation(np.r_[np.ones(8), np.zeros(problem.n_units - 8)]).astype(bool) for _ in range(20)]
    assert problem.game(path.masks[8][None])[0] > np.max(problem.game(np.stack(randoms)))


def test_build_scorer_rejects_unknown_names_and_params():
    with pytest.raises(KeyError, match="Did you mean 'gtap'"):
        build_scorer("gtp")
    with pytest.raises(ValueError, match="valid: index"):
        build_scorer("gtap", indx="shapley")
    # beta_d without a d declares that it needs MCUE's d, and refuses to score until it has one.
    scorer = build_scorer("gtap", index="beta")
    assert scorer.needs == {"keep_prob"}
    with pytest.raises(ValueError, match="needs keep_prob"):
        scorer(None, rng=np.random.default_rng(0))


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("scorer_name", ["gtap", "wmp", "random"])
def test_strategy_masks_nest_and_hit_targets(problem, strategy, scorer_name):
    scorer = build_scorer(scorer_name, **SCORER_PARAMS.get(scorer_name, {}))
    targets = [3, 7, 14, 28]
    path = STRATEGIES.get(strategy)(scorer, problem, targets, rng=np.random.default_rng(0), step=4)
    masks = [path.masks[t] for t in targets]
    assert [int(m.sum()) for m in masks] == targets
    for small, large in zip(masks, masks[1:], strict=False):
        assert not (small & ~large).any(), "a smaller network must be a subset of a larger one"
    costs = [path.n_evaluations[t] for t in targets]
    if strategy == "iterated-pruning":
        assert costs == sorted(costs, reverse=True)
    elif strategy == "iterated-building":
        assert costs == sorted(costs)
    if scorer_name == "gtap" and strategy != "top-n":
        assert path.rounds > 1 and max(costs) > 300  # re-estimation costs more than one round


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize(("targets", "step"), [([3, 7, 14, 28], 4), ([1, 28], 0.3), ([0, 5, 27], 1), ([28], 2)])
def test_scoring_rounds_counts_the_rounds_a_strategy_runs(problem, strategy, targets, step):
    """The suite's cost estimate (bench.benchmarks.work) counts rounds without scoring: it must match the loop."""
    path = STRATEGIES.get(strategy)(build_scorer("random"), problem, targets, rng=np.random.default_rng(0), step=step)
    assert scoring_rounds(strategy, targets, problem.n_units, step) == path.rounds


def test_iterated_pruning_excludes_pruned_units_from_coalitions(problem):
    seen = []

    class Recorder:
        def __call__(self, problem, *, rng, include=None, exclude=None, target=None):
            seen.append(None if exclude is None else exclude.copy())
            return build_scorer("wmp")(problem, rng=rng, include=include, exclude=exclude)

    path = STRATEGIES.get("iterated-pruning")(Recorder(), problem, [10], rng=np.random.default_rng(0), step=6)
    assert len(seen) == 3  # 28 -> 22 -> 16 -> 10
    assert [int(e.sum()) for e in seen] == [0, 6, 12]
    assert not (path.masks[10] & seen[-1]).any()


def test_iterated_rejects_an_unknown_direction(problem):
    with pytest.raises(ValueError, match="valid: prune, build"):
        iterated(build_scorer("wmp"), problem, [10], rng=np.random.default_rng(0), direction="prun")


def test_mcue_on_a_trained_net(problem):
    grid = (0.1, 0.5, 0.9)
    result = mcue(problem.game, rng=np.random.default_rng(0), grid=grid, samples=32, instances=8)
    var = result.variance["correct"]
    assert var.shape == (3, 3) and result.diagonal.shape == (3,)
    assert result.t_star in grid and result.keep_prob == pytest.approx(1 - result.t_star)
    acc = result.mean["correct"]
    assert acc[0, 0] > acc[2, 2]  # diluting more hurts accuracy
    np.testing.assert_allclose(var, acc * (1 - acc), atol=0.03)  # Bernoulli outputs: Var = p (1 - p)
    assert result.n_evaluations == 9 * 32
    again = mcue(problem.game, rng=np.random.default_rng(0), grid=grid, samples=32, instances=8)
    np.testing.assert_array_equal(again.variance["confidence"], result.variance["confidence"])


class LabelGame:
    """A game whose sub-networks predict known labels: sub-network s of cell (i, j) of a ``samples``-per-cell MCUE run
    over an ``n_grid`` grid predicts (PATTERN[s] + instance) % 5, PATTERN chosen by the cell. Shifting by the instance
    leaves a cell's label distribution alone only if its sub-networks share their instances."""

    n_players, n_samples, n_classes = 6, 50, 5
    patterns = {"peak": [0, 0, 1, 2], "diagonal": [0, 0, 0, 1], "off": [3, 3, 3, 3]}

    def __init__(self, n_grid: int, peak: int):
        self.n_grid, self.peak, self.n_evaluations = n_grid, peak, 0

    def predicted(self, coalitions, sample_index):
        samples = len(self.patterns["peak"])
        row = np.arange(self.n_evaluations, self.n_evaluations + len(coalitions))  # MCUE's order: cell by cell
        cell, s = row // samples, row % samples
        i, j = cell // self.n_grid, cell % self.n_grid
        kind = np.where(i != j, "off", np.where(i == self.peak, "peak", "diagonal"))
        base = np.array([self.patterns[k][t] for k, t in zip(kind, s, strict=True)])
        labels = torch.as_tensor((base[:, None] + np.asarray(sample_index)) % self.n_classes)
        self.n_evaluations += len(coalitions)
        return labels == 0, torch.full(labels.shape, 0.5), labels


def test_mcue_label_readings_by_hand():
    grid = (0.1, 0.3, 0.6)
    result = mcue(LabelGame(len(grid), peak=1), rng=np.random.default_rng(0), grid=grid, samples=4, instances=3,
                  output="entropy")
    # peak [0, 0, 1, 2]: shares (1/2, 1/4, 1/4); diagonal [0, 0, 0, 1]: (3/4, 1/4); off-diagonal: one label.
    peak_entropy, diagonal_entropy = 1.5 * np.log(2), -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    # One-hot variance, ddof 1 over 4 sub-networks: sum over classes of 4/3 f (1 - f).
    peak_onehot, diagonal_onehot = 4 / 3 * (0.25 + 2 * 0.1875), 4 / 3 * (2 * 0.1875)
    assert (peak_onehot, diagonal_onehot) == pytest.approx((5 / 6, 1 / 2))
    np.testing.assert_allclose(result.variance["entropy"], np.diag([diagonal_entropy, peak_entropy, diagonal_entropy]),
                               atol=1e-12)
    np.testing.assert_allclose(result.variance["onehot"], np.diag([diagonal_onehot, peak_onehot, diagonal_onehot]),
                               atol=1e-12)
    np.testing.assert_allclose(result.mean["onehot"], [[0.75, 1, 1], [1, 0.5, 1], [1, 1, 0.75]])  # modal share
    assert result.output == "entropy" and result.t_star == 0.3 and result.keep_prob == pytest.approx(0.7)
    np.testing.assert_allclose(result.diagonal, [diagonal_entropy, peak_entropy, diagonal_entropy])
    assert result.t_star_of("onehot") == 0.3
    assert result.n_evaluations == 9 * 4
    records = result.to_records()
    assert len(records) == 9 and {f"var_{name}" for name in OUTPUTS} | {f"mean_{name}" for name in OUTPUTS} <= set(
        records[0])
    assert records[4]["var_entropy"] == pytest.approx(peak_entropy)  # (p, q) = (0.3, 0.3)


def test_mcue_readings_on_a_trained_net(problem):
    grid = (0.0, 0.5)
    result = mcue(problem.game, rng=np.random.default_rng(3), grid=grid, samples=16, instances=8, output="onehot")
    # p = q = 0 keeps every unit: every sub-network is the full network and they all agree.
    assert result.variance["entropy"][0, 0] == 0 and result.variance["onehot"][0, 0] == 0
    assert result.mean["entropy"][0, 0] == 1
    assert result.variance["entropy"][1, 1] > 0 and result.variance["onehot"][1, 1] > 0
    assert (result.variance["entropy"] <= np.log(3) + 1e-12).all()  # 3 classes
    assert (result.variance["onehot"] <= 16 / 15 * (1 - 1 / 3) + 1e-12).all()
    assert result.t_star == 0.5 and {result.t_star_of(name) for name in OUTPUTS} <= set(grid)
    again = mcue(problem.game, rng=np.random.default_rng(3), grid=grid, samples=16, instances=8, output="onehot")
    other = mcue(problem.game, rng=np.random.default_rng(4), grid=grid, samples=16, instances=8, output="onehot")
    for name in OUTPUTS:
        np.testing.assert_array_equal(again.variance[name], result.variance[name])  # same seed, same numbers
        np.testing.assert_array_equal(again.mean[name], result.mean[name])
    assert any(not np.array_equal(other.variance[name], result.variance[name]) for name in OUTPUTS)


def test_mcue_rejects_an_unknown_output_in_one_line(problem):
    with pytest.raises(ValueError) as err:
        mcue(problem.game, rng=np.random.default_rng(0), grid=(0.5,), samples=2, output="variance")
    assert str(err.value) == "unknown MCUE output 'variance'; valid: correct, confidence, entropy, onehot"
    result = mcue(problem.game, rng=np.random.default_rng(0), grid=(0.5,), samples=2, instances=1)
    with pytest.raises(ValueError, match="^unknown MCUE output 'entropie'; valid: [a-z, ]+$"):
        result.t_star_of("entropie")


def test_mcue_over_some_players_keeps_the_others_and_draws_within_them(problem):
    """An uncertainty band of part of the network (GTAP Fig. 6): sub-networks drawn over a band, the rest kept."""
    seen = []

    class Recording:
        def __init__(self, game):
            self.game = game

        def __getattr__(self, name):
            return getattr(self.game, name)

        def predicted(self, coalitions, sample_index):
            seen.append(np.array(coalitions))
            return self.game.predicted(coalitions, sample_index)

    band = np.arange(problem.n_units) % 3 == 0
    grid = (0.0, 0.5)
    result = mcue(Recording(problem.game), rng=np.random.default_rng(0), grid=grid, samples=8, instances=4,
                  players=band)
    drawn = np.concatenate(seen)
    assert drawn[:, ~band].all()  # outside the band: always kept
    sizes = drawn[:, band].sum(1).reshape(len(grid), len(grid), 8)  # rows p, cells q, then the cell's draws
    assert (sizes[0, 0] == band.sum()).all() and (sizes[0, 1] == round(0.5 * band.sum())).all()  # p = 0: exactly
    assert result.n_ablated == band.sum() and result.n_evaluations == len(drawn)
    everything = mcue(problem.game, rng=np.random.default_rng(0), grid=grid, samples=8, instances=4)
    assert everything.n_ablated == problem.n_units
    same = mcue(problem.game, rng=np.random.default_rng(0), grid=grid, samples=8, instances=4,
                players=np.arange(problem.n_units))  # the band of every player is plain MCUE
    np.testing.assert_array_equal(same.variance["correct"], everything.variance["correct"])
    for bad in (np.zeros(problem.n_units, bool), [0, 0], [problem.n_units], np.ones(3, bool)):
        with pytest.raises(ValueError, match="MCUE players"):
            mcue(problem.game, rng=np.random.default_rng(0), grid=grid, samples=2, players=bad)


def test_sample_subnetworks_sizes():
    rng = np.random.default_rng(0)
    exact = sample_subnetworks(50, 0.0, 0.3, 100, rng)
    assert (exact.sum(1) == 35).all()  # p = 0: exactly (1 - q) n
    diluted = sample_subnetworks(1000, 0.5, 0.5, 200, rng)
    assert abs(diluted.sum(1).mean() - 250) < 10


def test_curves_use_test_data_and_parameter_counts(trained, problem):
    model, units, _, _, x_test, y_test = trained
    fractions = [0.25, 0.5, 1.0]
    path = STRATEGIES.get("top-n")(build_scorer("wmp"), problem, list(kept_counts(fractions, 28).values()),
                                   rng=np.random.default_rng(0))
    test_game = NeuronGame(model, units, x_test, y_test)
    points = evaluate_path(path, fractions, test_game, model, problem.groups)
    full = points[-1]
    assert full.unit_fraction == 1.0 and full.param_fraction == 1.0
    assert full.accuracy == pytest.approx(float((model(x_test).argmax(1) == y_test).float().mean()))
    half = points[1]
    expected = float((naive_logits(model, units, x_test, path.masks[14]).argmax(1) == y_test).float().mean())
    assert half.accuracy == pytest.approx(expected)
    assert 0 < half.param_fraction < 1
    assert 0 <= area_under_curve(points) <= 1


def test_parameter_counts_match_a_physically_smaller_net():
    model = build_model("lenet300", input_shape=(1, 8, 8), num_classes=10)
    groups = unit_groups(model, ("relu1", "relu2"), (1, 8, 8))
    mask = np.zeros(400, bool)
    mask[:30] = True  # 30 of the first layer's units
    mask[300:310] = True  # 10 of the second's
    kept, total = parameter_counts(model, groups, mask)
    assert total == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert kept == 64 * 30 + 30 + 30 * 10 + 10 + 10 * 10 + 10


def test_unstructured_magnitude_curve_is_monotone_in_parameters(trained, problem):
    model, units, _, _, x_test, y_test = trained
    magnitudes = build_scorer("wmp", form="unstructured").weight_scores(problem)
    points = weight_pruning_curve(model, problem.groups, [0.0, 0.3, 1.0], magnitudes, x_test, y_test)
    assert [p.param_fraction for p in points] == pytest.approx([0.0, 0.3, 1.0], abs=0.01)
    assert points[-1].accuracy == pytest.approx(float((model(x_test).argmax(1) == y_test).float().mean()))
    assert points[0].units_kept == 0


def test_fine_tune_keeps_pruned_units_silent(trained, problem):
    model, units, x, y, *_ = trained
    mask = np.ones(28, bool)
    mask[:8] = False
    tuned = fine_tune(model, problem.groups, mask, x, y, epochs=1)
    acts = {}
    tuned[2].register_forward_hook(lambda m, i, o: acts.setdefault("relu1", o))
    tuned(x[:10])
    assert (acts["relu1"][:, :8] == 0).all()
    assert not torch.equal(tuned[1].weight, model[1].weight)  # it trained


def test_uniform_allocation_hits_every_target_exactly(problem):
    targets = [1, 5, 9, 13, 27]
    path = STRATEGIES.get("top-n")(build_scorer("wmp"), problem, targets, rng=np.random.default_rng(0),
                                   allocation="uniform")
    assert [int(path.masks[t].sum()) for t in targets] == targets
    half = path.masks[13]
    assert abs(int(half[:16].sum()) - 13 * 16 / 28) < 1 and abs(int(half[16:].sum()) - 13 * 12 / 28) < 1


def test_activation_scores_are_means_over_feature_maps():
    """A conv channel's score is its mean |activation| per position, comparable to a neuron's."""
    torch.manual_seed(0)
    model = build_model("face-cnn", input_shape=(3, 16, 16), num_classes=2).eval()
    x = torch.rand(32, 3, 16, 16)
    y = torch.randint(0, 2, (32,))
    problem = PruningProblem.build(model, ("relu1", "relu4"), x, y)
    scores = build_scorer("activation")(problem, rng=np.random.default_rng(0)).values
    with torch.no_grad():
        relu1 = model[:2](x)
    np.testing.assert_allclose(scores[:32], relu1.abs().mean((0, 2, 3)).numpy(), rtol=1e-5)
    # Taylor on the same channels, by hand (Molchanov et al.): per example |mean over the feature map of a * dL/da|
    # with L the example's cross-entropy, averaged over the examples.
    taylor = build_scorer("taylor")(problem, rng=np.random.default_rng(0)).values
    relu1 = model[:2](x)
    relu1.retain_grad()
    F.cross_entropy(model[2:](relu1), y, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    expected = (relu1 * relu1.grad).mean((2, 3)).abs().mean(0)
    np.testing.assert_allclose(taylor[:32], expected.detach().numpy(), rtol=1e-4, atol=1e-9)
