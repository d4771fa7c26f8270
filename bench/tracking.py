"""MLflow tracking: the only module that imports mlflow.

Layout of a suite in the store (one experiment, by default named after the suite):

* a **parent run** per suite invocation (``tags.kind = suite``), identified by ``tags.suite_hash``; rerunning the
  same suite (same profile, filters and seeds) reopens it, so an interrupted invocation resumes under its own parent.
  Its artifacts: ``plan.json`` (the config hashes of its runs), ``suite.json``, ``seed_variance.csv``,
  ``rank_correlations.csv`` and the report.
* a **nested run** per (pair, method, seed) (``tags.kind = method``), and per (pair, seed) one for training
  (``tags.kind = train``: the learning curves and the suite's analyses) and one for MCUE (``tags.kind = mcue``),
  identified by ``tags.config_hash``. Runs are written whole after their work is done, with the real start and end
  times of that work, so a killed process leaves at most one unfinished run, which the next invocation deletes and
  redoes.
* while a run is computed, a **claim** on its config hash (``tags.kind = claim``, see ``bench.claims``).
* on the experiment, the saved view of the runs table that ``bench run``'s "see it" address opens
  (``Tracker.runs_page``).

Reading the runs back into DataFrames is ``bench.frames``; run and metric names are ``bench.naming``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import TrackingError
from bench.processes import owner_alive, process_identity
from datasets.errors import one_line

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
NESTED_KINDS = ("train", "mcue", "method")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


IN_MEMORY = ("", ":memory:")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` tracking URI (None for any other kind of store).

    Raises:
        TrackingError: the URI names an in-memory database (``sqlite:///``, e.g. from an unset variable, or
            ``sqlite:///:memory:``): every run would be lost when the process ends.
    """
    if not uri.startswith("sqlite://"):
        return None
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else ""
    path = path.split("?")[0]
    if path in IN_MEMORY or uri.split("?")[0] in ("sqlite://", "sqlite:///:memory:"):
        raise TrackingError(f"cannot use the tracking store {uri!r}: it is an in-memory database, so nothing would "
                            "be kept; name a file, e.g. sqlite:///mlflow.db")
    return Path(path)


