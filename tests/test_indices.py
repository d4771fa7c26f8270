"""Power indices: exact values against closed forms and shapiq, axioms, convergence, budgets, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import shapiq
from hypothesis import given, settings
from hypothesis import strategies as st

from methods import indices
from methods.games.base import FunctionGame, RestrictedGame
from methods.games.toy import (
    AdditiveGame,
    RandomGame,
    TableGame,
    UnanimityGame,
    WeightedVotingGame,
    coalition_codes,
)
from methods.indices import (
    ESTIMATORS,
    IndexEstimate,
    banzhaf_per_player,
    banzhaf_shared,
    estimate,
    exact_banzhaf,
    exact_shapley,
    per_group,
    shapley_permutation,
    shapley_stratified,
)
from methods.indices import core as indices_core  # MAX_ROWS lives here; the estimators read it at call time

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)

# (name, function, keyword arguments, exact index): every sampling estimator, beta_d with d != 1/2 included
SAMPLERS = [
    ("permutation", shapley_permutation, {}, "shapley"),
    ("permutation-plain", shapley_permutation, {"antithetic": False}, "shapley"),
    ("stratified", shapley_stratified, {}, "shapley"),
    ("per-player", banzhaf_per_player, {"keep_prob": 0.5}, "banzhaf"),
    ("per-player-d0.3", banzhaf_per_player, {"keep_prob": 0.3}, "banzhaf"),
    ("per-player-d0.8-plain", banzhaf_per_player, {"keep_prob": 0.8, "antithetic": False}, "banzhaf"),
    ("shared", banzhaf_shared, {"keep_prob": 0.5}, "banzhaf"),
    ("shared-d0.3", banzhaf_shared, {"keep_prob": 0.3}, "banzhaf"),
    ("shared-d0.8-plain", banzhaf_shared, {"keep_prob": 0.8, "antithetic": False}, "banzhaf"),
]
SAMPLER_IDS = [name for name, *_ in SAMPLERS]


def exact_reference(game, kind: str, kwargs: dict) -> np.ndarray:
    if kind == "shapley":
        return exact_shapley(game).values
    return exact_banzhaf(game, keep_prob=kwargs["keep_prob"]).values


class RecordingGame:
    """Wraps a game and keeps every coalition matrix it is called with."""

    def __init__(self, game) -> None:
        self.game = game
        self.n_players = game.n_players
        self.calls: list[np.ndarray] = []

    @property
    def n_evaluations(self) -> int:
        return self.game.n_evaluations

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        self.calls.append(np.array(coalitions, dtype=bool))
        return self.game(coalitions)


def swap_bits(codes: np.ndarray, i: int, j: int) -> np.ndarray:
    bit_i, bit_j = (codes >> i) & 1, (codes >> j) & 1
    return codes ^ ((bit_i ^ bit_j) << i) ^ ((bit_i ^ bit_j) << j)


@st.composite
def structured_tables(draw):
    """A random game table with players 0 and 1 interchangeable and the last player null."""
    n = draw(st.integers(min_value=3, max_value=6))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    table = np.random.default_rng(seed).normal(size=1 << n)
    codes = np.arange(1 << n)
    null = 1 << (n - 1)
    table = table[codes & ~null]  # v(C) = v(C minus the last player)
    table = (table + table[swap_bits(codes, 0, 1)]) / 2  # v is invariant to swapping players 0 and 1
    return table


# --------------------------------------------------------------------------------------------- exact values


def test_weighted_voting_exact_hand_computed():
    # weights (4, 2, 1), quota 5: A is pivotal in 4 of 6 orders; B and C in one each
    game = WeightedVotingGame([4, 2, 1], 5)
    np.testing.assert_allclose(exact_shapley(game).values, [2 / 3, 1 / 6, 1 / 6])
    np.testing.assert_allclose(exact_banzhaf(game).values, [3 / 4, 1 / 4, 1 / 4])


@pytest.mark.parametrize("keep_prob", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_unanimity_exact_closed_form(keep_prob):
    game = UnanimityGame(7, [1, 3, 4])
    np.testing.assert_allclose(exact_shapley(game).values, game.shapley_values(), atol=1e-12)
    np.testing.assert_allclose(
        exact_banzhaf(game, keep_prob=keep_prob).values, game.banzhaf_values(keep_prob), atol=1e-12
    )
    np.testing.assert_allclose(game.banzhaf_values(0.5)[[1, 3, 4]], 0.25)


@pytest.mark.parametrize("keep_prob", [0.0, 0.3, 0.5, 1.0])
def test_additive_exact_equals_weights(keep_prob):
    weights = np.array([0.5, -1.0, 2.0, 0.0, 3.5])
    game = AdditiveGame(weights)
    np.testing.assert_allclose(exact_shapley(game).values, weights, atol=1e-12)
    np.testing.assert_allclose(exact_banzhaf(game, keep_prob=keep_prob).values, weights, atol=1e-12)


@pytest.mark.parametrize(
    "game",
    [
        UnanimityGame(6, [0, 2, 5]),
        AdditiveGame([1.0, -2.0, 0.5, 0.25, 3.0]),
        WeightedVotingGame([4, 3, 2, 2, 1, 1], 7),
        RandomGame(7, np.random.default_rng(0)),
    ],
    ids=["unanimity", "additive", "voting", "random"],
)
def test_exact_matches_shapiq_exact_computer(game):
    computer = shapiq.ExactComputer(game, n_players=game.n_players)
    np.testing.assert_allclose(exact_shapley(game).values, computer("SV").get_n_order_values(1), atol=1e-10)
    np.testing.assert_allclose(exact_banzhaf(game).values, computer("BV").get_n_order_values(1), atol=1e-10)


def test_exact_result_fields_and_cost():
    game = RandomGame(5, np.random.default_rng(1))
    shapley = exact_shapley(game)
    banzhaf = exact_banzhaf(game, keep_prob=0.3)
    assert (shapley.index, shapley.keep_prob) == ("shapley", None)
    assert (banzhaf.index, banzhaf.keep_prob) == ("banzhaf", 0.3)
    assert shapley.n_evaluations == banzhaf.n_evaluations == 32
    assert game.n_evaluations == 64
    assert shapley.values.dtype == np.float64 and shapley.values.shape == (5,)
    np.testing.assert_array_equal(shapley.stderr, 0.0)


def test_exact_refuses_too_many_players():
    game = FunctionGame(lambda c: c.sum(axis=1), n_players=indices.MAX_EXACT_PLAYERS + 1)
    with pytest.raises(ValueError, match="refusing n_players=21"):
        exact_shapley(game)
    with pytest.raises(ValueError, match="sampling estimator"):
        exact_banzhaf(game)
    assert game.n_evaluations == 0


def test_exact_single_player():
    game = FunctionGame(lambda c: 3.0 * c[:, 0] + 1.0, n_players=1)
    assert exact_shapley(game).values.tolist() == [3.0]
    assert exact_banzhaf(game, keep_prob=0.1).values.tolist() == [3.0]


# ------------------------------------------------------------------------------------------------- axioms


@PROPERTY
@given(structured_tables())
def test_exact_axioms(table):
    game = TableGame(table)
    n = game.n_players
    shapley = exact_shapley(game).values
    assert shapley.sum() == pytest.approx(table[-1] - table[0], abs=1e-10)  # efficiency
    assert shapley[0] == pytest.approx(shapley[1], abs=1e-10)  # symmetry
    assert shapley[n - 1] == pytest.approx(0.0, abs=1e-10)  # null player
    for keep_prob in (0.5, 0.25):
        banzhaf = exact_banzhaf(game, keep_prob=keep_prob).values
        assert banzhaf[0] == pytest.approx(banzhaf[1], abs=1e-10)
        assert banzhaf[n - 1] == pytest.approx(0.0, abs=1e-10)


@PROPERTY
@given(structured_tables(), st.integers(0, 2**32 - 1), st.integers(0, 300), st.booleans())
def test_permutation_sampling_is_efficient_and_null_exact(table, seed, extra_budget, antithetic):
    game = TableGame(table)
    n = game.n_players
    result = shapley_permutation(
        game, budget=n + 1 + extra_budget, rng=np.random.default_rng(seed), antithetic=antithetic
    )
    assert result.values.sum() == pytest.approx(table[-1] - table[0], abs=1e-10)
    assert result.values[n - 1] == 0.0


@PROPERTY
@given(structured_tables(), st.integers(0, 2**32 - 1), st.sampled_from([0.2, 0.5, 0.9]), st.booleans())
def test_per_player_banzhaf_null_player_exact(table, seed, keep_prob, antithetic):
    game = TableGame(table)
    result = banzhaf_per_player(
        game,
        budget=40 * game.n_players,
        rng=np.random.default_rng(seed),
        keep_prob=keep_prob,
        antithetic=antithetic,
    )
    assert result.values[game.n_players - 1] == 0.0
    assert result.stderr[game.n_players - 1] == 0.0


@PROPERTY
@given(structured_tables(), st.integers(0, 2**32 - 1))
def test_sampled_axioms_hold_approximately(table, seed):
    game = TableGame(table)
    n = game.n_players
    rng = np.random.default_rng(seed)
    stratified = shapley_stratified(game, budget=4000, rng=rng).values
    assert stratified.sum() == pytest.approx(table[-1] - table[0], abs=0.25)
    assert stratified[0] == pytest.approx(stratified[1], abs=0.25)
    assert stratified[n - 1] == pytest.approx(0.0, abs=0.25)
    shared = banzhaf_shared(game, budget=4000, rng=rng, keep_prob=0.4)
    assert shared.values[0] == pytest.approx(shared.values[1], abs=0.25)
    assert shared.values[n - 1] == pytest.approx(0.0, abs=0.25)


# -------------------------------------------------------------------------------------------- convergence


@pytest.mark.parametrize(("name", "function", "kwargs", "kind"), SAMPLERS, ids=SAMPLER_IDS)
def test_sampled_estimates_converge_to_exact(name, function, kwargs, kind):
    game = RandomGame(6, np.random.default_rng(42))
    exact = exact_reference(game, kind, kwargs)

    def rmse(budget: int) -> float:
        errors = [
            function(game, budget=budget, rng=np.random.default_rng(seed), **kwargs).values - exact
            for seed in range(12)
        ]
        return float(np.sqrt(np.mean(np.square(errors))))

    small, large = rmse(120), rmse(12_000)
    assert large < small / 4  # the Monte-Carlo rate predicts a factor of 10
    assert large < 0.05


@pytest.mark.parametrize(("name", "function", "kwargs", "kind"), SAMPLERS, ids=SAMPLER_IDS)
def test_sampled_estimates_on_closed_form_games(name, function, kwargs, kind):
    game = UnanimityGame(6, [0, 2, 3])
    truth = game.shapley_values() if kind == "shapley" else game.banzhaf_values(kwargs["keep_prob"])
    result = function(game, budget=20_000, rng=np.random.default_rng(7), **kwargs)
    np.testing.assert_allclose(result.values, truth, atol=0.04)


@pytest.mark.parametrize(
    ("name", "function", "kwargs", "kind"),
    [s for s in SAMPLERS if s[0] != "stratified"],
    ids=[i for i in SAMPLER_IDS if i != "stratified"],
)
def test_stderr_is_calibrated(name, function, kwargs, kind):
    game = WeightedVotingGame([4, 3, 2, 2, 1], 6)
    exact = exact_reference(game, kind, kwargs)
    z = []
    for seed in range(60):
        result = function(game, budget=400, rng=np.random.default_rng(seed), **kwargs)
        assert result.stderr is not None and np.all(result.stderr >= 0)
        ok = result.stderr > 0
        z.append((result.values - exact)[ok] / result.stderr[ok])
    z = np.concatenate(z)
    assert 0.7 < z.std() < 1.4
    assert np.mean(np.abs(z) < 2) > 0.85


# -------------------------------------------------------------------------------------------------- budget


BUDGET_CASES = [7, 8, 13, 37, 250]


@pytest.mark.parametrize("budget", BUDGET_CASES)
@pytest.mark.parametrize(("name", "function", "kwargs", "kind"), SAMPLERS, ids=SAMPLER_IDS)
def test_budget_is_respected_and_counted(monkeypatch, name, function, kwargs, kind, budget):
    monkeypatch.setattr(indices_core, "MAX_ROWS", 5)
    game = RecordingGame(RandomGame(6, np.random.default_rng(0)))
    minimum = {shapley_permutation: 7, shapley_stratified: 7, banzhaf_per_player: 12, banzhaf_shared: 2}
    minimum = minimum[function]  # n + 1, n + 1, 2n, 2 for n = 6
    if budget < minimum:
        with pytest.raises(ValueError, match="needs a budget of at least"):
            function(game, budget=budget, rng=np.random.default_rng(0), **kwargs)
        assert game.n_evaluations == 0
        return
    result = function(game, budget=budget, rng=np.random.default_rng(0), **kwargs)
    assert result.n_evaluations == game.n_evaluations <= budget
    assert max(len(c) for c in game.calls) <= 5
    assert isinstance(result, IndexEstimate) and result.values.shape == (6,)
    assert np.all(np.isfinite(result.values))


@pytest.mark.parametrize(("name", "function", "kwargs", "kind"), SAMPLERS, ids=SAMPLER_IDS)
def test_result_does_not_depend_on_chunk_size(monkeypatch, name, function, kwargs, kind):
    game = RandomGame(5, np.random.default_rng(3))
    reference = function(game, budget=301, rng=np.random.default_rng(11), **kwargs)
    monkeypatch.setattr(indices_core, "MAX_ROWS", 3)
    recording = RecordingGame(game)
    chunked = function(recording, budget=301, rng=np.random.default_rng(11), **kwargs)
    assert max(len(c) for c in recording.calls) <= 3  # the smaller chunks were really used
    np.testing.assert_allclose(chunked.values, reference.values, rtol=1e-12, atol=1e-12)


def test_budget_too_small_messages():
    game = RandomGame(4, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"shapley_permutation needs a budget of at least 5"):
        shapley_permutation(game, budget=4, rng=rng)
    with pytest.raises(ValueError, match=r"banzhaf_per_player needs a budget of at least 8"):
        banzhaf_per_player(game, budget=7, rng=rng)
    with pytest.raises(ValueError, match="non-negative"):
        banzhaf_shared(game, budget=-1, rng=rng)
    with pytest.raises(TypeError, match="Generator"):
        banzhaf_shared(game, budget=10, rng=0)
    with pytest.raises(ValueError, match=r"keep_prob \(d in the GTAP paper\)"):
        banzhaf_shared(game, budget=10, rng=rng, keep_prob=1.5)
    assert game.n_evaluations == 0


def test_exact_evaluation_is_chunked(monkeypatch):
    monkeypatch.setattr(indices_core, "MAX_ROWS", 10)
    game = RecordingGame(RandomGame(5, np.random.default_rng(0)))
    chunked = exact_shapley(game).values
    assert max(len(c) for c in game.calls) <= 10 and game.n_evaluations == 32
    monkeypatch.setattr(indices_core, "MAX_ROWS", 2048)
    np.testing.assert_allclose(exact_shapley(game).values, chunked)


# ----------------------------------------------------------------------------------------- coalition order


def test_permutation_rows_are_prefix_chains():
    game = RecordingGame(RandomGame(5, np.random.default_rng(0)))
    shapley_permutation(game, budget=2 + 6 * 4, rng=np.random.default_rng(0))
    rows = np.concatenate(game.calls)
    assert not rows[0].any() and rows[1].all()  # v(empty), v(N) first
    chains = rows[2:].reshape(6, 4, 5)
    assert np.all(chains.sum(axis=2) == np.arange(1, 5))  # prefixes of length 1..n-1
    assert np.all(chains[:, 1:] >= chains[:, :-1])  # each adds one player to the previous
    # antithetic: the second permutation is the first reversed, so its first prefix is the first's last player
    first_last = np.flatnonzero(~chains[0, -1])
    np.testing.assert_array_equal(np.flatnonzero(chains[1, 0]), first_last)


def test_per_player_rows_are_adjacent_pairs():
    game = RecordingGame(RandomGame(4, np.random.default_rng(0)))
    banzhaf_per_player(game, budget=2 * 4 * 3, rng=np.random.default_rng(0), keep_prob=0.3)
    rows = np.concatenate(game.calls).reshape(4, 3, 2, 4)  # player, sample, (with, without)
    for player in range(4):
        assert rows[player, :, 0, player].all() and not rows[player, :, 1, player].any()
        others = np.arange(4) != player
        np.testing.assert_array_equal(rows[player, :, 0][:, others], rows[player, :, 1][:, others])


def test_antithetic_pairs_are_complements_at_one_half():
    game = RecordingGame(RandomGame(6, np.random.default_rng(0)))
    banzhaf_shared(game, budget=40, rng=np.random.default_rng(0), keep_prob=0.5, antithetic=True)
    rows = np.concatenate(game.calls)
    np.testing.assert_array_equal(rows[0::2], ~rows[1::2])


def test_stratified_sizes_round_robin():
    game = RecordingGame(RandomGame(5, np.random.default_rng(0)))
    shapley_stratified(game, budget=2 + 4 * 3, rng=np.random.default_rng(0))
    rows = np.concatenate(game.calls)
    np.testing.assert_array_equal(rows[2:].sum(axis=1), np.tile([1, 2, 3, 4], 3))


def test_stratified_minimal_budget_uses_fallback():
    game = RandomGame(5, np.random.default_rng(0))
    result = shapley_stratified(game, budget=6, rng=np.random.default_rng(0))  # one coalition per size
    assert np.all(np.isfinite(result.values)) and result.stderr is None


def test_shared_banzhaf_player_never_sampled_gets_zero_and_infinite_stderr():
    game = AdditiveGame([1.0, 2.0, 3.0])
    result = banzhaf_shared(game, budget=50, rng=np.random.default_rng(0), keep_prob=0.0)
    np.testing.assert_array_equal(result.values, 0.0)
    assert np.all(np.isinf(result.stderr))


# ------------------------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize(("name", "function", "kwargs", "kind"), SAMPLERS, ids=SAMPLER_IDS)
def test_same_seed_same_result_different_seed_different(name, function, kwargs, kind):
    game = RandomGame(6, np.random.default_rng(5))
    first = function(game, budget=200, rng=np.random.default_rng(1), **kwargs)
    again = function(game, budget=200, rng=np.random.default_rng(1), **kwargs)
    other = function(game, budget=200, rng=np.random.default_rng(2), **kwargs)
    np.testing.assert_array_equal(first.values, again.values)
    assert not np.allclose(first.values, other.values)


# -------------------------------------------------------------------------------------------------- shapiq


def test_shapiq_approximator_runs_on_our_game():
    game = WeightedVotingGame([4, 3, 2, 2, 1, 1, 1], 8)
    exact = exact_shapley(game).values
    approximator = shapiq.PermutationSamplingSV(n=game.n_players, random_state=0)
    approximated = approximator.approximate(budget=3000, game=game).get_n_order_values(1)
    assert game.n_evaluations <= 2**game.n_players + 3000
    np.testing.assert_allclose(approximated, exact, atol=0.05)
    ours = shapley_permutation(game, budget=3000, rng=np.random.default_rng(0)).values
    np.testing.assert_allclose(ours, approximated, atol=0.07)


def test_our_estimators_run_on_a_function_game():
    weights = np.array([1.0, 2.0, -1.0, 0.5])
    game = FunctionGame(lambda c: np.tanh(c @ weights), n_players=4)
    computer = shapiq.ExactComputer(game, n_players=4)
    reference = computer("SV").get_n_order_values(1)
    game.n_evaluations = 0
    result = shapley_stratified(game, budget=5000, rng=np.random.default_rng(0))
    assert game.n_evaluations == result.n_evaluations == 5000
    np.testing.assert_allclose(result.values, reference, atol=0.03)


# ----------------------------------------------------------------------------------------------- per group


GROUPS = [np.array([0, 1, 2]), np.array([3, 4]), np.array([6])]  # player 5 is in no group


def test_per_group_exact_matches_restricted_games_and_includes_outsiders():
    game = RecordingGame(RandomGame(7, np.random.default_rng(0)))
    result = per_group(exact_shapley, game, GROUPS, budget=None, rng=np.random.default_rng(0))
    for members in GROUPS:
        outside = np.ones(7, dtype=bool)
        outside[members] = False
        expected = exact_shapley(RestrictedGame(game.game, include=outside)).values
        np.testing.assert_allclose(result.values[members], expected)
    assert np.isnan(result.values[5]) and np.isnan(result.stderr[5])
    assert result.n_evaluations == 8 + 4 + 2
    for members, call in zip(GROUPS, game.calls, strict=True):
        outside = np.ones(7, dtype=bool)
        outside[members] = False
        assert call[:, outside].all()  # every other group's players are always in
        assert len(np.unique(coalition_codes(call[:, members]))) == 2 ** len(members)


def test_per_group_on_closed_form_games():
    # with the other layer always in, a layer's game is the unanimity game of T's members in that layer
    unanimity = UnanimityGame(6, [0, 1, 4])
    layers = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    np.testing.assert_allclose(per_group(exact_shapley, unanimity, layers).values, [0.5, 0.5, 0, 0, 1, 0])
    additive = AdditiveGame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    result = per_group(banzhaf_per_player, additive, layers, budget=60, rng=np.random.default_rng(0))
    np.testing.assert_allclose(result.values, additive.weights)


@pytest.mark.parametrize(
    ("function", "kwargs", "kind"),
    [
        (shapley_permutation, {}, "shapley"),
        (shapley_stratified, {}, "shapley"),
        (banzhaf_per_player, {"keep_prob": 0.3}, "banzhaf"),
        (banzhaf_shared, {"keep_prob": 0.7}, "banzhaf"),
    ],
)
def test_per_group_sampled_budget_and_accuracy(function, kwargs, kind):
    game = RandomGame(7, np.random.default_rng(1))
    budget = 9000
    result = per_group(function, game, GROUPS, budget=budget, rng=np.random.default_rng(0), **kwargs)
    assert result.n_evaluations == game.n_evaluations <= budget
    assert result.index == kind
    exact = per_group(
        exact_shapley if kind == "shapley" else exact_banzhaf,
        game,
        GROUPS,
        **({} if kind == "shapley" else {"keep_prob": kwargs["keep_prob"]}),
    )
    covered = np.concatenate(GROUPS)
    np.testing.assert_allclose(result.values[covered], exact.values[covered], atol=0.12)


def test_per_group_validates_groups_and_budget():
    game = RandomGame(5, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="disjoint"):
        per_group(banzhaf_shared, game, [np.array([0, 1]), np.array([1, 2])], budget=100, rng=rng)
    with pytest.raises(ValueError, match="outside"):
        per_group(banzhaf_shared, game, [np.array([0, 5])], budget=100, rng=rng)
    with pytest.raises(ValueError, match=r"group 0 \(4 players\): banzhaf_per_player needs a budget"):
        per_group(banzhaf_per_player, game, [np.array([0, 1, 2, 3]), np.array([4])], budget=9, rng=rng)
    mask = np.array([True, False, True, False, False])
    result = per_group(exact_banzhaf, game, [mask])
    assert np.isnan(result.values[[1, 3, 4]]).all() and np.isfinite(result.values[[0, 2]]).all()


# ------------------------------------------------------------------------------------------------ dispatch


def test_estimate_dispatches_every_registered_estimator():
    game = RandomGame(5, np.random.default_rng(0))
    for index, names in ESTIMATORS.items():
        for name, function in names.items():
            kwargs = {"keep_prob": 0.3} if index == "banzhaf" else {}
            via_name = estimate(
                game, index=index, estimator=name, budget=200, rng=np.random.default_rng(4), **kwargs
            )
            if name == "exact":
                direct = function(game, **kwargs)
            else:
                direct = function(game, budget=200, rng=np.random.default_rng(4), **kwargs)
            np.testing.assert_array_equal(via_name.values, direct.values)
            assert via_name.index == index
            assert via_name.keep_prob == (0.3 if index == "banzhaf" else None)


def test_estimate_fails_loudly():
    game = RandomGame(5, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="valid combinations: shapley/exact, shapley/permutation"):
        estimate(game, index="shapley", estimator="per-player", budget=100, rng=rng)
    with pytest.raises(ValueError, match="banzhaf/per-player"):
        estimate(game, index="owen", estimator="exact")
    with pytest.raises(ValueError, match="banzhaf' only"):
        estimate(game, index="shapley", estimator="permutation", budget=100, rng=rng, keep_prob=0.3)
    with pytest.raises(ValueError, match="needs a budget and an rng"):
        estimate(game, index="banzhaf", estimator="shared")
    with pytest.raises(ValueError, match="more than budget=31"):
        estimate(game, index="shapley", estimator="exact", budget=31)
    with pytest.raises(ValueError, match="no antithetic option"):
        estimate(game, index="shapley", estimator="stratified", budget=100, rng=rng, antithetic=False)
    assert game.n_evaluations == 0


def test_shared_shapley_samples_permutations_until_every_size_has_enough_coalitions():
    from methods.indices import STRATIFIED_MIN_PER_SIZE, shapley_shared

    n = 9
    table = np.random.default_rng(0).normal(size=1 << n)
    game = FunctionGame(lambda c: table[c.astype(np.int64) @ (1 << np.arange(n))], n_players=n)
    threshold = 2 + int(np.ceil(STRATIFIED_MIN_PER_SIZE * (n - 1)))
    for budget, same_as in ((threshold - 1, "permutation"), (threshold, "stratified")):
        shared = shapley_shared(game, budget=budget, rng=np.random.default_rng(3)).values
        other = (shapley_permutation(game, budget=budget, rng=np.random.default_rng(3)) if same_as == "permutation"
                 else shapley_stratified(game, budget=budget, rng=np.random.default_rng(3))).values
        np.testing.assert_array_equal(shared, other)
    assert indices.estimator_for("shapley", "shared", antithetic=False).keywords == {"antithetic": False}
