"""GTAP's beta_d with d following the strategy's target (``GTAPScorer(follow=...)``): the d of every round."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bench.cli import _parse_params
from bench.suite import SuiteError, load_suite
from methods import indices
from methods.games.base import RestrictedGame
from methods.pruning.strategies import STRATEGIES
from methods.scorers import GTAPScorer, PruningProblem, build_scorer

SUITES_DIR = Path(__file__).resolve().parents[1] / "bench" / "suites"
N = 20


class RecordingGame:
    """An additive game (unit i is worth i + 1) that keeps every coalition it is asked to value."""

    def __init__(self, n_players: int) -> None:
        self.n_players = n_players
        self.n_evaluations = 0
        self.coalitions: list[np.ndarray] = []

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.asarray(coalitions, bool)
        self.n_evaluations += len(coalitions)
        self.coalitions.append(coalitions.copy())
        return coalitions @ np.arange(1.0, self.n_players + 1)


def fake_problem(n: int = N) -> PruningProblem:
    # GTAP only looks at the game (and the groups when layerwise), so the model and data can stay empty.
    return PruningProblem(model=torch.nn.Sequential(), units=(), x=torch.empty(0), y=torch.empty(0),
                          game=RecordingGame(n))


class Rounds:
    """Wraps a scorer; records, per call, its arguments (with the rng as the call found it), the free units, the
    coalitions the call sent to the game and the scores."""

    def __init__(self, scorer, problem: PruningProblem) -> None:
        self.scorer, self.problem, self.free, self.coalitions, self.targets = scorer, problem, [], [], []
        self.calls: list[dict] = []
        self.scores = []

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None):
        fixed = np.zeros(problem.n_units, bool)
        for mask in (include, exclude):
            if mask is not None:
                fixed |= np.asarray(mask, bool)
        self.calls.append({"rng": copy.deepcopy(rng), "include": copy.deepcopy(include),
                           "exclude": copy.deepcopy(exclude), "target": target})
        start = len(problem.game.coalitions)
        scores = self.scorer(problem, rng=rng, include=include, exclude=exclude, target=target)
        self.free.append(~fixed)
        self.coalitions.append(np.concatenate(problem.game.coalitions[start:]))
        self.targets.append(target)
        self.scores.append(scores)
        return scores

    def replay(self, i: int, scorer):
        """Call ``i`` again with another scorer, on a fresh game and an rng in the state the call found it in.

        Returns (the scores, the coalitions the call sent to the game).
        """
        problem = fake_problem(self.problem.n_units)
        call = dict(self.calls[i], rng=copy.deepcopy(self.calls[i]["rng"]))
        scores = scorer(problem, **call)
        return scores, np.concatenate(problem.game.coalitions)

    def assert_round_used(self, i: int, keep_prob: float, budget: int) -> None:
        """Round ``i`` sampled and scored exactly as a scorer with the fixed d ``keep_prob`` does on the same call."""
        fixed, coalitions = self.replay(i, build_scorer("gtap", index="beta", keep_prob=keep_prob, budget=budget))
        np.testing.assert_array_equal(self.coalitions[i], coalitions)
        np.testing.assert_array_equal(self.scores[i].values, fixed.values)


# n = 20 units, step 4. Worked by hand from the definitions in GTAPScorer's docstring (T: the target the strategy is
# heading to; building adds 4 units a round, pruning drops 4):
#   building to 8: rounds with 0 and 4 units included; pruning to 8: rounds with 20, 16 and 12 units kept;
#   building to [4, 12]: heading to 4 with 0 included, then to 12 with 4 and with 8 included.
CASES = [
    ("iterated-building", [8], "target", [8, 8], [0.4, 0.4]),
    ("iterated-building", [8], "current", [8, 8], [0.01, 0.2]),  # 0 / 20 clipped to 0.01
    ("iterated-building", [8], "remaining", [8, 8], [0.4, 0.25]),  # 8 / 20, (8 - 4) / 16
    ("iterated-pruning", [8], "target", [8, 8, 8], [0.4, 0.4, 0.4]),
    ("iterated-pruning", [8], "current", [8, 8, 8], [1.0, 0.8, 0.6]),
    ("iterated-pruning", [8], "remaining", [8, 8, 8], [0.4, 0.5, 8 / 12]),
    ("iterated-building", [4, 12], "target", [4, 12, 12], [0.2, 0.6, 0.6]),
    ("iterated-building", [4, 12], "remaining", [4, 12, 12], [0.2, 0.5, 1 / 3]),  # (12 - 4) / 16, (12 - 8) / 12
    ("iterated-pruning", [4, 12], "remaining", [12, 12, 4, 4], [0.6, 0.75, 1 / 3, 0.5]),  # 12/20, 12/16, 4/12, 4/8
    ("top-n", [4, 12], "target", [4], [0.2]),  # one ranking for every target: the smallest one's d
    ("top-n", [4, 12], "current", [4], [1.0]),
]


@pytest.mark.parametrize(("strategy", "targets", "follow", "told", "expected"), CASES)
def test_each_round_samples_coalitions_at_the_followed_d(strategy, targets, follow, told, expected):
    problem = fake_problem()
    scorer = build_scorer("gtap", index="beta", follow=follow, budget=4000)
    rounds = Rounds(scorer, problem)
    path = STRATEGIES.get(strategy)(rounds, problem, targets, rng=np.random.default_rng(0), step=4)
    assert [int(path.masks[t].sum()) for t in targets] == targets
    assert rounds.targets == told
    # Each round's d shows in its result: the same call to a scorer with that d fixed draws the very same coalitions
    # and gives the very same scores, and with a d 10% lower it does not.
    assert len(rounds.calls) == len(expected)
    for i, d in enumerate(expected):
        rounds.assert_round_used(i, d, budget=4000)
        other, _ = rounds.replay(i, build_scorer("gtap", index="beta", keep_prob=d * 0.9, budget=4000))
        assert not np.array_equal(other.values, rounds.scores[i].values)
    # ... and the coalitions of each round really contain each free unit with probability d (4,000 draws of 8 to 20
    # free units: the sampling sd of these densities is below 0.004).
    densities = [c[:, free].mean() for c, free in zip(rounds.coalitions, rounds.free, strict=True)]
    np.testing.assert_allclose(densities, expected, atol=0.02)


def test_a_fixed_d_ignores_the_target():
    problem = fake_problem()
    scorer = build_scorer("gtap", index="beta", keep_prob=0.7, budget=200)
    rounds = Rounds(scorer, problem)
    STRATEGIES.get("iterated-building")(rounds, problem, [8], rng=np.random.default_rng(0), step=4)
    assert rounds.targets == [8, 8]
    for i in range(2):
        # Each round is beta_d at d = 0.7 on the round's restricted game, as indices.estimate computes it ...
        call = rounds.calls[i]
        game = RestrictedGame(fake_problem().game, include=call["include"], exclude=call["exclude"])
        direct = indices.estimate(game, index="banzhaf", estimator="shared", keep_prob=0.7, budget=200,
                                  rng=copy.deepcopy(call["rng"]))
        np.testing.assert_array_equal(rounds.scores[i].values[game.free], direct.values)
        # ... and the same as when no target is passed at all.
        untargeted, _ = rounds.replay(i, lambda problem, **call: scorer(problem, **{**call, "target": None}))
        np.testing.assert_array_equal(untargeted.values, rounds.scores[i].values)


def test_same_seed_same_path_and_the_seed_matters():
    def run(seed):
        problem = fake_problem()
        scorer = build_scorer("gtap", index="beta", follow="remaining", budget=60)
        path = STRATEGIES.get("iterated-pruning")(scorer, problem, [4, 12], rng=np.random.default_rng(seed), step=3)
        return path, np.concatenate(problem.game.coalitions)

    (first, drawn), (again, redrawn), (_, other) = run(0), run(0), run(1)
    assert first.masks.keys() == again.masks.keys()
    for t in first.masks:
        np.testing.assert_array_equal(first.masks[t], again.masks[t])
    assert first.n_evaluations == again.n_evaluations
    np.testing.assert_array_equal(drawn, redrawn)
    assert drawn.shape == other.shape and not np.array_equal(drawn, other)


@pytest.mark.parametrize(("params", "message"), [
    ({"index": "beta", "follow": "targte"}, "unknown follow 'targte'. Did you mean 'target'? Valid: target, current"),
    ({"index": "beta", "follow": "step"}, "Valid: target, current, remaining"),
    ({"index": "beta", "follow": 0.5}, "unknown follow 0.5"),
    ({"index": "banzhaf", "follow": "target"}, "index 'beta' only, not 'banzhaf'"),
    ({"index": "shapley", "follow": "current"}, "index 'beta' only, not 'shapley'"),
    ({"index": "beta", "follow": "target", "keep_prob": 0.3}, "excludes a fixed keep_prob"),
])
def test_bad_follow_options_fail_at_construction_in_one_line(params, message):
    with pytest.raises(ValueError) as err:
        build_scorer("gtap", **params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_target_reading_called_without_a_target_is_an_error_and_current_needs_none():
    problem = fake_problem()
    with pytest.raises(ValueError, match="needs the strategy's target"):
        build_scorer("gtap", index="beta", follow="remaining", budget=50)(problem, rng=np.random.default_rng(0))
    scores = build_scorer("gtap", index="beta", follow="current", budget=50)(problem, rng=np.random.default_rng(0))
    assert np.isfinite(scores.values).all() and scores.n_evaluations == 50


def test_follow_needs_no_mcue_and_leaves_d_out_of_tuning():
    assert build_scorer("gtap", index="beta", follow="target").needs == frozenset()
    assert build_scorer("gtap", index="beta").needs == {"keep_prob"}  # MCUE's d stays the default for beta
    space = GTAPScorer.search_space_for({"index": "beta", "follow": "target"}, strategy="iterated-building",
                                        n_units=N)
    assert "keep_prob" not in space and "budget" in space
    assert "keep_prob" in GTAPScorer.search_space_for({"index": "beta"}, strategy="iterated-building", n_units=N)


def test_follow_comes_in_from_the_cli_and_a_suite(tmp_path):
    params = _parse_params(["index=beta", "follow=remaining", "budget=4000"])
    assert build_scorer("gtap", **params).follow == "remaining"
    raw = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    raw["methods"] = [{"name": "beta-follow", "method": "gtap", "params": {"index": "beta", "follow": "target"},
                       "strategy": "iterated-building"}]
    path = tmp_path / "follow.yaml"
    path.write_text(yaml.safe_dump(raw))
    (entry,) = load_suite(path).methods
    assert entry.params["follow"] == "target" and not entry.needs_mcue
    raw["methods"][0]["params"]["follow"] = "curent"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError, match="Did you mean 'current'"):
        load_suite(path)
