"""Suites, the runner and MLflow tracking, on tiny generated data and a throwaway sqlite store."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REGISTER_TINY_PAIR, run_argv, stored_runs, tiny_suite

from bench.cli import main
from bench.frames import load_frames
from bench.plan import plan
from bench.selection import parse_seeds, run_count, select
from bench.suite import SUITES_DIR, SuiteError, load_suite, suite_registry
from bench.tracking import Tracker
from methods.games.mcue import OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    """Fake MNIST, the tiny pair registered, a private store, and the smoke suite pointed at the tiny pair."""
    monkeypatch.chdir(tmp_path)
    return tiny_suite(tmp_path, tiny_mnist, fractions=(0.25, 0.5, 1.0))


_runs = stored_runs


# -- suites -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", suite_registry().names())
def test_every_shipped_suite_loads_under_every_profile(name):
    raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
    for profile in ["default", *(raw.get("profiles") or {})]:
        suite = load_suite(name, profile=profile)
        specs = plan(suite)
        assert len({s.config_hash for s in specs}) == len(specs)
        per_seed = sum(1 + (suite.mcue is not None) + sum(e.applies_to(p) for e in suite.methods)
                       for p in suite.pairs)
        assert len(specs) == len(suite.seeds) * per_seed == run_count(suite)


def test_lenet_suite_covers_the_issue():
    suite = load_suite("lenet")
    assert set(suite.pairs) == {"lenet300-mnist", "lenet5-mnist"} and len(suite.seeds) >= 3
    combos = {(e.params.get("index"), e.strategy) for e in suite.methods if e.method == "gtap"}
    assert combos == {(i, s) for i in ("shapley", "banzhaf", "beta")
                      for s in ("top-n", "iterated-pruning", "iterated-building")}
    assert {"wmp", "wgmp", "random", "activation", "taylor"} <= {e.method for e in suite.methods}
    assert suite.mcue is not None
    full = load_suite("lenet", profile="full")
    assert full.methods[0].params["budget"] > suite.methods[0].params["budget"] and len(full.seeds) > len(suite.seeds)


@pytest.mark.parametrize("output", ["entropy", "onehot"])
def test_a_suite_may_choose_d_by_a_label_reading_of_mcue(tmp_path, output):
    raw = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    raw["mcue"] = {"output": output}
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(raw))
    suite = load_suite(path)
    assert suite.mcue == {"output": output}
    mcue_spec = next(s for s in plan(suite) if s.kind == "mcue")
    assert mcue_spec.config["mcue"]["output"] == output


@pytest.mark.parametrize(("change", "message"), [
    ({"pairs": ["lenet300-mnsit"]}, "Did you mean 'lenet300-mnist'"),
    ({"methods": [{"method": "wmpp"}]}, "Did you mean 'wmp'"),
    ({"methods": [{"method": "gtap", "params": {"budgt": 5}}]}, "unknown parameter(s) ['budgt']"),
    ({"methods": [{"method": "gtap", "params": {"index": "shaply"}}]}, "unknown index 'shaply'"),
    ({"methods": [{"method": "wmp", "strategy": "iterated-prunning"}]}, "Did you mean 'iterated-pruning'"),
    ({"fractoins": [0.5]}, "Did you mean 'fractions'"),
    ({"fractions": [0.5, 1.5]}, "kept fractions must be numbers in (0, 1]"),
    ({"seeds": [0, 0]}, "'seeds' has duplicates"),
    ({"mcue": {"output": "entropie"}}, "valid: correct, confidence, entropy, onehot"),
    ({"methods": [{"method": "wmp"}, {"method": "wmp"}]}, "duplicate method name 'wmp'"),
    ({"methods": [{"method": "wmp", "strategy": "iterated-pruning", "allocation": "uniform"}]}, "'top-n' only"),
    ({"methods": [{"method": "wmp", "allocation": ["uniform", "layerwise"]}]}, "unknown allocation 'layerwise'"),
    ({"methods": [{"method": "wmp", "allocation": ["uniform", "uniform"]}]}, "distinct values"),
    ({"methods": [{"method": "wmp", "allocation": "wmp@1.3"}]}, "F of wmp@F must be a number in (0, 1]"),
    ({"methods": [{"method": "wmp", "strategy": "iterated-building", "allocation": "wmp@0.3"}]}, "'top-n' only"),
    ({"mcue": {"bands": ["conv", "attention"]}}, "bands must be a list of distinct names from conv, fc"),
    ({"methods": [{"method": "wmp", "allocation": ["uniform"]}, {"name": "wmp-uniform", "method": "wmp"}]},
     "duplicate method name 'wmp-uniform'"),
])
def test_bad_suites_name_the_file_and_the_valid_choices(tmp_path, change, message):
    raw = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    raw.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unknown_suite_and_profile_are_loud():
    with pytest.raises(KeyError, match="Did you mean 'lenet'"):
        load_suite("lent")
    with pytest.raises(SuiteError, match="unknown profile 'ful'.*valid: default, extended, full"):
        load_suite("lenet", profile="ful")


def test_filters_and_seeds():
    suite = select(load_suite("lenet"), pairs=["lenet5*"], methods=["gtap-beta-*", "wmp"], seeds=parse_seeds("3-4"))
    assert suite.pairs == ("lenet5-mnist",) and suite.seeds == (3, 4)
    assert [e.name for e in suite.methods] == ["gtap-beta-top-n", "gtap-beta-iter-prune", "gtap-beta-iter-build",
                                               "wmp-uniform", "wmp-normalized"]  # wmp's variants answer to "wmp"
    assert [e.name for e in select(load_suite("lenet"), methods=["wmp-norm*"]).methods] == ["wmp-normalized"]
    with pytest.raises(SuiteError, match="--methods 'gtap-shap' matches none"):
        select(load_suite("lenet"), methods=["gtap-shap"])
    assert parse_seeds("0-2,7") == (0, 1, 2, 7)
    with pytest.raises(SuiteError):
        parse_seeds("a")


def test_config_hash_changes_with_what_determines_the_numbers():
    base = {s.label: s.config_hash for s in plan(load_suite("smoke"))}
    assert base == {s.label: s.config_hash for s in plan(load_suite("smoke"))}  # stable
    changed = {s.label: s.config_hash for s in plan(load_suite("lenet"))}
    assert not set(base.values()) & set(changed.values())
    import dataclasses

    suite = load_suite("smoke")
    longer = {s.label: s.config_hash for s in plan(dataclasses.replace(suite, recipe={"epochs": 2}))}
    assert set(longer) == set(base) and not set(longer.values()) & set(base.values())
    finer = {s.label: s.config_hash for s in plan(dataclasses.replace(suite, step=0.1))}
    iterated = {s.label for s in plan(suite) if s.entry and s.entry.strategy != "top-n"}
    assert iterated and all(finer[k] != base[k] for k in iterated)
    assert all(finer[k] == base[k] for k in base if k not in iterated)  # MCUE and Top-n have no step


# -- the runner ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_logs_every_run_and_a_rerun_skips_them(tiny, capsys):
    assert main(run_argv(tiny)) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    runs = _runs(tiny["db"])
    suite = load_suite(tiny["suite"])
    specs = plan(suite)
    parents = [r for r in runs if r[2].get("kind") == "suite"]
    children = [r for r in runs if r[2].get("kind") in ("method", "mcue", "train")]
    assert len(parents) == 1 and parents[0][1] == "FINISHED"
    assert sorted(r[2]["config_hash"] for r in children) == sorted(s.config_hash for s in specs)
    assert all(r[1] == "FINISHED" and r[2]["mlflow.parentRunId"] == parents[0][0] for r in children)
    for key in ("suite", "pair", "method", "seed", "git_commit", "device", "config_hash"):
        assert all(key in r[2] for r in children), key
    # Short run names that fit the UI's column: pair, method and seed abbreviated; the tags say them in full.
    names = {(r[2]["kind"], r[2]["method"], r[2]["seed"]): r[2]["mlflow.runName"] for r in children}
    assert names[("method", "gtap-beta-iter-build", "0")] == "tiny-L300 bd-ib s0"
    assert names[("method", "wmp", "1")] == "tiny-L300 wmp s1"
    assert names[("train", "train", "0")] == "tiny-L300 fit s0" and names[("mcue", "mcue", "1")] == "tiny-L300 mcue s1"
    assert all("curve/* metrics: step = kept fraction in per mille" in r[2]["mlflow.note.content"]
               for r in children if r[2]["kind"] == "method")

    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tiny["uri"])
    beta = next(r for r in children if r[2]["method"] == "gtap-beta-iter-build" and r[2]["seed"] == "0")
    run = client.get_run(beta[0])
    assert {"auc_units", "accuracy_at_d", "keep_prob_d", "n_evaluations", "seconds", "trained_test_accuracy",
            "acc_at_2x_macs", "acc_at_4x_macs", "n_forward", "n_backward"} <= set(run.data.metrics)
    assert {"curve/mac_fraction", "curve/latency_ms_b256"} <= set(run.data.metrics) and "auc" not in run.data.metrics
    assert run.data.params["scorer"] == "gtap" and run.data.params["params.budget"] == "40"
    assert float(run.data.params["resolved.keep_prob"]) == run.data.metrics["keep_prob_d"]
    history = client.get_metric_history(beta[0], "curve/accuracy")
    assert sorted(m.step for m in history)[-1] == 1000 and len(history) >= 3  # the grid (plus d when off-grid)
    names = {a.path for a in client.list_artifacts(beta[0])}
    assert {"curve.csv", "scores.csv"} <= names
    mcue_run = next(r for r in children if r[2]["kind"] == "mcue")
    assert {"mcue.csv", "mcue.png"} <= {a.path for a in client.list_artifacts(mcue_run[0])}
    # One MCUE pass reads every output: each reading's t* is logged and read back, whichever one chose d.
    mcue_metrics = client.get_run(mcue_run[0]).data.metrics
    assert {f"t_star_{name}" for name in OUTPUTS} <= set(mcue_metrics)
    assert mcue_metrics["t_star"] == mcue_metrics["t_star_correct"]
    frames = load_frames(Tracker(tiny["uri"], "tiny", create=False), [s.config_hash for s in specs])
    mcue_row = frames["mcue_runs"].iloc[0]
    assert all(0 < mcue_row[f"t_star_{name}"] < 1 for name in OUTPUTS)
    assert {f"var_{name}" for name in OUTPUTS} <= set(frames["mcue"].columns)
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0][0])}
    assert {"seed_variance.csv", "rank_correlations.csv", "plan.json", "suite.json"} <= parent_artifacts
    # A handful of parent metrics, none per method (those are in seed_variance.csv): the UI's columns stay readable.
    experiment = client.get_experiment_by_name("tiny")
    parent_metrics = client.get_run(parents[0][0]).data.metrics
    assert set(parent_metrics) == {"wall_seconds", "n_method_runs", "n_train_runs", "n_failed"}
    assert parent_metrics["n_method_runs"] == 10
    assert parent_metrics["n_train_runs"] == sum(r[2]["kind"] == "train" for r in children)
    assert "models.csv" in parent_artifacts
    page = (f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey=bench-tiny"
            "&workflowType=machine_learning")
    assert printed[-1] == f"see it: mlflow ui --backend-store-uri {tiny['uri']}, then open {page}"
    assert "mlflow.sharedViewState.bench-tiny" in experiment.tags  # the saved view that address opens
    variance = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parents[0][0], artifact_path="seed_variance.csv",
                                                               tracking_uri=tiny["uri"]))
    auc = variance[(variance["method"] == "gtap-beta-iter-build") & (variance["fraction"] == "auc")]
    seeds = [client.get_run(r[0]).data.metrics["auc_units"] for r in children
             if r[2]["method"] == "gtap-beta-iter-build"]
    assert len(seeds) == 2 and auc["mean"].iloc[0] == pytest.approx(sum(seeds) / 2)
    path = mlflow.artifacts.download_artifacts(run_id=parents[0][0], artifact_path="rank_correlations.csv",
                                               tracking_uri=tiny["uri"])
    correlations = pd.read_csv(path)
    assert {"all", "relu1", "relu2"} <= set(correlations["layer"])
    assert correlations[["spearman", "kendall"]].abs().max().max() <= 1.0

    capsys.readouterr()
    assert main(run_argv(tiny)) == 0
    assert f"0 run(s) done, {len(specs)} already in the store" in capsys.readouterr().out
    assert len(_runs(tiny["db"])) == len(runs)  # nothing new, the same parent reopened


def test_same_seed_gives_the_same_numbers(tiny):
    from mlflow import MlflowClient

    assert main(run_argv(tiny, "--experiment", "a")) == 0
    assert main(run_argv(tiny, "--experiment", "b")) == 0
    client = MlflowClient(tiny["uri"])
    results = []
    for name in ("a", "b"):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], "tags.kind = 'method'")
        results.append({r.data.tags["config_hash"]: (r.data.metrics["auc_units"], r.data.metrics["accuracy_at_d"])
                        for r in runs})
    assert results[0] == results[1] and len(results[0]) == 10


def test_mcue_bands_are_logged_with_the_mcue_run_and_leave_d_alone(tmp_path, tiny_mnist, monkeypatch):
    """A suite's ``mcue: {bands: [...]}`` (GTAP Fig. 6) adds each band's t*, diagonal and heatmap to the MCUE run."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    for folder in ("plain", "banded"):
        (tmp_path / folder).mkdir()
    plain = tiny_suite(tmp_path / "plain", tiny_mnist, methods=("random",))
    banded = tiny_suite(tmp_path / "banded", tiny_mnist, methods=("random",))
    raw = yaml.safe_load(banded["suite"].read_text())
    raw["mcue"]["bands"] = ["fc"]
    banded["suite"].write_text(yaml.safe_dump(raw))
    for tiny in (plain, banded):
        assert main(run_argv(tiny, "--seeds", "0")) == 0
    metrics, artifacts = [], []
    for tiny in (plain, banded):
        client = MlflowClient(tiny["uri"])
        run = next(r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                                 "tags.kind = 'mcue'"))
        metrics.append(run.data.metrics)
        artifacts.append({a.path for a in client.list_artifacts(run.info.run_id)})
    assert metrics[0]["t_star"] == metrics[1]["t_star"] and metrics[0]["keep_prob"] == metrics[1]["keep_prob"]
    assert not any("band" in name for name in metrics[0])
    assert 0 < metrics[1]["t_star_band_fc"] < 1 and metrics[1]["units_band_fc"] > 0
    assert {"mcue_fc.csv", "mcue_fc.png"} <= artifacts[1] and "mcue_fc.csv" not in artifacts[0]
    specs = plan(load_suite(banded["suite"]))
    frames = load_frames(Tracker(banded["uri"], "tiny", create=False), [s.config_hash for s in specs])
    assert frames["mcue_runs"]["t_star_band_fc"].iloc[0] == metrics[1]["t_star_band_fc"]
    assert frames["mcue_runs"]["t_star_band_conv"].isna().all()


