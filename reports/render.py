"""A suite's leaderboard report: its plots, the report described as blocks, and report.md and report.html written
from them in one output folder.

This module assembles the blocks (header, one section per pair, correlations, spread over seeds, the models and
analyses sections) and formats the leaderboard's cells; :mod:`reports.documents` writes the blocks as Markdown and
HTML, :mod:`reports.format` holds the blocks and number formats both use.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from reports import plots
from reports.analysis_plots import ANALYSIS_PLOTS
from reports.data import BANDS, MCUE_READINGS, PARAM_AXIS, SuiteData, require_runs
from reports.documents import CSS, column_classes, html_table, markdown_table, render_html, render_markdown
from reports.figures import file_stem
from reports.format import MISSING, Block, compact_count, format_count, format_mean_sd, format_number
from reports.headline import ALPHA, TEST_NAME, headlines
from reports.leaderboard import (
    best_variants,
    coverage,
    fraction_label,
    leaderboard,
    load_references,
    matching_references,
    mcue_summary,
)
from reports.models import model_blocks, write_model_plots
from reports.plots_heads import head_blocks
from reports.tables import analysis_summary, drawn_methods

# Re-exported: callers (bench/analyze.py, the estimator report, tests) render blocks through this module.
__all__ = [
    "CSS", "MISSING", "Block", "analysis_blocks", "build_report", "column_classes", "compact_count", "format_count",
    "format_mean_sd", "format_number", "html_table", "leaderboard_cells", "markdown_table", "mcue_sentence",
    "render_html", "render_markdown", "report_blocks", "write_analysis_plots", "write_plots",
]

PARAM_MARK = "†"
PARAM_FOOTNOTE = f"{PARAM_MARK} over kept parameters, not units (unstructured weight pruning)."
# Reference "methods" that describe the pair rather than a suite entry, and where the report shows our value.
PAIR_LEVEL_METHODS = {
    "mcue": "compare with the MCUE line above",
    "unpruned": "compare with the unpruned accuracy above",
}
METRIC_LABELS = {"auc": "AUC", "acc_at_d": "acc@d", "d": "d", "t_star": "t*", "trained_test_accuracy": "unpruned acc"}
# Digits shown of a leaderboard's accuracies and their sd: 0.001 of accuracy is finer than any seed spread we see.
DIGITS = 3


def seeds_cell(n_seeds: int, n_runs: int, missing_seeds: str) -> str:
    """The seeds column of a leaderboard row: the count, repeated runs, and the missing seeds if any.

    Args:
        n_seeds: seeds with a run.
        n_runs: runs, more than n_seeds when a seed was run again (its runs are averaged).
        missing_seeds: the seeds other methods of the pair have but this one lacks ("" if none).

    Returns:
        e.g. "3", "3 (4 runs)" or "2 (missing: 2)".
    """
    notes = [f"{n_runs} runs"] if n_runs > n_seeds else []
    notes += [f"missing: {missing_seeds}"] if missing_seeds else []
    return f"{n_seeds} ({'; '.join(notes)})" if notes else str(n_seeds)


def paper_cell(row: pd.Series) -> str:
    """The paper column of a leaderboard row: every matched paper metric as "label value ± sd".

    Args:
        row: a leaderboard row with paper_<metric> and paper_<metric>_sd columns.

    Returns:
        e.g. "acc@d 0.8710 ± 0.0190", or "" if the paper gives nothing for this row.
    """
    cells = []
    for column in row.index:
        if column.startswith("paper_") and not column.endswith(("_sd", "_source")) and pd.notna(row[column]):
            metric = column.removeprefix("paper_")
            label = METRIC_LABELS.get(metric, metric)
            cells.append(f"{label} {format_mean_sd(row[column], row.get(f'{column}_sd', float('nan')), 3)}")
    return "; ".join(cells)


def passes_cell(forward: float | None, backward: float | None) -> str:
    """Example forward and backward passes a scorer declared, e.g. "2.0M / 2.0M"; empty when it ran none (weights
    only, or the coalition evaluations of the column before)."""
    forward = 0.0 if forward is None or pd.isna(forward) else float(forward)
    backward = 0.0 if backward is None or pd.isna(backward) else float(backward)
    if forward == 0 and backward == 0:
        return ""
    return f"{compact_count(forward)} / {compact_count(backward)}"


def method_label(row: pd.Series) -> str:
    """A leaderboard row's method: its name, or for a baseline shown at its best variant, the baseline and the
    variant that won, e.g. "wmp (normalized, best of 2)"."""
    n_variants = int(row.get("n_variants", 1) or 1)
    if n_variants > 1:
        return f"{row['variant_of']} ({row['allocation']}, best of {n_variants})"
    return str(row["method"])


def leaderboard_cells(table: pd.DataFrame, fixed_fractions: Sequence[float]) -> pd.DataFrame:
    """The displayed leaderboard of one pair: every cell formatted as text.

    Args:
        table: the rows of one pair from :func:`reports.leaderboard.leaderboard`.
        fixed_fractions: the fractions whose acc_at_<f> columns are shown.

    Returns:
        A DataFrame of strings with columns #, method, scorer, strategy, seeds, AUC, acc@d, d, acc@<f>...,
        cost (coalition evaluations, seconds and the example passes a scorer declared), paper (accuracies with
        ``DIGITS`` decimals). Columns that carry nothing are left out, so the table fits a 1,024 px window: scorer
        when every method's name starts with its scorer, strategy when every name says it (Top-n unless the name
        says iter-prune or iter-build), d when it is the same for every row (the MCUE line above the table gives
        it), paper when the paper states nothing for these rows.
    """
    rows = []
    for _, row in table.iterrows():
        cells = {
            "#": str(row["rank"]),
            "method": f"{method_label(row)}{PARAM_MARK if row['axis'] == PARAM_AXIS else ''}",
            "scorer": str(row["scorer"]),
            "strategy": str(row["strategy"]),
            "seeds": seeds_cell(int(row["n_seeds"]), int(row["n_runs"]), row["missing_seeds"] or ""),
            "AUC": format_mean_sd(row["auc_mean"], row["auc_sd"], DIGITS),
            "acc@d": format_mean_sd(row["acc_at_d_mean"], row["acc_at_d_sd"], DIGITS),
            "d": format_number(row["d_mean"], 3),
        }
        for fraction in fixed_fractions:
            stem = fraction_label(fraction)
            cells[f"acc@{fraction:g}"] = format_mean_sd(row[f"{stem}_mean"], row[f"{stem}_sd"], DIGITS)
        for reduction in (2, 4):
            stem = f"acc_at_{reduction}x_macs"
            cell = format_mean_sd(row.get(f"{stem}_mean", math.nan), row.get(f"{stem}_sd", math.nan), DIGITS)
            reached = row.get(f"{stem}_n", math.nan)
            if cell != MISSING and not pd.isna(reached) and int(reached) < int(row["n_seeds"]):
                cell += f" ({int(reached)} of {int(row['n_seeds'])} seeds)"
            cells[f"acc@{reduction}x fewer MACs"] = cell
        passes = passes_cell(row.get("n_forward_mean"), row.get("n_backward_mean"))
        # No-break spaces inside each quantity: a narrow column breaks between them, not before a unit.
        cells["cost"] = (f"{format_count(row['n_evaluations_mean'])}\u00a0evals, "
                         f"{format_number(row['seconds_mean'], 1)}\u00a0s"
                         + (f", passes\u00a0{passes.replace(' ', chr(0xa0))}" if passes else ""))
        cells["paper"] = paper_cell(row)
        rows.append(cells)
    cells = pd.DataFrame(rows)
    empty = []
    if all(str(method).startswith(str(scorer)) for method, scorer in zip(table["method"], table["scorer"],
                                                                           strict=True)):
        empty.append("scorer")
    if len(cells) and cells["d"].nunique() <= 1:
        empty.append("d")
    if len(cells) and not (cells["paper"] != "").any():
        empty.append("paper")
    if len(cells) and all(_strategy_in_name(m, st) for m, st in zip(table["method"], table["strategy"], strict=True)):
        empty.append("strategy")  # the names say it (see the "How to read" line)
    for reduction in (2, 4):
        stem = f"acc_at_{reduction}x_macs_mean"
        if stem not in table or not pd.to_numeric(table[stem], errors="coerce").notna().any():
            empty.append(f"acc@{reduction}x fewer MACs")
    return cells.drop(columns=empty, errors="ignore")


STRATEGY_IN_NAMES = {"top-n": "top-n", "iterated-pruning": "iter-prune", "iterated-building": "iter-build"}


def _strategy_in_name(method: str, strategy: str) -> bool:
    """Whether a method's name already says its strategy: Top-n, the default, unless the name says another."""
    named = [name for short, name in ((v, k) for k, v in STRATEGY_IN_NAMES.items()) if short in str(method)]
    return named == [strategy] or (not named and strategy == "top-n")


