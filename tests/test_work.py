"""The work estimate of a suite profile (``python -m bench.benchmarks.work``): its counts and its packing."""

from __future__ import annotations

import math

import pytest
from helpers import tiny_suite

from bench.benchmarks.work import PairWork, count, main, makespan
from bench.suite import load_suite


@pytest.fixture()
def tiny(tmp_path, tiny_mnist):
    return tiny_suite(tmp_path, tiny_mnist)


def test_makespan_packs_the_longest_group_first():
    groups = [10.0, 8.0, 3.0, 3.0]
    assert makespan(groups, 1) == 24.0
    assert makespan(groups, 2) == 13.0  # 10 + 3 | 8 + 3: no device can beat the longest group plus its share
    assert makespan(groups, 8) == 10.0


def test_count_is_budget_times_rounds_and_the_mcue_grid(tiny):
    suite = load_suite(tiny["suite"])  # budget 40; Top-n and Iterated Building at step 0.2; fractions 0.5, 1
    work = count(suite, suite.pairs[0], n_units=100, val_examples=64, train_examples=512)
    # Top-n scores once; Iterated Building goes 0 -> 20 -> 40 -> 50 (a target) -> 70 -> 90 -> 100: 6 rounds.
    assert work.gtap_evaluations == 40 * 1 + 40 * 6
    assert work.mcue_evaluations == 5 * 5 * 4  # the 5-point grid squared, 4 samples a cell
    assert work.mcue_examples == 2 * 8  # each sub-network on its own and on shared instances
    assert work.seeds == len(suite.seeds) and work.epochs == 1


def test_group_seconds_adds_training_gtap_and_mcue():
    work = PairWork("p", seeds=2, n_units=10, val_examples=100, train_examples=1000, epochs=3, gtap_evaluations=500,
                    mcue_evaluations=1000, mcue_examples=10, coalitions_per_second=50.0, epoch_seconds=2.0)
    # MCUE's sub-networks see a tenth of the examples, so they go ten times faster than a coalition.
    assert math.isclose(work.group_seconds, 3 * 2.0 + 500 / 50.0 + 1000 / 500.0)


def test_the_command_measures_and_projects(tiny, capsys):
    argv = ["--suite", str(tiny["suite"]), "--profile", "default", "--data-dir", str(tiny["data"]), "--device", "cpu",
            "--devices", "1,2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny-"))
    rate, epoch = (float(cell) for cell in row.split("|")[7:9])
    assert rate > 0 and epoch > 0
    assert "2 groups on 1 device(s)" in out and "2 groups on 2 device(s)" in out


def test_a_bad_suite_stops_with_one_line(capsys):
    assert main(["--suite", "no-such-suite", "--no-measure"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