def _check_database(database: Path, uri: str, *, create: bool) -> None:
    """A sqlite store that cannot be used fails here, at once, instead of after MLflow's retries."""
    if database.is_dir():
        raise TrackingError(f"cannot use the tracking store {uri}: {database} is a folder; name a database file "
                            "inside it")
    if not database.exists():
        if not create:
            raise TrackingError(f"no tracking store at {database} (from {uri}); nothing has been run there yet")
        folder = database.parent
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "does not exist"
            raise TrackingError(f"cannot use the tracking store {uri}: its folder {folder} {problem}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise TrackingError(f"cannot use the tracking store {uri}: its folder {folder} is not writable")
    elif create and not os.access(database, os.R_OK | os.W_OK):
        raise TrackingError(f"cannot use the tracking store {uri}: {database} is not writable")


@contextlib.contextmanager
def _store_lock(database: Path | None) -> Iterator[None]:
    """Serialises opening a sqlite store between processes, so two invocations on a new store do not race to
    create MLflow's schema ("table ... already exists")."""
    if database is None:
        yield
        return
    import fcntl

    with open(database.parent / f".{database.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _create_store(database: Path) -> None:
    """Builds a new sqlite store's schema in a temporary file and moves it into place (under the store's lock).
    MLflow builds it one migration at a time, over seconds; a process killed in between would leave a half-built
    store that every later invocation fails on ("duplicate column name")."""
    from mlflow import MlflowClient

    for stale in database.parent.glob(f".{database.name}.new-*"):  # a creator killed before its rename
        stale.unlink(missing_ok=True)
    building = database.parent / f".{database.name}.new-{os.getpid()}"
    MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments(max_results=1)
    os.replace(building, database)


def _check_artifact_location(location: str | None, experiment: str) -> None:
    """Fails at once, in one line, when the experiment's local artifact folder cannot be written (an experiment
    keeps the location it was created with, so a folder made read-only later fails every run's upload)."""
    if not location:
        return
    from urllib.parse import unquote, urlparse

    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return  # a remote artifact store: its server says
    folder = Path(unquote(parsed.path) if parsed.scheme == "file" else location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise TrackingError(f"experiment {experiment!r} keeps its artifacts in {folder}, which cannot be written "
                            f"({one_line(err, 200)}); make it writable or pass another --experiment") from None


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """No retries and a short timeout while probing a server, so an unreachable URI fails in seconds."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def git_commit() -> str:
    """The project's commit, with "+dirty" when tracked files are modified; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def source_tags(entry_point: str, commit: str) -> dict[str, str]:
    """The tags the MLflow UI's Source and Version columns show: what ran (e.g. "bench run") and the project's
    commit (``git_commit()``; its "+dirty" stays in the run's own ``git_commit`` tag)."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": entry_point}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
    return tags


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    status: str
    start_time: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DataSplit:
    """A split of a dataset that a run read, logged as one of the run's dataset inputs.

    Args:
        dataset: the dataset's registry name (the input's name).
        split: "train", "validation" or "test" (the input's context).
        digest: identifies the split's examples (MLflow keeps one input per name and digest, so it differs by split).
        source: where the data was read from.
        rows: how many examples the split has.
    """

    dataset: str
    split: str
    digest: str
    source: str
    rows: int

    def as_input(self) -> Any:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=self.dataset, digest=self.digest, source_type="local",
                          source=json.dumps({"uri": self.source}), profile=json.dumps({"num_rows": self.rows}))
        return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", self.split)])


SHARED_VIEW_TAG = "mlflow.sharedViewState."  # experiment tags that hold the MLflow UI's saved runs-table views


@dataclass(frozen=True)
class RunsView:
    """A saved view of the MLflow UI's runs table: which runs, in which order, with which columns.

    Args:
        key: the view's id in the experiment, and the ``viewStateShareKey`` of the address that opens it.
        name: what the UI's "Views" menu calls it.
        search_filter: an MLflow search filter ("tags.kind = 'method'").
        order_by: the metric the rows are sorted by, highest first (runs without it come last).
        metrics, tags: the columns shown besides the run name, in this order.
    """

    key: str
    name: str
    search_filter: str
    order_by: str
    metrics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def order_key(self) -> str:
        """The sort key as the UI writes it (its ``orderByKey``)."""
        return f"metrics.`{self.order_by}`"

    def saved(self, now_ms: int) -> str:
        """The experiment tag's value: the UI's saved-view envelope around the table's state (as JSON text)."""
        columns = [*(f"tags.`{name}`" for name in self.tags), *(f"metrics.`{name}`" for name in self.metrics)]
        state = {"searchFilter": self.search_filter, "orderByKey": self.order_key, "orderByAsc": False,
                 "selectedColumns": columns}
        return json.dumps({"name": self.name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)})


class Tracker:
    """A tracking store and experiment, checked on construction.

    Args:
        uri: any MLflow tracking URI (sqlite, a server's http(s) URL, a file store, ...).
        experiment: the experiment name; created if missing.
        create: create the experiment when it does not exist (reports only read, so they pass False).

    Raises:
        TrackingError: the store cannot be reached or written, or the experiment does not exist and create is False.
    """

    def __init__(self, uri: str, experiment: str, *, create: bool = True) -> None:
        import mlflow
        from mlflow import MlflowClient

        _quiet_mlflow()  # after the import: mlflow sets its loggers' levels when it is imported

        self.uri = uri
        self.experiment_name = experiment
        self._mlflow = mlflow
        database = sqlite_path(uri)
        if database is not None:
            _check_database(database, uri, create=create)
        try:
            with _fail_fast(), _store_lock(database):
                if database is not None and not database.exists():
                    _create_store(database)
                self._client = MlflowClient(tracking_uri=uri)
                found = self._client.get_experiment_by_name(experiment)
                if found is None and not create:
                    raise TrackingError(f"no experiment {experiment!r} in the tracking store {uri}")
                if found is None:
                    # The MLflow UI opens a "model training" experiment on its runs table and charts (without the
                    # tag, MLflow 3 may show its GenAI trace overview instead).
                    # A sqlite store keeps its artifacts beside the database, not in ./mlruns of wherever the first
                    # run happened to start.
                    location = None if database is None else (database.parent / "mlartifacts").resolve().as_uri()
                    self.experiment_id = self._client.create_experiment(
                        experiment, artifact_location=location,
                        tags={"mlflow.experimentKind": "custom_model_development"})
                    found = self._client.get_experiment(self.experiment_id)
                else:
                    if found.lifecycle_stage != "active":
                        raise TrackingError(f"experiment {experiment!r} in {uri} is deleted; restore it or pass "
                                            "another --experiment")
                    self.experiment_id = found.experiment_id
                self.artifact_location = found.artifact_location
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure here means the store is unusable
            raise TrackingError(f"cannot use the tracking store {uri}: {one_line(err, 300)}") from None
        if create:  # a run will write artifacts: find out now, not after its work is done
            _check_artifact_location(self.artifact_location, experiment)

    def runs_page(self, view: RunsView | None = None, ui: str = DEFAULT_UI) -> str:
        """How to see the experiment's runs table in the MLflow UI: the command to start the UI on this store, and
        the page that opens straight on the runs, with the UI in its "Model training" mode (a fresh browser that
        clicks the experiment lands on MLflow 3's GenAI overview instead, which shows none of our runs).

        Args:
            view: the runs, order and columns the page opens with. It is saved in the experiment as one of the
                UI's saved views (the experiment tag ``mlflow.sharedViewState.KEY``, listed under "Views"), which
                the page opens by its key. Where the store refuses the tag, the page filters and sorts by its
                address alone, with the UI's default columns.
            ui: the address ``mlflow ui`` serves on, for a store that is not a server itself.

        Returns:
            e.g. "mlflow ui --backend-store-uri sqlite:///mlflow.db, then open
            http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=bench-lenet&workflowType=machine_learning",
            or "open URI/#/experiments/..." for a tracking server.
        """
        from urllib.parse import quote, urlencode

        query: dict[str, str] = {}
        if view is not None:
            try:
                self._client.set_experiment_tag(self.experiment_id, f"{SHARED_VIEW_TAG}{view.key}",
                                                view.saved(_ms(time.time())))
                query["viewStateShareKey"] = view.key
            except Exception:  # noqa: BLE001 - the page still works without the saved view
                query.update(searchFilter=view.search_filter, orderByKey=view.order_key, orderByAsc="false")
        query["workflowType"] = "machine_learning"
        page = f"#/experiments/{self.experiment_id}/runs?{urlencode(query, quote_via=quote)}"
        if self.uri.startswith(("http://", "https://")):
            return f"open {self.uri.rstrip('/')}/{page}"
        return f"mlflow ui --backend-store-uri {self.uri}, then open {ui}/{page}"

    # -- finding runs -------------------------------------------------------------------------------------------

    def runs(self, filter_string: str = "") -> list[StoredRun]:
        """All active runs of the experiment that match, newest first."""
        from mlflow.entities import ViewType

        out, token = [], None
        while True:
            page = self._client.search_runs([self.experiment_id], filter_string=filter_string,
                                           run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            out.extend(StoredRun(r.info.run_id, r.info.status, r.info.start_time, dict(r.data.tags)) for r in page)
            token = page.token
            if not token:
                return out

    def suite_runs(self, suite: str) -> dict[str, list[StoredRun]]:
        """The suite's nested runs by config hash, newest first."""
        by_hash: dict[str, list[StoredRun]] = {}
        for run in self.runs(f"tags.suite = '{suite}'"):
            if run.tags.get("kind") in NESTED_KINDS:
                by_hash.setdefault(run.tags.get("config_hash", ""), []).append(run)
        return by_hash

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            self._client.delete_run(run_id)

    def start_run(self, *, run_name: str, tags: Mapping[str, str]) -> str:
        """Creates an empty RUNNING run (a claim, see ``bench.claims``); returns its id."""
        return self._client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags)).info.run_id

    # -- the parent run -----------------------------------------------------------------------------------------

    def open_parent(self, *, suite_hash: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                    artifacts: Mapping[str, Any], kind: str = "suite") -> str:
        """Reopens the newest parent run with this suite hash, or creates one; returns its id.

        Raises:
            TrackingError: that parent is marked running by another live process on this host.
        """
        for run in self.runs(f"tags.suite_hash = '{suite_hash}'"):
            if run.tags.get("kind") != kind:
                continue
            if run.status == "RUNNING" and owner_alive(run.tags):  # another host's (None): taken as gone
                raise TrackingError(f"this suite is already running (process {run.tags.get('pid')}, parent run "
                                    f"{run.run_id}); wait for it or stop it first")
            self._client.update_run(run.run_id, status="RUNNING")
            self._client.set_tag(run.run_id, "pid", str(os.getpid()))
            self._client.set_tag(run.run_id, "host", socket.gethostname())
            self._client.set_tag(run.run_id, "proc", process_identity())
            logged = {a.path for a in self._client.list_artifacts(run.run_id)}
            missing = {k: v for k, v in artifacts.items() if k not in logged}
            if missing:  # a kill between creating the parent and logging its plan
                self._log(run.run_id, artifacts=missing)
            return run.run_id
        all_tags = {**tags, "kind": kind, "suite_hash": suite_hash, "pid": str(os.getpid()),
                    "host": socket.gethostname(), "proc": process_identity()}
        run = self._client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self._log(run.info.run_id, params=params, artifacts=artifacts)
        return run.info.run_id

    def close_parent(self, run_id: str, *, status: str = "FINISHED", metrics: Mapping[str, float] | None = None,
                     artifacts: Mapping[str, Any] | None = None, files: Sequence[Path] = (),
                     files_path: str | None = None) -> None:
        self._log(run_id, metrics=metrics or {}, artifacts=artifacts or {})
        for path in files:
            self._client.log_artifact(run_id, str(path), files_path)
        if status == "RUNNING":
            self._client.update_run(run_id, status="RUNNING")
        else:
            self._client.set_terminated(run_id, status=status)

    def set_status(self, run_id: str, status: str) -> None:
        self._client.set_terminated(run_id, status=status)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_tag(run_id, key, str(value))

    def log_files(self, run_id: str, paths: Sequence[Path], artifact_path: str | None = None) -> None:
        """Copies files into a run's artifacts (under ``artifact_path``)."""
        for path in paths:
            self._client.log_artifact(run_id, str(path), artifact_path)

    # -- nested runs --------------------------------------------------------------------------------------------

    def log_run(self, *, parent_id: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                metrics: Mapping[str, float], step_metrics: Mapping[str, Sequence[tuple[int, float]]] = (),
                artifacts: Mapping[str, Any] = (), datasets: Sequence[DataSplit] = (), status: str = "FINISHED",
                started: float | None = None, ended: float | None = None) -> str:
        """Writes one finished (or failed) nested run in one go; returns its id.

        Args:
            artifacts: file name (may contain '/') -> a DataFrame (written as CSV), a dict or list (JSON), bytes,
                or a Path to copy.
            step_metrics: metric name -> (step, value) pairs, e.g. a compression curve.
            datasets: the data splits the run read, logged as its dataset inputs (the UI's Dataset column).
            started, ended: when the run's work began and ended (``time.time()`` seconds), so the MLflow UI's
                duration is the real cost; default: now.
        """
        now = time.time()
        run = self._client.create_run(self.experiment_id, run_name=run_name, start_time=_ms(started or now),
                                      tags={**tags, "mlflow.parentRunId": parent_id})
        try:
            self._log(run.info.run_id, params=params, metrics=metrics, step_metrics=step_metrics or {},
                      artifacts=artifacts or {}, timestamp=_ms(ended or now))
            if datasets:
                self._client.log_inputs(run.info.run_id, datasets=[split.as_input() for split in datasets])
            self._client.set_terminated(run.info.run_id, status=status, end_time=_ms(ended or time.time()))
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.set_terminated(run.info.run_id, status="FAILED")
            raise
        return run.info.run_id

    def _log(self, run_id: str, *, params: Mapping[str, Any] = (), metrics: Mapping[str, float] = (),
             step_metrics: Mapping[str, Sequence[tuple[int, float]]] = (), artifacts: Mapping[str, Any] = (),
             timestamp: int | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = timestamp or _ms(time.time())
        entries = [Metric(k, float(v), now, 0) for k, v in dict(metrics).items() if _finite(v)]
        for name, points in dict(step_metrics).items():
            entries.extend(Metric(name, float(v), now, int(step)) for step, v in points if _finite(v))
        param_list = [Param(k, _param_value(v)) for k, v in dict(params).items()]
        for start in range(0, max(len(entries), len(param_list), 1), 100):  # MLflow's batch limits
            self._client.log_batch(run_id, metrics=entries[start:start + 100], params=param_list[start:start + 100])
        if artifacts:
            with tempfile.TemporaryDirectory(prefix="coalition-bench-") as tmp:
                for name, value in dict(artifacts).items():
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(value, pd.DataFrame):
                        value.to_csv(path, index=False)
                    elif isinstance(value, Path):
                        path.write_bytes(value.read_bytes())
                    elif isinstance(value, bytes):
                        path.write_bytes(value)
                    else:
                        path.write_text(json.dumps(value, indent=1, default=str))
                self._client.log_artifacts(run_id, tmp)

    # -- reading back -------------------------------------------------------------------------------------------

    def read_csv(self, run_id: str, name: str) -> pd.DataFrame | None:
        """A CSV artifact of a run, or None when the run has none of that name."""
        path = self._download(run_id, name)
        return pd.read_csv(path) if path else None

    def read_json(self, run_id: str, name: str) -> Any:
        path = self._download(run_id, name)
        return json.loads(path.read_text()) if path else None

    def list_artifacts(self, run_id: str, folder: str) -> list[str]:
        """The paths of a run's artifacts in ``folder`` (none when it has no such folder)."""
        return sorted(a.path for a in self._client.list_artifacts(run_id, folder) if not a.is_dir)

    def read_bytes(self, run_id: str, name: str) -> bytes | None:
        """A binary artifact of a run (a PNG), or None when the run has none of that name."""
        path = self._download(run_id, name)
        return path.read_bytes() if path else None

    def _download(self, run_id: str, name: str) -> Path | None:
        folder = name.rpartition("/")[0]
        names = {a.path for a in self._client.list_artifacts(run_id, folder or None)}
        if name not in names:
            return None
        return Path(self._mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                                              tracking_uri=self.uri))



def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> flat "a.b" keys, as MLflow params."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def finished_runs(tracker: Tracker, hashes: Sequence[str]) -> list[Any]:
    """The newest finished nested run of each config hash (in the order of ``hashes``; missing ones left out)."""
    wanted = set(hashes)
    newest: dict[str, Any] = {}
    for run in tracker._client.search_runs([tracker.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                          max_results=50000, order_by=["attributes.start_time DESC"]):
        h = run.data.tags.get("config_hash")
        if h in wanted and h not in newest and run.data.tags.get("kind") in NESTED_KINDS:
            newest[h] = run
    return [newest[h] for h in hashes if h in newest]
