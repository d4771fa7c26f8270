"""Run claims: no two processes ever compute the same run, and a reader never sees two finished copies of one.

A run is identified by its config hash (``bench.plan``). Before a process computes one, it **claims** it: it
writes a small marker run to the store (``tags.kind = claim``, ``tags.config_hash``, the owner's host, pid and a
token unique to the invocation), shown in the MLflow UI as a RUNNING run named "METHOD sN (running)" under the
parent that claimed it. The finished result is written as its own run, and the claim is deleted after it.

Acquiring a claim on a config hash:

1. If a finished run of the hash is stored, it is done: skip it.
2. If another owner's claim on it is **live**, it is held: come back to it later.
3. Otherwise delete the dead claims, write ours, and list the claims on the hash again.
4. If ours is the only one, we hold the run; leftovers of a dead owner (its unfinished or failed result run) are
   deleted, and we compute it. If another claim appeared, two processes claimed at the same moment: both delete
   their own, wait a random moment, and start again at 1.

Why two processes can never both hold a run: of two claims on one hash, the one committed later is written after
the earlier one is in the store, so its owner's listing (step 3) sees both and it backs off. Only the owner of the
earlier claim can see its claim alone. This holds on any store whose writes are seen in the order they commit (a
sqlite file, a tracking server over one database), and needs no lock, so the same code serves two invocations on
one machine and the workers of a cluster.

A claim is live while its owner is: on the same host, while the process with its pid runs (and is that process:
not a zombie, and not a later process that got the pid, told by its start time); on another host, or in another pid
namespace of this one (a container sharing the host name), for ``REMOTE_CLAIM_HOURS`` after it was written, since
a process cannot see those processes. A claim of a process killed with ``kill -9`` is therefore taken over by the
next invocation on that host, and ``sweep`` deletes it at that invocation's start even where the run it names was
finished (a kill between writing the result and deleting the claim), which acquiring never visits.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from bench.processes import owner_alive, process_identity
from bench.tracking import NESTED_KINDS, StoredRun, Tracker

CLAIM_KIND = "claim"
REMOTE_CLAIM_HOURS = 24.0
ATTEMPTS = 8  # rounds of step 1-4 before a contended run is left for the next pass

State = Literal["claimed", "finished", "held"]


@dataclass(frozen=True)
class Acquired:
    """What ``Claims.acquire`` found: ``claimed`` (``run_id`` is our claim), ``finished`` or ``held`` (``holder``
    says by whom, e.g. "pid 4242 on host-a")."""

    state: State
    run_id: str = ""
    holder: str = ""


class Claims:
    """The claims of one invocation on one tracking store.

    Args:
        tracker: the store.
        suite: the suite's name (a tag of each claim, so the UI's filters find them).
        parent_id: the parent run the claims are shown under.
        backoff: the longest random wait, in seconds, after a collision (doubled each round, capped at 2 s).
    """

    def __init__(self, tracker: Tracker, *, suite: str, parent_id: str, backoff: float = 0.2) -> None:
        self.tracker = tracker
        self.suite = suite
        self.parent_id = parent_id
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.backoff = backoff
        self._held: dict[str, str] = {}  # config hash -> our claim's run id
        self._random = random.SystemRandom()  # waits must not touch any seeded generator

    def state(self, config_hash: str) -> State | None:
        """Whether a run is finished or held by another live owner (None: neither, it can be claimed). Reads only."""
        runs = self._runs(config_hash)
        if any(_is_result(r) and r.status == "FINISHED" for r in runs):
            return "finished"
        if any(_is_claim(r) and r.tags.get("claim_owner") != self.owner and _live(r) for r in runs):
            return "held"
        return None

    def acquire(self, config_hash: str, run_name: str) -> Acquired:
        """Claims one run (steps 1 to 4 above)."""
        if config_hash in self._held:
            return Acquired("claimed", run_id=self._held[config_hash])
        for attempt in range(ATTEMPTS):
            runs = self._runs(config_hash)
            if any(_is_result(r) and r.status == "FINISHED" for r in runs):
                return Acquired("finished")
            others = [r for r in runs if _is_claim(r) and r.tags.get("claim_owner") != self.owner]
            live = [r for r in others if _live(r)]
            if live:
                return Acquired("held", holder=_holder(live[0]))
            self.tracker.delete_runs([r.run_id for r in others])
            mine = self.tracker.start_run(
                run_name=f"{run_name} (running)",
                tags={"kind": CLAIM_KIND, "config_hash": config_hash, "suite": self.suite,
                      "claim_owner": self.owner, "pid": str(os.getpid()), "host": socket.gethostname(),
                      "proc": process_identity(), "mlflow.parentRunId": self.parent_id})
            self._held[config_hash] = mine  # at once: an interruption from here on still releases it
            runs = self._runs(config_hash)
            if [r.run_id for r in runs if _is_claim(r)] == [mine]:
                if any(_is_result(r) and r.status == "FINISHED" for r in runs):  # finished while we claimed
                    self.release(config_hash)
                    return Acquired("finished")
                self.tracker.delete_runs([r.run_id for r in runs if _is_result(r)])  # a dead owner's leftovers
                return Acquired("claimed", run_id=mine)
            self.release(config_hash)
            time.sleep(self._random.uniform(0, min(2.0, self.backoff * 2 ** attempt)))
        return Acquired("held", holder="another process claiming at the same moment")

    def release(self, config_hash: str) -> None:
        """Deletes our claim on a run (after its result, finished or failed, is written)."""
        run_id = self._held.pop(config_hash, None)
        if run_id:
            self.tracker.delete_runs([run_id])

    def release_all(self) -> None:
        """Deletes every claim this invocation still holds (on the way out of an interrupted suite).

        The store, not only our record of it, says which: a signal can land after a claim is written and before
        ``acquire`` records it, or after ``release`` forgets one and before it is deleted.
        """
        for config_hash in list(self._held):
            self.release(config_hash)
        self.tracker.delete_runs([r.run_id for r in self.tracker.runs(f"tags.claim_owner = '{self.owner}'")
                                  if _is_claim(r)])

    def sweep(self) -> int:
        """Deletes the suite's claims whose owners are gone (killed before they could release them); returns how
        many. A live owner's claims, and another host's younger than ``REMOTE_CLAIM_HOURS``, are kept."""
        dead = [r.run_id for r in self.tracker.runs(f"tags.suite = '{self.suite}'")
                if _is_claim(r) and r.tags.get("claim_owner") != self.owner and not _live(r)]
        self.tracker.delete_runs(dead)
        return len(dead)

    def _runs(self, config_hash: str) -> list[StoredRun]:
        return self.tracker.runs(f"tags.config_hash = '{config_hash}'")


def _is_claim(run: StoredRun) -> bool:
    return run.tags.get("kind") == CLAIM_KIND


def _is_result(run: StoredRun) -> bool:
    return run.tags.get("kind") in NESTED_KINDS


def _live(claim: StoredRun) -> bool:
    alive = owner_alive(claim.tags)
    if alive is not None:
        return alive
    # Another host, or another pid namespace of this one: its process cannot be checked from here.
    return time.time() * 1000 - claim.start_time < REMOTE_CLAIM_HOURS * 3600 * 1000


def _holder(claim: StoredRun) -> str:
    return f"pid {claim.tags.get('pid', '?')} on {claim.tags.get('host', '?')}"
