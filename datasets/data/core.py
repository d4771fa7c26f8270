"""The core of the dataset layer: the registry, what a loader gets and returns, and the helpers loaders share.

``DATASETS`` maps every dataset name to its loader factory. :func:`load_dataset` looks the name up, rejects
options the factory does not declare (so a typo fails loudly, and the message lists the valid ones), checks
their types and calls the factory with a :class:`LoadRequest` (data root, how to carve the validation split,
whether to download). Every factory returns a :class:`Splits`. :func:`as_tensors` stacks any split into
(X, y), without iterating when the split is held in memory.

The private helpers at the bottom (file digests, finding and requiring files, atomic writes into the cache,
reading files, UTF-8 reads, carving in-memory tensors into :class:`Splits`) are what the format modules build on,
so every loader reports a missing, unreadable or corrupt file the same way: one :class:`~datasets.errors.DataError`
line.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from datasets.data.images import UInt8Images
from datasets.errors import DataError, UsageError
from datasets.paths import resolve_data_root
from datasets.registry import Registry

DATASETS: Registry[Callable[..., Splits]] = Registry("dataset")

# A CLI user turns the check off in a suite's pair variant (dataset_options: {verify_checksums: false}); from Python
# it is load_dataset(..., verify_checksums=False).
_CHECKSUM_FIX = ("replace it with a fresh copy, or, for files you made yourself, set verify_checksums: false in the "
                 "dataset_options of a suite's pair variant")


@dataclass(frozen=True)
class Splits:
    """A dataset cut into train, validation and test splits.

    Every split is a torch ``Dataset`` whose items are ``(x, y)``: x a float32 tensor of shape
    ``input_shape``, y an int64 class index (a scalar tensor or an int) below ``num_classes``.

    Args:
        name: the registry name the splits were loaded under.
        train: the data models are fitted on.
        val: held out from training, for early stopping and tuning.
        test: for reporting only.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        input_shape: shape of one x, without the batch dimension.
        classes: class names; ``classes[i]`` is the name of label ``i``.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.classes) != self.num_classes:
            raise UsageError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")


@dataclass(frozen=True)
class LoadRequest:
    """What every factory gets besides its own options: where the data is and how to split it.

    Args:
        root: the data root (see :func:`~datasets.paths.resolve_data_root`).
        val_fraction: the fraction of the training data carved out as the validation split.
        split_seed: seed of the permutation that carves the validation split.
        download: whether a loader may download missing files (only those that can).
    """

    root: Path
    val_fraction: float = 0.1
    split_seed: int = 0
    download: bool = False

    def carve(self, n: int) -> tuple[Tensor, Tensor]:
        """Deterministically split ``n`` training examples into train and validation indices.

        Args:
            n: number of training examples.

        Returns:
            (train_indices, val_indices), int64, each sorted ascending and together a partition of
            ``range(n)``. The validation part has ``round(n * val_fraction)`` examples, at least one when
            ``val_fraction > 0`` and at most ``n - 1``, so neither part is empty when ``n >= 2``.
        """
        n_val = round(n * self.val_fraction)
        if self.val_fraction > 0:
            n_val = max(n_val, 1)
        n_val = max(min(n_val, n - 1), 0)
        permutation = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        # A mask instead of sorting the two halves of the permutation: same result, linear time.
        is_val = torch.zeros(n, dtype=torch.bool)
        is_val[permutation[:n_val]] = True
        return torch.nonzero(~is_val).squeeze(1), torch.nonzero(is_val).squeeze(1)


