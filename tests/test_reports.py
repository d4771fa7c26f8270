"""Tests of reports/: leaderboard numbers, plots and the rendered report, on a small synthetic suite."""

from __future__ import annotations

import base64
import dataclasses
import math
import zlib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import reports.plots as plots
from reports import ReportError, SuiteData, build_report, load_references, plot_mcue
from reports.leaderboard import best_variants, coverage, leaderboard, mcue_summary
from reports.render import CSS, column_classes, leaderboard_cells, report_blocks
from reports.tables import index_vs_magnitude_table, mean_seed_spearman, method_families, method_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MCUE_GRID = np.round(np.arange(0.025, 1.0, 0.05), 3)


def png_text_chunks(path: Path) -> dict[str, str]:
    """The tEXt/zTXt chunks of a PNG file (matplotlib writes savefig's metadata there)."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    chunks, offset = {}, 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            chunks[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        offset += 12 + length
    return chunks


def mcue_cells(t_star: float, seed: int = 0) -> pd.DataFrame:
    """A 20 x 20 MCUE grid whose variance peaks at p = q = t_star."""
    rng = np.random.default_rng(seed)
    p, q = np.meshgrid(MCUE_GRID, MCUE_GRID, indexing="ij")
    variance = np.exp(-((p - t_star) ** 2 + (q - t_star) ** 2) / 0.02) * 0.25 + rng.uniform(0, 0.01, p.shape)
    return pd.DataFrame(
        {
            "p": p.ravel(),
            "q": q.ravel(),
            "var_correct": variance.ravel(),
            "mean_correct": 1 - p.ravel() * q.ravel(),
            "var_confidence": variance.ravel() / 2,
            "mean_confidence": 1 - p.ravel() * q.ravel(),
        }
    )


def test_plot_mcue_writes_png_marking_t_star(tmp_path, monkeypatch):
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    path = plot_mcue(
        mcue_cells(0.775), t_star=0.775, keep_prob=0.225, output="correct", path=tmp_path / "sub" / "m.png", title="x"
    )
    assert path == tmp_path / "sub" / "m.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000
    chunks = png_text_chunks(path)
    assert "d = 1 - t* = 0.225" in chunks["Title"] and "t* = 0.775" in chunks["Title"]
    assert "t_star=0.775" in chunks["Description"]
    (ax, *_) = figures[0].axes
    star = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(star) == 1
    assert star[0].get_xdata()[0] == pytest.approx(0.775) and star[0].get_ydata()[0] == pytest.approx(0.775)
    assert ax.get_xlabel() == "q (1 - |S|/n)" and ax.get_ylabel() == "p (drop probability within S)"
    # The legend sits below the heatmap, not on its corner.
    renderer = FigureCanvasAgg(figures[0]).get_renderer()  # closed figures lose their canvas
    (legend,) = figures[0].legends
    assert legend.get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0


def test_plot_mcue_survives_missing_cells(tmp_path):
    empty = pd.DataFrame(columns=["p", "q", "var_correct"])
    path = plot_mcue(empty, t_star=float("nan"), keep_prob=float("nan"), output="correct", path=tmp_path / "e.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


# --- A synthetic suite: 2 pairs, 5 methods, 3 seeds -----------------------------------------------------------------

FRACTIONS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
SEEDS = (0, 1, 2)
LAYERS = {"fc1": 12, "fc2": 8}
# method -> (scorer, family, strategy, axis, AUC of seeds 0, 1, 2)
METHODS = {
    "gtap-beta-iter-build": ("gtap", "power-index", "iterated-building", "unit_fraction", (0.90, 0.92, 0.97)),
    "gtap-beta-top-n": ("gtap", "power-index", "top-n", "unit_fraction", (0.80, 0.82, 0.84)),
    "gtap-shapley-top-n": ("gtap", "power-index", "top-n", "unit_fraction", (0.85, 0.86, 0.87)),
    "wmp": ("wmp", "magnitude", "top-n", "unit_fraction", (0.70, 0.75, 0.80)),
    "wmp-weights": ("wmp", "magnitude", "top-n", "param_fraction", (0.88, 0.88, 0.88)),
    "random": ("random", "random", "top-n", "unit_fraction", (0.30, 0.35, 0.31)),
}
PAIRS = {"lenet5-mnist": 0.775, "ffn-emotion": 0.675}  # pair -> t* of every seed
MISSING_RUN = ("ffn-emotion", "gtap-beta-iter-build", 2)  # a partial store: this seed never finished
NO_WMP_PAIR = "ffn-emotion"  # no magnitude run here, so no index-vs-magnitude plot


def curve_accuracy(pair_offset: float, method_number: int, seed: int, fraction: float) -> float:
    """A monotone synthetic compression curve, distinct per pair, method and seed."""
    return float(min(1.0, 0.1 + 0.8 * fraction ** (0.3 + 0.1 * method_number) + 0.01 * seed + pair_offset))


def synthetic_suite(methods: dict | None = None, pairs: dict[str, float] | None = None) -> SuiteData:
    """The synthetic suite: ``METHODS`` on ``PAIRS`` by default (the browser check passes a larger, lenet-like set).

    Args:
        methods: method -> (scorer, family, strategy, axis, AUC of seeds 0, 1, 2), as ``METHODS``.
        pairs: pair -> t* of every seed, as ``PAIRS``.
    """
    methods = METHODS if methods is None else methods
    pairs = PAIRS if pairs is None else pairs
    rng = np.random.default_rng(0)
    runs, curves, scores, cells, mcue_runs, correlations = [], [], [], [], [], []
    n_units = sum(LAYERS.values())
    for pair_number, (pair, t_star) in enumerate(pairs.items()):
        keep_prob = round(1 - t_star, 3)
        for seed in SEEDS:
            grid_cells = mcue_cells(t_star, seed).assign(pair=pair, seed=seed)
            cells.append(grid_cells)
            mcue_runs.append(
                {"pair": pair, "seed": seed, "t_star": t_star, "keep_prob": keep_prob, "output": "correct",
                 "n_evaluations": 4000, "seconds": 3.0}
            )
            magnitude = rng.uniform(0.1, 1.0, n_units)
            for method_number, (method, (scorer, family, strategy, axis, aucs)) in enumerate(methods.items()):
                if (pair, method, seed) == MISSING_RUN or (pair == NO_WMP_PAIR and family == "magnitude"):
                    continue
                run_id = f"{pair}-{method}-{seed}"
                runs.append(
                    {"run_id": run_id, "pair": pair, "method": method, "scorer": scorer, "family": family,
                     "strategy": strategy, "seed": seed, "axis": axis, "auc": aucs[seed] - 0.1 * pair_number,
                     "accuracy_at_d": min(0.99, 0.6 + 0.05 * method_number + 0.01 * seed), "keep_prob_d": keep_prob,
                     "n_evaluations": 1000 * (method_number + 1), "seconds": 2.0 + seed,
                     "trained_test_accuracy": 0.98}
                )
                for fraction in FRACTIONS:
                    accuracy = curve_accuracy(-0.05 * pair_number, method_number, seed, fraction)
                    curves.append(
                        {"run_id": run_id, "pair": pair, "method": method, "seed": seed, "target_fraction": fraction,
                         "units_kept": round(fraction * n_units), "unit_fraction": round(fraction * n_units) / n_units,
                         "param_fraction": fraction, "accuracy": accuracy, "n_evaluations": 10, "seconds": 0.1,
                         "is_mcue_point": False}
                    )
                # MCUE's extra point; one sits exactly on 0.1 with an absurd accuracy that must not be read as acc@0.1.
                curves.append(
                    {"run_id": run_id, "pair": pair, "method": method, "seed": seed,
                     "target_fraction": 0.1 if method == "random" else keep_prob, "units_kept": 4,
                     "unit_fraction": keep_prob, "param_fraction": keep_prob, "accuracy": 0.0 if method == "random"
                     else min(0.99, 0.6 + 0.05 * method_number), "n_evaluations": 10, "seconds": 0.1,
                     "is_mcue_point": True}
                )
                if method in ("wmp", "gtap-beta-top-n", "gtap-shapley-top-n"):
                    # gtap-beta-top-n agrees in rank with wmp (rho = 1); shapley is noise.
                    unit_scores = {"wmp": magnitude, "gtap-beta-top-n": magnitude**2}.get(method)
                    if unit_scores is None:
                        unit_scores = rng.normal(size=n_units)
                    unit = 0
                    for layer, width in LAYERS.items():
                        for position in range(width):
                            scores.append(
                                {"run_id": run_id, "pair": pair, "method": method, "scorer": scorer, "seed": seed,
                                 "unit": unit, "layer": layer, "position": position, "score": unit_scores[unit]}
                            )
                            unit += 1
        for layer in ("all", *LAYERS):
            names = list(methods)
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    correlations.append(
                        {"pair": pair, "layer": layer, "method_a": names[a], "method_b": names[b],
                         "spearman": rng.uniform(-1, 1), "kendall": rng.uniform(-1, 1), "n_seeds": 3}
                    )
    # A repeated run of one seed (e.g. a rerun) must count once among seeds.
    duplicate = dict(runs[0], run_id="duplicate")
    runs.append(duplicate)
    return SuiteData(
        suite="lenet",
        profile="default",
        parent_run_id="parent123",
        fractions=FRACTIONS,
        runs=pd.DataFrame(runs),
        curves=pd.DataFrame(curves),
        scores=pd.DataFrame(scores),
        mcue=pd.concat(cells, ignore_index=True),
        mcue_runs=pd.DataFrame(mcue_runs),
        correlations=pd.DataFrame(correlations),
    )


@pytest.fixture(scope="module")
def suite() -> SuiteData:
    return synthetic_suite()


@pytest.fixture(scope="module")
def report(suite, tmp_path_factory) -> tuple[Path, list[Path]]:
    out_dir = tmp_path_factory.mktemp("reports") / "lenet"
    return out_dir, build_report(suite, out_dir)


def board_row(board: pd.DataFrame, pair: str, method: str) -> pd.Series:
    rows = board[(board["pair"] == pair) & (board["method"] == method)]
    assert len(rows) == 1
    return rows.iloc[0]


# --- Leaderboard ----------------------------------------------------------------------------------------------------


def test_leaderboard_ranks_by_mean_auc_within_each_pair_and_axis(suite):
    board = leaderboard(suite)
    assert list(dict.fromkeys(board["pair"])) == list(PAIRS)
    lenet = board[board["pair"] == "lenet5-mnist"]
    # One axis per ranking: the unit-level methods, then (ranked apart) the one on kept weights, whose AUC is above
    # most unit-level ones but over another axis.
    by_auc = sorted(METHODS, key=lambda method: -np.mean(METHODS[method][4]))
    units = [m for m in by_auc if METHODS[m][3] == "unit_fraction"]
    weights = [m for m in by_auc if METHODS[m][3] == "param_fraction"]
    assert by_auc.index(weights[0]) < len(units)
    assert lenet["method"].tolist() == units + weights
    assert lenet["rank"].tolist() == [*range(1, len(units) + 1), *range(1, len(weights) + 1)]
    emotion = board[board["pair"] == "ffn-emotion"]
    assert "wmp" not in emotion["method"].tolist() and emotion["rank"].iloc[0] == 1


def test_leaderboard_means_and_sample_sds_over_seeds(suite):
    board = leaderboard(suite)
    row = board_row(board, "lenet5-mnist", "gtap-beta-iter-build")
    assert row["auc_mean"] == pytest.approx(np.mean([0.90, 0.92, 0.97]))
    assert row["auc_sd"] == pytest.approx(np.std([0.90, 0.92, 0.97], ddof=1))
    assert row["acc_at_d_mean"] == pytest.approx(0.61) and row["acc_at_d_sd"] == pytest.approx(0.01)
    assert row["d_mean"] == pytest.approx(0.225)
    assert row["n_evaluations_mean"] == 1000 and row["seconds_mean"] == pytest.approx(3.0)
    assert row["scorer"] == "gtap" and row["strategy"] == "iterated-building" and row["axis"] == "unit_fraction"
    # One seed of ffn-emotion is missing: the mean is over the two that ran (AUC shifted by -0.1 for this pair).
    partial = board_row(board, "ffn-emotion", "gtap-beta-iter-build")
    assert partial["auc_mean"] == pytest.approx(np.mean([0.80, 0.82]))
    assert board_row(board, "lenet5-mnist", "wmp-weights")["auc_sd"] == pytest.approx(0.0)


def test_repeated_run_of_a_seed_counts_once(suite):
    row = board_row(leaderboard(suite), "lenet5-mnist", "gtap-beta-iter-build")
    assert row["n_runs"] == 4 and row["n_seeds"] == 3
    assert row["auc_mean"] == pytest.approx(np.mean([0.90, 0.92, 0.97]))
    assert row["auc_sd"] == pytest.approx(np.std([0.90, 0.92, 0.97], ddof=1))


def test_leaderboard_reads_accuracy_at_fixed_fractions_from_grid_points(suite):
    board = leaderboard(suite, fixed_fractions=(0.1, 0.5, 0.15))
    method_number = list(METHODS).index("random")
    row = board_row(board, "lenet5-mnist", "random")
    expected = [curve_accuracy(0.0, method_number, seed, 0.1) for seed in SEEDS]
    assert row["acc_at_0.1_mean"] == pytest.approx(np.mean(expected))  # the MCUE point at 0.1 (0.0) is left out
    assert row["acc_at_0.1_sd"] == pytest.approx(np.std(expected, ddof=1))
    expected = [curve_accuracy(0.0, method_number, seed, 0.5) for seed in SEEDS]
    assert row["acc_at_0.5_mean"] == pytest.approx(np.mean(expected))
    assert np.isnan(row["acc_at_0.15_mean"]) and np.isnan(row["acc_at_0.15_sd"])


def test_coverage_shows_missing_seed(suite):
    table = coverage(suite)
    row = table[(table["pair"] == "ffn-emotion") & (table["method"] == "gtap-beta-iter-build")].iloc[0]
    assert row["n_seeds"] == 2 and row["seeds"] == "0, 1" and row["missing_seeds"] == "2"
    assert (table[table["method"] != "gtap-beta-iter-build"]["missing_seeds"] == "").all()
    board_row_ = board_row(leaderboard(suite), "ffn-emotion", "gtap-beta-iter-build")
    assert board_row_["n_seeds"] == 2 and board_row_["missing_seeds"] == "2"


# --- Paper references -----------------------------------------------------------------------------------------------


def test_references_record_the_papers_figures_with_sources():
    references = load_references()
    assert all(reference["source"] for reference in references)
    by_key = {(r["pair"], r["method"], r["metric"]): r for r in references}
    assert by_key[("lenet5-mnist", "gtap-*-iter-build", "acc_at_d")]["value"] == 0.916
    assert by_key[("lenet5-mnist", "gtap-*-iter-build", "acc_at_d")]["sd"] == 0.012
    assert by_key[("lenet5-mnist", "gtap-*-iter-prune", "acc_at_d")]["value"] == 0.871
    assert by_key[("lenet5-mnist", "gtap-*-top-n", "acc_at_d")]["value"] == 0.585
    assert by_key[("lenet5-mnist", "mcue", "t_star")]["value"] == 0.775
    assert by_key[("lenet300-mnist", "mcue", "d")]["value"] == pytest.approx(1 - 0.825)


def test_reference_rows_match_pair_and_method(suite):
    board = leaderboard(suite, references=load_references())
    assert board_row(board, "lenet5-mnist", "gtap-beta-iter-build")["paper_acc_at_d"] == 0.916
    assert board_row(board, "lenet5-mnist", "gtap-beta-iter-build")["paper_acc_at_d_sd"] == 0.012
    assert board_row(board, "lenet5-mnist", "gtap-shapley-top-n")["paper_acc_at_d"] == 0.585
    assert np.isnan(board_row(board, "lenet5-mnist", "wmp")["paper_acc_at_d"])
    assert np.isnan(board_row(board, "ffn-emotion", "gtap-beta-iter-build")["paper_acc_at_d"])  # other pair
    summary = mcue_summary(suite, load_references()).set_index("pair")
    assert summary.loc["lenet5-mnist", "paper_d"] == 0.225 and np.isnan(summary.loc["ffn-emotion", "paper_d"])
    assert summary.loc["lenet5-mnist", "d_mean"] == pytest.approx(0.225)


def test_mcue_summary_gives_every_readings_t_star_over_seeds(suite):
    # Stores written before the per-reading metrics have none: NaN, not an error.
    assert np.isnan(mcue_summary(suite).set_index("pair").loc["lenet5-mnist", "t_star_entropy_mean"])
    per_seed = {"t_star_correct": [0.475, 0.475, 0.525], "t_star_entropy": [0.625, 0.725, 0.675],
                "t_star_onehot": [0.625, 0.725, 0.675], "t_star_confidence": [0.325, 0.375, 0.325]}
    runs = suite.mcue_runs.sort_values(["pair", "seed"]).reset_index(drop=True)
    for column, values in per_seed.items():
        runs[column] = np.tile(values, len(runs) // len(values))
    summary = mcue_summary(dataclasses.replace(suite, mcue_runs=runs), load_references()).set_index("pair")
    row = summary.loc["lenet5-mnist"]
    assert row["t_star_entropy_mean"] == pytest.approx(0.675) and row["t_star_entropy_sd"] == pytest.approx(0.05)
    assert row["t_star_correct_mean"] == pytest.approx(np.mean(per_seed["t_star_correct"]))
    assert row["t_star_confidence_sd"] == pytest.approx(np.std(per_seed["t_star_confidence"], ddof=1))
    assert row["paper_t_star"] == 0.775  # beside the paper's


# --- Plots and the rendered report ----------------------------------------------------------------------------------


def with_runs(data: SuiteData, runs: pd.DataFrame) -> SuiteData:
    """The same suite with another runs frame."""
    return dataclasses.replace(data, runs=runs)


def test_index_vs_magnitude_pairs_gtap_top_n_with_wmp(suite):
    magnitude_method, joined = index_vs_magnitude_table(suite, "lenet5-mnist")
    assert magnitude_method == "wmp"
    assert set(joined["method"]) == {"gtap-beta-top-n", "gtap-shapley-top-n"}
    assert set(joined["layer"]) == set(LAYERS) and len(joined) == 2 * len(SEEDS) * sum(LAYERS.values())
    beta = joined[(joined["method"] == "gtap-beta-top-n") & (joined["layer"] == "fc1")]
    assert mean_seed_spearman(beta) == pytest.approx(1.0)
    assert index_vs_magnitude_table(suite, NO_WMP_PAIR)[0] is None


def test_declared_family_not_scorer_name_picks_index_and_magnitude_entries(suite):
    # Scorers renamed beyond the fallback's knowledge: the declared families alone still find both sides.
    renamed = with_runs(suite, suite.runs.assign(scorer="scorer-" + suite.runs["scorer"]))
    magnitude_method, joined = index_vs_magnitude_table(renamed, "lenet5-mnist")
    assert magnitude_method == "wmp" and set(joined["method"]) == {"gtap-beta-top-n", "gtap-shapley-top-n"}
    # A declared family wins over what the scorer name would suggest.
    runs = suite.runs.copy()
    runs.loc[runs["method"] == "gtap-shapley-top-n", "family"] = "attribution"
    runs.loc[runs["method"] == "wmp", "family"] = "gradient"
    magnitude_method, joined = index_vs_magnitude_table(with_runs(suite, runs), "lenet5-mnist")
    assert magnitude_method == "wmp-weights"  # the only magnitude entry left
    assert joined.empty  # wmp-weights stored no unit scores


def test_method_families_falls_back_to_scorer_for_old_stores(suite):
    runs = pd.DataFrame(
        {
            "scorer": ["gtap", "wmp", "wgmp", "taylor", "activation", "random", "gtap", "gtap", "mystery"],
            "family": [None, "", np.nan, " ", None, "", "attribution", "power-index", None],
        },
        index=range(10, 19),
    )
    expected = ["power-index", "magnitude", "gradient", "gradient", "activation", "random", "attribution",
                "power-index", ""]
    families = method_families(runs)
    assert families.tolist() == expected and families.index.equals(runs.index)
    assert method_families(runs.drop(columns="family")).tolist()[:6] == expected[:6]
    # A whole store written before families: same entries, same table as with declared families.
    old = with_runs(suite, suite.runs.assign(family=""))
    assert method_table(old, "lenet5-mnist").equals(method_table(suite, "lenet5-mnist"))
    magnitude_method, joined = index_vs_magnitude_table(old, "lenet5-mnist")
    assert magnitude_method == "wmp" and joined.equals(index_vs_magnitude_table(suite, "lenet5-mnist")[1])


def test_curves_repeat_only_non_power_index_methods_in_other_panels(suite, tmp_path, monkeypatch):
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    lenet = with_runs(suite, suite.runs[suite.runs["pair"] == "lenet5-mnist"])
    assert [path.name for path in plots.plot_curves(lenet, tmp_path)] == ["curves_lenet5-mnist.png"]
    panels = {ax.get_title(): {line.get_label() for line in ax.lines} for ax in figures[0].axes}
    assert set(panels) == {"top-n", "iterated-building"}
    # iterated-building's own GTAP entry, plus every baseline thin; the other GTAP entries stay in their own panel.
    assert panels["iterated-building"] >= {"gtap-beta-iter-build", "wmp", "random"}
    assert not panels["iterated-building"] & {"gtap-beta-top-n", "gtap-shapley-top-n"}
    assert "gtap-beta-iter-build" not in panels["top-n"]
    # One axis per figure: the param-axis method is drawn on its own figure, never among the unit curves.
    assert not any("wmp-weights" in labels for labels in panels.values())
    figures.clear()
    assert [path.name for path in plots.plot_weight_curves(lenet, tmp_path)] == ["curves_weights_lenet5-mnist.png"]
    drawn = {line.get_label() for ax in figures[0].axes for line in ax.lines if not line.get_label().startswith("_")}
    assert drawn == {"wmp-weights"}


def test_curve_styles_tell_families_indices_strategies_and_axes_apart():
    methods = pd.DataFrame(
        [(f"gtap-{index}-{short}", "power-index", strategy, "unit_fraction")
         for index in ("shapley", "banzhaf", "beta")
         for short, strategy in (("top-n", "top-n"), ("iter-prune", "iterated-pruning"),
                                 ("iter-build", "iterated-building"))]
        + [("wmp", "magnitude", "top-n", "unit_fraction"), ("wmp-unstructured", "magnitude", "top-n", "param_fraction"),
           ("wgmp", "gradient", "top-n", "unit_fraction"), ("taylor", "gradient", "top-n", "unit_fraction"),
           ("random", "random", "top-n", "unit_fraction"), ("activation", "activation", "top-n", "unit_fraction"),
           ("ig", "attribution", "top-n", "unit_fraction")],
        columns=["method", "family", "strategy", "axis"],
    )
    styles = plots.method_styles(methods)
    colour = {method: np.array(style["color"]) for method, style in styles.items()}
    # One colour per index across strategies; the strategy is the line style.
    assert np.allclose(colour["gtap-beta-top-n"], colour["gtap-beta-iter-prune"])
    assert [styles[f"gtap-beta-{s}"]["linestyle"] for s in ("top-n", "iter-prune", "iter-build")] == ["-", "--", "-."]
    # Every top-n entry and every index gets its own colour, far apart (the lenet report had three pinks).
    distinct = ["gtap-shapley-top-n", "gtap-banzhaf-top-n", "gtap-beta-top-n", "wmp", "wmp-unstructured", "wgmp",
                "taylor", "random", "activation", "ig"]
    gaps = [np.abs(colour[a] - colour[b]).max() for i, a in enumerate(distinct) for b in distinct[i + 1:]]
    assert min(gaps) > 0.1
    # Methods of one family and strategy share its hue in two shades; the parameter axis has square markers.
    assert np.argmax(colour["wmp"]) == np.argmax(colour["wmp-unstructured"]) == 0  # brown: red-dominant
    assert styles["wmp-unstructured"]["marker"] == "s" and styles["wmp"]["marker"] == "o"
    assert plots.colour_key("gtap-beta-iter-prune", "power-index") == "beta"
    assert plots.colour_key("gtap-custom", "power-index") == "power-index"


def test_curves_are_drawn_readable_where_the_report_shows_them(suite, tmp_path, monkeypatch):
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    (path,) = plots.plot_curves(with_runs(suite, suite.runs[suite.runs["pair"] == "lenet5-mnist"]), tmp_path)
    from PIL import Image

    assert Image.open(path).size[0] <= 1200  # shown unscaled on a 1,400 px page
    fig = figures[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    (legend,) = fig.legends
    assert legend.get_window_extent(renderer).y1 <= min(ax.get_window_extent(renderer).y0 for ax in fig.axes)
    sizes = [text.get_fontsize() for text in fig.findobj(matplotlib.text.Text) if text.get_text()]
    assert min(sizes) >= 9


def test_report_writes_valid_pngs_and_both_documents(report):
    out_dir, written = report
    assert {path.name for path in written} >= {"report.md", "report.html"}
    assert all(path.parent == out_dir and path.exists() for path in written)
    pngs = [path for path in written if path.suffix == ".png"]
    for kind in ("curves", "mcue", "correlations", "seed_variance"):
        for pair in PAIRS:
            assert out_dir / f"{kind}_{pair}.png" in pngs
    assert out_dir / "index_vs_magnitude_lenet5-mnist.png" in pngs
    assert not (out_dir / f"index_vs_magnitude_{NO_WMP_PAIR}.png").exists()
    for path in pngs:
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 2000
    assert not [path for path in out_dir.parent.iterdir() if path.name.startswith(".")]  # staging removed


def test_report_names_every_pair_method_and_missing_seed(report):
    out_dir, _ = report
    for name in ("report.md", "report.html"):
        text = (out_dir / name).read_text(encoding="utf-8")
        for pair in PAIRS:
            assert pair in text
        for method in METHODS:
            assert method in text
        assert "2 (missing: 2)" in text and "3 (4 runs)" in text
        assert "parent123" in text and "default" in text
        assert "acc@d 0.916 ± 0.012" in text.replace("&nbsp;", " ")  # the paper beside it
        assert "wmp-weights†" in text and "over kept parameters, not units" in text
    # gtap-beta-iter-build's AUC on lenet5-mnist; in HTML the sd may wrap under the mean, never the ± alone.
    assert "| 0.930 ± 0.036 |" in (out_dir / "report.md").read_text(encoding="utf-8")
    assert "<td class=\"num\">0.930 ±&nbsp;0.036</td>" in (out_dir / "report.html").read_text(encoding="utf-8")
    assert "](curves_lenet5-mnist.png)" in (out_dir / "report.md").read_text(encoding="utf-8")


class PageParts(HTMLParser):
    """The images (src, enclosing link, alt) and tables (the classes of their header cells) of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.tables: list[dict] = []
        self._link: str | None = None
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self._link = attrs.get("href")
        elif tag == "img":
            self.images.append({"src": attrs.get("src", ""), "link": self._link, "alt": attrs.get("alt", "")})
        elif tag == "table":
            self.tables.append({"wrapped": self._open[-1:] == ["table-wrap"], "headers": [], "names": []})
        elif tag == "th":
            self.tables[-1]["headers"].append(attrs.get("class") or "")
            self.tables[-1]["names"].append("")
            self._open.append("th")
        if tag == "div":
            self._open.append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "a":
            self._link = None
        elif tag in ("div", "th") and self._open:
            self._open.pop()

    def handle_data(self, data):
        if self._open[-1:] == ["th"]:  # a name may come in pieces, split by <wbr>
            self.tables[-1]["names"][-1] += data


