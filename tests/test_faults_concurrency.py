"""Concurrent and interrupted invocations on one store: every planned run is stored once, FINISHED, with the
numbers of an undisturbed run."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REGISTER_TINY_PAIR, run_argv, stored_runs, tiny_suite

import bench.groups
from bench.claims import CLAIM_KIND
from bench.cli import main
from bench.plan import plan
from bench.selection import parse_seeds, select
from bench.suite import load_suite

pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")
ROOT = Path(__file__).resolve().parent.parent
RESULT_KINDS = ("train", "mcue", "method")
TIMING = ("second", "latency")  # metrics that measure the machine, not the method


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.chdir(tmp_path)
    return tiny_suite(tmp_path, tiny_mnist)


def _check_once_finished(db: Path, expected: int) -> list[tuple[str, str, dict[str, str]]]:
    runs = stored_runs(db)
    results = [r for r in runs if r[2].get("kind") in RESULT_KINDS]
    hashes = [r[2]["config_hash"] for r in results]
    assert len(hashes) == len(set(hashes)) == expected, sorted(hashes)
    assert all(status == "FINISHED" for _, status, _ in results)
    assert not [r for r in runs if r[2].get("kind") == CLAIM_KIND]  # every claim released or taken over
    return results


def _metrics(db: Path) -> dict[str, list[tuple[str, int, float]]]:
    """config hash -> its run's (metric, step, value) series, the timings left out."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT m.run_uuid, m.key, m.step, m.value FROM metrics m JOIN runs r "
                           "ON r.run_uuid = m.run_uuid WHERE r.lifecycle_stage = 'active'").fetchall()
    by_run = {run_id: tags.get("config_hash") for run_id, _, tags in stored_runs(db)
              if tags.get("kind") in RESULT_KINDS}
    out: dict[str, list[tuple[str, int, float]]] = {}
    for run_id, key, step, value in rows:
        if run_id in by_run and not any(word in key for word in TIMING):
            out.setdefault(by_run[run_id], []).append((key, step, value))
    return {h: sorted(series) for h, series in out.items()}


def _finished(db: Path) -> int:
    """Finished result runs in a store another process is writing (0 before its schema exists)."""
    if not db.exists():  # connecting would create an empty file where the store belongs
        return 0
    try:
        return sum(status == "FINISHED" and tags.get("kind") in RESULT_KINDS for _, status, tags in stored_runs(db))
    except sqlite3.Error:
        return 0