def mcue_sentence(summary: pd.Series) -> str:
    """One line on a pair's MCUE d and unpruned accuracy, beside the paper's values where it gives them.

    Args:
        summary: a row of :func:`reports.leaderboard.mcue_summary`.

    Returns:
        The sentence.
    """
    if summary["n_mcue_seeds"]:
        t_star = format_mean_sd(summary["t_star_mean"], summary["t_star_sd"], 3)
        keep_prob = format_mean_sd(summary["d_mean"], summary["d_sd"], 3)
        mcue = (
            f"MCUE (variance of '{summary['output']}'): t* = {t_star}, d = 1 - t* = {keep_prob} over "
            f"{summary['n_mcue_seeds']} seed(s) (per seed {summary['d_per_seed']})"
        )
        readings = [f"{name} {format_mean_sd(summary[f't_star_{name}_mean'], summary[f't_star_{name}_sd'], 3)}"
                    for name in MCUE_READINGS if pd.notna(summary.get(f"t_star_{name}_mean", np.nan))]
        if readings:  # one MCUE pass reads the output four ways; the paper never says which it varied
            mcue += f"; t* per reading: {', '.join(readings)}"
        bands = [band for band in BANDS if pd.notna(summary.get(f"t_star_band_{band}_mean", np.nan))]
        bands = [f"{band} units only "
                 + format_mean_sd(summary[f"t_star_band_{band}_mean"], summary[f"t_star_band_{band}_sd"], 3)
                 for band in bands]
        if bands:  # the same MCUE with the sub-networks drawn within one kind of layer (GTAP Fig. 6)
            mcue += f"; t* within a band of layers: {', '.join(bands)}"
    else:
        mcue = "No MCUE run stored"
    if pd.notna(summary["paper_d"]) or pd.notna(summary["paper_t_star"]):
        mcue += f"; paper: t* = {format_number(summary['paper_t_star'], 3)}, d = {format_number(summary['paper_d'], 3)}"
    trained_accuracy = format_mean_sd(summary["trained_accuracy_mean"], summary["trained_accuracy_sd"])
    trained = f"Unpruned test accuracy {trained_accuracy}"
    if pd.notna(summary["paper_trained_accuracy"]):
        trained += f" (paper: {format_number(summary['paper_trained_accuracy'], 3)})"
    return f"{mcue}. {trained}."


