"""Tests of reports/estimators.py: budget to reach, its ratios and exclusions, the figures and the written report, on
synthetic cells whose curves reach Spearman 0.9 at budgets known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import reports.estimators as estimators
from methods.estimators import budget_to_reach
from reports.data import ReportError
from reports.estimators import (
    SPEARMAN_TARGET,
    budgets_to_reach,
    curves,
    estimator_blocks,
    estimator_palette,
    figure_name,
    plot_error_curves,
    write_estimator_report,
)
from reports.format import format_count

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GAME = "toy/full/accuracy"
BUDGETS = (16, 32, 64, 128, 256)
OFFSETS = (-0.02, 0.0, 0.02)  # per seed, so the mean over seeds is the curve below
# estimator -> (library, mean Spearman per budget, mean P@25 per budget)
SHAPLEY_CURVES = {
    # Spearman 0.85 at 32 and 0.95 at 64: reaches 0.9 halfway in log budget, at 32 * sqrt(2). P@25 reaches 0.9 at 64.
    "ours:permutation": ("ours", (0.5, 0.85, 0.95, 0.97, 0.99), (0.5, 0.7, 0.9, 0.95, 1.0)),
    # The baseline: Spearman at 128 * sqrt(2), P@25 at 128 * sqrt(2).
    "shapiq:PermutationSamplingSV": ("shapiq", (0.3, 0.5, 0.7, 0.85, 0.95), (0.2, 0.4, 0.6, 0.8, 1.0)),
    # 0.99 at 32 is reference-limited (seed 1), so it must not count: the judged curve reaches 0.9 at 128.
    "ours:stratified": ("ours", (0.5, 0.99, 0.8, 0.9, 0.95), (0.5, 0.6, 0.7, 0.8, 0.85)),
    # Never reaches 0.9.
    "shapiq:KernelSHAP": ("shapiq", (0.1, 0.2, 0.4, 0.6, 0.7), (0.1, 0.2, 0.3, 0.4, 0.5)),
}
LIMITED = {("ours:stratified", 32, 1)}
GAMES = {GAME: {"n_players": 12, "truth": "exact (4096 coalitions)", "truth_rmse": 0.0,
                "seconds_per_evaluation": 2.5e-4, "v_empty": 0.1, "v_full": 0.98,
                "description": "12 random units of toy's fc1"}}


def cell(estimator: str, library: str, index: str, keep_prob: float, budget: int, seed: int, spearman: float,
         precision: float) -> dict:
    return {"game": GAME, "index": index, "keep_prob": keep_prob, "estimator": estimator, "library": library,
            "budget": budget, "seed": seed, "n_evaluations": budget, "seconds": budget * 1e-4 * (1 + seed),
            "mse": (1 + 0.1 * seed) / budget, "precision_10": precision, "precision_25": precision,
            "spearman": spearman, "kendall": spearman - 0.1, "topn_acc_20": 0.6 + 0.001 * seed,
            "topn_acc_50": 0.9, "topn_gap_20": 0.01, "topn_gap_50": 0.0,
            "reference_limited": (estimator, budget, seed) in LIMITED}


def synthetic_cells() -> pd.DataFrame:
    rows = []
    for estimator, (library, spearmans, precisions) in SHAPLEY_CURVES.items():
        for budget, spearman, precision in zip(BUDGETS, spearmans, precisions, strict=True):
            for seed, offset in enumerate(OFFSETS):
                rows.append(cell(estimator, library, "shapley", math.nan, budget, seed, spearman + offset,
                                 precision + offset))
    # Banzhaf has no shapiq permutation baseline: its ratio must be NaN though its budget is found.
    for budget, spearman in zip(BUDGETS, (0.6, 0.8, 0.92, 0.95, 0.97), strict=True):
        for seed, offset in enumerate(OFFSETS):
            rows.append(cell("ours:pie", "ours", "banzhaf", 0.5, budget, seed, spearman + offset, spearman))
    return pd.DataFrame(rows)


def reach_row(reach: pd.DataFrame, estimator: str) -> pd.Series:
    rows = reach[reach["estimator"] == estimator]
    assert len(rows) == 1
    return rows.iloc[0]


def test_curves_average_over_seeds_and_flag_reference_limited_points():
    points = curves(synthetic_cells())
    assert len(points) == 5 * len(BUDGETS)
    point = points[(points["estimator"] == "ours:permutation") & (points["budget"] == 32)].iloc[0]
    assert point["n_seeds"] == 3
    assert point["spearman_mean"] == pytest.approx(0.85)
    assert point["spearman_sd"] == pytest.approx(0.02)
    assert point["spearman_min"] == pytest.approx(0.83) and point["spearman_max"] == pytest.approx(0.87)
    assert point["mse_mean"] == pytest.approx(1.1 / 32)
    assert point["topn_acc_20_mean"] == pytest.approx(0.601) and "topn_gap_50_mean" in points.columns
    assert math.isnan(point["keep_prob"]) and not point["reference_limited"]
    limited = points[points["reference_limited"]]
    assert list(zip(limited["estimator"], limited["budget"], strict=True)) == [("ours:stratified", 32)]


def test_budget_to_reach_interpolates_in_log_budget_and_divides_by_the_baseline():
    reach = budgets_to_reach(synthetic_cells())
    ours, baseline = reach_row(reach, "ours:permutation"), reach_row(reach, "shapiq:PermutationSamplingSV")
    assert ours["budget_spearman"] == pytest.approx(32 * math.sqrt(2))
    assert baseline["budget_spearman"] == pytest.approx(128 * math.sqrt(2))
    assert ours["ratio_spearman"] == pytest.approx(0.25)
    assert baseline["ratio_spearman"] == pytest.approx(1.0)
    assert ours["budget_precision_25"] == pytest.approx(64)
    assert baseline["budget_precision_25"] == pytest.approx(128 * math.sqrt(2))
    assert ours["ratio_precision_25"] == pytest.approx(64 / (128 * math.sqrt(2)))
    # pie reaches 0.9 at 32 * 2^(0.1 / 0.12), nearer 64 than 32 in log budget: the mean seconds of its seeds there.
    pie = reach_row(reach, "ours:pie")
    assert pie["budget_spearman"] == pytest.approx(32 * 2 ** (0.1 / 0.12))
    assert pie["seconds_at_spearman"] == pytest.approx(64 * 1e-4 * 2)
    assert ours["largest_budget"] == 256
    best = reach[reach["best"]]
    assert set(best["estimator"]) == {"ours:permutation", "ours:pie"}  # one per (game, index)


def test_reference_limited_budgets_are_left_out():
    reach = budgets_to_reach(synthetic_cells())
    stratified = reach_row(reach, "ours:stratified")
    # Counting the limited 0.99 at 32 would give a budget between 16 and 32.
    assert stratified["budget_spearman"] == pytest.approx(128)
    assert stratified["judged_budgets"] == 4 and stratified["limited_budgets"] == 1
    # Without the flag the same numbers do reach at 32 or below: the exclusion is what moves it.
    unflagged = synthetic_cells().assign(reference_limited=False)
    assert reach_row(budgets_to_reach(unflagged), "ours:stratified")["budget_spearman"] < 32


def test_a_curve_that_never_reaches_is_nan_and_so_is_a_ratio_without_baseline():
    reach = budgets_to_reach(synthetic_cells())
    never = reach_row(reach, "shapiq:KernelSHAP")
    assert math.isnan(never["budget_spearman"]) and math.isnan(never["ratio_spearman"])
    assert math.isnan(never["budget_precision_25"]) and math.isnan(never["seconds_at_spearman"])
    assert not never["best"]
    pie = reach_row(reach, "ours:pie")
    assert 32 < pie["budget_spearman"] < 64 and math.isnan(pie["ratio_spearman"])


def test_a_budget_with_an_undefined_spearman_does_not_reach():
    cells = synthetic_cells()
    chosen = (cells["estimator"] == "ours:permutation") & (cells["budget"] == 32)
    cells.loc[chosen, "spearman"] = [math.nan, 0.95, 0.95]  # the mean of the defined seeds alone would reach at 32
    reach = reach_row(budgets_to_reach(cells), "ours:permutation")
    assert reach["budget_spearman"] == pytest.approx(64)


def test_budget_to_reach_column_is_the_methods_rule_on_the_mean_curve():
    """The report's budget to reach is ``methods.estimators.budget_to_reach`` on each curve's mean over seeds (a
    budget where some seed's Spearman is undefined never reaches), in the frame and in the table's cells."""
    rng = np.random.default_rng(0)
    rows = []
    for number in range(40):
        for budget in BUDGETS:
            for seed in range(len(OFFSETS)):
                spearman = math.nan if rng.uniform() < 0.1 else float(rng.uniform(0.5, 1.0))
                rows.append(cell(f"ours:random-{number}", "ours", "shapley", math.nan, budget, seed, spearman,
                                 float(rng.uniform(0.5, 1.0))))
    cells = pd.DataFrame(rows)
    reach = budgets_to_reach(cells)
    table = estimators.reach_table(reach)
    reached = 0
    for estimator, own in cells.groupby("estimator"):
        spearman, precision = own.groupby("budget")["spearman"], own.groupby("budget")["precision_25"]
        means = spearman.mean().where(spearman.count() == spearman.size())
        expected = budget_to_reach(means.index, means.to_numpy(), SPEARMAN_TARGET)
        row = reach_row(reach, estimator)
        assert (math.isnan(expected) and math.isnan(row["budget_spearman"])) or row["budget_spearman"] == (
            pytest.approx(expected))
        expected_precision = budget_to_reach(precision.mean().index, precision.mean().to_numpy(), 0.9)
        assert (math.isnan(expected_precision) and math.isnan(row["budget_precision_25"])) or (
            row["budget_precision_25"] == pytest.approx(expected_precision))
        (shown,) = table.loc[reach["estimator"] == estimator, "budget to Spearman 0.9"]
        assert shown == format_count(expected)
        reached += not math.isnan(expected)
    assert 0 < reached < 40  # some curves reach the level and some do not, so both branches are compared


def test_plots_write_one_png_per_game_and_index_with_styled_lines(tmp_path, monkeypatch):
    figures = []
    real_close = estimators.plt.close
    monkeypatch.setattr(estimators.plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    paths = plot_error_curves(synthetic_cells(), tmp_path)
    assert sorted(p.name for p in paths) == sorted([figure_name(GAME, "shapley", math.nan),
                                                    figure_name(GAME, "banzhaf", 0.5)])
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000
    shapley = next(f for f in figures if "shapley" in f._suptitle.get_text())
    mse_ax, rank_ax = shapley.axes
    assert mse_ax.get_xscale() == "log" and mse_ax.get_yscale() == "log" and rank_ax.get_xscale() == "log"
    assert "min–max" in shapley._suptitle.get_text()
    lines = {line.get_label(): line for line in mse_ax.lines if not line.get_label().startswith("_")}
    assert lines["ours:permutation"].get_linestyle() == "-"
    assert lines["shapiq:KernelSHAP"].get_linestyle() == "--"
    assert any(list(line.get_ydata()) == [0.9, 0.9] for line in rank_ax.lines)
    hollow = [line for line in rank_ax.lines if line.get_markerfacecolor() == "none" and len(line.get_xdata())]
    assert [list(line.get_xdata()) for line in hollow] == [[32.0]]


def test_estimator_colours_do_not_depend_on_order():
    assert estimator_palette(["b", "a", "c"]) == estimator_palette(["c", "a", "b"])


def test_report_is_written_with_every_estimator_and_figure(tmp_path):
    cells = synthetic_cells()
    out = tmp_path / "out"
    path = write_estimator_report(cells, GAMES, out, title="Estimators")
    assert path == out / "report.md"
    markdown, page = path.read_text(), (out / "report.html").read_text()
    assert "## Estimator quality per coalition evaluation" in markdown
    for estimator in cells["estimator"].unique():
        assert estimator in markdown and estimator in page
    assert "ours:permutation (best)" in markdown
    assert "12 players" in markdown and "v(∅) = 0.1" in markdown
    assert "shapley: exact (4096 coalitions)" in markdown
    assert "0.00025 s" in markdown
    assert "45" in markdown and "0.25" in markdown  # 32 sqrt(2) evaluations, a quarter of the baseline's
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted([figure_name(GAME, "shapley", math.nan), figure_name(GAME, "banzhaf", 0.5)])
    for name in pngs:
        assert f"]({name})" in markdown
    assert page.count("data:image/png;base64,") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_blocks_read_cells_back_from_csv(tmp_path):
    # bench stores cells as CSV: the flag comes back as bool or text, keep_prob as NaN.
    cells = synthetic_cells()
    cells.to_csv(tmp_path / "cells.csv", index=False)
    back = pd.read_csv(tmp_path / "cells.csv")
    back["reference_limited"] = back["reference_limited"].astype(str)
    reference = {GAME: {**GAMES[GAME], "truth": "mean of 4 runs", "truth_rmse": 0.0031, "seconds_per_evaluation": None}}
    blocks = estimator_blocks(back, reference, [])
    described = next(b.text for b in blocks if b.kind == "p" and "players" in b.text)
    assert "mean of 4 runs (its own RMSE 0.0031)" in described and "costs" not in described
    assert not any(b.kind == "image" for b in blocks)  # no PNG given, none shown
    table = next(b.table for b in blocks if b.kind == "table")
    row = table[table["estimator"] == "ours:stratified"].iloc[0]
    assert row["budget to Spearman 0.9"] == "128" and "(1 limited)" in row["largest budget tried"]


def test_a_failed_report_leaves_nothing_half_written(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(estimators, "render_html", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        write_estimator_report(synthetic_cells(), GAMES, tmp_path / "out", title="Estimators")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ReportError):
        write_estimator_report(synthetic_cells().iloc[0:0], GAMES, tmp_path / "out", title="Estimators")


def test_extrapolated_budget_recovers_a_known_curve_and_refuses_other_shapes():
    from reports.estimators import extrapolated_budget

    budgets = np.array([1024, 2048, 4096, 8192])
    k = 5000.0
    rho = (1 + k / budgets) ** -0.5
    budget, residual = extrapolated_budget(budgets, rho, 0.9)
    assert budget == pytest.approx(k / (0.9 ** -2 - 1), rel=1e-3) and residual < 1e-6
    # a curve that levels off (a biased estimator) is not extrapolated
    assert np.isnan(extrapolated_budget(budgets, [0.5, 0.6, 0.62, 0.62], 0.9)[0])
    # a curve already above the level at its first budget: the fit is not read below the budgets it saw
    assert np.isnan(extrapolated_budget(budgets, (1 + 100 / budgets) ** -0.5, 0.9)[0])
    # too few usable points (NaN, or outside 0.05..0.99)
    assert np.isnan(extrapolated_budget(budgets, [np.nan, 0.01, 0.5, 0.7], 0.9)[0])