def page_parts(path: Path) -> PageParts:
    parser = PageParts()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_html_report_embeds_each_image_and_links_its_png(report):
    out_dir, written = report
    parts = page_parts(out_dir / "report.html")
    pngs = {path.name for path in written if path.suffix == ".png"}
    assert {image["link"] for image in parts.images} == pngs  # every PNG shown once, linked at full size
    for image in parts.images:
        assert image["src"].startswith("data:image/png;base64,"), image["alt"]
        embedded = base64.b64decode(image["src"].removeprefix("data:image/png;base64,"))
        assert embedded == (out_dir / image["link"]).read_bytes()


def test_html_tables_scroll_in_their_own_box_and_align_by_content(report):
    out_dir, _ = report
    parts = page_parts(out_dir / "report.html")
    assert parts.tables and all(table["wrapped"] for table in parts.tables)
    assert ".table-wrap { overflow-x: auto" in CSS and "nth-child" not in CSS
    classes = {name: kind for table in parts.tables for name, kind in zip(table["names"], table["headers"],
                                                                           strict=True)}
    assert classes["pair"] == classes["method"] == "name"  # the spread table's first column reads like the board's
    assert classes["AUC"] == classes["n_seeds"] == classes["cost"] == "num"
    assert "<th class=\"num\">n_<wbr>seeds</th>" in (out_dir / "report.html").read_text(encoding="utf-8")
    assert column_classes(pd.DataFrame({"a": ["x", "1"], "b": ["1", "–"], "c": ["0.9 ± 0.1", ""]})) == ["", "num",
                                                                                                      "num"]


