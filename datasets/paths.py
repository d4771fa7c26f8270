"""Where data is read from and where derived files are written.

Two folders, kept apart on purpose: the data root holds the original files and may be read-only (a shared,
staged copy), while the cache folder is always ours to write, so anything we derive from the data
(decompressed MNIST, preprocessed image tensors) goes there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from datasets.errors import DataError

DATA_ENV = "COALITION_BENCH_DATA"
CACHE_ENV = "COALITION_BENCH_CACHE"


def _user_cache_home() -> Path:
    # The XDG spec says a relative $XDG_CACHE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    return Path.home() / ".cache"


def resolve_data_root(data_dir: str | Path | None = None) -> Path:
    """The folder that holds (or will hold) the original data files.

    Args:
        data_dir: an explicit folder; wins over everything else.

    Returns:
        ``data_dir`` if given, else ``$COALITION_BENCH_DATA`` if set, else
        ``$XDG_CACHE_HOME/coalition-bench/data`` (``~/.cache/coalition-bench/data`` by default), which is
        where torchvision downloads when online. The folder is not created: it may be read-only, and a missing
        folder is reported by the loader that needs it.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return _user_cache_home() / "coalition-bench" / "data"


def cache_dir() -> Path:
    """A writable folder for files derived from the data, created on demand.

    Returns:
        ``$COALITION_BENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/coalition-bench``
        (``~/.cache/coalition-bench``).

    Raises:
        DataError: the folder cannot be created.
    """
    from_env = os.environ.get(CACHE_ENV, "")
    folder = Path(from_env).expanduser() if from_env else _user_cache_home() / "coalition-bench"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cache: cannot create {folder} ({error.strerror or error}); "
            f"point {CACHE_ENV} at a writable folder"
        ) from error
    return folder


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on one entry of the cache (a lock file beside ``path``), where the OS offers ``flock``:
    two processes that would write the same entry (two workers training one shared checkpoint) take turns."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, at worst an entry computed twice, to the same contents
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
