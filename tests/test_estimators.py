"""The estimator benchmark: table games, truths, the estimator registry, measures and `bench estimators`."""

import numpy as np
import pytest
from helpers import TINY_PAIR

from bench.benchmarks import estimators as bench_estimators
from bench.cli import main
from methods import indices
from methods.estimators.benchmark import (
    ESTIMATORS,
    TableGame,
    Truth,
    budget_to_reach,
    enumerate_game,
    exact_index,
    log_budgets,
    optional_estimators,
    quality,
    reference_index,
    run_cell,
)
from methods.games.base import FunctionGame

RNG = np.random.default_rng(7)
N = 8
WEIGHTS = RNG.normal(size=N)
PAIRWISE = np.triu(RNG.normal(size=(N, N)) * 0.3, 1)


def _interacting(coalitions):
    x = coalitions.astype(float)
    return np.tanh(x @ WEIGHTS) + np.einsum("ki,ij,kj->k", x, PAIRWISE, x)


def _game(function=_interacting, n=N):
    return FunctionGame(function, n_players=n)


def test_table_game_looks_up_what_the_game_would_return():
    values, per_eval = enumerate_game(_game())
    table = TableGame(values)
    coalitions = RNG.random((50, N)) < 0.5
    np.testing.assert_allclose(table(coalitions), _interacting(coalitions))
    assert table.n_evaluations == 50 and per_eval > 0
    np.testing.assert_allclose(exact_index(table, index="shapley", keep_prob=None).values,
                               indices.exact_shapley(_game()).values)
    np.testing.assert_allclose(exact_index(table, index="beta", keep_prob=0.3).values,
                               indices.exact_banzhaf(_game(), keep_prob=0.3).values)
    with pytest.raises(ValueError, match="2\\^n values"):
        TableGame(np.zeros(12))


@pytest.mark.parametrize("index,d", [("banzhaf", 0.5), ("beta", 0.3)])
def test_banzhaf_regression_converges_to_beta_d_and_beats_the_shared_sample(index, d):
    truth = indices.exact_banzhaf(_game(), keep_prob=d).values

    def rmse(function, budget):
        errors = [function(_game(), budget=budget, rng=np.random.default_rng(s), keep_prob=d).values - truth
                  for s in range(5)]
        return float(np.sqrt(np.mean(np.square(errors))))

    assert rmse(indices.banzhaf_regression, 20_000) < 0.01
    assert rmse(indices.banzhaf_regression, 2_000) < 0.5 * rmse(indices.banzhaf_shared, 2_000)


def test_regressions_are_exact_on_an_additive_game():
    additive = _game(lambda c: c.astype(float) @ WEIGHTS + 1.0)
    np.testing.assert_allclose(indices.shapley_regression(additive, budget=40, rng=np.random.default_rng(0)).values,
                               WEIGHTS, atol=1e-6)
    fit = indices.banzhaf_regression(additive, budget=40, rng=np.random.default_rng(0), keep_prob=0.3, ridge=0.0)
    np.testing.assert_allclose(fit.values, WEIGHTS, atol=1e-8)


def test_shapley_regression_is_efficient_and_converges():
    truth = indices.exact_shapley(_game()).values
    result = indices.shapley_regression(_game(), budget=20_000, rng=np.random.default_rng(1))
    assert result.values.sum() == pytest.approx(truth.sum())
    assert np.sqrt(np.mean(np.square(result.values - truth))) < 0.01
    assert indices.estimate(_game(), index="shapley", estimator="regression", budget=100,
                            rng=np.random.default_rng(0)).n_evaluations == 100


def test_quality_measures_on_known_vectors():
    truth = np.arange(20, dtype=float)
    assert quality(truth ** 3, truth)["spearman"] == pytest.approx(1.0)
    assert quality(truth ** 3, truth)["kendall"] == pytest.approx(1.0)
    swapped = truth.copy()
    swapped[[19, 0]] = swapped[[0, 19]]  # the best unit now looks worst
    measures = quality(swapped, truth)
    assert measures["precision_10"] == pytest.approx(0.5)  # top 2: {18, 0} against {19, 18}
    assert measures["precision_25"] == pytest.approx(4 / 5)
    assert measures["mse"] == pytest.approx(2 * 19 ** 2 / 20)
    assert np.isnan(quality(np.ones(20), truth)["spearman"])