def test_leaderboard_leaves_out_columns_that_carry_nothing(suite):
    board = leaderboard(suite, references=load_references())
    lenet = leaderboard_cells(board[board["pair"] == "lenet5-mnist"], (0.1,))
    emotion = leaderboard_cells(board[board["pair"] == "ffn-emotion"], (0.1,))
    assert "paper" in lenet.columns and "paper" not in emotion.columns  # the paper has no figure for ffn-emotion
    assert "scorer" not in lenet.columns  # every method's name starts with its scorer
    assert "d" not in lenet.columns  # MCUE's d, the same on every row, is given above the table
    renamed = board.assign(method="m-" + board["method"], d_mean=np.linspace(0.1, 0.2, len(board)))
    kept = leaderboard_cells(renamed[renamed["pair"] == "lenet5-mnist"], (0.1,))
    assert {"scorer", "d"} <= set(kept.columns)
    assert kept.loc[0, "AUC"] == "0.930 ± 0.036"


def test_mcue_grid_marks_each_pairs_stored_t_star(report):
    out_dir, _ = report
    for pair, t_star in PAIRS.items():
        chunks = png_text_chunks(out_dir / f"mcue_{pair}.png")
        assert f"t* = {t_star:.3f}" in chunks["Title"] and "seed 0" in chunks["Title"]


