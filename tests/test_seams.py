"""The seams of the house: what a scorer declares, one estimator dispatch, and registered analyses end to end."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import yaml
from helpers import TINY_PAIR, run_argv

from bench.cli import main
from bench.suite import SUITES_DIR, SuiteError, load_suite
from methods import indices
from methods.analyses.base import ANALYSES, AnalysisInput, AnalysisResult, build_analysis
from methods.scorers import FAMILIES, PARAM_AXIS, SCORERS, UNIT_AXIS, PruningProblem, build_scorer

pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


# -- what a scorer declares -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCORERS.names())
def test_scorer_declarations_contract(name):
    """Every registered scorer declares a family, an axis and what it needs, and can be resolved."""
    scorer = build_scorer(name)
    assert scorer.family in FAMILIES
    assert scorer.axis in (UNIT_AXIS, PARAM_AXIS)
    assert scorer.needs <= {"keep_prob"}
    resolved = scorer.resolve(**dict.fromkeys(scorer.needs, 0.3))
    assert resolved.needs == frozenset()
    with pytest.raises(ValueError, match="does not need"):
        resolved.resolve(unknown_value=1)


def test_declarations_follow_the_parameters():
    assert build_scorer("gtap", index="beta").needs == {"keep_prob"}
    assert build_scorer("gtap", index="beta", keep_prob=0.4).needs == frozenset()
    assert build_scorer("gtap", index="banzhaf").needs == frozenset()
    assert build_scorer("wmp").axis == UNIT_AXIS and build_scorer("wmp", form="unstructured").axis == PARAM_AXIS
    assert build_scorer("gtap").resolve(keep_prob=0.25).keep_prob == 0.25


@pytest.mark.parametrize(("params", "message"), [
    ({"index": "banzhaf", "estimator": "permutation"}, "unknown index/estimator banzhaf/permutation"),
    ({"index": "shapley", "estimator": "per-player"}, "unknown index/estimator shapley/per-player"),
    ({"budget": -5}, "budget must be a positive number"),
    ({"budget": 0}, "budget must be a positive number"),
    ({"budget": "650"}, "budget must be a positive number"),
    ({"index": "shapley", "estimator": "stratified", "antithetic": True}, "'stratified' has no antithetic option"),
    ({"index": "banzhaf", "estimator": "exact", "antithetic": False}, "'exact' has no antithetic option"),
    ({"index": "banzhaf", "keep_prob": 0.3}, "keep_prob (d) is for index 'beta' only"),
    ({"keep_prob": 1.5}, "keep_prob (d) must be a number in (0, 1]"),
    ({"index": "shaply"}, "unknown index 'shaply'"),
])
def test_gtap_rejects_bad_parameters_when_built(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_scorer("gtap", **params)


@pytest.mark.parametrize(("params", "message"), [
    ({"index": "banzhaf", "estimator": "permutation"}, "unknown index/estimator banzhaf/permutation"),
    ({"budget": -1}, "budget must be a positive number"),
])
def test_a_bad_gtap_parameter_stops_the_suite_at_load(tmp_path, params, message):
    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    suite["methods"][0]["params"] = {**suite["methods"][0].get("params", {}), **params}
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert message in str(error.value) and "methods[0]" in str(error.value) and "\n" not in str(error.value)


# GTAP's parameters -> the same estimate through indices.estimate, and options that would change the numbers.
DISPATCH_CASES = [
    ({"index": "banzhaf", "estimator": "per-player", "antithetic": False},
     {"index": "banzhaf", "estimator": "per-player", "keep_prob": 0.5, "antithetic": False},
     [{"antithetic": True}, {"keep_prob": 0.3}]),
    ({"index": "beta", "keep_prob": 0.3, "estimator": "shared", "antithetic": True},
     {"index": "banzhaf", "estimator": "shared", "keep_prob": 0.3, "antithetic": True},
     [{"antithetic": False}, {"keep_prob": 0.6}]),
    ({"index": "beta", "keep_prob": 0.3, "estimator": "regression"},
     {"index": "banzhaf", "estimator": "regression", "keep_prob": 0.3},
     [{"keep_prob": 0.6}, {"estimator": "shared"}]),
    ({"index": "shapley", "estimator": "permutation", "antithetic": True},
     {"index": "shapley", "estimator": "permutation", "antithetic": True},
     [{"antithetic": False}, {"estimator": "stratified", "antithetic": None}]),
    ({"index": "shapley", "estimator": "stratified"},
     {"index": "shapley", "estimator": "stratified"},
     [{"estimator": "permutation"}]),
]


@pytest.mark.parametrize(("params", "options", "changes"), DISPATCH_CASES,
                         ids=["banzhaf-per-player", "beta-shared-antithetic", "beta-regression",
                              "shapley-permutation-antithetic", "shapley-stratified"])
def test_gtap_and_estimate_share_one_dispatch(trained, params, options, changes):
    """GTAP's scores are indices.estimate's with the same index, estimator, d, antithetic, budget and seed."""
    model, units, x, y, *_ = trained
    budget, seed = 600, 3

    def direct(**changed):  # on a game of its own, so neither call sees the other's evaluations
        game = PruningProblem.build(model, units, x, y).game
        return indices.estimate(game, budget=budget, rng=np.random.default_rng(seed), **{**options, **changed})

    scorer = build_scorer("gtap", budget=budget, **params)
    scores = scorer(PruningProblem.build(model, units, x, y), rng=np.random.default_rng(seed))
    expected = direct()
    np.testing.assert_array_equal(scores.values, expected.values)
    assert scores.n_evaluations == expected.n_evaluations
    # The comparison can fail: another d, antithetic setting or estimator gives other numbers on this game.
    for changed in changes:
        assert not np.array_equal(direct(**changed).values, scores.values), changed


# -- analyses, registered and run by a suite ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerNorms:
    """An analysis for the test: per layer, the mean |w| into it now and at initialisation, and a score mean."""

    wants_scores: ClassVar[bool] = True
    power: float = 1.0

    def __post_init__(self):
        if self.power <= 0:
            raise ValueError(f"power must be positive, got {self.power}")

    def __call__(self, data: AnalysisInput, *, rng):
        stages = dict(data.model.named_children())
        initial = dict(data.initial.named_children())
        rows = []
        for group in data.groups:
            if group.producer is None:
                continue
            rows.append({"layer": group.name,
                         "trained": float(stages[group.producer].weight.detach().abs().pow(self.power).mean()),
                         "initial": float(initial[group.producer].weight.detach().abs().pow(self.power).mean()),
                         "n_scores": len(data.scores)})
        return AnalysisResult(tables={"norms": rows}, metrics={"layers": float(len(rows))})


@pytest.fixture()
def layer_norms(register):
    register(ANALYSES, "layer-norms", LayerNorms)


def test_analyses_are_validated_when_the_suite_loads(tmp_path, layer_norms):
    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    for analyses, message in (([{"name": "layer-norm"}], "Did you mean 'layer-norms'"),
                              ([{"name": "layer-norms", "params": {"powr": 2}}], "unknown parameter(s) ['powr']"),
                              ([{"name": "layer-norms", "params": {"power": -1}}], "power must be positive"),
                              (["layer-norms", "layer-norms"], "listed twice")):
        path = tmp_path / "smoke.yaml"
        path.write_text(yaml.safe_dump({**suite, "analyses": analyses}))
        with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_suite(path)
    with pytest.raises(ValueError, match="plain words"):
        AnalysisResult(tables={"a/b": []})
    assert build_analysis("layer-norms", power=2).power == 2


def test_a_suite_runs_its_analyses_and_the_report_shows_them(tmp_path, monkeypatch, layer_norms, tiny_mnist):
    """The runner logs an analysis's tables on the training run, with learning curves and real durations."""
    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    suite.update(name="tiny", pairs=[TINY_PAIR.name], fractions=[0.5, 1.0], seeds=[0, 1],
                 analyses=[{"name": "layer-norms", "params": {"power": 1.0}}],
                 methods=[m for m in suite["methods"] if m["name"] in ("wmp", "random")])
    suite["recipe"] = {"epochs": 2}
    suite.pop("mcue")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    monkeypatch.chdir(tmp_path)
    tiny = {"suite": path, "data": tiny_mnist, "uri": f"sqlite:///{tmp_path / 'store.db'}"}
    argv = [a for a in run_argv(tiny) if a != "--no-report"]
    assert main(argv) == 0

    from mlflow import MlflowClient

    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny")
    trains = client.search_runs([experiment.experiment_id], "tags.kind = 'train'")
    assert len(trains) == 2
    for run in trains:
        names = {a.path for a in client.list_artifacts(run.info.run_id, "analyses/layer-norms")}
        assert names == {"analyses/layer-norms/norms.csv"}
        assert run.data.metrics["layer-norms/layers"] == 2.0
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")] == [1, 2]
        # The real cost: a training run spans the training, not the few milliseconds of logging.
        assert run.info.end_time - run.info.start_time >= 1000 * 0.5 * run.data.metrics["train_seconds"]
    methods = client.search_runs([experiment.experiment_id], "tags.kind = 'method'")
    for run in methods:
        assert run.info.end_time - run.info.start_time >= 1000 * 0.5 * run.data.metrics["seconds"]
        assert run.data.tags["family"] in FAMILIES
    # The analysis saw both methods' scores (it is logged after them), and the report renders its table.
    import pandas as pd

    norms = pd.concat([pd.read_csv(client.download_artifacts(run.info.run_id, "analyses/layer-norms/norms.csv"))
                       for run in trains])
    assert set(norms["layer"]) == {"relu1", "relu2"} and set(norms["n_scores"]) == {2}
    assert (norms["trained"] != norms["initial"]).all()
    html = (tmp_path / "reports" / "out" / "tiny" / "report.html").read_text()
    assert "Analysis: layer-norms" in html and "learning_curves_tiny-lenet300.png" in html
    markdown = (tmp_path / "reports" / "out" / "tiny" / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| tiny-lenet300 | relu1"))
    mean = norms[norms["layer"] == "relu1"]["trained"].mean()
    assert f"{mean:.4g}" in row
