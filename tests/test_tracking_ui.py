"""What the MLflow UI shows of a suite: run names, per-axis AUC and latency metric names, dataset inputs, source
tags, the saved view the "see it" address opens, and stores written before the metric names changed."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import yaml
from helpers import TINY_PAIR, WRITERS, run_argv

from bench import naming
from bench.cli import main
from bench.frames import load_frames
from bench.naming import RUN_NAME_WIDTH, abbreviate, run_name, suite_view
from bench.plan import plan
from bench.suite import SUITES_DIR, load_suite
from bench.tracking import RunsView, Tracker

SHIPPED = tuple(sorted(path.stem for path in SUITES_DIR.glob("*.yaml")))
# Profiles whose entry names carry a budget and an allocation ("banzhaf-top-n-b5200-normalized"): their run names
# are longer than the column (docs/tracking.md says so).
LONG_NAMED = {("lenet", "budget-sweep"), ("text", "budget-sweep")}
pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


def _profiles(name: str) -> list[str]:
    raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
    return ["default", *(raw.get("profiles") or {})]


# -- run names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_run_names_fit_the_column_and_tell_every_run_apart(name):
    for profile in _profiles(name):
        names = [run_name(spec) for spec in plan(load_suite(name, profile=profile))]
        assert len(set(names)) == len(names), (profile, [n for n in names if names.count(n) > 1][:4])
        longest = max(names, key=len)
        if (name, profile) in LONG_NAMED:
            assert len(longest) > RUN_NAME_WIDTH  # else take it off the list
        else:
            assert len(longest) <= RUN_NAME_WIDTH, (profile, longest)


def test_run_names_say_pair_method_and_seed():
    specs = {(s.pair, s.method, s.seed): s for s in plan(load_suite("lenet"))}
    assert run_name(specs[("lenet300-mnist", "gtap-beta-iter-build", 0)]) == "L300 bd-ib s0"
    assert run_name(specs[("lenet5-mnist", "gtap-beta-iter-build", 0)]) == "L5 bd-ib s0"  # the other pair differs
    assert run_name(specs[("lenet5-mnist", "gtap-banzhaf-iter-build", 2)]) == "L5 bz-ib s2"
    assert run_name(specs[("lenet300-mnist", "activation-uniform", 1)]) == "L300 act-u s1"
    assert run_name(specs[("lenet300-mnist", "wmp-unstructured", 0)]) == "L300 wmp-un s0"
    assert run_name(specs[("lenet300-mnist", "train", 0)]) == "L300 fit s0"
    assert run_name(specs[("lenet5-mnist", "mcue", 1)]) == "L5 mcue s1"


def test_abbreviations_take_the_longest_phrase_and_keep_unknown_words():
    assert abbreviate("face-cnn-dropout-utkface-age", naming.PAIR_WORDS) == "CNNd-age"
    assert abbreviate("face-cnn-utkface", naming.PAIR_WORDS) == "CNN"
    assert abbreviate("resnet18-cifar10", naming.PAIR_WORDS) == "resnet18-cifar10"
    assert abbreviate("gtap-shapley-top-n-b650-global", naming.METHOD_WORDS) == "sh-tn-b650-g"
    assert abbreviate("gtap", naming.METHOD_WORDS) == "gtap"  # never an empty name


def test_run_names_never_enter_the_config_hashes(monkeypatch):
    """The hashes of the shipped smoke and lenet suites are the ones stored runs were logged under before the run
    names changed; other abbreviations leave them as they are."""
    def digest(suite: str) -> str:
        return hashlib.sha256("".join(s.config_hash for s in plan(load_suite(suite))).encode()).hexdigest()[:16]

    expected = {"smoke": "0cd88d4bb5e398b1", "lenet": "e286c7143b820e9b"}
    assert {suite: digest(suite) for suite in expected} == expected
    monkeypatch.setattr(naming, "METHOD_WORDS", {})
    monkeypatch.setattr(naming, "PAIR_WORDS", {})
    assert {suite: digest(suite) for suite in expected} == expected
    assert run_name(plan(load_suite("smoke"))[-1]) == "lenet300-mnist random s1"


# -- the view the "see it" address opens ----------------------------------------------------------------------------


def test_a_suite_without_methods_links_to_its_models():
    view = suite_view(load_suite("faces"))
    assert view["search_filter"] == "tags.kind = 'train' AND tags.suite = 'faces'"
    assert view["order_by"] == "test_accuracy" and view["key"] == "bench-faces-models"
    assert suite_view(load_suite("lenet"))["order_by"] == "auc_units"


def test_without_a_saved_view_the_address_filters_and_sorts_by_itself(tmp_path, monkeypatch):
    tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}", "lenet")
    view = RunsView(**suite_view(load_suite("lenet")))

    def refuse(*args, **kwargs):
        raise PermissionError("read-only experiment")

    monkeypatch.setattr(tracker._client, "set_experiment_tag", refuse)
    query = parse_qs(urlsplit(tracker.runs_page(view).rsplit(" ", 1)[-1]).fragment.split("?", 1)[1])
    assert query == {"searchFilter": ["tags.kind = 'method' AND tags.suite = 'lenet'"],
                     "orderByKey": ["metrics.`auc_units`"], "orderByAsc": ["false"],
                     "workflowType": ["machine_learning"]}


# -- a suite run end to end -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny pair, one seed, a unit-axis and a weight-axis method, physical costs on; run once for the module."""
    from datasets.pairs import PAIRS

    root = tmp_path_factory.mktemp("ui")
    WRITERS["mnist"](root / "data")
    raw = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    raw.update(name="ui", pairs=[TINY_PAIR.name], seeds=[0], fractions=[0.25, 0.5, 1.0],
               methods=[{"name": "wmp", "method": "wmp"},
                        {"name": "wmp-unstructured", "method": "wmp", "params": {"form": "unstructured"}}])
    raw["mcue"]["samples"] = 4
    (root / "ui.yaml").write_text(yaml.safe_dump(raw))
    tiny = {"suite": root / "ui.yaml", "data": root / "data", "uri": f"sqlite:///{root / 'store.db'}"}
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COALITION_BENCH_CACHE", str(root / "cache"))
        env.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.chdir(root)
        PAIRS.add(TINY_PAIR.name, TINY_PAIR)
        try:
            with contextlib.redirect_stdout(printed):
                assert main(run_argv(tiny)) == 0
            specs = plan(load_suite(tiny["suite"]))
        finally:
            PAIRS.remove(TINY_PAIR.name)
    from mlflow import MlflowClient

    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("ui")
    runs = {r.data.tags["mlflow.runName"]: r for r in client.search_runs([experiment.experiment_id])}
    return {**tiny, "client": client, "experiment": experiment, "runs": runs, "specs": specs,
            "see_it": printed.getvalue().strip().splitlines()[-1]}