def test_unfinished_runs_are_redone_once(tiny):
    """What kill -9 leaves behind (a running parent of a dead process, a half-logged child) is cleaned up."""
    from mlflow import MlflowClient

    assert main(run_argv(tiny, "--methods", "wmp")) == 0
    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny")
    spec = next(s for s in plan(select(load_suite(tiny["suite"]), methods=["random"])) if s.kind == "method")
    stale = client.create_run(experiment.experiment_id, tags={"suite": "tiny", "kind": "method",
                                                              "config_hash": spec.config_hash})
    failed = client.create_run(experiment.experiment_id, tags={"suite": "tiny", "kind": "method",
                                                               "config_hash": spec.config_hash})
    client.set_terminated(failed.info.run_id, "FAILED")
    done = next(s for s in plan(select(load_suite(tiny["suite"]), methods=["wmp"])) if s.kind == "method")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client.create_run(experiment.experiment_id, tags={  # killed after its result was written, before the claim went
        "suite": "tiny", "kind": "claim", "config_hash": done.config_hash, "claim_owner": "gone", "pid": str(dead.pid),
        "host": socket.gethostname()})
    assert main(run_argv(tiny)) == 0
    assert not [r for r in _runs(tiny["db"]) if r[2].get("kind") == "claim"]
    runs = [r for r in _runs(tiny["db"]) if r[2].get("kind") in ("method", "mcue", "train")]
    hashes = [r[2]["config_hash"] for r in runs]
    assert len(hashes) == len(set(hashes)) == len(plan(load_suite(tiny["suite"])))
    assert all(status == "FINISHED" for _, status, _ in runs)
    assert stale.info.run_id not in {r[0] for r in runs}


