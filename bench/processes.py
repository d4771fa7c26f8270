"""Whether the process recorded on a run (a running parent, a claim) is still the one that wrote it.

A run records its owner's host name, pid and identity (``process_identity``). From the same host and pid namespace
the owner can be checked; from anywhere else it cannot, and callers decide what that means (a claim trusts it for a
while, see ``bench.claims``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path


def process_identity(pid: int | None = None) -> str:
    """A process's identity beyond its pid: "PID-NAMESPACE:START-TICKS" from /proc (the pid namespace, so two
    containers that share a host name are told apart, and the start time, so a reused pid is not taken for its
    former owner); "" where /proc does not say.

    Args:
        pid: the process; this one by default.
    """
    pid = os.getpid() if pid is None else pid
    stat = _proc_stat(pid)
    try:
        namespace = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""
    return f"{namespace}:{stat[19]}" if stat else ""


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, start time at index 19); [] if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2:].split()


def owner_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the process recorded on a running parent or a claim (its host, pid and proc tags) is alive and is
    not us.

    Returns:
        True or False; None when this process cannot see it (another host, or another pid namespace of this host).
    """
    if tags.get("host") != socket.gethostname():
        return None
    try:
        pid = int(tags.get("pid", ""))
    except ValueError:
        return False
    recorded, ours = tags.get("proc", ""), process_identity()
    if recorded and ours and recorded.rsplit(":", 1)[0] != ours.rsplit(":", 1)[0]:
        return None  # the same host name, another pid namespace (a container): its pids are not ours to check
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    if stat and stat[0] == "Z":  # exited, not yet reaped by its parent
        return False
    if stat and recorded and recorded.rsplit(":", 1)[-1] != stat[19]:
        return False  # the pid now belongs to a later process
    return True