def test_empty_suite_raises_and_writes_nothing(tmp_path):
    out_dir = tmp_path / "lenet"
    with pytest.raises(ReportError, match="no finished runs for suite 'lenet'.*python -m bench run --suite lenet"):
        build_report(SuiteData.empty("lenet", "default"), out_dir)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_report(suite, tmp_path, monkeypatch):
    def broken_plot(data, path_dir):
        raise RuntimeError("plot failed")

    # Plot kinds run in order curves, mcue, index_vs_magnitude, ...: the first two have written PNGs when this fails.
    monkeypatch.setattr(plots, "plot_index_vs_magnitude", broken_plot)
    one_pair = SuiteData(
        suite=suite.suite, profile=suite.profile, parent_run_id=None, fractions=suite.fractions,
        **{name: getattr(suite, name).query("pair == 'lenet5-mnist'") for name in ("runs", "curves", "scores", "mcue",
                                                                                     "mcue_runs", "correlations")},
    )
    out_dir = tmp_path / "lenet"
    with pytest.raises(RuntimeError, match="plot failed"):
        build_report(one_pair, out_dir, references=[])
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_baseline_run_in_variants_is_ranked_at_its_best_and_named(tmp_path):
    """Variants of one suite entry (allocation: [uniform, normalized]) collapse to the best by mean AUC, named in
    the table, and every variant is listed below it."""
    data = synthetic_suite()
    runs = data.runs.copy()
    lenet_wmp = (runs["method"] == "wmp")
    variants = []
    for allocation, shift in (("uniform", -0.05), ("normalized", +0.08)):
        variant = runs[lenet_wmp].assign(method=f"wmp-{allocation}", allocation=allocation, variant_of="wmp",
                                         run_id=lambda f, a=allocation: f["run_id"] + a)
        variant["auc"] = variant["auc"] + shift
        variants.append(variant)
    runs = pd.concat([runs[~lenet_wmp].assign(allocation="global", variant_of=runs["method"]), *variants],
                     ignore_index=True)
    data = dataclasses.replace(data, runs=runs)
    board = leaderboard(data)
    best = best_variants(board)
    lenet = best[best["pair"] == "lenet5-mnist"]
    row = lenet[lenet["variant_of"] == "wmp"]
    assert len(row) == 1 and row["method"].iloc[0] == "wmp-normalized" and row["n_variants"].iloc[0] == 2
    units = lenet[lenet["axis"] == "unit_fraction"]
    assert units["rank"].tolist() == list(range(1, len(units) + 1))
    assert units["auc_mean"].is_monotonic_decreasing
    cells = leaderboard_cells(units, (0.1, 0.5))
    assert "wmp (normalized, best of 2)" in cells["method"].tolist()
    build_report(data, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "wmp (normalized, best of 2)" in text and "wmp-uniform" in text and "Ranked on kept weights" in text


def test_physical_costs_give_mac_columns_and_cost_curves(tmp_path):
    """Runs that recorded their pruned networks' MACs get acc@2x/4x fewer MACs columns and a cost-axis plot; a
    curve that never gets 4x cheaper shows a dash, not a number."""
    data = synthetic_suite()
    curves = data.curves.copy()
    mac = curves["unit_fraction"].astype(float) * 0.9 + 0.1  # the convs are never pruned: at least 10 % of MACs
    curves = curves.assign(mac_fraction=mac, params=1000 * mac, latency_b1=1e-4 * mac, latency_b256=2e-3 * mac)
    runs = data.runs.assign(acc_at_2x_macs=np.where((data.runs["method"] == "wmp") & (data.runs["seed"] > 0), np.nan,
                                                    0.8),
                            acc_at_4x_macs=np.where(data.runs["method"] == "random", np.nan, 0.5))
    data = dataclasses.replace(data, runs=runs, curves=curves)
    board = leaderboard(data)
    row = board_row(board, "lenet5-mnist", "random")
    assert row["acc_at_2x_macs_mean"] == pytest.approx(0.8) and np.isnan(row["acc_at_4x_macs_mean"])
    # Only seed 0 of wmp's curves gets 2x cheaper: the cell says so rather than pass one seed off as the mean.
    wmp = leaderboard_cells(board[(board["pair"] == "lenet5-mnist") & (board["method"] == "wmp")], (0.1,))
    assert wmp["acc@2x fewer MACs"].iloc[0] == "0.800 (1 of 3 seeds)"
    written = build_report(data, tmp_path / "out")
    assert (tmp_path / "out" / "cost_curves_lenet5-mnist.png") in written
    text = (tmp_path / "out" / "report.md").read_text()
    assert "acc@2x fewer MACs" in text and "acc@4x fewer MACs" in text
    # Without MAC counts (the synthetic suite as is) neither the columns nor the plot appear.
    plain = build_report(synthetic_suite(), tmp_path / "plain")
    assert not any("cost_curves" in p.name for p in plain)
    assert "fewer MACs" not in (tmp_path / "plain" / "report.md").read_text()


def test_mcue_sentence_gives_t_star_per_reading():
    from reports.render import mcue_sentence

    summary = pd.Series({"n_mcue_seeds": 3, "output": "correct", "t_star_mean": 0.475, "t_star_sd": 0.0,
                         "d_mean": 0.525, "d_sd": 0.0, "d_per_seed": "0.525, 0.525, 0.525", "paper_d": np.nan,
                         "paper_t_star": 0.825, "trained_accuracy_mean": 0.98, "trained_accuracy_sd": 0.001,
                         "paper_trained_accuracy": np.nan, "t_star_correct_mean": 0.475, "t_star_correct_sd": 0.0,
                         "t_star_entropy_mean": 0.675, "t_star_entropy_sd": 0.05, "t_star_onehot_mean": np.nan,
                         "t_star_onehot_sd": np.nan})
    sentence = mcue_sentence(summary)
    assert "t* per reading: correct 0.475" in sentence and "entropy 0.675 ± 0.050" in sentence
    assert "onehot" not in sentence  # a reading an old store lacks is left out, not shown as nan


def test_the_headline_says_which_differences_are_beyond_seed_noise():
    """beta beats wmp by 0.1 on every seed (beyond noise); beta and banzhaf swap places across seeds (within)."""
    from reports.headline import headlines

    methods = {
        "gtap-beta-top-n": ("gtap", "power-index", "top-n", "unit_fraction", (0.90, 0.92, 0.91)),
        "gtap-banzhaf-top-n": ("gtap", "power-index", "top-n", "unit_fraction", (0.905, 0.91, 0.90)),
        "wmp": ("wmp", "magnitude", "top-n", "unit_fraction", (0.80, 0.815, 0.81)),
        "wmp-unstructured": ("wmp", "magnitude", "top-n", "param_fraction", (0.95, 0.95, 0.95)),
    }
    data = synthetic_suite(methods, {"lenet300-mnist": 0.825})
    found = headlines(data, leaderboard(data, references=[]))
    assert [(h.pair, h.axis, h.method) for h in found] == [("lenet300-mnist", "unit_fraction", "gtap-beta-top-n"),
                                                           ("lenet300-mnist", "param_fraction", "wmp-unstructured")]
    units = found[0]
    assert [(c.role, c.method, c.verdict) for c in units.comparisons] == [
        ("the runner-up", "gtap-banzhaf-top-n", "within seed noise"),
        ("the best baseline", "wmp", "beyond seed noise"),
    ]
    assert units.comparisons[1].p < 0.05 < units.comparisons[0].p
    assert units.sentence() == (
        f"lenet300-mnist, kept units: gtap-beta-top-n, AUC 0.910 ± 0.010 (3 seeds); +0.005 over the runner-up "
        f"gtap-banzhaf-top-n (0.905 ± 0.005), within seed noise (p = {units.comparisons[0].p:.2g}); +0.102 over the "
        f"best baseline wmp (0.808 ± 0.008), beyond seed noise (p < 0.001).")
    assert found[1].sentence().endswith("the only method on this axis.")  # the weight axis is never mixed in
    blocks = report_blocks(data, leaderboard(data, references=[]), mcue_summary(data, []), coverage(data), {}, [],
                           (0.1,), datetime(2026, 1, 1, tzinfo=UTC))
    assert [b.kind for b in blocks[3:6]] == ["h2", "list", "p"] and blocks[3].text == "Headline"


def test_a_baseline_is_drawn_at_its_best_variant_and_every_variant_on_its_own(tmp_path, monkeypatch):
    methods = {
        "gtap-beta-top-n": ("gtap", "power-index", "top-n", "unit_fraction", (0.90, 0.92, 0.91)),
        "wmp-global": ("wmp", "magnitude", "top-n", "unit_fraction", (0.70, 0.71, 0.72)),
        "wmp-uniform": ("wmp", "magnitude", "top-n", "unit_fraction", (0.80, 0.81, 0.82)),
    }
    data = synthetic_suite(methods, {"lenet300-mnist": 0.825})
    data = with_runs(data, data.runs.assign(variant_of=data.runs["method"].str.replace(r"-(global|uniform)$", "",
                                                                                       regex=True)))
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))

    def labels(figure):
        return {line.get_label() for ax in figure.axes for line in ax.lines if not line.get_label().startswith("_")}

    plots.plot_curves(data, tmp_path)
    assert labels(figures[-1]) == {"gtap-beta-top-n", "wmp-uniform"}
    plots.plot_variant_curves(data, tmp_path)
    assert labels(figures[-1]) >= {"wmp-global", "wmp-uniform"} and "gtap-beta-top-n" not in labels(figures[-1])
    plots.plot_seed_variance(data, tmp_path)
    ticks = {tick.get_text() for tick in figures[-1].axes[0].get_yticklabels()}
    assert ticks == {"gtap-beta-top-n", "wmp-uniform"}
    heatmap_rows = [tick.get_text() for tick in figures[-1].axes[1].get_yticklabels()]
    assert heatmap_rows == [tick.get_text() for tick in figures[-1].axes[0].get_yticklabels()]  # one order