def reference_items(references: Sequence[dict], pair: str, methods: Sequence[str]) -> tuple[str, ...]:
    """The paper's figures for one pair, each with its source and the suite entries it is matched to.

    Args:
        references: as from :func:`reports.leaderboard.load_references`.
        pair: the pair.
        methods: the suite's methods for this pair.

    Returns:
        One text line per reference.
    """
    items = []
    for reference in references:
        if reference["pair"] != pair:
            continue
        label = METRIC_LABELS.get(reference["metric"], reference["metric"])
        matched = [method for method in methods if matching_references([reference], pair, method)]
        where = "matches " + ", ".join(matched) if matched else "no matching entry in this suite"
        if reference["method"] in PAIR_LEVEL_METHODS:
            where = PAIR_LEVEL_METHODS[reference["method"]]
        note = f" Note: {reference['note']}." if reference.get("note") else ""
        value = format_mean_sd(reference["value"], reference["sd"], 3)
        items.append(f"{reference['method']} {label} = {value} [{where}] — {reference['source']}.{note}")
    return tuple(items)


def report_blocks(
    data: SuiteData,
    board: pd.DataFrame,
    mcue: pd.DataFrame,
    runs_coverage: pd.DataFrame,
    images: dict[tuple[str, str], str],
    references: Sequence[dict],
    fixed_fractions: Sequence[float],
    generated_at: datetime,
    analysis_images: dict[str, list[tuple[str, str]]] | None = None,
    model_images: tuple[dict[str, str], dict[tuple[str, str], str]] = ({}, {}),
    image_dir: Path | None = None,
) -> list[Block]:
    """The whole report as blocks: header, how to read, one section per pair, correlations, spread over seeds.

    Args:
        data: the suite's results.
        board: :func:`reports.leaderboard.leaderboard` of the suite.
        mcue: :func:`reports.leaderboard.mcue_summary` of the suite.
        runs_coverage: :func:`reports.leaderboard.coverage` of the suite.
        images: (plot kind, pair) -> image file name, for the plots that were written.
        references: the paper's figures.
        fixed_fractions: the fractions with their own columns.
        generated_at: the time written in the header.
        analysis_images: analysis -> (image file name, caption) pairs of its registered plots.
        model_images: :func:`reports.models.write_model_plots`'s task curves and glass-box images.
        image_dir: the folder holding the images now (tall analysis figures are folded).

    Returns:
        The blocks, in reading order.
    """
    if data.runs.empty:  # a suite that compares trained models only (faces)
        return [
            Block("h1", f"coalition-bench leaderboard: suite '{data.suite}'"),
            Block("p", f"Profile: {data.profile} · parent run: {data.parent_run_id or MISSING} · generated "
                       f"{generated_at.isoformat(timespec='seconds')} · {len(data.models)} trained networks "
                       f"({data.models['pair'].nunique()} pairs)."),
            *model_blocks(data, references, *model_images),
            *analysis_blocks(data, analysis_images or {}, image_dir),
        ]
    grid = ", ".join(f"{fraction:g}" for fraction in data.fractions) or "not recorded"
    blocks = [
        Block("h1", f"coalition-bench leaderboard: suite '{data.suite}'"),
        Block(
            "p",
            f"Profile: {data.profile} · parent run: {data.parent_run_id or MISSING} · "
            f"generated {generated_at.isoformat(timespec='seconds')} · {len(data.runs)} finished runs, "
            f"{len(data.pairs)} pairs.",
        ),
        Block(
            "p",
            f"How to read: AUC = mean test accuracy over the kept-fraction grid ({grid}); acc@d = test accuracy at "
            "MCUE's critical kept fraction d (given above each table), acc@f at kept fraction f. Unit scores and d "
            "are estimated on the validation split, accuracy on the test split. Values are mean ± sample sd over "
            f"seeds; rows are ranked by mean AUC within each pair and axis. {PARAM_FOOTNOTE} A method's strategy is "
            "in its name: Top-n unless it says iter-prune (Iterated Pruning) or iter-build (Iterated Building). "
            "cost = coalition evaluations and seconds per run. 'paper' = the figure the GTAP paper states for that "
            "pair and method (sources listed under each table).",
        ),
    ]
    blocks.extend(headline_blocks(data, board))
    gaps = runs_coverage[runs_coverage["missing_seeds"] != ""]
    if len(gaps):
        missing = [
            f"{row.pair} / {row.method}: seeds {row.seeds} (missing {row.missing_seeds})" for row in gaps.itertuples()
        ]
        blocks.append(Block("p", "Partial store: some methods lack seeds that other methods of the pair have."))
        blocks.append(Block("list", items=tuple(missing)))
    for pair in data.pairs:
        rows = board[board["pair"] == pair]
        blocks.append(Block("h2", pair))
        summary = mcue[mcue["pair"] == pair]
        if len(summary):
            blocks.append(Block("p", mcue_sentence(summary.iloc[0])))
        best = best_variants(rows)
        units, weights = best[best["axis"] != PARAM_AXIS], best[best["axis"] == PARAM_AXIS]
        if len(units):
            if len(weights):
                blocks.append(Block("h3", "Ranked on kept units"))
            blocks.append(Block("table", table=leaderboard_cells(units, fixed_fractions), role="leaderboard"))
        if (best["n_variants"] > 1).any():
            variants = rows[rows["variant_of"].isin(best.loc[best["n_variants"] > 1, "variant_of"])]
            blocks.append(Block("p", "Baselines run in several variants are ranked, and drawn, at their best variant "
                                     "(highest mean AUC), named under the baseline: global = raw scores ranked "
                                     "network-wide, uniform = the same kept fraction in every layer, normalized = "
                                     "scores divided by their layer's mean before a network-wide ranking."))
            blocks.append(Block("table", table=leaderboard_cells(variants.assign(rank=range(1, len(variants) + 1)),
                                                                 fixed_fractions),
                                fold=f"Every variant ({len(variants)} rows)", role="leaderboard"))
        if len(weights):
            blocks.append(Block("h3", "Ranked on kept weights"))
            blocks.append(Block("table", table=leaderboard_cells(weights, fixed_fractions), role="leaderboard"))
            blocks.append(Block("p", f"{PARAM_FOOTNOTE} Its AUC is over kept weights, so it is ranked apart from the "
                                     "unit-level methods."))
        blocks.extend(head_blocks(data, pair, images))
        paper_lines = reference_items(references, pair, rows["method"].tolist())
        if paper_lines:
            blocks.append(Block("p", "Paper figures for this pair (GTAP, arXiv 2311.10468):"))
            blocks.append(Block("list", items=paper_lines))
        for kind, caption, fold in (
            ("curves", "Compression curves on kept units: mean over seeds, band ±1 sd; dotted vertical line: MCUE's "
                       "d. Baselines at their best variant.", ""),
            ("curves_weights", f"Compression curves on kept weights ({PARAM_MARK} methods), apart from the units.", ""),
            ("cost_curves", "The unit curves against the physically pruned network's MACs, parameters and measured "
                            "latency (units removed with Torch-Pruning).", ""),
            ("variants", "Every variant of the baselines run in several.", "Figure: every variant of the baselines"),
            ("mcue", "MCUE variance over (p, q), first seed; the star is t* on the p = q diagonal.",
             "Figure: MCUE's variance over (p, q)"),
            ("index_vs_magnitude", "Power index vs weight magnitude per layer (GTAP Fig. 8), Top-n GTAP entries.",
             "Figure: power index against weight magnitude"),
            ("learning_curves", "Learning curves of the trained networks: train and validation split per epoch.",
             "Figure: learning curves"),
        ):
            if (kind, pair) in images:
                blocks.append(Block("image", text=f"{pair}: {caption}", path=images[(kind, pair)], fold=fold,
                                    **_drawn(data, pair, kind)))
    blocks.append(Block("h2", "Rank correlations between methods"))
    blocks.append(Block("p", "Spearman and Kendall correlations of two methods' unit scores (all units), seed mean."))
    correlation_pairs = [pair for pair in data.pairs if ("correlations", pair) in images]
    if not correlation_pairs:
        blocks.append(Block("p", "No correlations stored."))
    for pair in correlation_pairs:
        blocks.append(Block("image", text=f"{pair}: rank correlations", path=images[("correlations", pair)],
                            fold=f"Figure: rank correlations, {pair}"))
    blocks.append(Block("h2", "Spread over seeds"))
    spread = runs_coverage.rename(columns={"missing_seeds": "missing seeds"})
    if not (spread["missing seeds"] != "").any():
        spread = spread.drop(columns="missing seeds")
    if spread[["n_runs", "seeds"]].drop_duplicates().shape[0] == 1:  # the usual case: say it once
        row = spread.iloc[0]
        blocks.append(Block("p", f"Every method of every pair has {row['n_runs']} runs, seeds {row['seeds']}."))
    else:
        blocks.append(Block("table", table=spread, fold=f"Runs and seeds of each method ({len(spread)} rows)"))
    for pair in data.pairs:
        if ("seed_variance", pair) in images:
            caption = f"{pair}: AUC per seed and sd of accuracy over seeds (methods on kept units)"
            blocks.append(Block("image", text=caption, path=images[("seed_variance", pair)],
                                **_drawn(data, pair, "seed_variance")))
    blocks.extend(model_blocks(data, references, *model_images))
    blocks.extend(analysis_blocks(data, analysis_images or {}, image_dir))
    return blocks