def test_budget_to_reach_interpolates_in_log_budget():
    assert budget_to_reach([100, 400], [0.8, 1.0], 0.9) == pytest.approx(200.0)
    assert budget_to_reach([100, 400], [0.95, 1.0], 0.9) == 100
    assert np.isnan(budget_to_reach([100, 400], [0.5, 0.6], 0.9))
    assert log_budgets(16, 128) == [16, 32, 64, 128]


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_every_estimator_stays_in_budget_and_gets_close_on_a_table(name):
    if name in optional_estimators():
        pytest.skip(f"{name}: {optional_estimators()[name]}")
    spec = ESTIMATORS.get(name)
    table = TableGame(enumerate_game(_game())[0])
    index = spec.indices[0]
    d = None if index == "shapley" else 0.5
    truth = exact_index(table, index=index, keep_prob=d)
    cell = run_cell(spec, table, truth, game_name="toy", index=index, keep_prob=d, budget=4096, seed=0)
    assert cell.n_evaluations <= 4096
    assert cell.measures["spearman"] > 0.8, (name, cell.measures)
    again = run_cell(spec, table, truth, game_name="toy", index=index, keep_prob=d, budget=4096, seed=0)
    assert again.measures == cell.measures  # same seed, same numbers


def test_reference_keeps_its_own_error_and_limits_what_it_can_judge():
    table = TableGame(enumerate_game(_game())[0])
    reference = reference_index(table, estimator="ours:permutation-antithetic", index="shapley", keep_prob=None,
                                budget=2_000, seeds=range(4))
    exact = exact_index(table, index="shapley", keep_prob=None).values
    assert not reference.exact and reference.n_evaluations <= 8_000
    assert 0 < reference.rmse < 0.05
    # the reference's stated error matches its actual error to within a factor of 3
    assert reference.rmse / 3 < np.sqrt(np.mean(np.square(reference.values - exact))) < 3 * reference.rmse
    spec = ESTIMATORS.get("ours:permutation")
    coarse = run_cell(spec, table, reference, game_name="toy", index="shapley", keep_prob=None, budget=16, seed=0)
    fine = run_cell(spec, table, reference, game_name="toy", index="shapley", keep_prob=None, budget=8_000, seed=0)
    assert not coarse.reference_limited and fine.reference_limited
    exact_truth = Truth(exact, np.zeros(N), True, 256, "exact")
    assert not run_cell(spec, table, exact_truth, game_name="toy", index="shapley", keep_prob=None, budget=8_000,
                        seed=0).reference_limited


def test_an_estimator_for_another_index_is_refused():
    table = TableGame(enumerate_game(_game())[0])
    truth = exact_index(table, index="banzhaf", keep_prob=0.5)
    with pytest.raises(ValueError, match="does not estimate"):
        run_cell(ESTIMATORS.get("ours:permutation"), table, truth, game_name="toy", index="banzhaf", keep_prob=0.5,
                 budget=100, seed=0)
    with pytest.raises(ValueError, match="unknown estimator"):
        ESTIMATORS.get("ours:nope")


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.setitem(bench_estimators.EXACT_GROUPS, TINY_PAIR.name, "relu2")
    monkeypatch.setitem(bench_estimators.REFERENCES, "shapley", ("ours:permutation-antithetic", 2_000, 2))
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _argv(tmp_path, *extra):
    return ["estimators", "--pair", TINY_PAIR.name, "--data-dir", str(tmp_path / "data"), "--tracking-uri",
            f"sqlite:///{tmp_path / 'store.db'}", "--no-progress", "--out", str(tmp_path / "report"), *extra]


