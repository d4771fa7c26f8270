"""A suite on Ray workers: the serial numbers, every run once, and clean stops (worker death, SIGTERM, a second
invocation, a Ray that is missing or unreachable)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_argv, stored_runs, tiny_suite
from test_faults_concurrency import RESULT_KINDS, ROOT, _check_once_finished, _child, _finished, _metrics

from bench.cli import main
from bench.plan import plan
from bench.selection import parse_seeds, select
from bench.suite import load_suite

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    monkeypatch.chdir(tmp_path)
    return tiny_suite(tmp_path, tiny_mnist)


def _store(tiny: dict, name: str) -> dict:
    db = tiny["db"].parent / f"{name}.db"
    return {**tiny, "db": db, "uri": f"sqlite:///{db}"}


def _ray_workers() -> list[int]:
    """Pids of this machine's Ray workers that are computing a group (their process title says so)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::bench.group"):
                pids.append(int(entry.name))
    return pids


def test_two_workers_give_the_serial_numbers_at_equal_threads(tiny, tmp_path, monkeypatch):
    """Serial with one torch thread, and two Ray workers of one thread each (this machine's 2 cores), each from its
    own empty checkpoint cache: every metric point of every run is bit-identical, and every run is stored once."""
    serial, parallel = _store(tiny, "serial"), _store(tiny, "parallel")
    expected = len(plan(load_suite(tiny["suite"])))
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "cache-serial"))
    assert main(run_argv(serial, "--threads", "1")) == 0
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "cache-parallel"))
    assert main(run_argv(parallel, "--workers", "2", "--threads", "1")) == 0
    _check_once_finished(parallel["db"], expected)
    reference = _metrics(serial["db"])
    assert len(reference) == expected
    assert _metrics(parallel["db"]) == reference
    tags = [t for _, _, t in stored_runs(parallel["db"])]
    assert {t["torch_threads"] for t in tags if t.get("kind") in RESULT_KINDS} == {"1"}
    assert "local Ray" in next(t["executor"] for t in tags if t.get("kind") == "suite")
    assert not ray.is_initialized()  # the local Ray is stopped with the suite


def test_the_smoke_suite_on_two_workers_gives_the_serial_numbers(tmp_path):
    data = os.environ.get("COALITION_BENCH_DATA")
    if not data or not (Path(data) / "mnist").exists():
        pytest.skip("set COALITION_BENCH_DATA to the staged data root to run the real-data smoke suite")
    stores = {}
    for name, extra in (("serial", ["--threads", "1"]), ("parallel", ["--workers", "2"])):
        stores[name] = tmp_path / f"{name}.db"
        argv = [sys.executable, "-m", "bench", "run", "--suite", "smoke", "--tracking-uri", f"sqlite:///{stores[name]}",
                "--no-progress", "--no-report", *extra]
        env = {**os.environ, "COALITION_BENCH_CACHE": str(tmp_path / f"cache-{name}"),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    expected = len(plan(load_suite("smoke")))
    _check_once_finished(stores["parallel"], expected)
    assert _metrics(stores["parallel"]) == _metrics(stores["serial"])


def test_a_killed_worker_is_retried_and_its_runs_appear_once(tiny, tmp_path, monkeypatch):
    """kill -9 of a worker in the middle of its group: Ray runs the group again on another worker, the driver drops
    what it already wrote, and the store ends with every run once, FINISHED, with the undisturbed numbers."""
    # Four groups on two workers: when the first run is written, groups are still computing or waiting (with two,
    # both could end while the driver writes it, on a loaded machine).
    seeds = ["--seeds", "0-3"]
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "cache-calm"))
    calm = _store(tiny, "calm")
    assert main(run_argv(calm, "--threads", "1", *seeds)) == 0
    disturbed = _store(tiny, "disturbed")
    env = {"COALITION_BENCH_CACHE": str(tmp_path / "cache-disturbed")}
    proc = _child(run_argv(disturbed, "--workers", "2", *seeds), tmp_path, env)
    deadline, killed = time.monotonic() + 120, None
    while proc.poll() is None and time.monotonic() < deadline and killed is None:
        busy = _ray_workers()
        if busy and _finished(disturbed["db"]) >= 1:  # mid-way: a run written, a group still computing
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    assert killed is not None, "the suite finished before a worker could be killed"
    _check_once_finished(disturbed["db"], len(plan(select(load_suite(tiny["suite"]), seeds=parse_seeds("0-3")))))
    assert _metrics(disturbed["db"]) == _metrics(calm["db"])