@pytest.mark.slow
def test_kill_9_mid_suite_then_rerun(tiny):
    """A real SIGKILL while the suite runs; the rerun finishes it with every run present once."""
    script = REGISTER_TINY_PAIR + textwrap.dedent(f"""
        import sys
        from bench.cli import main
        sys.exit(main({run_argv(tiny, "--seeds", "0-5")!r}))
    """)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tiny["db"].parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if tiny["db"].exists():
            try:
                done = [r for r in _runs(tiny["db"]) if r[2].get("kind") == "method" and r[1] == "FINISHED"]
            except sqlite3.OperationalError:  # the schema is still being created
                done = []
            if len(done) >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the suite ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _runs(tiny["db"])
    expected = len(plan(select(load_suite(tiny["suite"]), seeds=parse_seeds("0-5"))))
    assert len([r for r in before if r[2].get("kind") in ("method", "mcue", "train")]) < expected
    assert main(run_argv(tiny, "--seeds", "0-5")) == 0
    after = _runs(tiny["db"])
    children = [r for r in after if r[2].get("kind") in ("method", "mcue", "train")]
    hashes = [r[2]["config_hash"] for r in children]
    assert len(hashes) == len(set(hashes)) == expected
    assert all(status == "FINISHED" for _, status, _ in after)
    assert len([r for r in after if r[2].get("kind") == "suite"]) == 1  # the killed invocation's parent, resumed


