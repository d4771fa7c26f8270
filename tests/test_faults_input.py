"""Bad input stops with one line and exit code 2 before any work starts: no training, no checkpoint, no store.

Seeds (a huge plan, a reversed range), the flags of ``bench prune/train/tune``, a suite path that is a folder or not
UTF-8, an Optuna storage that is not a URL; and ``bench tune``'s first trial (the suite's defaults) when a default
lies outside the search space.
"""

import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY_PAIR, run_argv

from bench import runner
from bench.cli import main
from bench.selection import parse_seeds
from bench.suite import SUITES_DIR, SuiteError, load_suite

pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


def _suite_file(path: Path, **changes) -> Path:
    """The smoke suite on the tiny pair (seeds 0 and 1, budget 40, a budget space of [20, 80] for `bench tune`)."""
    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    suite.update(name="tiny", pairs=[TINY_PAIR.name], fractions=[0.25, 0.5, 1.0])
    suite["mcue"]["samples"] = 4
    suite["defaults"]["gtap"]["budget"] = 40
    suite["tuning"] = {"gtap": {"budget": {"type": "int", "low": 20, "high": 80}}}
    suite.update(changes)
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.chdir(tmp_path)
    return {"suite": _suite_file(tmp_path / "tiny.yaml"), "data": tiny_mnist,
            "uri": f"sqlite:///{tmp_path / 'store.db'}", "db": tmp_path / "store.db"}


class Started(Exception):
    """Raised by a stand-in for the runner: the suite got past every check."""


@pytest.fixture()
def no_runs(monkeypatch):
    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr(runner, "run_suite", started)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0, err
    return err


def _nothing_written(cache: Path) -> None:
    assert not [p for p in cache.rglob("*") if p.is_file()], "a checkpoint was written"


# -- seeds ------------------------------------------------------------------------------------------------------


def test_a_long_seed_range_parses_in_linear_time():
    start = time.perf_counter()
    seeds = parse_seeds("0-100000")
    assert time.perf_counter() - start < 1.0
    assert seeds == tuple(range(100001))
    assert parse_seeds("3-5,4,0-1,3") == (3, 4, 5, 0, 1)  # the first occurrence keeps its place


def test_a_reversed_seed_range_says_so():
    with pytest.raises(SuiteError, match=r"^--seeds: range 5-2 runs backwards; write 2-5$"):
        parse_seeds("5-2")
    with pytest.raises(SuiteError, match="--seeds expects integers and ranges like 0,1,2 or 0-4, got '-1'"):
        parse_seeds("-1")  # negative seeds keep their message


def test_a_plan_above_the_cap_is_refused_unless_yes(tiny, capsys, no_runs, private_cache):
    start = time.monotonic()
    assert main(run_argv(tiny, "--seeds", "0-100000")) == 2
    err = _one_line(capsys)
    assert "700,007 runs" in err and "--yes" in err, err  # 100,001 seeds x (train, MCUE, 5 methods)
    assert time.monotonic() - start < 5
    assert not tiny["db"].exists()
    _nothing_written(private_cache)


def test_yes_runs_a_plan_above_the_cap(tiny, capsys, no_runs, monkeypatch):
    from bench import selection

    monkeypatch.setattr(selection, "MAX_RUNS", 13)
    assert main(run_argv(tiny)) == 2  # 2 seeds x 7 runs
    assert "plans 14 runs (2 seed(s) x 7 run(s) over its 1 pair(s)), above 13" in _one_line(capsys)
    with pytest.raises(Started):  # --yes lets it start
        main(run_argv(tiny, "--yes"))
    assert "14 runs" in capsys.readouterr().err  # the header says how many


def test_a_suite_file_with_100001_seeds_is_refused_fast(tiny, tmp_path, capsys, no_runs, private_cache):
    path = _suite_file(tmp_path / "many.yaml", seeds=list(range(100001)))
    start = time.monotonic()
    assert main(run_argv(dict(tiny, suite=path))) == 2
    assert time.monotonic() - start < 5
    err = _one_line(capsys)
    assert "700,007 runs" in err and "--yes" in err, err
    assert not tiny["db"].exists()
    _nothing_written(private_cache)


def test_run_with_a_reversed_seed_range_is_one_line(tiny, capsys, no_runs):
    assert main(run_argv(tiny, "--seeds", "5-2")) == 2
    assert _one_line(capsys) == "error: --seeds: range 5-2 runs backwards; write 2-5"


# -- flags of prune, train and tune -----------------------------------------------------------------------------


PRUNE_CASES = [
    (["--seed", "-1"], "--seed"),
    (["--fine-tune-epochs", "-1"], "--fine-tune-epochs"),
    (["--step", "1.5"], "--step"),
    (["--step", "0"], "--step"),
    (["--step", "-0.5"], "--step"),
    (["--fractions", "0"], "--fractions"),
    (["--fractions", ""], "--fractions"),
    (["--fractions", "0.5,1.5"], "--fractions"),
    (["--fractions", "0.5,half"], "--fractions"),
    (["--mcue-samples", "0"], "--mcue-samples"),
]


@pytest.mark.parametrize(("extra", "flag"), PRUNE_CASES, ids=[" ".join(c[0]) for c in PRUNE_CASES])
def test_prune_checks_its_flags_before_training(tiny, capsys, private_cache, extra, flag):
    argv = ["prune", TINY_PAIR.name, "--data-dir", str(tiny["data"]), "--method", "wmp", *extra]
    assert main(argv) == 2
    assert flag in _one_line(capsys)
    _nothing_written(private_cache)


