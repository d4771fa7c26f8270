"""Where a suite's groups are computed: in this process (the default), or on the workers of a Ray cluster.

A group is the runs of one trained model (pair, seed): it trains (or loads) the model once, runs MCUE once, and its
methods share both, so a group is the unit of work a worker gets. A group's model reaches its worker through the
checkpoint cache (``COALITION_BENCH_CACHE``, which every worker must be able to read and write), and MCUE's d
never leaves the group that computes it.

Either executor runs ``bench.groups.compute_group`` and streams its events back; the driver (``bench.runner``)
writes every run to the store, so a SQLite store sees one writer however many workers there are, and workers need
no access to it at all. Ray re-runs a group whose worker died (``max_retries``) and skips the results the driver
already consumed; the driver deduplicates by config hash on top of that.

Ray is imported here only, and only for ``--workers``/``--ray-address``: a serial suite never needs it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from bench.groups import GroupTask, RunResult, Stage, compute_group

RETRIES = 3  # times Ray re-runs a group whose worker died (a crash, an OOM kill, a lost node)
EXECUTOR_FAILED = "worker failed"


class ExecutorError(Exception):
    """Ray is missing, unreachable or misconfigured (the CLI prints it as one line and exits 2)."""


@dataclass(frozen=True)
class GroupFailed:
    """A group that stopped without yielding all its runs (its worker died more often than Ray retries)."""

    error: str


Event = Stage | RunResult | GroupFailed


class Executor(Protocol):
    """Computes groups and streams their events, in any order across groups and in order within one."""

    workers: int

    def describe(self) -> str: ...

    def run(self, tasks: Iterator[GroupTask]) -> Iterator[tuple[GroupTask, Event]]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """One group after another, in this process: today's ``bench run``.

    Args:
        threads: torch's intra-op threads while it runs (default: torch's own, every core).
    """

    workers = 1

    def __init__(self, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
                 threads: int | None = None) -> None:
        self.device, self.data_dir, self.download, self.threads = device, data_dir, download, threads
        self._previous: int | None = None

    def describe(self) -> str:
        import torch

        return f"serial, in this process, {self.threads or torch.get_num_threads()} thread(s)"

    def run(self, tasks: Iterator[GroupTask]) -> Iterator[tuple[GroupTask, Event]]:
        import torch

        if self.threads and self._previous is None:
            self._previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        for task in tasks:
            for event in compute_group(task, device=self.device, data_dir=self.data_dir, download=self.download):
                yield task, event

    def close(self) -> None:
        if self._previous is not None:
            import torch

            torch.set_num_threads(self._previous)
            self._previous = None


def registrations(task: GroupTask) -> list[tuple[str, str, Any]]:
    """The registry entries a group looks up by name (its pair, model, dataset and scorers), so that what the
    driver registered at run time (a user's own pair, as in the README's "Extending") reaches the workers too."""
    from datasets.data.core import DATASETS
    from datasets.models import MODELS
    from datasets.pairs import PAIRS
    from methods.scorers.base import SCORERS

    pair = task.suite.pair(task.pair)
    out: list[tuple[str, str, Any]] = [("model", pair.model, MODELS.get(pair.model)),
                                       ("dataset", pair.dataset, DATASETS.get(pair.dataset))]
    if task.pair in PAIRS.names():
        out.append(("pair", task.pair, PAIRS.get(task.pair)))
    for spec in task.specs:
        if spec.entry is not None and spec.entry.method in SCORERS.names():
            out.append(("method", spec.entry.method, SCORERS.get(spec.entry.method)))
    return out


def _install(entries: list[tuple[str, str, Any]]) -> None:
    """Adds the driver's registry entries a worker lacks (it keeps its own where it has the name)."""
    from datasets.data.core import DATASETS
    from datasets.models import MODELS
    from datasets.pairs import PAIRS
    from methods.scorers.base import SCORERS

    registries = {"model": MODELS, "dataset": DATASETS, "pair": PAIRS, "method": SCORERS}
    for kind, name, obj in entries:
        if name not in registries[kind].names():
            registries[kind].add(name, obj)


def _remote_group(task: GroupTask, entries: list[tuple[str, str, Any]], device: str, data_dir: str | None,
                  download: bool, threads: int) -> Iterator[Stage | RunResult]:
    """A group on a Ray worker, with the worker's share of the cores as torch's threads."""
    import torch

    torch.set_num_threads(threads)
    _install(entries)
    yield from compute_group(task, device=device, data_dir=data_dir, download=download)