def test_errors_are_one_line_exit_2_and_write_nothing(tiny, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny["suite"].read_text().replace("wgmp", "wgmpp"))
    checks = [
        (["run", "--suite", str(bad), "--tracking-uri", tiny["uri"]], "Did you mean 'wgmp'"),
        (["run", "--suite", "lenet", "--data-dir", str(tmp_path / "nowhere"), "--tracking-uri", tiny["uri"]],
         "train-images-idx3-ubyte.gz"),
        (run_argv(tiny)[:-4] + ["--tracking-uri", "http://127.0.0.1:9"], "cannot use the tracking store"),
        (run_argv(tiny)[:-4] + ["--tracking-uri", f"sqlite:///{tmp_path}/bad.yaml/x.db"],  # under a file
         "cannot use the tracking store"),
        (["run", "--suite", "lenet", "--profile", "fast"], "unknown profile 'fast'"),
    ]
    for argv, message in checks:
        start = time.monotonic()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and err.count("\n") == 0 and message in err, err
        assert time.monotonic() - start < 30
    assert not tiny["db"].exists()


@pytest.mark.slow
def test_mlflow_works_beside_our_datasets_package(tmp_path):
    """MLflow imports Hugging Face's ``datasets`` when it finds one; ours must neither break it nor be shadowed."""
    script = textwrap.dedent(f"""
        import datasets, mlflow, pandas as pd
        assert datasets.__file__.startswith({str(ROOT)!r}), datasets.__file__
        import mlflow.data, mlflow.data.huggingface_dataset  # what MLflow imports when `datasets` is importable
        from datasets.data import DATASETS
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/m.db")
        with mlflow.start_run() as run:
            mlflow.log_param("p", 1)
            mlflow.log_metric("m", 0.5, step=3)
            mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({{"a": [1, 2]}}), name="tiny"))
            mlflow.log_dict({{"datasets": DATASETS.names()}}, "names.json")
        got = mlflow.get_run(run.info.run_id)
        assert got.data.metrics["m"] == 0.5 and got.inputs.dataset_inputs[0].dataset.name == "tiny"
        import sys
        assert sys.modules["datasets"].__file__.startswith({str(ROOT)!r})
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


# -- reports from the store -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_builds_a_report_from_the_store_and_bench_report_rebuilds_it(tiny, capsys, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    argv = [a for a in run_argv(tiny) if a != "--no-report"]
    assert main(argv) == 0
    html = Path("reports/out/tiny/report.html")
    text = html.read_text()
    assert "tiny-lenet300" in text and "gtap-beta-iter-build" in text and "<img" in text
    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny")
    parent = client.search_runs([experiment.experiment_id], "tags.kind = 'suite'")[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/report.md"} <= logged

    # A later filtered invocation does not hide the full one from `bench report`.
    assert main(run_argv(tiny, "--methods", "wmp", "--seeds", "0")) == 0

    # `bench report` reads what is stored and never recomputes a method.
    import bench.pipeline

    def no_methods(*args, **kwargs):
        raise AssertionError("a report must not run a method")

    monkeypatch.setattr(bench.pipeline, "run_experiment", no_methods)
    monkeypatch.setattr(bench.pipeline, "run_mcue", no_methods)
    # The guard can fire: a run that has to compute a method goes through the patched functions and fails.
    capsys.readouterr()
    assert main(run_argv(tiny, "--methods", "wmp", "--seeds", "5")) == 1
    assert "a report must not run a method" in capsys.readouterr().err
    out = tmp_path / "again"
    assert main(["report", "--suite", "tiny", "--tracking-uri", tiny["uri"], "--out", str(out)]) == 0
    runs = client.search_runs([experiment.experiment_id], "tags.method = 'wmp' AND attributes.status = 'FINISHED'")
    mean_auc = sum(r.data.metrics["auc_units"] for r in runs) / len(runs)
    markdown = (out / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("|") and "| wmp |" in line)
    assert f"| {mean_auc:.3f}" in row and "gtap-beta-iter-build" in markdown


def test_report_on_an_empty_or_partial_store(tiny, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/empty.db"
    assert main(["report", "--suite", "lenet", "--tracking-uri", uri]) == 2
    assert "no tracking store at" in capsys.readouterr().err and not (tmp_path / "empty.db").exists()
    from bench.tracking import Tracker

    Tracker(uri, "other")
    assert main(["report", "--suite", "lenet", "--tracking-uri", uri]) == 2
    assert "no experiment 'lenet'" in capsys.readouterr().err
    Tracker(uri, "lenet")
    assert main(["report", "--suite", "lenet", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "no runs of suite 'lenet'" in err and "python -m bench run --suite lenet" in err and err.count("\n") == 1
    # A partial store (one method, one seed) still reports, and shows how many seeds each method has.
    assert main(run_argv(tiny, "--methods", "wmp", "--seeds", "0")) == 0
    from mlflow import MlflowClient

    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny")
    assert client.search_runs([experiment.experiment_id], "tags.kind = 'suite'")[0].data.tags["scope"] == "partial"
    out = tmp_path / "partial"
    assert main(["report", "--suite", "tiny", "--tracking-uri", tiny["uri"], "--out", str(out)]) == 0
    row = next(line for line in (out / "report.md").read_text().splitlines() if "| wmp |" in line)
    assert "| 1 |" in row


@pytest.mark.slow
def test_shipped_smoke_suite_on_real_mnist(tmp_path, monkeypatch, capsys):
    """The smoke suite as a user runs it: real MNIST, a fresh store, a report at the end."""
    data = os.environ.get("COALITION_BENCH_DATA")
    if not data:
        pytest.skip("set COALITION_BENCH_DATA to the staged data root to run the real-data smoke suite")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "14 run(s) done" in out and Path("mlflow.db").exists()  # 2 seeds x (training, MCUE, 5 methods)
    markdown = Path("reports/out/smoke/report.md").read_text()
    assert "lenet300-mnist" in markdown and "gtap-beta-iter-build" in markdown


def test_a_list_of_allocations_runs_one_entry_per_variant(tmp_path):
    raw = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    raw["methods"] = [{"method": "wmp", "allocation": ["uniform", "normalized"]},
                      {"name": "taylor-build", "method": "taylor", "strategy": "iterated-building",
                       "allocation": ["global", "normalized"]},
                      {"method": "random"}]
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump(raw))
    suite = load_suite(str(path))
    entries = {e.name: (e.allocation, e.variant_of) for e in suite.methods}
    assert entries == {"wmp-uniform": ("uniform", "wmp"), "wmp-normalized": ("normalized", "wmp"),
                       "taylor-build-global": ("global", "taylor-build"),
                       "taylor-build-normalized": ("normalized", "taylor-build"), "random": ("global", "")}
    assert suite.variants == {}  # the allocation list is not the suite's pair variants
    hashes = {spec.config_hash for spec in plan(suite) if spec.kind == "method"}
    assert len(hashes) == len([spec for spec in plan(suite) if spec.kind == "method"])  # variants are distinct runs


def test_a_group_whose_worker_keeps_dying_fails_its_runs_and_a_rerun_redoes_them(tiny):
    """A group that dies past Ray's retries (the executor's GroupFailed) after its first run: that run is kept, the
    group's other runs are logged FAILED with the worker's cause, and the next invocation computes only those."""
    from bench.executors import GroupFailed, SerialExecutor
    from bench.groups import RunResult
    from bench.runner import run_suite

    class DiesAfterOneRun(SerialExecutor):
        def run(self, tasks):
            for task in tasks:
                for _, event in super().run(iter([task])):
                    yield task, event
                    if isinstance(event, RunResult):
                        yield task, GroupFailed("worker failed: ActorDiedError: the worker died")
                        break

    suite = load_suite(tiny["suite"])
    expected, groups = len(plan(suite)), len(suite.pairs) * len(suite.seeds)
    outcome = run_suite(suite, Tracker(tiny["uri"], suite.name), data_dir=str(tiny["data"]), progress=False,
                        executor=DiesAfterOneRun(data_dir=str(tiny["data"])))
    assert outcome.finished == groups
    assert len(outcome.failed) == expected - groups
    failed = [t for _, status, t in stored_runs(tiny["db"]) if status == "FAILED" and "config_hash" in t]
    assert len(failed) == expected - groups and all(t["error"].startswith("worker failed") for t in failed)
    assert main(run_argv(tiny)) == 0
    finished = [t["config_hash"] for _, status, t in stored_runs(tiny["db"])
                if status == "FINISHED" and t.get("kind") in ("method", "mcue", "train")]
    assert len(finished) == len(set(finished)) == expected