def _child(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    script = REGISTER_TINY_PAIR + textwrap.dedent(f"""
        import sys
        from bench.cli import main
        sys.exit(main({argv!r}))
    """)
    env = {**os.environ, **(env or {}), "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_an_interrupted_suite_is_marked_killed_and_releases_its_claims(tiny, monkeypatch, capsys):
    calls = []
    real = bench.groups._method_run

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM (which the CLI turns into the same unwinding)
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.groups, "_method_run", interrupted)
    assert main(run_argv(tiny)) == 130
    runs = stored_runs(tiny["db"])
    assert [status for _, status, tags in runs if tags.get("kind") == "suite"] == ["KILLED"]
    assert not [r for r in runs if r[2].get("kind") == CLAIM_KIND]
    monkeypatch.setattr(bench.groups, "_method_run", real)
    assert main(run_argv(tiny)) == 0
    _check_once_finished(tiny["db"], len(plan(load_suite(tiny["suite"]))))


@pytest.mark.slow
def test_two_invocations_with_other_filters_compute_each_run_once(tiny):
    """A full invocation and a filtered one, started together on a brand-new store: the filtered one's runs are a
    subset of the full one's, and neither computes a run the other holds (nor trips over the schema's creation)."""
    full = run_argv(tiny, "--seeds", "0-3")
    filtered = run_argv(tiny, "--seeds", "0-3", "--methods", "random,wmp")
    procs = [_child(full, tiny["db"].parent), _child(filtered, tiny["db"].parent)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    expected = len(plan(select(load_suite(tiny["suite"]), seeds=parse_seeds("0-3"))))
    _check_once_finished(tiny["db"], expected)
    parents = [status for _, status, tags in stored_runs(tiny["db"]) if tags.get("kind") == "suite"]
    assert parents == ["FINISHED", "FINISHED"]


@pytest.mark.slow
def test_the_smoke_suite_killed_at_random_points_ends_as_if_undisturbed(tmp_path):
    """kill -9, SIGTERM and SIGINT at random moments, five times in a row on one store, each followed by a rerun;
    then every planned run is stored once, FINISHED, with the metrics of an undisturbed run."""
    data = os.environ.get("COALITION_BENCH_DATA")
    if not data or not (Path(data) / "mnist").exists():
        pytest.skip("set COALITION_BENCH_DATA to the staged data root to run the real-data smoke suite")

    def start(store: Path, cache: Path) -> subprocess.Popen:
        argv = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--tracking-uri", f"sqlite:///{store}",
                "--no-progress", "--no-report"]
        env = {**os.environ, "COALITION_BENCH_CACHE": str(cache),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    expected = len(plan(load_suite("smoke")))
    calm = start(tmp_path / "calm.db", tmp_path / "calm-cache")
    assert calm.wait(timeout=600) == 0, calm.stderr.read().decode()[-2000:]
    reference = _metrics(tmp_path / "calm.db")
    assert len(reference) == expected

    store, cache = tmp_path / "disturbed.db", tmp_path / "disturbed-cache"
    rng = random.Random(2026)  # the kill points; the suite's own seeds are untouched
    hits = 0
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGTERM):
        # A random point in the rerun's own work: after 0 to 3 more finished runs, then 0 to 3 s more (so a kill
        # lands in start-up, training, a method's computation or the writing of its run).
        target = _finished(store) + rng.randint(0, 3)
        proc = start(store, cache)
        deadline = time.monotonic() + 300
        while proc.poll() is None and _finished(store) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 3.0))
        if proc.poll() is None:
            proc.send_signal(sig)
            hits += 1
        code = proc.wait(timeout=600)
        assert code in (0, 128 + sig, -sig, 130), proc.stderr.read().decode()[-2000:]
        if store.exists():  # never two finished copies, even mid-way
            finished = [t["config_hash"] for _, status, t in stored_runs(store)
                        if t.get("kind") in RESULT_KINDS and status == "FINISHED"]
            assert len(finished) == len(set(finished))
    assert hits >= 4  # the kills landed on a running suite
    final = start(store, cache)
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()[-2000:]
    _check_once_finished(store, expected)
    assert _metrics(store) == reference
    assert all(status == "FINISHED" for _, status, t in stored_runs(store) if t.get("kind") == "suite")


def test_waiting_for_another_process_does_not_redo_the_models_work(tiny, tmp_path, monkeypatch):
    """While a method is held elsewhere, the training run (whose analysis reads every method's scores) waits too;
    each poll must not retrain, rebuild the games or rerun MCUE. The holder dies; its run is taken over."""
    import yaml

    from bench import pipeline
    from bench.runner import run_suite
    from bench.tracking import Tracker

    spec = yaml.safe_load(tiny["suite"].read_text())
    spec.update(seeds=[0], methods=[m for m in spec["methods"] if m["name"] in ("wmp", "random")],
                analyses=[{"name": "microstructure", "params": {"ks_samples": 9, "bootstrap": 20}}])
    tiny["suite"].write_text(yaml.safe_dump(spec))
    suite = load_suite(tiny["suite"])
    held = next(s for s in plan(suite) if s.method == "wmp")
    tracker = Tracker(tiny["uri"], "tiny")
    rival = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])
    tracker.start_run(run_name="rival", tags={"kind": CLAIM_KIND, "config_hash": held.config_hash,
                                              "pid": str(rival.pid), "host": socket.gethostname(),
                                              "claim_owner": "rival"})
    calls = []
    real = pipeline.run_mcue
    monkeypatch.setattr(pipeline, "run_mcue", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    outcome = run_suite(suite, tracker, data_dir=str(tiny["data"]), progress=False, poll_seconds=0.3)
    rival.wait()
    assert outcome.finished == len(plan(suite)) and not outcome.failed
    assert len(calls) == 2  # the first pass, and the pass that took the dead holder's run over
    _check_once_finished(tiny["db"], len(plan(suite)))
