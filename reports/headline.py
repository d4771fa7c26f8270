"""The report's headline: per pair and axis, the best method with its AUC, and whether it beats the runner-up and
the best method of the other kind (a baseline, or GTAP when a baseline wins) beyond seed noise.

The test is a two-sided paired t-test on the per-seed AUCs of the seeds both methods have (``scipy.stats.
ttest_rel``): the seed fixes the trained network, so two methods on one seed share it, and pairing removes the
network-to-network spread that they share. With 3 seeds it has 2 degrees of freedom, so only large, consistent
differences pass; that is the honest reading of a 3-seed suite. Two tests are made per headline, without a
multiple-comparison correction (the report says so). Baselines are compared at their best variant, as in the
leaderboard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from reports.data import PARAM_AXIS, SuiteData
from reports.leaderboard import best_variants
from reports.tables import POWER_INDEX_FAMILY, method_families

ALPHA = 0.05
TEST_NAME = "two-sided paired t-test over seeds"
AXIS_NAMES = {PARAM_AXIS: "kept weights"}  # any other axis: kept units


@dataclass(frozen=True)
class Comparison:
    """The best method against one other: their mean AUCs and sds, the mean paired difference, the p value (NaN
    when fewer than two seeds are shared) and the verdict."""

    role: str  # "the runner-up", "the best baseline", "the best GTAP method"
    method: str
    mean: float
    sd: float
    difference: float
    p: float
    n_shared: int

    @property
    def verdict(self) -> str:
        if math.isnan(self.p):
            return "not testable (fewer than 2 shared seeds)"
        return "beyond seed noise" if self.p < ALPHA else "within seed noise"


@dataclass(frozen=True)
class Headline:
    pair: str
    axis: str
    method: str
    mean: float
    sd: float
    n_seeds: int
    comparisons: tuple[Comparison, ...]

    def sentence(self) -> str:
        axis = AXIS_NAMES.get(self.axis, "kept units")
        text = f"{self.pair}, {axis}: {self.method}, AUC {_pm(self.mean, self.sd)} ({self.n_seeds} seeds)"
        if not self.comparisons:
            return text + ", the only method on this axis."
        parts = [f"{c.difference:+.3f} over {c.role} {c.method} ({_pm(c.mean, c.sd)}), {c.verdict}"
                 + ("" if math.isnan(c.p) else f" ({_p_text(c.p)})") for c in self.comparisons]
        return f"{text}; " + "; ".join(parts) + "."


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def paired_p(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    """The two-sided paired t-test's p value of two per-seed series (indexed by seed) on their shared seeds.

    Returns:
        (p, number of shared seeds); p is NaN below two shared seeds, 0 when every paired difference is the same
        non-zero number, 1 when all are zero.
    """
    from scipy import stats

    a, b = a.dropna(), b.dropna()  # a seed whose AUC is missing is not shared
    shared = a.index.intersection(b.index)
    if len(shared) < 2:
        return float("nan"), len(shared)
    diff = (a[shared] - b[shared]).astype(float)
    if diff.std(ddof=1) == 0:
        return (1.0 if (diff == 0).all() else 0.0), len(shared)
    return float(stats.ttest_rel(a[shared], b[shared]).pvalue), len(shared)


def headlines(data: SuiteData, board: pd.DataFrame) -> list[Headline]:
    """One headline per pair and axis, from the leaderboard's best variants and the runs' per-seed AUCs.

    Args:
        data: the suite's results.
        board: :func:`reports.leaderboard.leaderboard`.

    Returns:
        The headlines, in pair order, units before weights.
    """
    if board.empty or data.runs.empty:
        return []
    runs = data.runs.assign(family=method_families(data.runs), auc=pd.to_numeric(data.runs["auc"], errors="coerce"))
    per_seed = {key: group.groupby("seed")["auc"].mean()
                for key, group in runs.groupby(["pair", "method"], sort=False)}
    families = runs.drop_duplicates(["pair", "method"]).set_index(["pair", "method"])["family"]
    best = best_variants(board)
    out = []
    for (pair, axis), rows in best.groupby(["pair", "axis"], sort=False):
        rows = rows.dropna(subset=["auc_mean"]).sort_values("auc_mean", ascending=False, kind="stable")
        if rows.empty:
            continue
        top = rows.iloc[0]
        seeds_of = {m: per_seed[(pair, m)] for m in rows["method"]}
        top_gtap = families.get((pair, top["method"])) == POWER_INDEX_FAMILY
        comparisons = []
        picks = [("the runner-up", rows.iloc[1] if len(rows) > 1 else None)]
        other = rows[[(families.get((pair, m)) == POWER_INDEX_FAMILY) != top_gtap for m in rows["method"]]]
        if len(other) and (len(rows) < 2 or other.iloc[0]["method"] != rows.iloc[1]["method"]):
            picks.append(("the best GTAP method" if not top_gtap else "the best baseline", other.iloc[0]))
        elif len(other):  # the runner-up is already the other kind's best
            picks = [("the runner-up and best " + ("GTAP method" if not top_gtap else "baseline"), rows.iloc[1])]
        for role, row in picks:
            if row is None:
                continue
            p, shared = paired_p(seeds_of[top["method"]], seeds_of[row["method"]])
            comparisons.append(Comparison(role, row["method"], float(row["auc_mean"]), float(row["auc_sd"]),
                                          float(top["auc_mean"] - row["auc_mean"]), p, shared))
        out.append(Headline(pair, str(axis), top["method"], float(top["auc_mean"]), float(top["auc_sd"]),
                            int(seeds_of[top["method"]].size), tuple(comparisons)))
    units_first = sorted(out, key=lambda h: (list(data.pairs).index(h.pair) if h.pair in data.pairs else 0,
                                             h.axis == PARAM_AXIS))
    return units_first
