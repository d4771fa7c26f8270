"""``python -m bench estimators``: power-index estimators per coalition evaluation on real neuron games.

Two kinds of game per pair, both on the validation split (2,000 fixed examples, as the suites use):

- **exact**: ``n`` units (16 by default) of one layer are the players. Every other unit is fixed, kept with
  probability ``context_d`` (about MCUE's d) and else removed, once, from a seeded draw: with all the others kept,
  16 units barely move accuracy. The 2^n coalition values are enumerated once and cached on disk, keyed like a
  checkpoint (pair, training seed, checkpoint key and the game's spec), so every estimator runs on the table.
- **full**: every unit of the network. The truth is a reference: the mean of independent high-budget runs of one
  estimator, cached likewise, with its own error; a run is judged only where the reference is 10x more precise.

Each game is played with ``accuracy`` (the paper's v) and ``neg_loss``. Top-n's test accuracy (the pruning
measure) keeps the top 20 % / 50 % of the players by the estimated values, everything else as in the game, on the
test split. Logged to MLflow: a parent run (kind ``estimators``) with one nested run per (game, index, estimator);
the report is then built from what the store holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.streams import Stream, stream
from methods.estimators.benchmark import (
    ESTIMATORS,
    Cell,
    TableGame,
    Truth,
    enumerate_game,
    exact_index,
    for_index,
    optional_estimators,
    reference_index,
    run_cell,
    top_k,
)
from methods.games.base import Game, RestrictedGame

EXPERIMENT = "estimators"
GAME_KINDS = ("exact", "full")
# The layer whose units are the exact game's players: LeNet-300-100's second hidden layer, LeNet5's first FC layer,
# the text nets' middle layer.
EXACT_GROUPS = {"lenet300-mnist": "relu2", "lenet5-mnist": "relu3", "ffn-emotion": "relu2",
                "ffn-twitter-topic": "relu2"}
# The full game's reference: (estimator, budget per run, runs) per index. Chosen from the exact games' curves:
# see docs/estimators.md and the report's table.
# On lenet300-mnist's full accuracy game, two independent runs at 20,000 evaluations differ by RMSE 1.3e-3
# (permutation, antithetic), 1.3e-3 (Shapley regression), 1.0e-3 (shared beta_d) and 4.8e-4 (beta_d regression),
# against values spread 3.5e-3: so permutation sampling for Shapley and the regression for beta_d. At 4 x 150,000
# and 4 x 100,000 evaluations they judge budgets up to about 6,000 (permutation) and 8,000 (shared): a 2-core CPU
# computes them in about 10 minutes per pair; pass larger ones where there is a GPU.
REFERENCES = {
    "shapley": ("ours:permutation-antithetic", 150_000, 4),
    "banzhaf": ("ours:regression", 100_000, 4),
    "beta": ("ours:regression", 100_000, 4),
}


@dataclass(frozen=True)
class GameSpec:
    """What defines one benchmark game (and its cache key, with the checkpoint's)."""

    pair: str
    kind: str
    metric: str
    training_seed: int = 0
    val_samples: int = 2000
    group: str | None = None
    n_players: int | None = None
    context_d: float | None = None
    selection_seed: int = 0

    @property
    def name(self) -> str:
        if self.kind == "full":
            return f"{self.pair}/full/{self.metric}"
        return f"{self.pair}/{self.group}-{self.n_players}/ctx{self.context_d:g}/{self.metric}"

    def key(self, checkpoint: str) -> str:
        blob = json.dumps({**asdict(self), "checkpoint": checkpoint, "version": 1}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class BuiltGame:
    spec: GameSpec
    game: Game
    test_accuracy: Any  # (keep mask over the players) -> test accuracy, memoised
    info: dict[str, Any]


def _save_npz(path: Path, **arrays: Any) -> None:
    """Writes atomically: a killed run leaves no half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)


def _memo_accuracy(game: Game):
    seen: dict[bytes, float] = {}

    def accuracy(mask: np.ndarray) -> float:
        key = np.packbits(mask).tobytes()
        if key not in seen:
            seen[key] = float(game(mask[None, :])[0])
        return seen[key]

    return accuracy


def build_game(spec: GameSpec, trained: Any, *, progress: bool = True) -> BuiltGame:
    """The game of ``spec`` on a trained pair, from the disk cache when it is there."""
    from tqdm.auto import tqdm

    from bench.pipeline import problem_for, test_game_for
    from datasets.paths import cache_dir

    problem = problem_for(trained, val_samples=spec.val_samples, metric=spec.metric)
    test_game = test_game_for(trained)  # accuracy: Top-n's measure whatever the game's metric
    full = problem.game
    n = full.n_players
    if spec.kind == "full":
        v_empty, v_full = full(np.array([np.zeros(n, bool), np.ones(n, bool)]))
        info = {"n_players": n, "v_empty": float(v_empty), "v_full": float(v_full),
                "description": f"every unit of {spec.pair} ({', '.join(full.group_names)}), {spec.metric} on "
                               f"{spec.val_samples} validation examples"}
        return BuiltGame(spec, full, _memo_accuracy(test_game), info)

    names = list(full.group_names)
    if spec.group not in names:
        raise ValueError(f"{spec.pair} has no unit group {spec.group!r}; groups: {', '.join(names)}")
    members = np.arange(n)[full.group_slices[names.index(spec.group)]]
    if not 1 <= spec.n_players <= len(members):
        raise ValueError(f"{spec.group} has {len(members)} units; cannot make a game of {spec.n_players}")
    rng = stream(spec.selection_seed, Stream.ESTIMATOR_BENCHMARK)
    players = np.sort(rng.choice(members, size=spec.n_players, replace=False))
    is_player = np.zeros(n, bool)
    is_player[players] = True
    context = (rng.random(n) < spec.context_d) & ~is_player
    include, exclude = context, ~context & ~is_player
    restricted = RestrictedGame(full, include=include, exclude=exclude)
    restricted_test = RestrictedGame(test_game, include=include, exclude=exclude)

    path = cache_dir() / "estimator-games" / f"{spec.pair}-{spec.key(trained.metrics['cache_key'])}.npz"
    if path.exists():
        cached = np.load(path)
        values, per_eval = cached["values"], float(cached["seconds_per_evaluation"])
    else:
        with tqdm(total=1 << spec.n_players, desc=f"enumerate {spec.name}", unit="coalition",
                  disable=not progress, dynamic_ncols=True) as bar:
            values, per_eval = enumerate_game(restricted, progress=bar.update)
        _save_npz(path, values=values, seconds_per_evaluation=per_eval, players=players, include=include)
    table = TableGame(values)
    info = {"n_players": spec.n_players, "v_empty": float(values[0]), "v_full": float(values[-1]),
            "seconds_per_evaluation": per_eval, "players": players.tolist(),
            "context_kept": int(include.sum()), "cache": str(path),
            "description": (f"{spec.n_players} random units of {spec.pair}'s {spec.group}; the other "
                            f"{n - spec.n_players} units fixed once, {int(include.sum())} kept (each with "
                            f"probability {spec.context_d:g}); {spec.metric} on {spec.val_samples} validation "
                            f"examples; 2^{spec.n_players} coalitions enumerated at {per_eval * 1e6:.0f} us each")}
    return BuiltGame(spec, table, _memo_accuracy(restricted_test), info)


def top_n_accuracy(built: BuiltGame):
    """(values, kept fraction) -> the test accuracy of the network that keeps the top fraction of the players."""

    def measure(values: np.ndarray, fraction: float) -> float:
        n = len(values)
        mask = np.zeros(n, bool)
        mask[top_k(values, max(1, int(round(fraction * n))))] = True
        return built.test_accuracy(mask)

    return measure


def truth_for(built: BuiltGame, *, index: str, keep_prob: float | None, progress: bool = True,
              reference: tuple[str, int, int] | None = None, cached_only: bool = False) -> Truth:
    """The exact index of a table game, or a full game's reference (cached on disk; with ``cached_only`` a
    missing one is a RuntimeError, not many minutes of computing)."""
    from tqdm.auto import tqdm

    from datasets.paths import cache_dir

    if isinstance(built.game, TableGame):
        return exact_index(built.game, index=index, keep_prob=keep_prob)
    estimator, budget, runs = reference or REFERENCES[index]
    key = hashlib.sha256(json.dumps([built.info["cache_key"], index, keep_prob, estimator, budget, runs]).encode())
    path = cache_dir() / "estimator-games" / f"reference-{key.hexdigest()[:16]}.npz"
    if path.exists():
        cached = np.load(path)
        return Truth(cached["values"], cached["stderr"], False, int(cached["n_evaluations"]), str(cached["text"]))
    if cached_only:
        raise RuntimeError(f"no cached {index} reference for {built.spec.name} ({path}); run "
                           f"`python -m bench estimators --pair {built.spec.pair} --games full --index {index}` first")
    start = time.perf_counter()
    with tqdm(total=runs, desc=f"reference {built.spec.name} {index}", unit="run", disable=not progress,
              dynamic_ncols=True) as bar:
        truth = reference_index(built.game, estimator=estimator, index=index, keep_prob=keep_prob, budget=budget,
                                seeds=range(runs), progress=bar.update)
    built.info.setdefault("seconds_per_evaluation", (time.perf_counter() - start) / truth.n_evaluations)
    _save_npz(path, values=truth.values, stderr=truth.stderr, n_evaluations=truth.n_evaluations,
              text=truth.description)
    return truth


def default_budgets(n_players: int, kind: str) -> list[int]:
    """Powers of two from n to 2^16 (exact games) or from the first one above n to 2^13 (full games: the
    reference judges up to about 6,000-8,000 evaluations, and a CPU runs the grid in about half an hour per pair)."""
    from methods.estimators.benchmark import log_budgets

    if kind == "exact":
        return log_budgets(n_players, 1 << 16)
    low = 1 << int(np.ceil(np.log2(n_players + 1)))
    return log_budgets(low, max(low, 1 << 13))


def run_grid(built: BuiltGame, truth: Truth, *, index: str, keep_prob: float | None, estimators: Sequence[str],
             budgets: Sequence[int], seeds: Sequence[int], time_limit: float, bar: Any = None
             ) -> tuple[list[Cell], list[str]]:
    """Every estimator x budget x seed on one game and index; returns the cells and what was skipped, with why.

    An estimator is stopped once a single run takes longer than ``time_limit`` seconds: its remaining seeds at
    that budget and every larger budget are skipped (its last budget may then have fewer seeds than the others).
    """
    cells, skipped = [], []
    measure = top_n_accuracy(built)
    n = built.game.n_players
    for name in estimators:
        spec = ESTIMATORS.get(name)
        too_small = [b for b in budgets if b < spec.min_budget(n)]
        if too_small:
            skipped.append(f"{name} at {', '.join(map(str, too_small))}: needs at least {spec.min_budget(n)} "
                           "evaluations")
        runs = [(b, s) for b in budgets if b >= spec.min_budget(n) for s in seeds]
        if bar is not None:
            bar.update(len(too_small) * len(seeds))
        for done, (budget, seed) in enumerate(runs):
            cell = run_cell(spec, built.game, truth, game_name=built.spec.name, index=index, keep_prob=keep_prob,
                            budget=budget, seed=seed, top_n_accuracy=measure)
            cells.append(cell)
            if bar is not None:
                bar.update(1)
            if cell.seconds > time_limit and done + 1 < len(runs):
                skipped.append(f"{name}: stopped after one run took {cell.seconds:.0f} s (over {time_limit:g} s) "
                               f"at budget {budget}, seed {seed}; its {len(runs) - done - 1} later runs not made")
                if bar is not None:
                    bar.update(len(runs) - done - 1)
                break
    return cells, skipped


def mcue_keep_prob(trained: Any, *, seed: int, output: str) -> float:
    """MCUE's d on the accuracy game, as the suites compute it (32 sub-networks x 16 instances per cell)."""
    from bench.pipeline import problem_for, run_mcue

    return run_mcue(problem_for(trained, val_samples=2000), seed=seed, samples=32, instances=16,
                    output=output).keep_prob


def log_results(tracker: Any, parent_id: str, cells: pd.DataFrame, games: dict[str, dict[str, Any]],
                skipped: Sequence[str], *, final: bool = True) -> None:
    """One nested run per (game, index, d, estimator): its cells, and per-budget means as step metrics; then the
    games and what was skipped so far on the parent, which stays RUNNING unless ``final``."""
    keys = ["game", "index", "keep_prob", "estimator"]
    for (game, index, keep_prob, estimator), group in cells.groupby(keys, dropna=False, sort=False):
        means = group.groupby("budget").mean(numeric_only=True)
        step_metrics = {f"{m}_mean": [(int(b), float(v)) for b, v in means[m].items()]
                        for m in ("mse", "spearman", "kendall", "precision_10", "precision_25", "seconds",
                                  "topn_acc_20", "topn_acc_50") if m in means}
        d = None if pd.isna(keep_prob) else float(keep_prob)
        tracker.log_run(parent_id=parent_id, run_name=f"{estimator} {index} {game}",
                        tags={"kind": "estimator", "game": game, "index": index, "estimator": estimator,
                              "library": str(group["library"].iloc[0])},
                        params={"game": game, "index": index, "keep_prob": d, "estimator": estimator,
                                "budgets": sorted(group["budget"].unique().tolist()),
                                "seeds": sorted(group["seed"].unique().tolist())},
                        metrics={"n_cells": len(group), "seconds_total": float(group["seconds"].sum())},
                        step_metrics=step_metrics, artifacts={"cells.csv": group})
    tracker.close_parent(parent_id, status="FINISHED" if final else "RUNNING",
                         artifacts={"games.json": games, "skipped.json": list(skipped)})


def load_results(tracker: Any, parent_id: str | None = None) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """The newest (or the given) estimators invocation's cells and games, read back from the store."""
    from reports.data import ReportError

    parents = [r for r in tracker.runs("tags.kind = 'estimators'") if parent_id in (None, r.run_id)]
    if not parents:
        raise ReportError(f"no `bench estimators` runs in experiment {tracker.experiment_name!r} at {tracker.uri}; "
                          "run `python -m bench estimators` first")
    parent = parents[0]
    children = tracker.runs(f"tags.mlflow.parentRunId = '{parent.run_id}'")
    frames = [tracker.read_csv(r.run_id, "cells.csv") for r in children]
    frames = [f for f in frames if f is not None]
    if not frames:
        raise ReportError(f"the estimators run {parent.run_id} has no finished estimator runs")
    return parent.run_id, pd.concat(frames, ignore_index=True), tracker.read_json(parent.run_id, "games.json") or {}


CELL_KEY = ["game", "index", "keep_prob", "estimator", "budget", "seed"]


def load_all_results(tracker: Any, parent_ids: Sequence[str] = ()) -> tuple[list[str], pd.DataFrame, dict[str, Any]]:
    """Every estimators invocation that is not running (or the ``parent_ids`` given), merged.

    Where two ran the same cell (game, index, d, estimator, budget, seed), the newer one's; a game's description
    merges its truths, newer over older. A stopped (FAILED) invocation counts with the grids it finished.
    Returns the parent ids used (newest first), the cells and the games."""
    from reports.data import ReportError

    parents = [r for r in tracker.runs("tags.kind = 'estimators'")  # a stopped one keeps its finished grids
               if (r.run_id in parent_ids if parent_ids else r.status != "RUNNING")]
    missing = sorted(set(parent_ids) - {r.run_id for r in parents})
    if missing:
        raise ReportError(f"no `bench estimators` run {', '.join(missing)} in experiment {tracker.experiment_name!r}")
    if not parents:
        raise ReportError(f"no `bench estimators` runs (not still running) in experiment "
                          f"{tracker.experiment_name!r} at {tracker.uri}; run `python -m bench estimators` first")
    frames, games = [], {}
    for parent in reversed(parents):  # oldest first: newer entries overwrite
        try:
            _, cells, stored = load_results(tracker, parent.run_id)
        except ReportError:
            continue  # an invocation that finished no estimator run
        frames.append(cells)
        for name, info in stored.items():
            games.setdefault(name, {}).update(info)
    if not frames:
        raise ReportError("none of the estimators invocations has a finished estimator run")
    cells = pd.concat(frames[::-1], ignore_index=True)  # newest first, so that keep="first" keeps the newest
    key = cells[CELL_KEY].astype(str)
    cells = cells[~key.duplicated(keep="first")].reset_index(drop=True)
    return [p.run_id for p in parents], cells, games


def report_from_store(args: Any) -> int:
    """``bench estimators --from-store``: the report of every invocation not running (or ``--parent``); runs nothing."""
    from bench.tracking import Tracker
    from reports.estimators import write_estimator_report

    tracker = Tracker(args.tracking_uri, args.experiment or EXPERIMENT, create=False)
    used, cells, games = load_all_results(tracker, args.parent)
    out = Path(args.out or "reports/out/estimators")
    path = write_estimator_report(cells, games, out, title="Estimator quality per coalition evaluation")
    print(f"report: {path} ({len(cells)} estimator runs from {len(used)} invocation(s): {', '.join(used)})")
    return 0


def main(args: Any) -> int:
    """The ``estimators`` command (arguments parsed in bench.cli)."""
    from tqdm.auto import tqdm

    from bench.tracking import Tracker, git_commit
    from datasets.training import train_pair
    from reports.estimators import write_estimator_report

    unavailable = optional_estimators()
    indices_wanted = args.index
    games_wanted = args.games
    pairs = args.pair
    budgets_arg = args.budgets
    tracker = Tracker(args.tracking_uri, args.experiment or EXPERIMENT)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode() +
                                 str(time.time()).encode()).hexdigest()[:16]
    parent_id = tracker.open_parent(suite_hash=config_hash, run_name="estimators",
                                    tags={"git_commit": git_commit()}, params=config,
                                    artifacts={"config.json": config, "unavailable.json": unavailable},
                                    kind="estimators")
    skipped: list[str] = [f"{name}: {why}" for name, why in unavailable.items()]
    games: dict[str, dict[str, Any]] = {}
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a killed run is marked FAILED, not RUNNING
    try:
        for pair in pairs:
            trained = train_pair(pair, seed=args.training_seed, data_dir=args.data_dir, device=args.device,
                                 progress=not args.no_progress)
            keep_prob_beta = (args.keep_prob if args.keep_prob is not None else
                              mcue_keep_prob(trained, seed=args.training_seed, output=args.mcue_output)) \
                if "beta" in indices_wanted else None
            for kind in games_wanted:
                for metric in args.metric:
                    spec = GameSpec(pair, kind, metric, training_seed=args.training_seed,
                                    group=EXACT_GROUPS[pair] if kind == "exact" else None,
                                    n_players=args.players if kind == "exact" else None,
                                    context_d=args.context_d if kind == "exact" else None)
                    built = build_game(spec, trained, progress=not args.no_progress)
                    built.info["cache_key"] = spec.key(trained.metrics["cache_key"])
                    for index in indices_wanted:
                        d = {"shapley": None, "banzhaf": 0.5, "beta": keep_prob_beta}[index]
                        names = [s.name for s in for_index(index) if s.name not in unavailable
                                 and (not args.estimators or any(_match(s.name, g) for g in args.estimators))]
                        estimator, budget, runs = REFERENCES[index]
                        reference = (estimator, args.reference_budget or budget, args.reference_runs or runs)
                        truth = truth_for(built, index=index, keep_prob=d, progress=not args.no_progress,
                                          reference=reference)
                        budgets = budgets_arg or default_budgets(built.game.n_players, kind)
                        games.setdefault(spec.name, {}).update(  # one entry per game, a truth per index
                            {**built.info, f"truth_{index}": truth.description, f"truth_rmse_{index}": truth.rmse,
                             f"truth_evaluations_{index}": truth.n_evaluations})
                        with tqdm(total=len(names) * len(budgets) * len(args.seeds), unit="run",
                                  desc=f"{spec.name} {index}", disable=args.no_progress, dynamic_ncols=True) as bar:
                            cells, why = run_grid(built, truth, index=index, keep_prob=d, estimators=names,
                                                  budgets=budgets, seeds=args.seeds, time_limit=args.time_limit,
                                                  bar=bar)
                        skipped += [f"{spec.name} {index}: {w}" for w in why]
                        if cells:  # logged grid by grid: a stopped invocation keeps what it finished
                            log_results(tracker, parent_id, pd.DataFrame([c.row() for c in cells]), games, skipped,
                                        final=False)
        tracker.close_parent(parent_id, artifacts={"games.json": games, "skipped.json": skipped})
    except BaseException:
        tracker.set_status(parent_id, "FAILED")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    _, stored, stored_games = load_results(tracker, parent_id)
    out = Path(args.out or "reports/out/estimators")
    path = write_estimator_report(stored, stored_games, out, title="Estimator quality per coalition evaluation")
    tracker.log_files(parent_id, sorted(p for p in out.iterdir() if p.is_file()), "report")
    print(f"{len(stored)} estimator runs logged to {tracker.uri} (experiment {tracker.experiment_name!r}, parent "
          f"{parent_id}); report: {path}")
    for line in skipped:
        print(f"skipped: {line}")
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _match(name: str, pattern: str) -> bool:
    from fnmatch import fnmatch

    return fnmatch(name, pattern) or fnmatch(name.split(":", 1)[-1], pattern)