@pytest.mark.slow
def test_bench_estimators_logs_runs_and_writes_the_report(tiny, capsys):
    assert main(_argv(tiny, "--players", "6", "--index", "shapley,banzhaf", "--metric", "accuracy",
                      "--budgets", "16,64", "--seeds", "0,1", "--estimators", "ours:*,*PermutationSamplingSV",
                      "--games", "exact,full")) == 0
    from bench.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tiny / 'store.db'}", "estimators", create=False)
    parent, cells, games = bench_estimators.load_results(tracker)
    assert set(cells["estimator"]) >= {"ours:permutation", "ours:shared", "ours:regression",
                                       "shapiq:PermutationSamplingSV"}
    assert set(cells["budget"]) == {16, 64} and set(cells["seed"]) == {0, 1}
    assert any(name.endswith("/full/accuracy") for name in games)
    exact = cells[cells["game"].str.contains("relu2-6")]
    assert not exact["reference_limited"].astype(str).eq("True").any()  # exact truth never limits
    assert {"topn_acc_20", "topn_acc_50", "spearman", "kendall", "precision_25"} <= set(cells.columns)
    report = (tiny / "report" / "report.md").read_text()
    assert "shapiq:PermutationSamplingSV" in report and "ours:regression" in report
    # the enumerated game is cached: a second invocation does not enumerate again
    cache = list((tiny / "cache" / "estimator-games").glob("tiny-lenet300-*.npz"))
    assert len(cache) == 1
    stamp = cache[0].stat().st_mtime_ns
    assert main(_argv(tiny, "--players", "6", "--index", "shapley", "--metric", "accuracy", "--budgets", "16",
                      "--seeds", "0", "--estimators", "ours:permutation")) == 0
    assert cache[0].stat().st_mtime_ns == stamp

    # the report of both invocations, from the store: the second's one cell replaces the first's same cell
    store = ["--tracking-uri", f"sqlite:///{tiny / 'store.db'}", "--out", str(tiny / "merged")]
    capsys.readouterr()
    assert main(["estimators", "--from-store", *store]) == 0
    assert "from 2 invocation(s)" in capsys.readouterr().out
    used, merged, _ = bench_estimators.load_all_results(tracker)
    assert len(used) == 2 and len(merged) == len(cells)
    assert not merged[bench_estimators.CELL_KEY].astype(str).duplicated().any()
    assert "shapiq:PermutationSamplingSV" in (tiny / "merged" / "report.md").read_text()
    assert main(["estimators", "--from-store", "--parent", used[0], *store]) == 0
    assert "from 1 invocation(s)" in capsys.readouterr().out
    assert main(["estimators", "--from-store", "--parent", "nope", *store]) == 2
    assert "no `bench estimators` run nope" in capsys.readouterr().err
    assert main(["estimators", "--parent", used[0], *store]) == 2
    assert "pass --from-store too" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (("--index", "owen"), "--index owen"),
    (("--budgets", "10,x"), "--budgets must be integers"),
    (("--estimators", "shapiq:Nope"), "matches none"),
    (("--players", "30"), "--players must be in 1..20"),
    (("--reference-runs", "1"), "--reference-runs must be at least 2"),
])
def test_bad_arguments_fail_in_one_line_before_any_work(tiny, capsys, extra, message):
    assert main(_argv(tiny, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tiny / "store.db").exists()


def test_a_slow_estimator_is_stopped_and_says_so():
    table = TableGame(enumerate_game(_game())[0])
    truth = exact_index(table, index="shapley", keep_prob=None)
    built = bench_estimators.BuiltGame(bench_estimators.GameSpec("toy", "exact", "accuracy", group="g", n_players=N,
                                                                 context_d=0.5), table,
                                       lambda mask: float(mask.mean()), {})
    cells, skipped = bench_estimators.run_grid(built, truth, index="shapley", keep_prob=None,
                                               estimators=["ours:permutation", "ours:stratified"],
                                               budgets=[4, 64, 256], seeds=[0, 1], time_limit=-1.0)
    assert [(c.estimator, c.budget, c.seed) for c in cells] == [("ours:permutation", 64, 0),
                                                                 ("ours:stratified", 64, 0)]
    assert "ours:permutation at 4: needs at least 9 evaluations" in skipped
    assert any("stopped after one run took" in s and "its 3 later runs not made" in s for s in skipped)
    assert cells[0].measures["topn_acc_20"] == pytest.approx(0.25)  # 2 of 8 players kept


def test_size_strata_on_games_with_known_answers():
    from methods.estimators.benchmark import size_strata
    from methods.games.toy import AdditiveGame, WeightedVotingGame

    weights = np.random.default_rng(3).normal(size=12)
    additive = size_strata(AdditiveGame(weights), proxy=weights, sizes=range(1, 12), samples=200, bases=8, units=6,
                           rng=np.random.default_rng(0), ridge=1e-6)
    assert np.allclose(additive.proxy_corr, 1.0) and np.all(additive.fitted_r2 > 0.99)
    # v(S u i) - v(S) = w_i for every S: marginals are the weights of the units outside S (many of them while S
    # is small; at size 11 a single one is left)
    assert np.allclose(additive.marginal_mean[:6], weights.mean(), atol=0.5)
    assert np.allclose(additive.marginal_sd[:6], weights.std(), rtol=0.3)
    gains = additive.gains()
    assert gains["proxy_cv"] > 1e6 and gains["neyman_positions"] == pytest.approx(1.0, abs=0.4)

    # a symmetric game: v depends on |S| only, so nothing varies within a size
    symmetric = size_strata(FunctionGame(lambda c: c.sum(axis=1) ** 2.0, n_players=10), proxy=np.ones(10),
                            sizes=[1, 4, 9], samples=8, bases=2, units=3, rng=np.random.default_rng(0))
    assert np.all(symmetric.sd == 0) and np.all(symmetric.marginal_sd == 0)
    assert symmetric.gains()["neyman"] == 1.0 and symmetric.gains()["neyman_positions"] == float("inf")

    # a voting game: marginals are non-zero only near the quota, so allocating by position gains a lot
    voting = WeightedVotingGame(np.linspace(1, 2, 16), quota=20.0)
    strata = size_strata(voting, proxy=np.linspace(1, 2, 16), sizes=range(1, 16), samples=40, bases=20, units=8,
                         rng=np.random.default_rng(0))
    assert strata.gains()["neyman_positions"] > 2.0
    assert strata.marginal_sd[0] == 0 and strata.marginal_sd[-1] == 0  # far from the quota nothing changes

    with pytest.raises(ValueError, match="proxy has shape"):
        size_strata(voting, proxy=np.ones(3), sizes=[1], samples=8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="sizes must lie in 1..15"):
        size_strata(voting, proxy=np.ones(16), sizes=[0, 3], samples=8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="samples must be at least 4"):
        size_strata(voting, proxy=np.ones(16), sizes=[3], samples=2, rng=np.random.default_rng(0))


def test_estimator_limits_reuses_the_cached_reference_and_refuses_to_compute_one(tiny, capsys, monkeypatch):
    from bench.benchmarks import estimator_limits

    monkeypatch.setenv("COALITION_BENCH_DATA", str(tiny / "data"))
    out = tiny / "limits.csv"
    argv = ["--pairs", TINY_PAIR.name, "--samples", "8", "--sizes", "4", "--out", str(out)]
    assert estimator_limits.main(argv) == 2  # not trained yet
    assert "not in the cache" in capsys.readouterr().err
    from datasets.training import train_pair

    train_pair(TINY_PAIR.name, seed=0, progress=False)
    assert estimator_limits.main(argv) == 2  # trained, but no Shapley reference cached
    err = capsys.readouterr().err.strip()
    assert "no cached shapley reference" in err and "\n" not in err and not out.exists()
    assert main(_argv(tiny, "--index", "shapley", "--metric", "accuracy", "--budgets", "800", "--seeds", "0",
                      "--estimators", "ours:permutation", "--games", "full")) == 0
    assert estimator_limits.main(argv) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert len(table) == 4 and {"sd", "proxy_corr", "fitted_r2", "marginal_sd"} <= set(table.columns)
    assert "neyman_positions" in capsys.readouterr().out


def test_a_killed_invocation_keeps_its_finished_grids_and_is_marked_failed(tiny, monkeypatch):
    import os
    import signal

    from bench.tracking import Tracker

    real, calls = bench_estimators.run_grid, []

    def grid_then_sigterm(*args, **kwargs):
        calls.append(kwargs["index"])
        if len(calls) == 2:  # the second grid: as `kill` would
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_estimators, "run_grid", grid_then_sigterm)
    with pytest.raises(SystemExit):
        main(_argv(tiny, "--players", "4", "--index", "shapley,banzhaf", "--metric", "accuracy", "--budgets", "16",
                   "--seeds", "0", "--estimators", "ours:permutation"))
    assert signal.getsignal(signal.SIGTERM) is not bench_estimators._exit_on_sigterm  # the handler is restored
    tracker = Tracker(f"sqlite:///{tiny / 'store.db'}", "estimators", create=False)
    (parent,) = tracker.runs("tags.kind = 'estimators'")
    assert parent.status == "FAILED"
    used, cells, games = bench_estimators.load_all_results(tracker)
    assert used == [parent.run_id] and set(cells["index"]) == {"shapley"} and len(games) == 1
