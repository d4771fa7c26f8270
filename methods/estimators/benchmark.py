"""How good a power-index estimator is per coalition evaluation, on real neuron games.

Pure functions and small dataclasses, no tracking: ``bench.benchmarks.estimators`` runs the grid and logs it to MLflow.

The pieces:

- **Games.** :class:`TableGame` is a game given by the values of all 2^n coalitions (player j is bit j). A neuron
  game of at most ``MAX_TABLE_PLAYERS`` units is enumerated once (:func:`enumerate_game`), cached on disk by the
  caller, and every estimator then runs on the table: the estimators' own overhead is what their wall seconds
  measure, and ``seconds_per_evaluation`` of the enumeration gives what each evaluation costs on the real game.
- **Truth.** On a table, the exact index (:func:`exact_index`). On a full game, a reference: the mean of ``R``
  independent high-budget runs of one estimator, whose own error (stderr per unit, and its RMS) is kept with it
  (:func:`reference_index`). A run is judged against a reference only where the reference is at least
  ``PRECISION_RATIO`` times more precise than the run (RMSE), else it is flagged ``reference_limited``.
- **Estimators.** :data:`ESTIMATORS` holds ours (``methods.indices``) and shapiq's approximators behind one
  signature, ``run(game, *, index, keep_prob, budget, seed) -> values``. shapiq's run on the very same game object
  (a shapiq game is a function of a bool coalition matrix, as ours is). beta_d at d != 1/2 has no shapiq
  approximator: only ours run there.
- **Measures** (:func:`quality`): shapiq's metric set, MSE, Precision@k (k = 10 % and 25 % of the units; the top-k
  by signed value, i.e. the units Top-n would keep), Spearman and Kendall's tau-b against the truth.

Interpretations, where a choice had to be made:

- Budgets below an estimator's minimum (e.g. permutation sampling needs n + 1) are skipped, never padded.
- shapiq approximators draw from ``random_state``; ours from ``numpy.random.default_rng([seed, budget])``. Both
  are deterministic given (seed, budget).
- Wall seconds include the game's evaluations. On a table those cost almost nothing, so they are the estimator's
  overhead; on a full game they are the whole cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from datasets.registry import Registry
from methods import indices
from methods.games.base import Game, check_coalitions

MAX_TABLE_PLAYERS = 20
PRECISION_RATIO = 10.0  # a reference judges a run only when its RMSE is at least 10x smaller than the run's
TOP_FRACTIONS = (0.1, 0.25)  # Precision@k, k = these fractions of the units
INDEX_NAMES = ("shapley", "banzhaf", "beta")  # banzhaf is beta_d at d = 1/2; beta is beta_d at another d


class TableGame:
    """A game given by the values of all 2^n coalitions; coalition C has row sum over j in C of 2^j.

    Args:
        values: (2^n,) float64, v of every coalition.

    Attributes:
        n_players: n.
        n_evaluations: rows evaluated so far.
    """

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        n = int(np.log2(len(values))) if len(values) else -1
        if values.ndim != 1 or n < 1 or (1 << n) != len(values) or n > MAX_TABLE_PLAYERS:
            raise ValueError(f"a table game needs 2^n values with 1 <= n <= {MAX_TABLE_PLAYERS}, got {values.shape}")
        self.values = values
        self.n_players = n
        self.n_evaluations = 0
        self._bits = 1 << np.arange(n, dtype=np.int64)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        return self.values[coalitions.astype(np.int64) @ self._bits]

    def value(self, mask: np.ndarray) -> float:
        """v of one coalition (not counted: for reading the truth, not for estimating)."""
        return float(self.values[int(np.asarray(mask, dtype=np.int64) @ self._bits)])


def enumerate_game(game: Game, *, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, float]:
    """v of all 2^n coalitions of ``game`` (player j is bit j), and the wall seconds per evaluation.

    Args:
        game: a game with at most ``MAX_TABLE_PLAYERS`` players.
        progress: called with the number of coalitions done after each chunk.
    """
    n = int(game.n_players)
    if not 1 <= n <= MAX_TABLE_PLAYERS:
        raise ValueError(f"enumerating a game needs 1..{MAX_TABLE_PLAYERS} players, got {n}")
    total = 1 << n
    bits = 1 << np.arange(n, dtype=np.int64)
    values = np.empty(total)
    start = time.perf_counter()
    for first in range(0, total, indices.MAX_ROWS):
        masks = np.arange(first, min(first + indices.MAX_ROWS, total), dtype=np.int64)
        values[masks] = np.asarray(game((masks[:, None] & bits) != 0), dtype=np.float64)
        if progress is not None:
            progress(len(masks))
    return values, (time.perf_counter() - start) / total


# ---------------------------------------------------------------------------------------------------- truth


@dataclass(frozen=True, eq=False)
class Truth:
    """What estimates are judged against.

    Attributes:
        values: (n,) the exact index, or the reference estimate.
        stderr: (n,) per-unit standard error of ``values`` (zeros when exact).
        exact: whether ``values`` is exact.
        n_evaluations: what computing it cost (2^n, or the reference's runs together).
        description: how it was computed, for reports.
    """

    values: np.ndarray
    stderr: np.ndarray
    exact: bool
    n_evaluations: int
    description: str

    @property
    def rmse(self) -> float:
        """The truth's own root-mean-square error over units (0 when exact)."""
        return float(np.sqrt(np.mean(np.square(self.stderr))))


def exact_index(table: TableGame, *, index: str, keep_prob: float | None) -> Truth:
    """The exact Shapley value or beta_d of a table game."""
    if index == "shapley":
        result = indices.exact_shapley(table)
    else:
        result = indices.exact_banzhaf(table, keep_prob=_d(index, keep_prob))
    return Truth(result.values, np.zeros(table.n_players), True, result.n_evaluations,
                 f"exact ({result.n_evaluations} coalitions)")


def reference_index(game: Game, *, estimator: str, index: str, keep_prob: float | None, budget: int,
                    seeds: Sequence[int], progress: Callable[[int], None] | None = None) -> Truth:
    """The mean of independent high-budget runs of one estimator, with its standard error over the runs.

    Args:
        game: the full game.
        estimator: a name in :data:`ESTIMATORS`.
        budget: coalition evaluations of each run.
        seeds: one run per seed (at least 2, so the error can be estimated); drawn as ``seed + 10_000`` so the
            reference never reuses a judged run's randomness.
        progress: called with 1 after each run.
    """
    if len(seeds) < 2:
        raise ValueError("a reference needs at least 2 independent runs to estimate its own error")
    spec = ESTIMATORS.get(estimator)
    runs, spent = [], 0
    for seed in seeds:
        before = game.n_evaluations
        runs.append(spec.run(game, index=index, keep_prob=keep_prob, budget=budget, seed=int(seed) + 10_000))
        spent += game.n_evaluations - before
        if progress is not None:
            progress(1)
    stacked = np.stack(runs)
    stderr = stacked.std(axis=0, ddof=1) / np.sqrt(len(runs))
    return Truth(stacked.mean(axis=0), stderr, False, spent,
                 f"mean of {len(runs)} runs of {estimator} at {budget} evaluations each")


# ----------------------------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator behind the common signature.

    Attributes:
        name: registry name, e.g. "ours:permutation" or "shapiq:KernelSHAP".
        library: "ours" or "shapiq".
        indices: which of "shapley", "banzhaf" (d = 1/2) and "beta" (any d) it estimates.
        run: ``run(game, *, index, keep_prob, budget, seed) -> values``.
        min_budget: the least budget it can spend for n players.
        description: one line for reports.
    """

    name: str
    library: str
    indices: tuple[str, ...]
    run: Callable[..., np.ndarray]
    min_budget: Callable[[int], int]
    description: str = ""


ESTIMATORS: Registry[EstimatorSpec] = Registry("estimator")


def register(spec: EstimatorSpec) -> EstimatorSpec:
    """Adds an estimator under its own name."""
    ESTIMATORS.add(spec.name, spec)
    return spec


def for_index(index: str) -> list[EstimatorSpec]:
    """The estimators of ``index`` ("shapley", "banzhaf" or "beta"), in the order they were registered."""
    if index not in INDEX_NAMES:
        raise ValueError(f"unknown index {index!r}; valid: {', '.join(INDEX_NAMES)}")
    return [s for s in ESTIMATORS.values() if index in s.indices]



def _d(index: str, keep_prob: float | None) -> float:
    if index == "banzhaf":
        return 0.5
    if keep_prob is None:
        raise ValueError("index 'beta' needs keep_prob (d)")
    return float(keep_prob)


def _ours(function: Callable[..., indices.IndexEstimate], **options: Any) -> Callable[..., np.ndarray]:
    def run(game: Game, *, index: str, keep_prob: float | None, budget: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, budget])
        if index == "shapley":
            return function(game, budget=budget, rng=rng, **options).values
        return function(game, budget=budget, rng=rng, keep_prob=_d(index, keep_prob), **options).values

    return run


def _register_ours() -> None:
    shapley, banzhaf = ("shapley",), ("banzhaf", "beta")
    for name, function, options, kinds, minimum, text in (
        ("permutation", indices.shapley_permutation, {"antithetic": False}, shapley, lambda n: n + 1,
         "permutation sampling, each prefix once (GTAP Sec. III-B)"),
        ("permutation-antithetic", indices.shapley_permutation, {"antithetic": True}, shapley, lambda n: n + 1,
         "permutation sampling, each permutation paired with its reverse"),
        ("stratified", indices.shapley_stratified, {}, shapley, lambda n: n + 1,
         "one shared sample stratified by coalition size (Stratified SVARM)"),
        ("pie", indices.banzhaf_per_player, {}, banzhaf, lambda n: 2 * n,
         "per-player pairs C+i, C-i with C ~ R_d (GTAP Algorithm 2)"),
        ("shared", indices.banzhaf_shared, {}, banzhaf, lambda n: 2,
         "one shared sample C ~ R_d, mean(v | i in C) - mean(v | i not in C) (GTAP footnote 5, MSR)"),
    ):
        register(EstimatorSpec(f"ours:{name}", "ours", kinds, _ours(function, **options), minimum, text))
    shapley_fit, banzhaf_fit = _ours(indices.shapley_regression), _ours(indices.banzhaf_regression)

    def regression(game: Game, *, index: str, **kwargs: Any) -> np.ndarray:
        return (shapley_fit if index == "shapley" else banzhaf_fit)(game, index=index, **kwargs)

    register(EstimatorSpec("ours:regression", "ours", INDEX_NAMES, regression, lambda n: 3,
                                      "least squares on the membership indicators: paired Shapley-kernel samples "
                                      "(KernelSHAP) for Shapley, R_d samples for beta_d"))


_register_ours()


def _shapiq_run(class_name: str, shapiq_index: str, options: dict[str, Any]) -> Callable[..., np.ndarray]:
    def run(game: Game, *, index: str, keep_prob: float | None, budget: int, seed: int) -> np.ndarray:
        import shapiq
        from shapiq.approximator import regression

        cls = getattr(shapiq, class_name, None) or getattr(regression, class_name)
        kwargs: dict[str, Any] = {"n": game.n_players, "random_state": int((seed * 1_000_003 + budget) % 2**31),
                                  **options}
        if class_name in ("SVARM", "SHAPIQ"):
            kwargs["index"] = shapiq_index
        if class_name in ("SHAPIQ", "RegressionFBII"):
            kwargs["max_order"] = 1
        if shapiq_index == "BV" and "sampling_weights" not in kwargs:
            # Their default coalition-size weights are the Shapley kernel's, which favour the smallest and largest
            # coalitions; the Banzhaf value averages over uniform coalitions, so sizes ~ Binomial(n, 1/2) is the
            # fair (maximum sample reuse) setting. With the default, SHAPIQ's BV Spearman stayed ~0 up to 8,192
            # evaluations on lenet300-mnist.
            kwargs["sampling_weights"] = stats.binom.pmf(np.arange(game.n_players + 1), game.n_players, 0.5)
        approximator = cls(**kwargs)
        result = approximator.approximate(budget, lambda coalitions: game(np.asarray(coalitions, dtype=bool)))
        return np.asarray(result.get_n_order_values(1), dtype=np.float64)

    return run


def _register_shapiq() -> None:
    for class_name, shapiq_index, kinds, options, text in (
        ("PermutationSamplingSV", "SV", ("shapley",), {}, "permutation sampling"),
        ("StratifiedSamplingSV", "SV", ("shapley",), {}, "stratified by size and position (Maleki et al.)"),
        ("SVARM", "SV", ("shapley",), {}, "SVARM (Kolpaczki et al.)"),
        ("KernelSHAP", "SV", ("shapley",), {"pairing_trick": True}, "KernelSHAP with paired samples"),
        ("UnbiasedKernelSHAP", "SV", ("shapley",), {"pairing_trick": True}, "unbiased KernelSHAP, paired"),
        ("OwenSamplingSV", "SV", ("shapley",), {}, "Owen sampling"),
        ("SVARM", "BV", ("banzhaf",), {}, "SVARM for the Banzhaf value, binomial size weights"),
        ("SHAPIQ", "BV", ("banzhaf",), {}, "SHAP-IQ for the Banzhaf value (maximum sample reuse), binomial sizes"),
        ("RegressionFBII", "FBII", ("banzhaf",), {"pairing_trick": True},
         "faithful Banzhaf regression, order 1 (= the Banzhaf value), paired"),
    ):
        suffix = "-BV" if shapiq_index == "BV" and class_name == "SVARM" else ""
        register(EstimatorSpec(f"shapiq:{class_name}{suffix}", "shapiq", kinds,
                                          _shapiq_run(class_name, shapiq_index, options), lambda n: 2, text))


_register_shapiq()
# shapiq >= 1.5 only; ``optional_estimators`` says when the installed shapiq lacks it.
register(EstimatorSpec("shapiq:RegressionMSR", "shapiq", ("shapley",), _shapiq_run("RegressionMSR", "SV", {}),
                       lambda n: 2, "MSR with a proxy regression model"))

def optional_estimators() -> dict[str, str]:
    """The registered estimators the installed shapiq cannot run, with why (a query: it registers nothing).

    shapiq >= 1.5 adds RegressionMSR (MSR with a proxy regression model, XGBoost by default). Called by the
    benchmark, not at import: importing shapiq takes seconds, and methods/ imports without it.
    """
    try:
        import shapiq
    except ImportError:
        return {spec.name: "shapiq is not installed" for spec in ESTIMATORS.values() if spec.library == "shapiq"}
    if getattr(shapiq, "RegressionMSR", None) is None:  # shapiq 1.4 answers None for unknown names
        from importlib.metadata import version

        return {"shapiq:RegressionMSR": f"not in shapiq {version('shapiq')} (added in 1.5.0)"}
    return {}


# ---------------------------------------------------------------------------------------------------- measures


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest values (ties: the lower index first, so results are deterministic)."""
    return np.argsort(-np.asarray(values), kind="stable")[:k]


def quality(estimate: np.ndarray, truth: np.ndarray, *, fractions: Sequence[float] = TOP_FRACTIONS
            ) -> dict[str, float]:
    """shapiq's metric set against the truth: mse, precision_<pct> per fraction, spearman, kendall."""
    estimate, truth = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate has shape {estimate.shape}, truth {truth.shape}")
    n = len(truth)
    out = {"mse": float(np.mean(np.square(estimate - truth)))}
    for fraction in fractions:
        k = max(1, int(round(fraction * n)))
        out[f"precision_{int(round(fraction * 100))}"] = len(np.intersect1d(top_k(estimate, k), top_k(truth, k))) / k
    constant = np.ptp(estimate) == 0 or np.ptp(truth) == 0
    out["spearman"] = float("nan") if constant else float(stats.spearmanr(estimate, truth).statistic)
    out["kendall"] = float("nan") if constant else float(stats.kendalltau(estimate, truth).statistic)
    return out


@dataclass(frozen=True)
class Cell:
    """One estimator run: where, what it cost and how good it was (a row of the benchmark's table)."""

    game: str
    index: str
    keep_prob: float | None
    estimator: str
    library: str
    budget: int
    seed: int
    n_evaluations: int
    seconds: float
    measures: dict[str, float]
    reference_limited: bool

    def row(self) -> dict[str, Any]:
        return {"game": self.game, "index": self.index, "keep_prob": self.keep_prob, "estimator": self.estimator,
                "library": self.library, "budget": self.budget, "seed": self.seed,
                "n_evaluations": self.n_evaluations, "seconds": self.seconds, **self.measures,
                "reference_limited": self.reference_limited}


def run_cell(spec: EstimatorSpec, game: Game, truth: Truth, *, game_name: str, index: str,
             keep_prob: float | None, budget: int, seed: int,
             top_n_accuracy: Callable[[np.ndarray, float], float] | None = None,
             top_n_fractions: Sequence[float] = (0.2, 0.5)) -> Cell:
    """Runs one estimator once and measures it against the truth.

    Args:
        top_n_accuracy: maps (values, kept fraction) to the test accuracy of the network Top-n keeps; adds
            ``topn_acc_<pct>`` (with these values) and ``topn_gap_<pct>`` (truth's accuracy minus it).
    """
    if index not in spec.indices:
        raise ValueError(f"{spec.name} does not estimate {index!r} (it does {', '.join(spec.indices)})")
    before, start = game.n_evaluations, time.perf_counter()
    values = spec.run(game, index=index, keep_prob=keep_prob, budget=budget, seed=seed)
    seconds = time.perf_counter() - start
    spent = game.n_evaluations - before
    if spent > budget:
        raise RuntimeError(f"{spec.name} spent {spent} evaluations, over its budget {budget}")
    if values.shape != truth.values.shape or not np.all(np.isfinite(values)):
        raise RuntimeError(f"{spec.name} returned {values.shape} values (finite: {np.isfinite(values).all()})")
    measures = quality(values, truth.values)
    if top_n_accuracy is not None:
        for fraction in top_n_fractions:
            pct = int(round(fraction * 100))
            measures[f"topn_acc_{pct}"] = top_n_accuracy(values, fraction)
            measures[f"topn_gap_{pct}"] = top_n_accuracy(truth.values, fraction) - measures[f"topn_acc_{pct}"]
    limited = (not truth.exact) and np.sqrt(measures["mse"]) < PRECISION_RATIO * truth.rmse
    return Cell(game_name, index, keep_prob, spec.name, spec.library, budget, seed, spent, seconds, measures,
                bool(limited))


def log_budgets(low: int, high: int, *, per_octave: int = 1) -> list[int]:
    """A log grid of budgets from ``low`` to ``high`` (both kept), ``per_octave`` points per doubling."""
    if low < 1 or high < low:
        raise ValueError(f"budgets need 1 <= low <= high, got {low}, {high}")
    count = int(np.floor(np.log2(high / low) * per_octave)) + 1
    grid = {int(round(low * 2 ** (i / per_octave))) for i in range(count)} | {high}
    return sorted(grid)


def budget_to_reach(budgets: Sequence[float], means: Sequence[float], threshold: float) -> float:
    """The budget at which a mean curve first reaches ``threshold``, interpolated linearly in log budget.

    Returns NaN when the curve never reaches it; the first budget when it starts above it.
    """
    budgets, means = np.asarray(budgets, dtype=float), np.asarray(means, dtype=float)
    order = np.argsort(budgets)
    budgets, means = budgets[order], means[order]
    for i, value in enumerate(means):
        if np.isfinite(value) and value >= threshold:
            if i == 0 or not np.isfinite(means[i - 1]):
                return float(budgets[i])
            lo, hi = np.log(budgets[i - 1]), np.log(budgets[i])
            t = (threshold - means[i - 1]) / (value - means[i - 1])
            return float(np.exp(lo + t * (hi - lo)))
    return float("nan")


# ----------------------------------------------------------------------------------- what size strata allow


@dataclass(frozen=True)
class SizeStrata:
    """v's spread within coalition sizes, and what it allows a size-stratified Shapley estimator.

    A size-stratified estimator (ours ``stratified``; per-size permutation or regression variants alike) estimates
    phi_i = (1/n) sum_s [E v(S u i) - E v(S)] from m_s coalitions of each size s. Its variance for a unit is about
    sum_s c_s^2 / m_s with c_s = sd_s sqrt(n (1/s + 1/(n - s))), where sd_s is v's spread over uniform coalitions
    of size s: the in and out means of a stratum each see s/n and (n - s)/n of its samples.

    Attributes:
        sizes: the sizes measured (the others are interpolated).
        mean, sd: v's mean and standard deviation over ``samples`` uniform coalitions of each size.
        proxy_corr: the within-size correlation of v with sum_{j in S} proxy_j. With the reference's values as the
            proxy this is the best an additive control variate (or a per-size regression) could do if it knew the
            answer: it removes at most a share proxy_corr^2 of each stratum's variance.
        fitted_r2: held-out R^2 of a ridge fit of v on the members (linear in the indicators), trained on
            ``samples // 2`` coalitions of each size: what a data-fitted additive control variate achieves.
        marginal_mean, marginal_sd: the mean and spread of marginal contributions v(S u i) - v(S) over uniform S of
            each size and random units i outside S (``bases`` sets S, each with ``units`` units added). Permutation
            sampling draws these at uniform positions; the best allocation over positions (Neyman: m_s proportional
            to marginal_sd) cuts its variance by the ``neyman_positions`` gain.
        n_players, samples: the game's n and the coalitions drawn per size.
    """

    sizes: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    proxy_corr: np.ndarray
    fitted_r2: np.ndarray
    marginal_mean: np.ndarray
    marginal_sd: np.ndarray
    n_players: int
    samples: int

    def _c(self) -> np.ndarray:
        n, s = self.n_players, np.arange(1, self.n_players)
        sd = np.interp(s, self.sizes, self.sd)
        return sd * np.sqrt(n * (1.0 / s + 1.0 / (n - s)))

    def _remaining(self, share: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(1.0 - np.interp(np.arange(1, self.n_players), self.sizes, share), 0.0, 1.0))

    def gains(self) -> dict[str, float]:
        """Variance of round-robin (equal m_s) stratification over each improvement's (higher is better).

        ``neyman``: m_s proportional to c_s (the best allocation over sizes, known in advance);
        ``proxy_cv`` / ``fitted_cv``: each stratum's variance cut by the proxy's or the fit's share, equal m_s;
        ``neyman_proxy_cv``: both, the most any size-stratified estimator with an additive control variate gets;
        ``neyman_positions``: permutation sampling's variance over that of marginals drawn per position with the
        Neyman allocation (the paired design's best allocation).
        """
        c = self._c()
        m = len(c)
        uniform = m * np.sum(c ** 2)
        proxy, fitted = c * self._remaining(self.proxy_corr ** 2), c * self._remaining(np.clip(self.fitted_r2, 0, 1))

        def ratio(improved: float) -> float:  # v constant within every size: nothing to gain (1); a perfect cv: inf
            return 1.0 if uniform == 0 else float(uniform / improved) if improved > 0 else float("inf")

        positions = np.arange(self.n_players)  # a marginal at position k joins a set of size k
        mu = np.interp(positions, self.sizes, self.marginal_mean)
        sd = np.interp(positions, self.sizes, self.marginal_sd)
        permutation = np.mean(sd ** 2) + mu.var()  # a marginal at a uniform position: within plus between sizes
        return {"neyman": ratio(c.sum() ** 2), "proxy_cv": ratio(m * np.sum(proxy ** 2)),
                "fitted_cv": ratio(m * np.sum(fitted ** 2)), "neyman_proxy_cv": ratio(proxy.sum() ** 2),
                "neyman_positions": (float(permutation / sd.mean() ** 2) if sd.mean() > 0 else
                                     float("inf") if permutation > 0 else 1.0)}


def size_strata(game: Game, *, proxy: np.ndarray, sizes: Sequence[int], samples: int, rng: np.random.Generator,
                ridge: float = 100.0, bases: int = 30, units: int = 30) -> SizeStrata:
    """Measures v and its marginal contributions within each coalition size. Costs len(sizes) x (samples +
    bases x (units + 1)) evaluations at most. See :class:`SizeStrata`."""
    n = game.n_players
    proxy = np.asarray(proxy, dtype=np.float64)
    if proxy.shape != (n,):
        raise ValueError(f"proxy has shape {proxy.shape}; the game has {n} players")
    sizes = np.unique(np.asarray(sizes, dtype=int))
    if sizes.size == 0 or sizes[0] < 1 or sizes[-1] > n - 1:
        raise ValueError(f"sizes must lie in 1..{n - 1}")
    if samples < 4:
        raise ValueError(f"samples must be at least 4 (half fit, half test), got {samples}")
    mean, sd, corr, r2, marginal_mean, marginal_sd = (np.empty(len(sizes)) for _ in range(6))
    half = samples // 2
    for row, size in enumerate(sizes):
        marginals = []
        for _ in range(bases):  # one v(S), then v(S u i) for up to `units` units outside S
            keys = rng.random(n)
            base = keys <= np.sort(keys)[size - 1]
            added = rng.choice(np.flatnonzero(~base), size=min(units, n - size), replace=False)
            rows = np.repeat(base[None, :], len(added) + 1, axis=0)
            rows[np.arange(1, len(added) + 1), added] = True
            values = np.asarray(game(rows), dtype=np.float64)
            marginals.append(values[1:] - values[0])
        marginals = np.concatenate(marginals)
        marginal_mean[row], marginal_sd[row] = marginals.mean(), marginals.std(ddof=1)
        keys = rng.random((samples, n))
        members = keys <= np.sort(keys, axis=1)[:, size - 1 : size]
        values = np.asarray(game(members), dtype=np.float64)
        mean[row], sd[row] = values.mean(), values.std(ddof=1)
        tiny = 1e-12 * max(1.0, float(np.abs(values).max()))  # v constant at this size (up to rounding)
        if sd[row] <= tiny:
            sd[row], corr[row], r2[row] = 0.0, 0.0, 0.0
            continue
        additive = members @ proxy
        corr[row] = float(np.corrcoef(additive, values)[0, 1]) if additive.std() > 0 else 0.0
        x = members.astype(np.float64) - size / n
        fit, test = slice(0, half), slice(half, None)
        coef = np.linalg.solve(x[fit].T @ x[fit] + ridge * np.eye(n), x[fit].T @ (values[fit] - values[fit].mean()))
        residual = values[test] - values[fit].mean() - x[test] @ coef
        r2[row] = 1.0 - residual.var() / values[test].var() if values[test].std() > tiny else 0.0
    return SizeStrata(sizes, mean, sd, corr, r2, marginal_mean, marginal_sd, n, samples)