def test_train_checks_its_seed_before_training(tiny, capsys, private_cache):
    assert main(["train", TINY_PAIR.name, "--seed", "-1", "--data-dir", str(tiny["data"]), "--no-progress"]) == 2
    assert "--seed" in _one_line(capsys)
    _nothing_written(private_cache)


def _tune_argv(tiny, *extra) -> list[str]:
    return ["tune", "--suite", str(tiny["suite"]), "--method", "gtap-beta-iter-build", "--trials", "2",
            "--data-dir", str(tiny["data"]), "--tracking-uri", tiny["uri"], "--storage", "memory", "--no-progress",
            *extra]


@pytest.mark.parametrize(("extra", "flag"), [(["--seed", "-1"], "--seed"), (["--worker", "-1"], "--worker")])
def test_tune_checks_its_flags_before_training(tiny, capsys, private_cache, extra, flag):
    assert main(_tune_argv(tiny, *extra)) == 2
    assert flag in _one_line(capsys)
    _nothing_written(private_cache)
    assert not tiny["db"].exists()


# -- suite files ------------------------------------------------------------------------------------------------


def test_a_suite_path_that_is_a_folder_says_so(tmp_path, capsys):
    for folder in (tmp_path, tmp_path / "suite.yaml"):
        folder.mkdir(exist_ok=True)
        with pytest.raises(SuiteError, match=f"{folder} is a directory; a suite is a YAML file"):
            load_suite(folder)
        assert main(["run", "--suite", str(folder), "--tracking-uri", f"sqlite:///{tmp_path / 'store.db'}"]) == 2
        assert "is a directory" in _one_line(capsys)
    assert not (tmp_path / "store.db").exists()


def test_a_suite_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: tiny\ndescription: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert str(path) in str(err.value) and "not UTF-8" in str(err.value) and "byte 27" in str(err.value)
    assert main(["run", "--suite", str(path)]) == 2
    assert str(path) in _one_line(capsys)


# -- tune: storage and the first trial --------------------------------------------------------------------------


def test_tune_refuses_a_storage_that_is_not_a_url_and_writes_nothing(tiny, tmp_path, capsys, private_cache):
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = _tune_argv(tiny)
    argv[argv.index("memory")] = str(tmp_path / "o.db")
    assert main(argv) == 2
    err = _one_line(capsys)
    assert "--storage" in err and f"sqlite:///{tmp_path / 'o.db'}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no MLflow store, no o.db
    _nothing_written(private_cache)


def test_tune_first_trial_is_the_defaults_when_one_lies_outside_the_space(tiny, tmp_path, capsys):
    from bench.pipeline import problem_for, run_mcue
    from bench.tuning import tune
    from datasets.training import train_pair

    path = _suite_file(tmp_path / "narrow.yaml", tuning={"gtap": {"budget": {"type": "int", "low": 60, "high": 80}}})
    suite = load_suite(path)
    trials = []
    outcome = tune(suite, suite.entry("gtap-beta-iter-build"), TINY_PAIR.name, trials=1, storage="memory",
                   data_dir=str(tiny["data"]), progress=False, on_trial=trials.append)
    err = capsys.readouterr().err
    problem = problem_for(train_pair(TINY_PAIR, seed=0, data_dir=tiny["data"], progress=False))
    d = run_mcue(problem, seed=0, **suite.mcue).keep_prob
    assert len(trials) == 1 and trials[0].user_attrs["baseline"]
    assert trials[0].params == outcome.baseline_params == {"keep_prob": pytest.approx(d), "budget": 40, "step": 0.2}
    assert outcome.baseline_value is not None
    lines = [line for line in err.splitlines() if "outside the search space" in line]
    assert len(lines) == 1 and "budget=40" in lines[0] and "[40, 80]" in lines[0], err


def _suite_text(tmp_path: Path, text: str) -> Path:
    """The tiny suite with its GTAP defaults line replaced by ``text`` (written by hand, as a user would)."""
    path = _suite_file(tmp_path / "tiny.yaml")
    raw = path.read_text()
    assert "budget: 40" in raw
    path.write_text(raw.replace("budget: 40", text))
    return path


def test_exponent_form_numbers_are_numbers(tiny, tmp_path):
    from bench.suite import SuiteLoader

    assert yaml.load("a: 1e4\nb: 1e-3\nc: 2.5e4\nd: -2e2\ne: name1e4", Loader=SuiteLoader) == {
        "a": 10000, "b": 0.001, "c": 25000.0, "d": -200, "e": "name1e4"}
    suite = load_suite(_suite_text(tmp_path, "budget: 4e1"))
    assert {e.params["budget"] for e in suite.methods if e.method == "gtap"} == {40}


@pytest.mark.parametrize("budget", ["1000000000000", "1e12"])
def test_a_budget_that_cannot_fit_in_memory_is_refused_at_load(tiny, tmp_path, budget):
    with pytest.raises(SuiteError, match=r"budget 1,000,000,000,000 coalition evaluations needs at least 7,450\.6 GiB"):
        load_suite(_suite_text(tmp_path, f"budget: {budget}"))


def test_prune_refuses_a_budget_that_cannot_fit_before_training(tiny, capsys, private_cache):
    argv = ["prune", TINY_PAIR.name, "--data-dir", str(tiny["data"]), "--method", "gtap", "--param", "budget=1e12",
            "--param", "index=banzhaf"]
    assert main(argv) == 2
    assert "GiB for the values alone" in _one_line(capsys)
    _nothing_written(private_cache)
