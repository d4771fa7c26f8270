"""The report's models section: trained networks compared per task (NEUROGAME against its baselines).

For each task: a leaderboard of its pairs (test accuracy and macro F1, mean ± sd over seeds, validation loss at the
kept epoch, size and cost), the paper's figures beside it (marked when they come from another dataset), every
paired comparison (bootstrap over seeds and test examples), per-class precision / recall / F1, learning curves with
bands, and NEUROGAME's glass-box maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.data import SuiteData
from reports.figures import file_stem
from reports.format import MISSING, Block, format_count, format_mean_sd
from reports.plots_curves import plot_task_learning_curves
from reports.tables import class_summary, model_leaderboard, paired_comparisons

MODEL_METRIC = "test_accuracy"
RESAMPLES = 2000
COMPARISON_NOTE = (
    "Paired comparisons: A is the better-ranked network. Δ = mean over shared seeds of accuracy(A) − accuracy(B) on "
    "the same test examples; the 95 % interval is a paired bootstrap (2,000 resamples) that redraws the seeds and "
    "the test examples, so it holds both the training-seed noise and the finite test split. 'beyond noise' = the "
    "interval excludes 0. With a handful of seeds the seed part of the bootstrap is coarse (3 seeds give 10 "
    "distinct draws), so read a verdict near the edge as indicative."
)


def paper_figures(references: Sequence[dict], model: str, task: str) -> str:
    """The paper's test accuracy for a model, marked with its dataset when that is not this task's."""
    cells = []
    for reference in references:
        if reference["method"] != model or reference["metric"] != MODEL_METRIC:
            continue
        where = str(reference.get("note", "")).split(";")[0].strip()
        same = where and where.lower().split()[0] in task.lower() and where.split()[-1].lower() in task.lower()
        cells.append(f"{reference['value']:.4f}" + ("" if same else f" ({where}: a different dataset)"))
    return "; ".join(cells)


def leaderboard_table(board: pd.DataFrame, references: Sequence[dict]) -> pd.DataFrame:
    """One task's leaderboard with every cell as text."""
    rows = []
    for rank, row in enumerate(board.itertuples(index=False), start=1):
        rows.append({
            "rank": str(rank),
            "pair": row.pair,
            "model": row.model,
            "seeds": str(row.n_seeds),
            "test accuracy": format_mean_sd(row.test_accuracy, row.test_accuracy_sd, 3),
            "macro F1": format_mean_sd(row.test_macro_f1, row.test_macro_f1_sd, 3),
            "val loss (kept epoch)": format_mean_sd(row.val_loss, row.val_loss_sd, 3),
            "parameters": format_count(row.n_parameters),
            "s / epoch": MISSING if pd.isna(row.seconds_per_epoch) else f"{row.seconds_per_epoch:.1f}",
            "epochs": MISSING if pd.isna(row.epochs) else f"{row.epochs:g}",
            "units passed": MISSING if pd.isna(row.pass_fraction) else f"{row.pass_fraction:.2f}",
            "paper": paper_figures(references, row.model, row.task) or MISSING,
        })
    return pd.DataFrame(rows)


def comparison_table(comparisons: pd.DataFrame, resamples: int = RESAMPLES) -> pd.DataFrame:
    rows = []
    for row in comparisons.itertuples(index=False):
        rows.append({
            "A": row.a, "B": row.b, "Δ accuracy": f"{row.diff:+.4f}",
            "95 % interval": f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}]",
            # the bootstrap resolves p to 1 / resamples: below that it says so rather than print 0
            "p": f"{row.p:.3f}" if row.p * resamples >= 1 else f"< {1 / resamples:.4f}",
            "verdict": ("A better, beyond noise" if row.diff > 0 else "B better, beyond noise")
            if row.beyond_noise else "within noise",
            "seeds × examples": f"{row.n_seeds} × {row.n_examples:,}",
        })
    return pd.DataFrame(rows)


def class_table(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in summary.itertuples(index=False):
        rows.append({
            "class": row[0], "pair": row.pair, "support": f"{row.support:,.0f}",
            "precision": format_mean_sd(row.precision, row.precision_sd, 3),
            "recall": format_mean_sd(row.recall, row.recall_sd, 3), "F1": format_mean_sd(row.f1, row.f1_sd, 3),
        })
    return pd.DataFrame(rows)


def write_model_plots(data: SuiteData, folder: Path) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """The task learning curves and the glass-box PNGs (first stored seed of each pair), written into ``folder``.

    Returns:
        task -> learning-curve file name, and (pair, stage) -> glass-box file name.
    """
    curves = {}
    stems = {file_stem(str(task)): task for task in data.models["task"].unique()}
    for path in plot_task_learning_curves(data, folder):
        curves[stems[Path(path).stem.removeprefix("task_curves_")]] = Path(path).name
    glass = {}
    for (pair, seed, stage), image in sorted(data.glass_box.items()):
        if (pair, stage) in glass:
            continue
        name = f"glass_box_{file_stem(pair)}_s{seed}_{file_stem(stage)}.png"
        (Path(folder) / name).write_bytes(image)
        glass[(pair, stage)] = name
    return curves, glass


def model_blocks(data: SuiteData, references: Sequence[dict], curves: dict[str, str],
                 glass: dict[tuple[str, str], str]) -> list[Block]:
    """The models section (none when the store holds no training runs)."""
    board = model_leaderboard(data)
    if board.empty:
        return []
    comparisons = paired_comparisons(data, resamples=RESAMPLES)
    blocks = [
        Block("h2", "Trained models by task"),
        Block("p", "Each row is a trained network (a pair), ranked within its task by mean test accuracy. Test "
                   "accuracy and macro F1 are on the test split; the validation loss is at the epoch whose weights "
                   "were kept (early stopping on the validation split, else the last epoch); values are mean ± "
                   "sample sd over seeds. s / epoch: mean training seconds per epoch on the device the suite ran "
                   "on (with the validation pass). Units passed: the share of a NEUROGAME layer's input units it let "
                   "through, mean over training epochs. 'paper' = NEUROGAME's stated figure for that model."),
    ]
    for task, rows in board.groupby("task", sort=False):
        blocks.append(Block("h3", str(task)))
        blocks.append(Block("table", table=leaderboard_table(rows, references)))
        task_comparisons = comparisons[comparisons["task"] == task]
        if len(task_comparisons):
            blocks.append(Block("p", COMPARISON_NOTE))
            blocks.append(Block("table", table=comparison_table(task_comparisons)))
        classes = class_summary(data, list(rows["pair"]))
        if len(classes):
            table = class_table(classes)
            blocks.append(Block("table", table=table, fold=f"Per-class test precision, recall and F1 (mean ± sd over "
                                                            f"seeds; {len(table)} rows)"))
        if task in curves:
            blocks.append(Block("image", text=f"{task}: validation loss and accuracy per epoch, mean ± 1 sd over "
                                              "seeds (training loss dashed).", path=curves[task]))
        for pair in rows["pair"]:
            for (glass_pair, stage), name in glass.items():
                if glass_pair == pair:
                    blocks.append(Block("image", path=name, text=(
                        f"{pair}, {stage}: glass-box maps of the first test faces (first seed). Per face, the channel "
                        "that passed the most units: its activation map, each coalition's energy and Gibbs payoff, "
                        "each unit's Shapley value in its winning coalition, and the strong units that propagate.")))
    return blocks
