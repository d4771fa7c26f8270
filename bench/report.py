"""``bench report``: a suite's leaderboard report from what the tracking store holds (never recomputes a method)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.frames import load_frames
from bench.runner import aggregates
from bench.tracking import Tracker
from reports.data import CORRELATION_COLUMNS, ReportError, SuiteData


def load_suite_data(tracker: Tracker, suite: str, *, profile: str | None = None,
                    parent_id: str | None = None) -> SuiteData:
    """The results of a suite's newest invocation (or of ``parent_id``) as DataFrames.

    Raises:
        ReportError: the store holds no invocation of the suite (under that profile).
    """
    parents = [r for r in tracker.runs(f"tags.kind = 'suite' AND tags.suite = '{suite}'")
               if (profile is None or r.tags.get("profile") == profile) and (parent_id in (None, r.run_id))]
    if not parents:
        under = f" with profile {profile!r}" if profile else ""
        raise ReportError(f"no runs of suite {suite!r}{under} in experiment {tracker.experiment_name!r} at "
                          f"{tracker.uri}; run `python -m bench run --suite {suite}` first")
    # Prefer the newest invocation that ran the suite as written over a filtered or tuned one.
    parent = next((r for r in parents if r.tags.get("scope", "full") == "full"), parents[0])
    plan = tracker.read_json(parent.run_id, "plan.json") or []
    resolved = tracker.read_json(parent.run_id, "suite.json") or {}
    frames = load_frames(tracker, [item["config_hash"] for item in plan])
    correlations = tracker.read_csv(parent.run_id, "rank_correlations.csv")
    if correlations is None:  # the invocation was killed before its aggregates: compute them from the runs
        correlations = aggregates(frames)[1]["rank_correlations.csv"]
    if correlations.empty:
        correlations = pd.DataFrame(columns=list(CORRELATION_COLUMNS))
    return SuiteData(suite=suite, profile=parent.tags.get("profile", ""), parent_run_id=parent.run_id,
                     fractions=list(resolved.get("fractions", [])), correlations=correlations, **frames)


def report_suite(tracker: Tracker, suite: str, out_dir: Path, *, profile: str | None = None,
                 parent_id: str | None = None) -> list[Path]:
    """Builds the report into ``out_dir`` and logs its files on the suite's parent run (under ``report/``)."""
    from reports import build_report

    data = load_suite_data(tracker, suite, profile=profile, parent_id=parent_id)
    paths = build_report(data, Path(out_dir))
    tracker.log_files(data.parent_run_id, paths, "report")
    return paths