def test_each_axis_logs_its_own_auc(store):
    units, weights = store["runs"]["tiny-L300 wmp s0"], store["runs"]["tiny-L300 wmp-un s0"]
    assert units.data.tags["axis"] == "unit_fraction" and weights.data.tags["axis"] == "param_fraction"
    assert "auc_units" in units.data.metrics and not {"auc", "auc_weights"} & set(units.data.metrics)
    assert "auc_weights" in weights.data.metrics and not {"auc", "auc_units"} & set(weights.data.metrics)
    # The report still reads one auc column, whichever name a run's AUC has.
    frames = load_frames(Tracker(store["uri"], "ui", create=False), [s.config_hash for s in store["specs"]])
    auc = frames["runs"].set_index("method")["auc"]
    assert auc["wmp"] == units.data.metrics["auc_units"] and auc["wmp-unstructured"] == weights.data.metrics[
        "auc_weights"]


def test_latency_metrics_are_in_milliseconds_and_the_curve_keeps_seconds(store):
    run = store["runs"]["tiny-L300 wmp s0"]
    assert not {"curve/latency_b1", "curve/latency_b256"} & set(run.data.metrics)
    curve = pd.read_csv(store["client"].download_artifacts(run.info.run_id, "curve.csv"))
    frames = load_frames(Tracker(store["uri"], "ui", create=False), [s.config_hash for s in store["specs"]])
    stored = frames["curves"][frames["curves"]["method"] == "wmp"]
    for batch in (1, 256):
        history = {m.step: m.value for m in store["client"].get_metric_history(run.info.run_id,
                                                                              f"curve/latency_ms_b{batch}")}
        seconds = dict(zip((1000 * curve["target_fraction"]).round().astype(int), curve[f"latency_b{batch}"],
                           strict=True))
        assert history and history == pytest.approx({step: 1000 * s for step, s in seconds.items()}, rel=1e-12)
        assert 0 < min(seconds.values()) < 1  # seconds, as before
        assert sorted(stored[f"latency_b{batch}"]) == sorted(curve[f"latency_b{batch}"])


