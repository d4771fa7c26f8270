"""``bench doctor``: every compute path runs, agrees with itself on the CPU, and a disagreement is reported."""

import subprocess
import sys

import numpy as np
import torch

from bench import doctor
from bench.cli import main


def test_every_path_runs_and_is_deterministic_on_the_cpu():
    rows = doctor.run_paths(torch.device("cpu"), compare=True)
    assert [r["path"] for r in rows] == [p.name for p in doctor.PATHS]
    for row in rows:
        assert row["agrees"], row
        assert row["seconds"] > 0


def test_a_path_that_differs_from_the_cpu_is_reported():
    calls = iter([np.zeros(3), np.array([0.0, 0.5, 0.0])])
    bogus = doctor.Path("bogus", lambda device: next(calls), 1e-3)
    [row] = doctor.run_paths(torch.device("cpu"), (bogus,), compare=True)
    assert not row["agrees"] and row["difference"] == 0.5


def test_the_command_prints_one_row_per_path(capsys):
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p in doctor.PATHS) and "reference" in out


def test_an_unusable_device_is_one_line_and_exit_2(capsys):
    if torch.cuda.is_available():
        return
    assert main(["doctor", "--device", "cuda:7"]) == 2
    assert capsys.readouterr().out.count("\n") == 1


def test_it_imports_neither_mlflow_nor_optuna_nor_pandas():
    code = ("import sys; from bench.cli import build_parser; import bench.doctor as d; "
            "d.run_paths(__import__('torch').device('cpu'), d.PATHS[:2]); "
            "import methods.scorers, methods.network, methods.neurogame; "
            "bad = [m for m in ('mlflow', 'optuna', 'pandas') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_path_whose_library_is_missing_is_skipped_not_fatal():
    def needs_captum(device):
        raise ModuleNotFoundError("No module named 'captum'", name="captum")
    [row] = doctor.run_paths(torch.device("cpu"), (doctor.Path("attribution", needs_captum, 0.0),))
    assert row["skipped"] == "needs captum" and row["agrees"]
