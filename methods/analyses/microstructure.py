"""Microstructure of trained networks (statistical teleodynamics): are weights and outputs lognormal, and do the
units of a layer sit at one effective utility (arbitrage equilibrium)?

shared/papers/teleodynamics-abstract.txt claims that in a trained network (i) connection weights and (ii) neuron
outputs follow lognormal distributions, and (iii) at arbitrage equilibrium the units share one effective utility of
the form alpha ln x - beta (ln x)^2. This module measures all three on one trained pair and seed, on the validation
split, with the untrained network of the same seed as the control. Readings we chose where the abstract is silent:

* **Samples.** Weights: |w| of every connection *into* a layer's units (the rows of the layer that produces them;
  with ``direction="out"`` or ``"both"`` also the columns of the layer that reads them). Exact zeros are left out
  (they have no logarithm). Outputs: the positive activations of the layer's units on the validation split, over
  examples and feature-map positions; the share of zeros is reported (``zero_fraction``), never fitted.
* **Fits.** Maximum likelihood with the location fixed at 0 for the lognormal, half-normal, exponential, gamma and
  Weibull (scipy.stats), on at most ``max_samples`` values drawn at random. Log-likelihood, AIC = 2k - 2 LL and
  BIC = k ln n - 2 LL with k the free parameters; distributions are ranked by AIC. The KS statistic's p-value
  accounts for the fitted parameters: ``scipy.stats.goodness_of_fit`` refits every Monte Carlo sample
  (``ks_samples`` of them, so the smallest p-value is 1 / (ks_samples + 1)).
* **mu and sigma of ln|w|** per layer, with percentile bootstrap intervals that resample *units* (a unit's incoming
  weights stay together, since they are not independent draws).
* **Shared across layers?** For every two layers, the bootstrap interval of the difference in mu and in sigma; the
  layers share them when both intervals contain 0 (the paper's prediction).
* **Effective utility.** A lognormal density with parameters (mu, sigma) is exp(h(x)) up to a constant with
  h(x) = alpha ln x - beta (ln x)^2, alpha = mu / sigma^2 - 1 and beta = 1 / (2 sigma^2). We fit (mu, sigma) per
  layer, take that layer's h, and give each unit the effective utility h_u = mean of h(|w|) over its incoming
  weights. At arbitrage equilibrium every unit of a layer has the same h_u; we report the spread (sd over units,
  and the sd relative to the spread of h over single weights, ``utility_spread_ratio``: 1 means a unit averages
  nothing away, 1 / sqrt(fan-in) is what independent weights would give).
* **The kept sub-network.** When the suite ran MCUE and the method ``pruned_by`` (a Top-n GTAP entry by default),
  its Top-n network at MCUE's d (the top round(d n) units by that method's scores) is measured too: incoming
  weights of kept units from kept inputs.
* **Against the power indices.** Per layer, Spearman's rho between each method's unit scores and the unit's
  incoming |w| L2 norm and mean output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats
from torch import nn

from datasets.errors import UsageError
from methods.analyses.base import ANALYSES, AnalysisInput, AnalysisResult
from methods.network.structure import Submodules, UnitGroup, producer_rows

# name -> (scipy distribution, free parameters with loc fixed at 0)
DISTRIBUTIONS: dict[str, tuple[Any, int]] = {
    "lognormal": (stats.lognorm, 2),
    "halfnormal": (stats.halfnorm, 1),
    "exponential": (stats.expon, 1),
    "gamma": (stats.gamma, 2),
    "weibull": (stats.weibull_min, 2),
}
HIST_BINS = 40
QQ_POINTS = 99


def fit_distributions(x: np.ndarray, *, rng: np.random.Generator, ks_samples: int = 99) -> list[dict[str, Any]]:
    """Fits every distribution of ``DISTRIBUTIONS`` (loc = 0) to positive samples and ranks them by AIC.

    Args:
        x: positive samples.
        rng: randomness of the Monte Carlo KS test.
        ks_samples: Monte Carlo samples of the KS test (0: no p-value).

    Returns:
        One record per distribution: distribution, n, loglik, aic, bic, rank_aic (1 = best), ks, ks_p (the
        parametric-bootstrap p-value, NaN when ks_samples is 0), shape and scale (scipy's parametrisation; shape
        NaN for one-parameter families).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 3 or np.any(x <= 0) or not np.all(np.isfinite(x)):
        raise ValueError("fit_distributions needs at least 3 positive, finite samples")
    n = len(x)
    records = []
    for name, (dist, k) in DISTRIBUTIONS.items():
        params = dist.fit(x, floc=0)
        loglik = float(np.sum(dist.logpdf(x, *params)))
        ks = float(stats.kstest(x, dist.cdf, args=params).statistic)
        p = math.nan
        if ks_samples > 0:
            result = stats.goodness_of_fit(dist, x, known_params={"loc": 0}, statistic="ks",
                                           n_mc_samples=ks_samples, rng=rng)
            p = float(result.pvalue)
        shape = float(params[0]) if len(params) == 3 else math.nan
        records.append({"distribution": name, "n": n, "loglik": loglik, "aic": 2 * k - 2 * loglik,
                        "bic": k * math.log(n) - 2 * loglik, "ks": ks, "ks_p": p, "shape": shape,
                        "scale": float(params[-1])})
    order = np.argsort([r["aic"] for r in records], kind="stable")
    for rank, i in enumerate(order, start=1):
        records[i]["rank_aic"] = rank
    return records