def _parallel_suite_mid_way(tiny: dict, tmp_path: Path) -> subprocess.Popen:
    """The tiny suite on two workers in a child process, returned once its first run is stored."""
    proc = _child(run_argv(tiny, "--workers", "2"), tmp_path)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and _finished(tiny["db"]) < 1:
        time.sleep(0.02)
    assert proc.poll() is None, "the suite finished before it could be stopped"
    return proc


def test_sigterm_stops_the_workers_marks_the_parent_killed_and_a_rerun_resumes(tiny, tmp_path):
    proc = _parallel_suite_mid_way(tiny, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read().decode()[-2000:]
    runs = stored_runs(tiny["db"])
    assert [status for _, status, t in runs if t.get("kind") == "suite"] == ["KILLED"]
    assert not [r for r in runs if r[2].get("kind") == "claim"]
    time.sleep(1.0)  # the local Ray's processes go with it
    assert not _ray_workers()
    assert main(run_argv(tiny, "--workers", "2")) == 0
    _check_once_finished(tiny["db"], len(plan(load_suite(tiny["suite"]))))


def test_kill_9_of_the_driver_takes_the_local_ray_with_it_and_a_rerun_finishes_once(tiny, tmp_path, capsys):
    """The driver killed with SIGKILL mid-suite: its local Ray's workers go too (Ray shares the driver's fate), and
    a rerun on two workers leaves every run once, FINISHED, with no claim left."""
    proc = _parallel_suite_mid_way(tiny, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _ray_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _ray_workers()
    assert main(run_argv(tiny, "--workers", "2")) == 0, capsys.readouterr().err[-2000:]
    _check_once_finished(tiny["db"], len(plan(load_suite(tiny["suite"]))))


def test_an_existing_cluster_runs_the_suite(tiny, tmp_path):
    """`ray start --head` on this machine, then --ray-address: the same code path as a remote cluster (token
    authentication on, as Ray now starts clusters), every run once and FINISHED, the cluster left running."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([*ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                   env=env, check=True, capture_output=True, timeout=120)
    try:
        # A driver process of its own: Ray reads RAY_AUTH_MODE once per process.
        proc = _child(run_argv(tiny, "--ray-address", f"127.0.0.1:{port}"), tmp_path, {"RAY_AUTH_MODE": "token"})
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
        _check_once_finished(tiny["db"], len(plan(load_suite(tiny["suite"]))))
        tags = [t for _, _, t in stored_runs(tiny["db"])]
        assert f"Ray cluster at 127.0.0.1:{port}" in next(t["executor"] for t in tags if t.get("kind") == "suite")
    finally:
        subprocess.run([*ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_parallel_and_a_serial_invocation_on_one_store_compute_each_run_once(tiny, tmp_path):
    """A parallel invocation and a serial one with other filters, started together: the serial one skips the runs
    the workers hold and waits for them (the same invocation twice stops the second with one line instead)."""
    procs = [_child(run_argv(tiny, "--seeds", "0-3", "--workers", "2"), tmp_path),
             _child(run_argv(tiny, "--seeds", "0-3", "--methods", "random,wmp"), tmp_path)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    runs = stored_runs(tiny["db"])
    hashes = [t["config_hash"] for _, s, t in runs if t.get("kind") in RESULT_KINDS]
    assert len(hashes) == len(set(hashes))
    assert [s for _, s, t in runs if t.get("kind") == "suite"] == ["FINISHED", "FINISHED"]


@pytest.mark.parametrize(("extra", "says"), [
    (["--ray-address", "127.0.0.1:1"], "could not start the Ray cluster at '127.0.0.1:1'"),
    (["--workers", "2", "--gpus-per-run", "0.5"], "--gpus-per-run 0.5: the Ray cluster has 0 GPU(s)"),
    (["--workers", "2", "--gpus-per-run", "1.5"], "--gpus-per-run 1.5: a share of one GPU"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
    (["--workers", "many"], "--workers 'many': a number of workers, or auto"),
])
def test_a_bad_ray_setting_stops_with_one_line_before_the_store(tiny, capsys, extra, says):
    assert main(run_argv(tiny, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and len(err[-1]) < 300
    assert not tiny["db"].exists()
    assert not ray.is_initialized()


def test_without_ray_the_flags_say_how_to_install_it(tiny, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(run_argv(tiny, "--workers", "2")) == 2
    assert "pip install 'coalition-bench[ray]'" in capsys.readouterr().err
    assert not tiny["db"].exists()
