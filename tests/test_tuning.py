"""Optuna tuning: search spaces, the validation-only objective, MLflow logging, ``--tuned``, and several workers on
a real PostgreSQL server (a throwaway cluster this test starts from Debian's postgresql packages)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REGISTER_TINY_PAIR, TINY_PAIR

from bench.cli import main
from bench.suite import SUITES_DIR, SuiteError, load_suite
from methods.scorers import GTAPScorer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


def _suite_file(path: Path, **tuning) -> Path:
    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    suite.update(name="tiny", pairs=[TINY_PAIR.name], fractions=[0.25, 0.5, 1.0], seeds=[0])
    suite["mcue"]["samples"] = 4
    suite["defaults"]["gtap"]["budget"] = 40
    suite["tuning"] = {"gtap": {"budget": {"type": "int", "low": 20, "high": 80}, **tuning}}
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.chdir(tmp_path)
    return {"suite": _suite_file(tmp_path / "tiny.yaml"), "data": tiny_mnist,
            "uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "storage": f"sqlite:///{tmp_path / 'optuna.db'}"}


def _tune_argv(tiny, *extra, trials=6):
    return ["tune", "--suite", str(tiny["suite"]), "--method", "gtap-beta-iter-build", "--trials", str(trials),
            "--data-dir", str(tiny["data"]), "--tracking-uri", tiny["uri"], "--storage", tiny["storage"],
            "--no-progress", *extra]


# -- search spaces --------------------------------------------------------------------------------------------------


def test_gtap_declares_d_budget_and_step():
    assert {"keep_prob", "budget", "step"} <= set(GTAPScorer.search_space)
    beta = GTAPScorer.search_space_for({"index": "beta"}, strategy="iterated-pruning", n_units=604)
    assert set(beta) == {"keep_prob", "budget", "step"}
    shapley = GTAPScorer.search_space_for({"index": "shapley"}, strategy="top-n", n_units=604)
    assert set(shapley) == {"budget"} and shapley["budget"]["low"] == 605  # stratified Shapley's minimum


def test_suite_tuning_sections_are_validated(tiny, tmp_path):
    with pytest.raises(SuiteError, match="'gtap' has no parameter 'keep_prb'"):
        load_suite(_suite_file(tmp_path / "a.yaml", keep_prb={"low": 0.1, "high": 0.9}))
    with pytest.raises(SuiteError, match="low <= high"):
        load_suite(_suite_file(tmp_path / "b.yaml", keep_prob={"low": 0.9, "high": 0.1}))
    with pytest.raises(SuiteError, match="Did you mean 'high'"):
        load_suite(_suite_file(tmp_path / "c.yaml", keep_prob={"low": 0.1, "hihg": 0.9}))


def test_methods_without_a_search_space_are_refused(tiny, capsys):
    argv = _tune_argv(tiny)
    argv[argv.index("gtap-beta-iter-build")] = "wmp"
    assert main(argv) == 2
    assert "declares no search space" in capsys.readouterr().err


# -- the objective and tracking ------------------------------------------------------------------------------------


def test_tune_logs_a_study_and_finds_at_least_the_mcue_baseline(tiny, capsys):
    from mlflow import MlflowClient

    assert main(_tune_argv(tiny, trials=6)) == 0
    out = capsys.readouterr().out
    assert "best validation AUC" in out and "tuning gains" in out

    import optuna

    study = optuna.load_study(study_name="tiny.default.tiny-lenet300.gtap-beta-iter-build", storage=tiny["storage"])
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 6
    baseline = study.trials[0]
    assert baseline.user_attrs["baseline"] and baseline.params["budget"] == 40 and baseline.params["step"] == 0.2
    from bench.pipeline import problem_for, run_mcue
    from datasets.training import train_pair

    suite = load_suite(tiny["suite"])
    problem = problem_for(train_pair(TINY_PAIR, seed=0, data_dir=tiny["data"], progress=False))
    assert baseline.params["keep_prob"] == pytest.approx(run_mcue(problem, seed=0, **suite.mcue).keep_prob)
    space = GTAPScorer.search_space
    for t in study.trials:
        assert 20 <= t.params["budget"] <= 80  # the suite's override
        assert space["keep_prob"]["low"] <= t.params["keep_prob"] <= space["keep_prob"]["high"]
        if t.state.name == "COMPLETE":  # the iterated strategy reported its partial curve per kept fraction
            assert sorted(t.intermediate_values) == [250, 500, 1000]  # steps: the kept fractions in per mille
            # a running sum over the grid's size: it only grows, so the pruner's "best so far" is the latest value
            values = [t.intermediate_values[step] for step in (1000, 500, 250)]  # Iterated Building reaches 250 first
            assert values == sorted(values, reverse=True) and values[0] <= 1.0
    assert study.metric_names == ["validation AUC"]  # the dashboard's name for the objective

    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny-tune")
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
    trials = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    assert len(parents) == 1 and parents[0].data.metrics["best_val_auc"] == pytest.approx(study.best_value)
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [t.number for t in study.trials]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
    # Each trial names its MLflow run, pruned and failed ones too.
    run_of_trial = {int(r.data.tags["trial_number"]): r.info.run_id for r in trials}
    assert {t.number: t.user_attrs.get("mlflow_run_id") for t in study.trials} == run_of_trial
    complete = [r for r in trials if r.data.tags["state"] == "COMPLETE"]
    assert complete and all("val_auc" in r.data.metrics for r in complete)

    # Rerunning with the same trial count finds the study finished and runs nothing new.
    assert main(_tune_argv(tiny, trials=6)) == 0
    assert len(optuna.load_study(study_name=study.study_name, storage=tiny["storage"]).trials) == len(study.trials)


def test_the_objective_never_reads_the_test_split(tiny, monkeypatch):
    """Scrambling the test labels changes nothing: the objective is computed on the validation split only."""
    from bench import tuning
    from datasets import training

    def run(scramble: bool) -> list[float]:
        real = training.train_pair

        def fake(*args, **kwargs):
            trained = real(*args, **kwargs)
            if scramble:
                x, y = trained.splits.test.tensors
                trained.splits.test.tensors = (x, (y + 1) % 10)
            return trained

        monkeypatch.setattr(training, "train_pair", fake)
        outcome = tuning.tune(load_suite(tiny["suite"]), load_suite(tiny["suite"]).entry("gtap-beta-top-n"),
                              TINY_PAIR.name, trials=4, storage="memory", data_dir=str(tiny["data"]),
                              progress=False)
        return [outcome.best_value, outcome.baseline_value, *outcome.best_params.values()]

    assert run(False) == run(True)


def test_same_seed_same_study(tiny):
    from bench import tuning

    suite = load_suite(tiny["suite"])
    outcomes = [tuning.tune(suite, suite.entry("gtap-beta-iter-build"), TINY_PAIR.name, trials=5, storage="memory",
                            data_dir=str(tiny["data"]), progress=False, seed=3) for _ in range(2)]
    assert outcomes[0].best_params == outcomes[1].best_params
    assert outcomes[0].best_value == outcomes[1].best_value


def test_run_tuned_uses_the_best_parameters(tiny, capsys):
    from mlflow import MlflowClient

    assert main(_tune_argv(tiny, trials=4)) == 0
    import optuna

    best = optuna.load_study(study_name="tiny.default.tiny-lenet300.gtap-beta-iter-build",
                             storage=tiny["storage"]).best_params
    argv = ["run", "--suite", str(tiny["suite"]), "--data-dir", str(tiny["data"]), "--tracking-uri", tiny["uri"],
            "--no-progress", "--no-report", "--tuned", "--methods", "gtap-beta-iter-build"]
    assert main(argv) == 0
    client = MlflowClient(tiny["uri"])
    experiment = client.get_experiment_by_name("tiny")
    run = client.search_runs([experiment.experiment_id], "tags.method = 'gtap-beta-iter-build'")[0]
    assert float(run.data.params["params.keep_prob"]) == pytest.approx(best["keep_prob"])
    assert int(run.data.params["params.budget"]) == best["budget"]
    assert float(run.data.params["step"]) == pytest.approx(best["step"])
    assert run.data.metrics["n_evaluations"] > 0


def test_run_tuned_without_a_study_is_a_clear_error(tiny, capsys):
    argv = ["run", "--suite", str(tiny["suite"]), "--data-dir", str(tiny["data"]), "--tracking-uri", tiny["uri"],
            "--tuned"]
    assert main(argv) == 2
    assert "no tracking store at" in capsys.readouterr().err
    assert not Path(tiny["uri"].removeprefix("sqlite:///")).exists()


def test_a_study_whose_trials_all_fail_stops_with_one_line(tiny, tmp_path, capsys):
    # Exact Banzhaf on the tiny net's 400 units is refused, so every trial fails.
    path = _suite_file(tmp_path / "failing.yaml", estimator={"type": "categorical", "choices": ["exact"]})
    assert main(_tune_argv(dict(tiny, suite=path), trials=20)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: stopped after 5 failed trials in a row") and "exact enumeration" in lines[-1]
    assert [line for line in lines if line.startswith("trial ")] == lines[:-1] and len(lines) == 6


# -- several workers on PostgreSQL ---------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster in a temp dir, on a Unix socket only; stopped and deleted afterwards."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql)")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    root = Path(tempfile.mkdtemp(prefix="coalition-bench-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run([*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-k {root} -p {port} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        with psycopg.connect(host=str(root), port=port, user="bench", dbname="postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE optuna")
            con.execute("CREATE DATABASE mlflow")
        yield {name: f"postgresql+psycopg://bench@/{name}?host={root}&port={port}" for name in ("optuna", "mlflow")}
    finally:
        subprocess.run([*as_postgres, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _worker(tiny, postgres, worker: int, trials: int, *extra: str) -> subprocess.Popen:
    argv = ["tune", "--suite", str(tiny["suite"]), "--method", "gtap-beta-iter-build", "--trials", str(trials),
            "--data-dir", str(tiny["data"]), "--tracking-uri", postgres["mlflow"], "--storage", postgres["optuna"],
            "--no-progress", "--worker", str(worker), *extra]
    script = REGISTER_TINY_PAIR + f"import sys\nfrom bench.cli import main\nsys.exit(main({argv!r}))\n"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=tiny["suite"].parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _prepare_shared_stores(tiny, postgres) -> None:
    """Create the schemas once, so the workers do not race to migrate empty databases."""
    from bench.tracking import Tracker
    from bench.tuning import make_storage
    from datasets.training import train_pair

    Tracker(postgres["mlflow"], "tiny-tune")
    make_storage(postgres["optuna"], heartbeat=1, grace=2, retries=2)
    train_pair(TINY_PAIR, seed=0, data_dir=tiny["data"], progress=False)  # one checkpoint for both workers


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(tiny, postgres):
    import optuna
    from mlflow import MlflowClient

    _prepare_shared_stores(tiny, postgres)
    trials = 10
    workers = [_worker(tiny, postgres, i, trials) for i in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="tiny.default.tiny-lenet300.gtap-beta-iter-build",
                              storage=postgres["optuna"])
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert trials <= len(finished) <= trials + 1  # a trial started concurrently at the end may add one
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert {t.user_attrs.get("worker") for t in finished} == {0, 1}  # both workers took trials
    client = MlflowClient(postgres["mlflow"])
    experiment = client.get_experiment_by_name("tiny-tune")
    logged = [int(r.data.tags["trial_number"]) for r in client.search_runs([experiment.experiment_id],
                                                                            "tags.kind = 'trial'")]
    assert sorted(logged) == sorted(t.number for t in study.trials)  # each trial logged once, none lost
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
    assert len(parents) == 1


@pytest.mark.slow
def test_a_killed_workers_trial_is_retried(tiny, postgres, tmp_path):
    """kill -9 a worker mid-trial: its heartbeat stops, another worker fails the trial and runs it again."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    # One unit per round of Iterated Building makes a trial long enough to be killed in the middle.
    tiny = {**tiny, "suite": _suite_file(tmp_path / "slow.yaml", step={"type": "int", "low": 1, "high": 1},
                                         budget={"type": "int", "low": 60, "high": 60})}
    _prepare_shared_stores(tiny, postgres)
    name = "tiny.default.tiny-lenet300.gtap-beta-iter-build"
    heartbeat = ("--heartbeat", "1", "--grace", "2", "--study", name + ".retry")
    first = _worker(tiny, postgres, 0, 3, *heartbeat)
    deadline = time.monotonic() + 120
    running = []
    while time.monotonic() < deadline and first.poll() is None and not running:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name=name + ".retry", storage=postgres["optuna"])
            running = [t for t in study.trials if t.state.name == "RUNNING"]
        except KeyError:  # the study does not exist yet
            pass
    assert running, "no trial was seen running"
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = running[0].number
    second = _worker(tiny, postgres, 1, 3, *heartbeat)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name=name + ".retry", storage=postgres["optuna"])
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed] == "FAIL"
    retried = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert retried and retried[0].state.name in ("COMPLETE", "PRUNED")
    assert retried[0].params == study.trials[killed].params
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert np.isfinite(study.best_value)