def log_moments(rows: Sequence[np.ndarray], *, rng: np.random.Generator, resamples: int = 200,
                level: float = 0.95) -> dict[str, Any]:
    """mu and sigma of ln x pooled over units, with percentile bootstrap intervals that resample units.

    Args:
        rows: one array of positive values per unit (e.g. its incoming |w|).
        rng: randomness of the bootstrap.
        resamples: bootstrap resamples.
        level: coverage of the intervals.

    Returns:
        mu, sigma, their intervals (mu_lo, mu_hi, sigma_lo, sigma_hi) and the bootstrap draws (mu_draws,
        sigma_draws) for comparisons between layers.
    """
    logs = [np.log(np.asarray(r, dtype=np.float64)) for r in rows if len(r)]
    if not logs:
        raise ValueError("log_moments needs at least one unit with values")
    counts = np.array([len(r) for r in logs], dtype=np.float64)
    sums = np.array([r.sum() for r in logs])
    squares = np.array([np.square(r).sum() for r in logs])

    def moments(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = weights @ counts
        mean = (weights @ sums) / total
        var = (weights @ squares) / total - mean**2
        return mean, np.sqrt(np.maximum(var * total / np.maximum(total - 1, 1), 0.0))

    mu, sigma = moments(np.ones((1, len(logs))))
    picks = rng.integers(0, len(logs), size=(resamples, len(logs)))
    weights = np.zeros((resamples, len(logs)))
    np.add.at(weights, (np.repeat(np.arange(resamples), len(logs)), picks.ravel()), 1.0)
    mu_draws, sigma_draws = moments(weights)
    tail = (1 - level) / 2 * 100
    return {"mu": float(mu[0]), "sigma": float(sigma[0]),
            "mu_lo": float(np.percentile(mu_draws, tail)), "mu_hi": float(np.percentile(mu_draws, 100 - tail)),
            "sigma_lo": float(np.percentile(sigma_draws, tail)),
            "sigma_hi": float(np.percentile(sigma_draws, 100 - tail)),
            "mu_draws": mu_draws, "sigma_draws": sigma_draws}


def utility_coefficients(mu: float, sigma: float) -> tuple[float, float]:
    """(alpha, beta) of h(x) = alpha ln x - beta (ln x)^2 such that the lognormal(mu, sigma) density is exp(h)
    up to a constant: alpha = mu / sigma^2 - 1, beta = 1 / (2 sigma^2)."""
    return mu / sigma**2 - 1.0, 1.0 / (2.0 * sigma**2)


def unit_utilities(rows: Sequence[np.ndarray], alpha: float, beta: float) -> np.ndarray:
    """Each unit's effective utility: the mean of h(x) = alpha ln x - beta (ln x)^2 over its values."""
    out = []
    for r in rows:
        logs = np.log(np.asarray(r, dtype=np.float64))
        out.append(float(np.mean(alpha * logs - beta * logs**2)) if len(logs) else math.nan)
    return np.array(out)


def histogram_and_qq(x: np.ndarray, *, mu: float, sigma: float) -> tuple[list[dict], list[dict]]:
    """Log-spaced histogram (density) of x, and its quantiles against the lognormal(mu, sigma) ones."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    edges = np.geomspace(x[0], x[-1] * (1 + 1e-9), HIST_BINS + 1) if x[-1] > x[0] else np.array([x[0], x[0] * 1.01])
    counts, edges = np.histogram(x, bins=edges)
    density = counts / (len(x) * np.diff(edges))
    histogram = [{"bin_left": float(a), "bin_right": float(b), "density": float(d)}
                 for a, b, d in zip(edges[:-1], edges[1:], density, strict=True)]
    probabilities = (np.arange(1, QQ_POINTS + 1)) / (QQ_POINTS + 1)
    theoretical = stats.lognorm.ppf(probabilities, sigma, scale=math.exp(mu))
    empirical = np.quantile(x, probabilities)
    qq = [{"probability": float(p), "lognormal": float(t), "empirical": float(e)}
          for p, t, e in zip(probabilities, theoretical, empirical, strict=True)]
    return histogram, qq


def _incoming_rows(model: nn.Sequential, group: UnitGroup, kept_units: np.ndarray | None = None,
                   kept_inputs: np.ndarray | None = None) -> list[np.ndarray] | None:
    """|w| of each unit's incoming connections (its row of the producing layer), zeros left out."""
    if group.producer is None:
        return None
    weight = Submodules(model)[group.producer].weight.detach().double().cpu()
    if group.heads:  # a head's q, k and v rows, (heads, 3 x head_dim, inputs)
        weight = producer_rows(group, weight).reshape(group.size, -1, weight.shape[1]).transpose(1, 2)
    weight = weight.reshape(group.size, weight.shape[1], -1)  # (units, inputs, kernel positions)
    if kept_inputs is not None:
        weight = weight[:, torch.as_tensor(kept_inputs, dtype=torch.bool)]
    units = range(group.size) if kept_units is None else np.flatnonzero(kept_units)
    rows = [weight[u].abs().flatten().numpy() for u in units]
    return [r[r > 0] for r in rows]


def _outgoing_rows(model: nn.Sequential, group: UnitGroup) -> list[np.ndarray] | None:
    """|w| of each unit's outgoing connections (its columns of the consuming layer), zeros left out."""
    if group.consumer is None:
        return None
    weight = Submodules(model)[group.consumer].weight.detach().double().cpu()
    columns = weight.transpose(0, 1).reshape(weight.shape[1], -1)  # (inputs, outputs x kernel)
    columns = columns.reshape(group.size, group.fan * columns.shape[1])
    rows = [columns[u].abs().numpy() for u in range(group.size)]
    return [r[r > 0] for r in rows]


def _activations(model: nn.Sequential, groups: Sequence[UnitGroup], x: torch.Tensor,
                 batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Each group's outputs on x, as (examples, units, positions) float64 on the CPU."""
    stages = Submodules(model)
    outputs: dict[str, list[torch.Tensor]] = {g.name: [] for g in groups}
    handles = []
    for group in groups:
        def hook(_module, _inputs, output, name=group.name, dim=group.dim):
            output = output.detach().movedim(dim, 1)
            outputs[name].append(output.double().cpu().reshape(output.shape[0], output.shape[1], -1))

        handles.append(stages[group.path].register_forward_hook(hook))
    try:
        with torch.no_grad():
            for xb in x.split(batch_size):
                model(xb)
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in outputs.items()}


@ANALYSES.register("microstructure")
@dataclass(frozen=True)
class Microstructure:
    """Lognormal weights and outputs, and arbitrage equilibrium across layers (see the module docstring).

    Args:
        direction: "in" (connections into each layer's units), "out" (out of them) or "both".
        max_samples: most values per fit (drawn at random; fits and KS tests are on these).
        ks_samples: Monte Carlo samples of the KS test that refits every sample (0 skips p-values).
        bootstrap: bootstrap resamples (of units) for the intervals of mu and sigma.
        level: coverage of those intervals.
        pruned_by: the suite method whose Top-n network at MCUE's d is also measured (skipped when absent).
    """

    direction: str = "in"
    max_samples: int = 2000
    ks_samples: int = 99
    bootstrap: int = 200
    level: float = 0.95
    pruned_by: str = "gtap-beta-top-n"

    wants_scores: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out", "both"):
            raise UsageError(f"unknown direction {self.direction!r}; valid: in, out, both")
        for name in ("max_samples", "bootstrap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 10:
                raise UsageError(f"{name} must be an integer >= 10, got {value!r}")
        if isinstance(self.ks_samples, bool) or not isinstance(self.ks_samples, int) or self.ks_samples < 0:
            raise UsageError(f"ks_samples must be a non-negative integer, got {self.ks_samples!r}")
        if not 0 < self.level < 1:
            raise UsageError(f"level must lie in (0, 1), got {self.level!r}")

    def __call__(self, data: AnalysisInput, *, rng: np.random.Generator) -> AnalysisResult:
        tables: dict[str, list[dict[str, Any]]] = {"fits": [], "summary": [], "layer_equality": [],
                                                  "histograms": [], "qq": [], "power_correlation": []}
        networks = [("trained", data.model, None)]
        if data.initial is not None:
            networks.append(("initial", data.initial, None))
        kept = self._kept_units(data)
        if kept is not None:
            networks.append(("pruned-at-d", data.model, kept))
        for network, model, keep in networks:
            draws = self._measure(network, model, keep, data, rng, tables)
            self._compare_layers(network, draws, tables)
        self._correlate(data, tables)
        return AnalysisResult(tables=tables, metrics=_headlines(tables["summary"]))

    # -- pieces ---------------------------------------------------------------------------------------------------

    def _kept_units(self, data: AnalysisInput) -> np.ndarray | None:
        scores = data.scores.get(self.pruned_by)
        if data.keep_prob is None or scores is None or np.isnan(scores).all():
            return None
        n = len(scores)
        keep = np.zeros(n, bool)
        keep[np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:max(1, round(data.keep_prob * n))]] = True
        return keep

    def _samples(self, model: nn.Sequential, keep: np.ndarray | None, data: AnalysisInput,
                 activations: dict[str, torch.Tensor]) -> list[tuple[UnitGroup, str, list[np.ndarray], float]]:
        """(group, quantity, per-unit values, zero fraction) for every measured quantity of every layer."""
        out = []
        previous_keep: np.ndarray | None = None
        previous: UnitGroup | None = None
        for group in data.groups:
            unit_keep = keep[group.players] if keep is not None else None
            if self.direction in ("in", "both"):
                # An input is kept when it is a unit of the previous group that the pruned network keeps: only where
                # the previous group's units are this producer's inputs (not across a transformer's residual stream).
                inputs = previous_keep if previous_keep is not None and group.producer is not None and \
                    previous is not None and previous.consumer == group.producer and \
                    Submodules(model)[group.producer].weight.shape[1] == len(previous_keep) else None
                rows = _incoming_rows(model, group, unit_keep, inputs)
                if rows is not None:
                    out.append((group, "weights_in", rows, math.nan))
            if self.direction in ("out", "both"):
                rows = _outgoing_rows(model, group)
                if rows is not None:
                    if unit_keep is not None:
                        rows = [r for r, k in zip(rows, unit_keep, strict=True) if k]
                    out.append((group, "weights_out", rows, math.nan))
            acts = activations[group.name]
            if unit_keep is not None:
                acts = acts[:, torch.as_tensor(unit_keep)]
            values = acts.transpose(0, 1).flatten(1).numpy()  # (units, examples x positions)
            zero_fraction = float(np.mean(values <= 0)) if values.size else math.nan
            out.append((group, "outputs", [v[v > 0] for v in values], zero_fraction))
            previous_keep, previous = unit_keep, group
        return out

    def _measure(self, network: str, model: nn.Sequential, keep: np.ndarray | None, data: AnalysisInput,
                 rng: np.random.Generator, tables: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], dict]:
        activations = _activations(model, data.groups, data.x)
        draws = {}
        for group, quantity, rows, zero_fraction in self._samples(model, keep, data, activations):
            pooled = np.concatenate(rows) if rows else np.array([])
            key = {"network": network, "layer": group.name, "quantity": quantity}
            if len(pooled) < 10:
                tables["summary"].append({**key, "n": len(pooled), "zero_fraction": zero_fraction})
                continue
            sample = pooled if len(pooled) <= self.max_samples else rng.choice(pooled, self.max_samples,
                                                                               replace=False)
            fits = fit_distributions(sample, rng=rng, ks_samples=self.ks_samples)
            tables["fits"].extend({**key, **fit} for fit in fits)
            moments = log_moments(rows, rng=rng, resamples=self.bootstrap, level=self.level)
            draws[(group.name, quantity)] = moments
            alpha, beta = utility_coefficients(moments["mu"], moments["sigma"])
            utilities = unit_utilities(rows, alpha, beta)
            logs = np.log(pooled)
            per_weight = float(np.std(alpha * logs - beta * logs**2))
            lognormal = next(f for f in fits if f["distribution"] == "lognormal")
            best = min(fits, key=lambda f: f["rank_aic"])
            tables["summary"].append({
                **key, "n": len(pooled), "n_units": len(rows), "zero_fraction": zero_fraction,
                "best_by_aic": best["distribution"], "lognormal_rank_aic": lognormal["rank_aic"],
                "lognormal_ks": lognormal["ks"], "lognormal_ks_p": lognormal["ks_p"],
                **{k: moments[k] for k in ("mu", "mu_lo", "mu_hi", "sigma", "sigma_lo", "sigma_hi")},
                "utility_alpha": alpha, "utility_beta": beta,
                "utility_unit_sd": float(np.nanstd(utilities)),
                "utility_spread_ratio": float(np.nanstd(utilities)) / per_weight if per_weight > 0 else math.nan,
            })
            histogram, qq = histogram_and_qq(sample, mu=moments["mu"], sigma=moments["sigma"])
            tables["histograms"].extend({**key, **row} for row in histogram)
            tables["qq"].extend({**key, **row} for row in qq)
        return draws

    def _compare_layers(self, network: str, draws: dict[tuple[str, str], dict],
                        tables: dict[str, list[dict[str, Any]]]) -> None:
        tail = (1 - self.level) / 2 * 100
        quantities = sorted({q for _, q in draws})
        for quantity in quantities:
            layers = [layer for layer, q in draws if q == quantity]
            for a, b in itertools.combinations(layers, 2):
                da, db = draws[(a, quantity)], draws[(b, quantity)]
                row = {"network": network, "quantity": quantity, "layer_a": a, "layer_b": b}
                for moment in ("mu", "sigma"):
                    difference = da[f"{moment}_draws"] - db[f"{moment}_draws"]
                    row[f"delta_{moment}"] = da[moment] - db[moment]
                    row[f"delta_{moment}_lo"] = float(np.percentile(difference, tail))
                    row[f"delta_{moment}_hi"] = float(np.percentile(difference, 100 - tail))
                row["shared"] = bool(row["delta_mu_lo"] <= 0 <= row["delta_mu_hi"]
                                     and row["delta_sigma_lo"] <= 0 <= row["delta_sigma_hi"])
                tables["layer_equality"].append(row)

    def _correlate(self, data: AnalysisInput, tables: dict[str, list[dict[str, Any]]]) -> None:
        if not data.scores:
            return
        activations = _activations(data.model, data.groups, data.x)
        for group in data.groups:
            rows = _incoming_rows(data.model, group)
            norms = np.array([np.sqrt(np.sum(r**2)) for r in rows]) if rows is not None else None
            mean_output = activations[group.name].mean(dim=(0, 2)).numpy()
            for method, scores in data.scores.items():
                unit_scores = np.asarray(scores, dtype=np.float64)[group.players]
                record: dict[str, Any] = {"method": method, "layer": group.name}
                for name, values in (("incoming_norm", norms), ("mean_output", mean_output)):
                    record[f"spearman_{name}"] = _spearman(unit_scores, values)
                record["n_units"] = int(np.isfinite(unit_scores).sum())
                tables["power_correlation"].append(record)


def _spearman(x: np.ndarray, y: np.ndarray | None) -> float:
    if y is None:
        return math.nan
    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < 3 or np.ptp(x[both]) == 0 or np.ptp(y[both]) == 0:
        return math.nan
    return float(stats.spearmanr(x[both], y[both]).statistic)


def _headlines(summary: list[dict[str, Any]]) -> dict[str, float]:
    """Shares of layers where the lognormal ranks first by AIC and is not rejected by the KS test at 5 %."""
    metrics = {}
    for network in ("trained", "initial"):
        for quantity in ("weights_in", "outputs"):
            rows = [r for r in summary if r["network"] == network and r["quantity"] == quantity and "mu" in r]
            if rows:
                stem = f"{network}_{quantity}"
                metrics[f"{stem}_lognormal_first_share"] = float(np.mean([r["lognormal_rank_aic"] == 1 for r in rows]))
                metrics[f"{stem}_lognormal_ks_pass_share"] = float(np.mean([r["lognormal_ks_p"] >= 0.05
                                                                            for r in rows]))
    return metrics


