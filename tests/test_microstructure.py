"""The microstructure analysis: its statistics on samples with known answers, and the analysis end to end."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers import TINY_PAIR
from scipy import stats
from torch import nn

from bench.cli import main
from methods.analyses.base import AnalysisInput, build_analysis
from methods.analyses.microstructure import fit_distributions, log_moments, unit_utilities, utility_coefficients
from methods.network.structure import unit_groups

pytestmark = pytest.mark.usefixtures("private_cache")


def _rank(records, name):
    return next(r["rank_aic"] for r in records if r["distribution"] == name)


def test_lognormal_samples_recover_mu_and_sigma_and_rank_first():
    rng = np.random.default_rng(0)
    rows = [rng.lognormal(-3.0, 0.7, size=50) for _ in range(80)]  # 80 units x 50 incoming weights
    moments = log_moments(rows, rng=rng, resamples=400)
    assert moments["mu_lo"] <= -3.0 <= moments["mu_hi"] and moments["mu_hi"] - moments["mu_lo"] < 0.1
    assert moments["sigma_lo"] <= 0.7 <= moments["sigma_hi"]
    fits = fit_distributions(np.concatenate(rows), rng=rng, ks_samples=49)
    assert _rank(fits, "lognormal") == 1
    lognormal = next(r for r in fits if r["distribution"] == "lognormal")
    assert lognormal["shape"] == pytest.approx(0.7, abs=0.03) and lognormal["ks_p"] > 0.05
    assert min(r["ks_p"] for r in fits if r["distribution"] != "lognormal") <= 0.02  # the others are rejected


def test_gamma_samples_are_not_called_lognormal():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 0.05, size=3000)
    fits = fit_distributions(x, rng=rng, ks_samples=49)
    assert _rank(fits, "gamma") == 1 and _rank(fits, "lognormal") > 1
    assert next(r["ks_p"] for r in fits if r["distribution"] == "lognormal") <= 0.02


def test_monte_carlo_ks_holds_its_level_on_lognormal_samples():
    """With fitted parameters, the parametric-bootstrap KS p-value is about uniform under the null: at the 10 %
    level, 40 seeded repetitions reject about 4 times (a plain kstest on fitted parameters would almost never)."""
    rng = np.random.default_rng(2)
    p_values, plain = [], []
    for _ in range(40):
        x = rng.lognormal(0.5, 1.2, size=150)
        lognormal = next(r for r in fit_distributions(x, rng=rng, ks_samples=39) if r["distribution"] == "lognormal")
        p_values.append(lognormal["ks_p"])
        shape, _, scale = stats.lognorm.fit(x, floc=0)
        plain.append(stats.kstest(x, stats.lognorm.cdf, args=(shape, 0, scale)).pvalue)
    rejected = np.mean(np.array(p_values) <= 0.1)
    assert 0.0 < rejected <= 0.25  # binomial(40, 0.1): 4 expected, more than 10 has probability < 0.2 %
    assert np.mean(np.array(plain) <= 0.1) < rejected  # the naive test is conservative: it rejects less


def test_utility_is_the_lognormal_log_density():
    mu, sigma = -2.5, 0.8
    alpha, beta = utility_coefficients(mu, sigma)
    x = np.geomspace(1e-3, 10, 7)
    differences = stats.lognorm.logpdf(x, sigma, scale=math.exp(mu)) - (alpha * np.log(x) - beta * np.log(x) ** 2)
    assert np.ptp(differences) == pytest.approx(0.0, abs=1e-10)  # equal up to a constant
    assert unit_utilities([np.array([1.0, 1.0])], alpha, beta)[0] == 0.0


def _tiny_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(12, 16), relu1=nn.ReLU(),
                                     fc2=nn.Linear(16, 8), relu2=nn.ReLU(), fc3=nn.Linear(8, 3))).eval()


def test_the_analysis_on_a_tiny_network():
    model, initial = _tiny_model(0), _tiny_model(1)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.exp(torch.randn(16, 12) - 2.0) * torch.sign(torch.randn(16, 12)))
    x, y = torch.randn(300, 12), torch.randint(0, 3, (300,))
    groups = unit_groups(model, ("relu1", "relu2"), (12,))
    norms = model.fc1.weight.detach().norm(dim=1).numpy()
    scores = {"norm-like": np.concatenate([norms, np.full(8, np.nan)]), "random": np.random.default_rng(0).random(24)}
    data = AnalysisInput(model=model, initial=initial, units=("relu1", "relu2"), groups=groups, x=x, y=y,
                         scores=scores, keep_prob=0.5)
    analysis = build_analysis("microstructure", ks_samples=19, bootstrap=50, pruned_by="norm-like")
    result = analysis(data, rng=np.random.default_rng(0))
    summary = result.tables["summary"]
    assert {r["network"] for r in summary} == {"trained", "initial", "pruned-at-d"}
    relu1 = next(r for r in summary if (r["network"], r["layer"], r["quantity"]) == ("trained", "relu1", "weights_in"))
    assert relu1["n"] == 16 * 12 and relu1["best_by_aic"] == "lognormal"  # we made fc1's |w| lognormal
    assert relu1["mu_lo"] <= -2.0 <= relu1["mu_hi"]
    pruned = next(r for r in summary if (r["network"], r["layer"], r["quantity"]) == ("pruned-at-d", "relu1",
                                                                                        "weights_in"))
    assert pruned["n_units"] == 12  # round(0.5 x 24) units kept by the norm-like scores, all of them in relu1
    correlation = next(r for r in result.tables["power_correlation"]
                       if (r["method"], r["layer"]) == ("norm-like", "relu1"))
    assert correlation["spearman_incoming_norm"] == pytest.approx(1.0)
    assert {(r["layer_a"], r["layer_b"]) for r in result.tables["layer_equality"]} == {("relu1", "relu2")}
    assert 0 <= result.metrics["trained_weights_in_lognormal_first_share"] <= 1
    outputs = next(r for r in summary if (r["network"], r["layer"], r["quantity"]) == ("trained", "relu1", "outputs"))
    assert 0 < outputs["zero_fraction"] < 1


def test_bad_parameters_are_one_line_errors():
    for params, message in (({"direction": "sideways"}, "unknown direction"), ({"bootstrap": 3}, "bootstrap must"),
                            ({"level": 1.5}, "level must")):
        with pytest.raises(ValueError, match=message):
            build_analysis("microstructure", **params)


def test_bench_analyze_writes_the_tables_and_plots(tmp_path, tiny_mnist, capsys):
    out = tmp_path / "out"
    argv = ["analyze", "microstructure", TINY_PAIR.name, "--seed", "0", "--data-dir", str(tiny_mnist),
            "--out", str(out), "--no-progress", "--param", "ks_samples=9", "--param", "bootstrap=20"]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    tables = {f"analysis_microstructure_{name}.csv" for name in ("summary", "fits", "layer_equality")}
    assert tables | {"report.html", "report.md", f"microstructure_fits_{TINY_PAIR.name}.png"} <= names
    report = (out / "report.md").read_text()
    assert "Analysis: microstructure" in report
    assert all(f"]({name})" in report for name in tables)  # each folded table links its CSV, which is there
    assert main([*argv[:-4], "--param", "direction=sideways"]) == 2
    assert "unknown direction 'sideways'" in capsys.readouterr().err