class RayExecutor:
    """Groups on Ray workers: a local Ray started in this process, or an existing cluster.

    Args:
        workers: groups computed at once, or "auto": every CPU of the cluster, or on GPUs as many runs as
            ``gpus_per_run`` packs onto them.
        address: an existing cluster ("ray://host:10001", "host:6379", "auto"); None starts a local Ray.
        gpus_per_run: the GPU share of each group (0.25 packs four onto a GPU); 0 keeps the workers on CPUs.
        threads: torch's threads (and Ray CPUs) per group; default: the cluster's CPUs // workers.
        device: the suite's --device ("auto" means cuda with a GPU share, else cpu).
        data_dir, download: as for ``bench run``; the data root must be the same path on every node.
    """

    def __init__(self, *, workers: int | str, address: str | None = None, gpus_per_run: float = 0.0,
                 device: str = "auto", data_dir: str | None = None, download: bool = False,
                 threads: int | None = None) -> None:
        self.threads = threads
        if gpus_per_run < 0 or (gpus_per_run > 1 and not float(gpus_per_run).is_integer()):
            raise ExecutorError(f"--gpus-per-run {gpus_per_run:g}: a share of one GPU (0 to 1) or a whole number")
        if device.startswith("cuda") and not gpus_per_run:
            raise ExecutorError(f"--device {device} on Ray workers needs --gpus-per-run (e.g. 0.25), which gives each "
                                "worker its GPU share")
        if gpus_per_run and device not in ("auto", "cuda"):
            raise ExecutorError(f"--gpus-per-run gives workers a GPU; --device {device} contradicts it")
        try:
            import ray
        except ImportError:
            raise ExecutorError("--workers and --ray-address need Ray: pip install 'coalition-bench[ray]'") from None
        self._ray = ray
        self.address = address
        self.gpus_per_run = float(gpus_per_run)
        self.device = "cuda" if gpus_per_run else "cpu"
        self.download = download
        self._in_flight: dict[Any, GroupTask] = {}
        from datasets.paths import cache_dir, resolve_data_root

        # Workers resolve nothing from their own environment: the driver's data root and checkpoint cache, as
        # absolute paths (on a cluster they must name shared storage).
        self.data_dir = str(resolve_data_root(data_dir).resolve())
        env = {"COALITION_BENCH_CACHE": str(cache_dir().resolve()), "COALITION_BENCH_DATA": self.data_dir}
        self._start(env)
        try:
            self.workers, self.cpus_per_run = self._size(workers)
        except ExecutorError:
            self.close()
            raise
        self._group = ray.remote(_remote_group).options(
            num_returns="streaming", num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=RETRIES,
            name="bench.group")

    def _start(self, env: dict[str, str]) -> None:
        ray = self._ray
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                                   "runtime_env": {"env_vars": env}}
        try:
            if self.address:
                _probe(self.address)  # Ray itself retries an unreachable address for minutes
                ray.init(address=self.address, **options)
            else:
                import torch

                ray.init(num_cpus=_local_cpus(), num_gpus=torch.cuda.device_count(), **options)
        except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, ...
            where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray"
            hint = ""
            if self.address and "RAY_AUTH_MODE" not in os.environ and isinstance(err, ConnectionError) \
                    and "nothing answers" not in str(err):
                # Ray (2.60 here) starts clusters with token authentication, and a driver sends no token unless told
                hint = " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and give its token in " \
                       "RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            raise ExecutorError(f"could not start {where}: {type(err).__name__}: {_last_line(err)}{hint}") from None

    def _size(self, workers: int | str) -> tuple[int, int]:
        resources = self._ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.gpus_per_run and gpus < self.gpus_per_run:
            raise ExecutorError(f"--gpus-per-run {self.gpus_per_run:g}: the Ray cluster has {gpus:g} GPU(s)")
        if workers == "auto":
            n = max(1, cpus)
            if self.gpus_per_run:
                n = min(n, max(1, math.floor(gpus / self.gpus_per_run + 1e-9)))
        else:
            n = int(workers)
            if self.address and n > cpus:
                raise ExecutorError(f"--workers {n}: the Ray cluster has {cpus} CPU(s)")
        return n, self.threads or max(1, cpus // n)  # each group's torch threads: its share of the cores

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "local Ray"
        gpu = f", {self.gpus_per_run:g} GPU each" if self.gpus_per_run else ""
        return (f"{self.workers} worker(s) on {where} (Ray {self._ray.__version__}), {self.cpus_per_run} thread(s)"
                f"{gpu}")

    def run(self, tasks: Iterator[GroupTask]) -> Iterator[tuple[GroupTask, Event]]:
        ray = self._ray
        pending = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(self._in_flight) < self.workers:
                task = next(pending, None)  # claims the group's runs (bench.runner), so only when a worker is free
                if task is None:
                    exhausted = True
                    break
                generator = self._group.remote(task, registrations(task), self.device, self.data_dir, self.download,
                                               self.cpus_per_run)
                self._in_flight[generator] = task
            if not self._in_flight:
                return
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=1.0)
            for generator in ready:
                task = self._in_flight[generator]
                try:
                    ref = next(generator)
                except StopIteration:
                    del self._in_flight[generator]
                    continue
                try:
                    event = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a worker that died past its retries, or Ray itself
                    del self._in_flight[generator]
                    event = GroupFailed(f"{EXECUTOR_FAILED}: {type(err).__name__}: {_last_line(err)}")
                yield task, event

    def close(self) -> None:
        """Cancels the groups still running and stops a local Ray (a cluster keeps running)."""
        ray = self._ray
        for generator in list(self._in_flight):
            try:
                ray.cancel(generator, force=True)
            except Exception:  # noqa: BLE001, S110 - already finished or gone: nothing to stop
                pass
        self._in_flight.clear()
        if ray.is_initialized():
            ray.shutdown()


PROBE_SECONDS = 5.0


def _probe(address: str) -> None:
    """Fails at once when nothing listens at ``address`` ("host:port" or "ray://host:port"); "auto" and other forms
    are left to Ray."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        raise ConnectionError(f"{address!r} is not host:port") from None
    if not host or port is None:
        return
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {host}:{port} ({err.strerror or type(err).__name__})") from None


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def make_executor(*, workers: int | str | None, address: str | None, gpus_per_run: float, device: str,
                  data_dir: str | None, download: bool, threads: int | None = None) -> Executor:
    """The serial executor unless the user asked for Ray (``--workers``, ``--ray-address`` or ``--gpus-per-run``)."""
    if workers is None and address is None and not gpus_per_run:
        return SerialExecutor(device=device, data_dir=data_dir, download=download, threads=threads)
    return RayExecutor(workers=workers or "auto", address=address, gpus_per_run=gpus_per_run, device=device,
                       data_dir=data_dir, download=download, threads=threads)
