"""Faults of the tracking store: each stops at once with one line, before any work, and nothing is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import run_argv, tiny_suite

from bench.cli import main
from bench.errors import TrackingError
from bench.tracking import Tracker

pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


@pytest.fixture()
def tiny(tmp_path, monkeypatch, tiny_mnist):
    store = tmp_path / "store"
    store.mkdir()
    return tiny_suite(tmp_path, tiny_mnist, methods=("wmp", "random"), store=store / "mlflow.db")


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite:///:memory:", "sqlite://"])
def test_an_in_memory_store_is_refused_before_any_work(tiny, uri, capsys, private_cache):
    assert main(run_argv(dict(tiny, uri=uri))) == 2
    assert "in-memory database" in _one_error_line(capsys)
    assert not any((private_cache / "models").glob("**/*.pt")) if (private_cache / "models").exists() else True


def test_a_store_in_a_missing_folder_fails_at_once(tmp_path):
    start = time.perf_counter()
    with pytest.raises(TrackingError, match="does not exist"):
        Tracker(f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}", "x")
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "no").exists()


def test_artifacts_live_beside_the_database_whatever_the_working_folder(tiny, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(run_argv(tiny)) == 0
    assert not (elsewhere / "mlruns").exists()
    artifacts = tiny["db"].parent / "mlartifacts"
    assert any(artifacts.glob("*/artifacts/plan.json")), sorted(p.name for p in artifacts.iterdir())


def test_an_unwritable_artifact_location_stops_before_any_run(tiny, tmp_path, capsys):
    import mlflow

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    client = mlflow.MlflowClient(tracking_uri=tiny["uri"])
    client.create_experiment("tiny", artifact_location=(blocker / "artifacts").as_uri())
    assert main(run_argv(tiny)) == 2
    assert "cannot be written" in _one_error_line(capsys)
    with sqlite3.connect(tiny["db"]) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)  # no parent left RUNNING, no run at all


def test_invocations_on_a_brand_new_store_do_not_race_on_the_schema(tmp_path):
    db = tmp_path / "new.db"
    code = textwrap.dedent(f"""
        import time
        time.sleep(max(0.0, {time.time() + 4.0} - time.time()))  # start together
        from bench.tracking import Tracker
        Tracker("sqlite:///{db}", "race")
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in results]
    assert all(out.strip() == "ok" for out, _ in results)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM experiments WHERE name = 'race'").fetchone() == (1,)


@pytest.mark.slow
def test_a_kill_while_the_schema_is_built_leaves_no_half_built_store(tmp_path):
    """MLflow builds a new store's tables one migration at a time, over seconds: SIGKILL in the middle, then the
    next invocation still gets a working store."""
    db = tmp_path / "new.db"
    code = f"from bench.tracking import Tracker\nTracker('sqlite:///{db}', 'x')\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    building = tmp_path / ".new.db.new-*"
    deadline = time.monotonic() + 60
    while proc.poll() is None and not list(tmp_path.glob(building.name)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # into the migrations
    assert proc.poll() is None, "the schema was built before it could be killed"
    proc.kill()
    proc.wait()
    assert not db.exists()  # nothing half-built where the store belongs
    Tracker(f"sqlite:///{db}", "x")
    assert not list(tmp_path.glob(building.name))  # the killed builder's file is cleared
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM experiments WHERE name = 'x'").fetchone() == (1,)


def test_the_store_path_may_not_be_a_folder(tmp_path):
    with pytest.raises(TrackingError, match="is a folder"):
        Tracker(f"sqlite:///{tmp_path}", "x")


def test_a_read_only_report_store_is_still_read(tiny, tmp_path):
    """A reader (create=False) needs no write access: the checks that guard runs do not apply to it."""
    Tracker(tiny["uri"], "tiny")
    Path(tiny["db"]).chmod(0o444)
    try:
        assert Tracker(tiny["uri"], "tiny", create=False).experiment_name == "tiny"
    finally:
        Path(tiny["db"]).chmod(0o644)
