"""Run claims (bench.claims): one holder per config hash, whatever the interleaving of two processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

import bench.claims as claims_module
from bench.claims import CLAIM_KIND, REMOTE_CLAIM_HOURS, Claims
from bench.tracking import Tracker

pytestmark = pytest.mark.usefixtures("quiet_mlflow")


@pytest.fixture()
def tracker(tmp_path):
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "claims")


@pytest.fixture()
def other_process():
    """A live process that is not this one: the owner of a rival claim."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _rival(tracker: Tracker, config_hash: str, pid: int, host: str | None = None, suite: str = "s") -> str:
    tags = {"kind": CLAIM_KIND, "config_hash": config_hash, "claim_owner": f"rival-{pid}", "pid": str(pid),
            "host": host or socket.gethostname(), "suite": suite}
    return tracker._client.create_run(tracker.experiment_id, run_name="rival", tags=tags).info.run_id


def _result(tracker: Tracker, config_hash: str, status: str = "FINISHED") -> str:
    return tracker.log_run(parent_id="", run_name="result", tags={"kind": "method", "config_hash": config_hash},
                           params={}, metrics={"auc": 0.5}, status=status)


def _claims_on(tracker: Tracker, config_hash: str) -> list[str]:
    return [r.run_id for r in tracker.runs(f"tags.config_hash = '{config_hash}'") if r.tags["kind"] == CLAIM_KIND]


def test_a_claim_is_held_once_and_released(tracker, other_process):
    claims = Claims(tracker, suite="s", parent_id="")
    got = claims.acquire("h1", "wmp s0")
    assert got.state == "claimed" and _claims_on(tracker, "h1") == [got.run_id]
    again = claims.acquire("h1", "wmp s0")  # our own claim is never a rival of ourselves
    assert again.state == "claimed" and again.run_id == got.run_id
    claims.release("h1")
    assert _claims_on(tracker, "h1") == []
    _rival(tracker, "h2", other_process)
    held = claims.acquire("h2", "wmp s0")
    assert held.state == "held" and f"pid {other_process}" in held.holder
    assert claims.state("h2") == "held" and claims.state("h1") is None


def test_a_finished_run_is_never_claimed(tracker):
    _result(tracker, "h")
    claims = Claims(tracker, suite="s", parent_id="")
    assert claims.state("h") == "finished"
    assert claims.acquire("h", "wmp s0").state == "finished"
    assert _claims_on(tracker, "h") == []


def test_a_dead_owners_claim_and_leftovers_are_taken_over(tracker):
    dead = _rival(tracker, "h", _dead_pid())
    leftover = _result(tracker, "h", status="FAILED")
    claims = Claims(tracker, suite="s", parent_id="")
    got = claims.acquire("h", "wmp s0")
    assert got.state == "claimed"
    ids = {r.run_id for r in tracker.runs("tags.config_hash = 'h'")}
    assert ids == {got.run_id}  # the dead claim and the half-written result are gone
    assert dead not in ids and leftover not in ids


def test_sweep_deletes_the_dead_claims_of_finished_runs_and_keeps_the_live(tracker, other_process):
    """A kill -9 between writing a result and deleting its claim: acquiring never visits that run again."""
    _result(tracker, "done")
    dead = _rival(tracker, "done", _dead_pid())
    live = _rival(tracker, "busy", other_process)
    remote = _rival(tracker, "far", 1, host="elsewhere")
    other_suite = _rival(tracker, "done", _dead_pid(), suite="t")
    claims = Claims(tracker, suite="s", parent_id="")
    mine = claims.acquire("mine", "wmp s0").run_id
    assert claims.sweep() == 1
    left = {r.run_id for r in tracker.runs() if r.tags.get("kind") == CLAIM_KIND}
    assert dead not in left and left == {live, remote, other_suite, mine}


def test_another_hosts_claim_is_trusted_for_a_while(tracker):
    claims = Claims(tracker, suite="s", parent_id="")
    _rival(tracker, "fresh", 1, host="elsewhere")
    assert claims.acquire("fresh", "wmp s0").state == "held"
    old = time.time() - REMOTE_CLAIM_HOURS * 3600 - 60
    tracker._client.create_run(tracker.experiment_id, start_time=int(old * 1000),
                               tags={"kind": CLAIM_KIND, "config_hash": "stale", "claim_owner": "x", "pid": "1",
                                     "host": "elsewhere"})
    assert claims.acquire("stale", "wmp s0").state == "claimed"