def test_runs_carry_their_dataset_splits_and_their_source(store):
    contexts = {}
    for name, run in store["runs"].items():
        inputs = run.inputs.dataset_inputs
        contexts[name] = [next(t.value for t in i.tags if t.key == "mlflow.data.context") for i in inputs]
        if run.data.tags["kind"] == "suite":
            assert not inputs
            continue
        assert {i.dataset.name for i in inputs} == {"mnist"}
        assert len({i.dataset.digest for i in inputs}) == len(inputs)
        assert all(json.loads(i.dataset.profile)["num_rows"] > 0 for i in inputs)
    assert contexts["tiny-L300 wmp s0"] == ["test", "validation"]
    assert contexts["tiny-L300 mcue s0"] == ["validation"]
    assert sorted(contexts["tiny-L300 fit s0"]) == ["test", "train", "validation"]
    for run in store["runs"].values():
        tags = run.data.tags
        assert tags["mlflow.source.name"] == "bench run" and tags["mlflow.source.type"] == "LOCAL"
        if tags["git_commit"] != "unknown":
            assert tags["mlflow.source.git.commit"] == tags["git_commit"].removesuffix("+dirty")


def test_see_it_opens_the_methods_best_auc_first(store):
    client, experiment = store["client"], store["experiment"]
    page = store["see_it"].rsplit(" ", 1)[-1]
    route, query = urlsplit(page).fragment.split("?", 1)
    assert route == f"/experiments/{experiment.experiment_id}/runs"
    assert parse_qs(query) == {"viewStateShareKey": ["bench-ui"], "workflowType": ["machine_learning"]}
    saved = json.loads(experiment.tags["mlflow.sharedViewState.bench-ui"])
    assert saved["name"] == "ui: methods by AUC" and isinstance(saved["createdAt"], int)
    state = json.loads(saved["state"])
    assert state["orderByKey"] == "metrics.`auc_units`" and state["orderByAsc"] is False
    assert {"tags.`pair`", "metrics.`auc_units`", "metrics.`auc_weights`", "metrics.`accuracy_at_d`",
            "metrics.`n_evaluations`"} <= set(state["selectedColumns"])
    # What the UI asks the store for: the method runs, the unit-axis AUC ranked, the weight-axis run after them.
    ranked = client.search_runs([experiment.experiment_id], state["searchFilter"],
                                order_by=[state["orderByKey"] + " DESC"])
    assert [r.data.tags["method"] for r in ranked] == ["wmp", "wmp-unstructured"]


def test_stores_written_before_the_renames_read_the_same(tmp_path):
    """A method run logged with the old names (auc; curve/latency_b1 in seconds) gives the report the same frames."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'old.db'}", "old")
    curve = pd.DataFrame({"target_fraction": [0.5, 1.0], "units_kept": [5, 10], "accuracy": [0.8, 0.9],
                          "latency_b1": [0.00015, 0.0002], "latency_b256": [0.002, 0.003], "is_mcue_point": False})
    tags = {"kind": "method", "pair": "lenet300-mnist", "method": "wmp", "seed": "0", "config_hash": "old-hash",
            "axis": "unit_fraction"}
    tracker.log_run(parent_id="", run_name="wmp s0", tags=tags, params={},
                    metrics={"auc": 0.8154821428571428, "accuracy_at_d": 0.7},
                    step_metrics={"curve/latency_b1": [(500, 0.00015), (1000, 0.0002)]},
                    artifacts={"curve.csv": curve})
    frames = load_frames(tracker, ["old-hash"])
    row = frames["runs"].iloc[0]
    assert row["auc"] == 0.8154821428571428 and row["accuracy_at_d"] == 0.7  # bit for bit
    assert list(frames["curves"]["latency_b1"]) == [0.00015, 0.0002]
    assert math.isnan(naming.stored_auc({}))