TALL_FIGURE = 1000  # px: an analysis figure taller than a screen is folded away


def _height(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.size[1]


def analysis_blocks(data: SuiteData, images: dict[str, list[tuple[str, str]]],
                    image_dir: Path | None = None) -> list[Block]:
    """A section per analysis: each of its tables summarised over seeds, then its registered plots, if any.

    Args:
        data: the suite's results (``data.analyses``: "ANALYSIS/TABLE" -> table).
        images: analysis -> (image file name, caption) pairs from its registered plot.
        image_dir: the folder holding those images now; given, a figure taller than ``TALL_FIGURE`` is folded.

    Returns:
        The blocks (none when the suite ran no analysis).
    """
    by_analysis: dict[str, list[str]] = {}
    for key in data.analyses:
        by_analysis.setdefault(key.split("/")[0], []).append(key)
    blocks = []
    for analysis, keys in by_analysis.items():
        blocks.append(Block("h2", f"Analysis: {analysis}"))
        blocks.append(Block("p", "Computed on each trained network and its validation split; numbers are means "
                                 "over seeds (and over the rows of a seed), with the sample sd over seeds."))
        for key in keys:
            summary = analysis_summary(data.analyses[key])
            blocks.append(Block("table", table=summary.map(_cell), csv=analysis_csv_name(key),
                                fold=f"{key.split('/')[1]}: summary over seeds ({len(summary)} rows; every row of "
                                     "every seed in the CSV)"))
        for name, caption in images.get(analysis, []):
            tall = image_dir is not None and _height(Path(image_dir) / name) > TALL_FIGURE
            blocks.append(Block("image", text=caption, path=name, fold=f"Figure: {caption}" if tall else ""))
    return blocks


def _drawn(data: SuiteData, pair: str, kind: str) -> dict[str, object]:
    """A method figure's axis and the methods it draws (``Block.role`` and ``Block.methods``), from the same
    selection the plot made (:func:`reports.tables.drawn_methods`)."""
    if kind in ("curves", "cost_curves", "seed_variance"):
        return {"role": "units", "methods": tuple(drawn_methods(data, pair)["method"])}
    if kind == "variants":
        return {"role": "units", "methods": tuple(drawn_methods(data, pair, variants=True)["method"])}
    if kind == "curves_weights":
        return {"role": "weights", "methods": tuple(drawn_methods(data, pair, axis=PARAM_AXIS)["method"])}
    return {}


def analysis_csv_name(key: str) -> str:
    """The CSV beside the report that holds an analysis table ("ANALYSIS/TABLE") for every pair and seed."""
    return f"analysis_{file_stem(key.replace('/', '_'))}.csv"


def headline_blocks(data: SuiteData, board: pd.DataFrame) -> list[Block]:
    """The headline: per pair and axis, the best method and whether it beats the runner-up and the best method
    of the other kind beyond seed noise (see :mod:`reports.headline`)."""
    found = headlines(data, board)
    if not found:
        return []
    return [
        Block("h2", "Headline"),
        Block("list", items=tuple(h.sentence() for h in found)),
        Block("p", f"Differences are in AUC. Test: {TEST_NAME} of the per-seed AUCs on the seeds both methods have "
                   f"(beyond seed noise: p < {ALPHA:g}; two tests per line, no correction for multiple comparisons). "
                   "Baselines are compared at their best variant."),
    ]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return MISSING if math.isnan(value) else f"{value:.4g}"
    return str(value)


# plot kind -> function name on reports.plots, looked up at call time (so tests can patch one to fail).
PLOT_FUNCTIONS = {
    "curves": "plot_curves",
    "curves_weights": "plot_weight_curves",
    "variants": "plot_variant_curves",
    "cost_curves": "plot_cost_curves",
    "learning_curves": "plot_learning_curves",
    "mcue": "plot_mcue_grid",
    "index_vs_magnitude": "plot_index_vs_magnitude",
    "correlations": "plot_correlations",
    "layer_curves": "plot_layer_curves",
    "head_maps": "plot_head_maps",
    "seed_variance": "plot_seed_variance",
}


def write_plots(data: SuiteData, folder: Path) -> dict[tuple[str, str], str]:
    """Write every plot of the suite into a folder.

    Args:
        data: the suite's results.
        folder: where the PNGs go.

    Returns:
        (plot kind, pair) -> file name, for each PNG written (each is named <kind>_<pair>.png).
    """
    pairs_by_stem = {file_stem(pair): pair for pair in [*data.pairs, *data.histories["pair"]]}
    images = {}
    for kind, function_name in PLOT_FUNCTIONS.items():
        for path in getattr(plots, function_name)(data, folder):
            pair = pairs_by_stem[Path(path).stem.removeprefix(f"{kind}_")]
            images[(kind, pair)] = Path(path).name
    return images


def write_analysis_plots(data: SuiteData, folder: Path) -> dict[str, list[tuple[str, str]]]:
    """The registered plots of the suite's analyses (``reports.analysis_plots``), written into a folder.

    Returns:
        analysis -> (file name, caption) pairs.
    """
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    for key, table in data.analyses.items():
        analysis, _, name = key.partition("/")
        tables.setdefault(analysis, {})[name] = table
    images = {}
    for analysis, own in tables.items():
        if analysis in ANALYSIS_PLOTS:
            written = ANALYSIS_PLOTS.get(analysis)(own, folder)
            images[analysis] = [(Path(path).name, caption) for path, caption in written]
    return images


COLUMN_FRACTIONS = (0.1, 0.2, 0.5)


def column_fractions(grid: Sequence[float]) -> tuple[float, ...]:
    """The kept fractions that get their own accuracy column: 0.1, 0.2 and 0.5 where the grid has them; for a grid
    with fewer than two of them (a fragile net's grid that starts at 0.3, say), its three lowest fractions below 1."""
    present = tuple(f for f in COLUMN_FRACTIONS if any(math.isclose(f, g) for g in grid))
    if len(present) >= 2 or not grid:
        return present or COLUMN_FRACTIONS
    return tuple(sorted(float(g) for g in grid if g < 1)[:3]) or present


def build_report(
    data: SuiteData,
    out_dir: Path,
    *,
    references: Sequence[dict] | None = None,
    fixed_fractions: Sequence[float] | None = None,
    generated_at: datetime | None = None,
) -> list[Path]:
    """Write the suite's leaderboard report: PNGs, report.md and report.html in ``out_dir``.

    Everything is rendered into a temporary folder beside ``out_dir`` and moved into place at the end, so a failure
    leaves no half-written report.

    Args:
        data: the suite's results.
        out_dir: the output folder (created; files of an earlier report with the same names are replaced).
        references: the paper's figures; None reads ``reports/references.yaml``, [] shows none.
        fixed_fractions: kept fractions whose accuracy gets its own column (None: :func:`column_fractions` of
            the suite's grid).
        generated_at: the time written in the header (now, UTC, if None).

    Returns:
        The written paths (PNGs, the analyses' tables as CSV, then report.md and report.html).

    Raises:
        ReportError: the suite has no finished runs; nothing is written.
    """
    require_runs(data)
    fixed_fractions = column_fractions(data.fractions) if fixed_fractions is None else fixed_fractions
    references = load_references() if references is None else list(references)
    generated_at = generated_at or datetime.now(UTC)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        images = write_plots(data, staging)
        analysis_images = write_analysis_plots(data, staging)
        model_images = write_model_plots(data, staging)
        board = leaderboard(data, fixed_fractions=fixed_fractions, references=references)
        blocks = report_blocks(
            data, board, mcue_summary(data, references), coverage(data), images, references, fixed_fractions,
            generated_at, analysis_images, model_images, staging,
        )
        tables = []
        for key, table in data.analyses.items():
            tables.append(analysis_csv_name(key))
            table.to_csv(staging / tables[-1], index=False)
        (staging / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        title = f"coalition-bench: {data.suite} ({data.profile})"
        (staging / "report.html").write_text(render_html(blocks, title, image_dir=staging), encoding="utf-8")
        extra = [name for pictures in analysis_images.values() for name, _ in pictures]
        extra += [*model_images[0].values(), *model_images[1].values()]
        names = [*sorted(set(images.values()) | set(extra)), *tables, "report.md", "report.html"]
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in names:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