def test_a_claim_written_at_the_same_moment_makes_us_back_off(tracker, other_process, monkeypatch):
    """The rival's claim commits right after ours: we see both and yield; the rival, which also sees both, would
    yield too, so one holder at most."""
    claims = Claims(tracker, suite="s", parent_id="", backoff=0.0)
    start_run = tracker.start_run

    def racing(**kwargs):
        mine = start_run(**kwargs)
        _rival(tracker, "h", other_process)
        return mine

    monkeypatch.setattr(tracker, "start_run", racing)
    got = claims.acquire("h", "wmp s0")
    assert got.state == "held"
    remaining = tracker.runs("tags.config_hash = 'h'")
    assert [r.tags["claim_owner"] for r in remaining] == [f"rival-{other_process}"]


def test_after_both_back_off_the_next_round_wins(tracker, other_process, monkeypatch):
    claims = Claims(tracker, suite="s", parent_id="", backoff=0.0)
    start_run = tracker.start_run
    calls = []

    def racing(**kwargs):
        mine = start_run(**kwargs)
        if not calls:
            calls.append(_rival(tracker, "h", other_process))
        return mine

    def rival_backs_off(seconds):
        tracker.delete_runs(calls)

    monkeypatch.setattr(tracker, "start_run", racing)
    monkeypatch.setattr(claims_module.time, "sleep", rival_backs_off)
    got = claims.acquire("h", "wmp s0")
    assert got.state == "claimed" and _claims_on(tracker, "h") == [got.run_id]


def test_a_run_finished_while_we_claimed_is_not_redone(tracker, monkeypatch):
    claims = Claims(tracker, suite="s", parent_id="")
    start_run = tracker.start_run

    def finishing(**kwargs):
        mine = start_run(**kwargs)
        _result(tracker, "h")  # another process wrote its result, then released its claim
        return mine

    monkeypatch.setattr(tracker, "start_run", finishing)
    assert claims.acquire("h", "wmp s0").state == "finished"
    assert _claims_on(tracker, "h") == []


def test_release_all_leaves_no_claim(tracker):
    claims = Claims(tracker, suite="s", parent_id="")
    for h in ("a", "b", "c"):
        assert claims.acquire(h, h).state == "claimed"
    claims.release("b")
    claims.release_all()
    assert not [r for r in tracker.runs() if r.tags.get("kind") == CLAIM_KIND]


@pytest.mark.parametrize("where", ["after the claim is written", "after it is forgotten"])
def test_release_all_finds_a_claim_an_interrupt_left_unrecorded(tracker, monkeypatch, where):
    """SIGTERM unwinds as an exception wherever it lands: between the store's write of a claim and our record of
    it, or between forgetting a claim and deleting it. release_all must still leave none behind."""
    claims = Claims(tracker, suite="s", parent_id="")
    if where == "after the claim is written":
        write = tracker.start_run

        def written_then_interrupted(**kwargs):
            write(**kwargs)
            raise KeyboardInterrupt
        monkeypatch.setattr(tracker, "start_run", written_then_interrupted)
        with pytest.raises(KeyboardInterrupt):
            claims.acquire("a", "a")
        monkeypatch.undo()
    else:
        assert claims.acquire("a", "a").state == "claimed"
        monkeypatch.setattr(tracker, "delete_runs", lambda ids: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            claims.release("a")
        monkeypatch.undo()
    assert _claims_on(tracker, "a")
    claims.release_all()
    assert not _claims_on(tracker, "a")


def test_a_zombie_or_a_reused_pid_is_not_a_live_owner(tracker):
    from bench.processes import owner_alive, process_identity

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while owner_alive({"host": socket.gethostname(), "pid": str(zombie.pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)  # exited but not reaped: os.kill(pid, 0) still succeeds
    assert owner_alive({"host": socket.gethostname(), "pid": str(zombie.pid)}) is False
    zombie.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = {"host": socket.gethostname(), "pid": str(live.pid), "proc": process_identity(live.pid)}
        assert owner_alive(tags) is True
        namespace, start = tags["proc"].rsplit(":", 1)
        assert owner_alive({**tags, "proc": f"{namespace}:{int(start) - 1}"}) is False  # the pid's former owner
        assert owner_alive({**tags, "proc": f"pid:[1]:{start}"}) is None  # another pid namespace: cannot tell
    finally:
        live.kill()
        live.wait()
