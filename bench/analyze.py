"""``bench analyze ANALYSIS PAIR --seed N``: one registered analysis on one trained pair, outside any suite.

It writes what a suite run logs for that analysis (``analysis_ANALYSIS_TABLE.csv`` per table, with pair and seed
columns) plus the analysis's registered plots and a ``report.md`` / ``report.html`` of its tables, into one folder.
Without a suite there are no method scores, so parts of an analysis that want them (e.g. correlations with power
indices) are empty.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

from bench.streams import Stream, stream


def analyze(analysis: str, pair_name: str, *, seed: int, out_dir: Path, data_dir: str | None = None,
            device: str = "auto", download: bool = False, val_samples: int | None = None,
            params: dict | None = None, progress: bool = True) -> list[Path]:
    """Runs one analysis on one trained pair and seed and writes its tables, plots and a small report.

    Args:
        analysis: a registered analysis; params: its parameters.
        pair_name: a registered pair (trained, or loaded from the checkpoint cache).
        seed: the training seed.
        out_dir: the output folder (written whole at the end: a failure leaves nothing half-written).
        val_samples: the same fixed validation subset a suite's ``val_samples`` picks (None: the whole split).

    Returns:
        The written files.
    """
    from bench.pipeline import problem_for
    from datasets.training import initial_model, train_pair
    from methods.analyses.base import AnalysisInput, build_analysis
    from reports.data import SuiteData
    from reports.render import analysis_blocks, analysis_csv_name, render_html, render_markdown, write_analysis_plots

    runner = build_analysis(analysis, **(params or {}))  # a bad name or parameter fails before any work
    trained = train_pair(pair_name, seed=seed, data_dir=data_dir, device=device, download=download,
                         progress=progress)
    problem = problem_for(trained, val_samples=val_samples)
    splits = trained.splits
    data = AnalysisInput(
        model=trained.model,
        initial=initial_model(trained.pair, seed=seed, input_shape=splits.input_shape,
                              num_classes=splits.num_classes).to(trained.device),
        units=tuple(trained.pair.units), groups=problem.groups, x=problem.x, y=problem.y)
    result = runner(data, rng=stream(seed, Stream.ANALYSIS))
    tables = {f"{analysis}/{name}": pd.DataFrame(records).pipe(_keyed, pair_name, seed)
              for name, records in result.tables.items()}
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for key, table in tables.items():
            table.to_csv(staging / analysis_csv_name(key), index=False)  # the name the report links
        suite_data = SuiteData(suite=f"analyze {analysis}", profile="single", parent_run_id=None, fractions=[],
                               analyses=tables)
        images = write_analysis_plots(suite_data, staging)
        blocks = analysis_blocks(suite_data, images, staging)
        from reports.render import Block

        header = [Block("h1", f"{analysis} on {pair_name}, seed {seed}"),
                  Block("p", "Headline metrics: " + ", ".join(f"{k} = {v:.3g}" for k, v in result.metrics.items()))]
        (staging / "report.md").write_text(render_markdown([*header, *blocks]), encoding="utf-8")
        html = render_html([*header, *blocks], f"{analysis}: {pair_name}", image_dir=staging)
        (staging / "report.html").write_text(html, encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for path in sorted(staging.iterdir()):
            target = out_dir / path.name
            path.replace(target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keyed(frame: pd.DataFrame, pair: str, seed: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "seed", seed)
    frame.insert(0, "pair", pair)
    return frame