def test_long_tables_fold_and_link_their_csv(tmp_path):
    from browser_check import build_synthetic_report

    report = build_synthetic_report(tmp_path / "report")
    page = report.read_text(encoding="utf-8")
    assert '<details><summary>layers: summary over seeds' in page
    assert '<a href="analysis_microstructure_layers.csv" target="_blank">' in page
    stored = pd.read_csv(report.parent / "analysis_microstructure_layers.csv")
    assert len(stored) == 12 and {"pair", "seed", "layer"} <= set(stored.columns)  # every row of every seed
    assert "Every method of every pair has" in page or "<summary>Runs and seeds" in page


def test_a_latency_panel_that_is_only_noise_is_left_out(suite, tmp_path, monkeypatch):
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), real_close(fig)))
    rng = np.random.default_rng(0)
    kept = suite.curves["unit_fraction"]
    curves = suite.curves.assign(mac_fraction=kept, params=1000 * kept)

    def panels(latency):
        figures.clear()
        plots.plot_cost_curves(dataclasses.replace(suite, curves=curves.assign(latency_b256=latency)), tmp_path)
        return len([ax for ax in figures[0].axes if ax.get_xlabel()])

    assert panels(0.001 * (1 + 9 * curves["unit_fraction"])) == 3  # 1 to 10 ms as units are kept: an effect
    assert panels(0.008 + 0.002 * rng.random(len(curves))) == 2  # 8 to 10 ms whatever is kept: noise
    assert "latency left out" in figures[0].texts[0].get_text()