def dataset_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a registered dataset accepts.

    Args:
        name: a registered dataset name.

    Returns:
        The factory's keyword-only parameters by name (with their annotations resolved and their defaults).
    """
    signature = inspect.signature(DATASETS.get(name), eval_str=True)
    return {
        parameter.name: parameter
        for parameter in signature.parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _describe_options(options: dict[str, inspect.Parameter]) -> str:
    if not options:
        return "none"
    described = []
    for parameter in options.values():
        kind = getattr(parameter.annotation, "__name__", str(parameter.annotation))
        described.append(f"{parameter.name} ({kind}, default {parameter.default!r})")
    return ", ".join(described)


def _check_option_type(dataset: str, parameter: inspect.Parameter, value: Any) -> None:
    # bool is an int in Python, so `vocab_size=True` would slip through a plain isinstance check.
    expected = parameter.annotation
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected in (bool, str):
        ok = isinstance(value, expected)
    else:
        return
    if not ok:
        raise TypeError(
            f"dataset {dataset!r}: option {parameter.name} must be {expected.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
    **options: Any,
) -> Splits:
    """Load a registered dataset as train / val / test splits.

    Args:
        name: a name in ``DATASETS.names()``.
        data_dir: the data root; None resolves it with :func:`~datasets.paths.resolve_data_root`.
        val_fraction: fraction of the training data carved out for validation, in [0, 1).
        split_seed: seed of the carving permutation; the same seed always gives the same split.
        download: let loaders that can download fetch missing files (needs internet).
        **options: the dataset's own options; see :func:`dataset_options`.

    Returns:
        The splits.

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests close names).
        ValueError: an option the dataset does not have (the message lists the valid ones), or a bad value.
        TypeError: an option of the wrong type.
        DataError: a data file is missing or corrupt.
    """
    factory = DATASETS.get(name)
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(
            f"dataset {name!r} has no option {', '.join(unknown)}; valid options: {_describe_options(valid)}"
        )
    for option, value in options.items():
        _check_option_type(name, valid[option], value)
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction}")
    request = LoadRequest(
        root=resolve_data_root(data_dir), val_fraction=val_fraction, split_seed=split_seed, download=download
    )
    return factory(request, **options)


# ------------------------------------------------------------------------------------------------------------
# Stacking datasets into tensors


def _fast_tensors(dataset: Dataset, index: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
    """(X, y) without iterating, for the in-memory dataset types; None for anything else."""
    if isinstance(dataset, Subset):
        indices = torch.as_tensor(dataset.indices, dtype=torch.int64)
        return _fast_tensors(dataset.dataset, indices if index is None else indices[index])
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        x, y = dataset.tensors
        return (x, y) if index is None else (x[index], y[index])
    if isinstance(dataset, UInt8Images):
        return dataset.stacked(index)
    return None


def as_tensors(dataset: Dataset, *, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """Stack a dataset of ``(x, y)`` items into two tensors.

    ``TensorDataset``\\ s, preprocessed image tensors and ``Subset``\\ s of them take a fast path that indexes
    the stored tensors instead of iterating; for a bare ``TensorDataset`` the result shares its memory.

    Args:
        dataset: a dataset of ``(x, y)`` pairs, e.g. one split of a :class:`Splits`.
        batch_size: items per batch when the dataset has to be iterated.

    Returns:
        (X, y): X of shape (len(dataset), *x.shape), y int64 of shape (len(dataset),).
    """
    fast = _fast_tensors(dataset)
    if fast is not None:
        x, y = fast
        return x, y.to(torch.int64)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("cannot stack an empty dataset: the shape of x is unknown")
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


# ------------------------------------------------------------------------------------------------------------
# Small shared pieces


@contextmanager
def _reading(dataset: str, path: Path) -> Iterator[None]:
    """Turns an ``OSError`` raised while reading the data file ``path`` (no permission, an I/O error) into one
    :class:`~datasets.errors.DataError` line that names the file; a file gone since it was found is missing."""
    try:
        yield
    except FileNotFoundError as error:
        raise DataError.missing(dataset, path.name, [path.parent]) from error
    except OSError as error:
        raise DataError.unreadable(dataset, path, error) from error


def _read_bytes(dataset: str, path: Path) -> bytes:
    with _reading(dataset, path):
        return path.read_bytes()


def _file_digest(path: Path, algorithm: str, *, dataset: str) -> str:
    digest = hashlib.new(algorithm)
    with _reading(dataset, path), path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _find_file(filename: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    return None


def _require(dataset: str, path: Path, *, can_download: bool = False) -> Path:
    if not path.is_file():
        raise DataError.missing(dataset, path.name, [path.parent], can_download=can_download)
    return path


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    # Write beside the target and rename, so an interrupted run never leaves a half-written cache file that a
    # later run would trust.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _read_text(dataset: str, path: Path) -> str:
    _require(dataset, path)
    try:
        with _reading(dataset, path):
            return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError.corrupt(
            dataset, path, f"not UTF-8 text: {error.reason} at byte {error.start}"
        ) from error


def _tensor_splits(
    name: str,
    request: LoadRequest,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    classes: Sequence[str],
) -> Splits:
    """Carve val from in-memory training tensors and wrap everything as TensorDatasets."""
    train_idx, val_idx = request.carve(len(x_train))
    return Splits(
        name=name,
        # Indexed copies rather than Subsets: contiguous tensors make every training epoch faster.
        train=TensorDataset(x_train[train_idx], y_train[train_idx]),
        val=TensorDataset(x_train[val_idx], y_train[val_idx]),
        test=TensorDataset(x_test, y_test),
        num_classes=len(classes),
        input_shape=tuple(x_train.shape[1:]),
        classes=tuple(classes),
    )