def test_a_missing_seed_auc_is_not_a_shared_seed():
    from reports.headline import paired_p

    p, shared = paired_p(pd.Series([np.nan, 0.75, 0.5]), pd.Series([0.7, 0.5, 0.25]))
    assert shared == 2 and p == 0.0  # two equal non-zero differences; the NaN seed is left out
    assert paired_p(pd.Series([0.5, 0.6]), pd.Series([0.5, 0.6])) == (1.0, 2)
    assert math.isnan(paired_p(pd.Series([0.5, np.nan]), pd.Series([0.4, 0.3]))[0])


def test_the_accuracy_columns_follow_the_grid():
    from reports.render import column_fractions

    assert column_fractions([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]) == (0.1, 0.2, 0.5)
    assert column_fractions([0.3, 0.5, 0.7, 0.8, 0.9, 1.0]) == (0.3, 0.5, 0.7)  # a grid for a fragile net
    assert column_fractions([0.1, 0.5, 1.0]) == (0.1, 0.5)


# -- pairs whose players are attention heads -------------------------------------------------------------------------


def _with_head_curves(suite: SuiteData, pair: str = "lenet5-mnist") -> SuiteData:
    """The synthetic suite with per-layer head curves for one pair (its layers stand in for heads layers)."""
    rows = []
    for run in suite.runs[(suite.runs["pair"] == pair) & (suite.runs["axis"] == "unit_fraction")].itertuples():
        for layer, size in LAYERS.items():
            for kept in range(size + 1):
                rows.append({"run_id": run.run_id, "pair": pair, "method": run.method, "seed": run.seed,
                             "layer": layer, "units_kept": kept, "size": size, "accuracy": 0.5 + 0.4 * kept / size})
    return dataclasses.replace(suite, layer_curves=pd.DataFrame(rows))


def test_a_heads_pair_gets_its_layer_curves_head_maps_and_removable_heads(suite, tmp_path):
    from reports.plots_heads import head_map, heads_before_a_drop

    data = _with_head_curves(suite)
    paths = build_report(data, tmp_path / "report")
    names = {p.name for p in paths}
    assert {"layer_curves_lenet5-mnist.png", "head_maps_lenet5-mnist.png"} <= names
    assert not any(n.startswith("layer_curves_ffn") for n in names)  # no head curves there
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.count("### Attention heads") == 1 and "heads removable" in text
    # gtap-beta-top-n's scores are wmp's squared: the same ranks, so the same map; each seed's ranks span [0, 1].
    np.testing.assert_allclose(head_map(data, "lenet5-mnist", "gtap-beta-top-n").to_numpy(float),
                               head_map(data, "lenet5-mnist", "wmp").to_numpy(float))
    assert head_map(data, "lenet5-mnist", "wmp").stack().dropna().between(0, 1).all()  # layers of 12 and 8
    # Removable units: the fewest kept on the grid whose seed-mean accuracy stays within 0.01 of the unpruned 0.98.
    table = heads_before_a_drop(data, "lenet5-mnist").set_index("method")
    for method, row in table.iterrows():
        curve = data.curves[(data.curves["pair"] == "lenet5-mnist") & (data.curves["method"] == method)
                            & ~data.curves["is_mcue_point"]].groupby("units_kept")["accuracy"].mean()
        kept = curve.index.max()
        for units in sorted(curve.index, reverse=True):  # down from the whole network to the first drop
            if curve[units] < 0.98 - 0.01:
                break
            kept = units
        assert row["of"] == curve.index.max() and row["removable"] == curve.index.max() - kept
