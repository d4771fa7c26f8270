"""The dataset registry: every dataset the benchmark trains on, loaded into train / val / test splits.

``load_dataset("mnist")`` returns a :class:`Splits`. Each loader is a factory registered with
``@DATASETS.register`` right above it; it takes a :class:`LoadRequest` (data root, how to carve the validation
split, whether to download) and keyword-only, typed options. ``load_dataset`` rejects options a factory does
not declare, so a typo fails loudly.

Rules every loader follows:
- The validation split is carved from the training data with a seeded permutation (:meth:`LoadRequest.carve`);
  the test split is never touched except for reporting. Datasets whose authors ship a validation split carved
  from their own training data (emotion, CelebA) use that one instead and ignore ``val_fraction`` and
  ``split_seed``.
- A missing, corrupt or unparsable file raises :class:`~datasets.errors.DataError` with a one-line message; no
  raw ``FileNotFoundError`` or torchvision ``RuntimeError`` escapes.
- The data root may be read-only; everything derived from it is written under
  :func:`~datasets.paths.cache_dir`.
- Datasets that fit in memory are ``TensorDataset``\\ s of float32 x and int64 y; image-folder datasets load
  lazily.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import math
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import datasets as tv_datasets
from torchvision import transforms
from torchvision.datasets.utils import download_and_extract_archive

from datasets.errors import DataError
from datasets.paths import cache_dir, resolve_data_root
from datasets.text import build_vocabulary
from methods.registry import Registry

DATASETS: Registry[Callable[..., Splits]] = Registry("dataset")

_CHECKSUM_FIX = "replace it with a fresh copy, or pass verify_checksums=False for files you made yourself"


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
            raise ValueError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")


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
        raise ValueError(
            f"dataset {name!r} has no option {', '.join(unknown)}; valid options: {_describe_options(valid)}"
        )
    for option, value in options.items():
        _check_option_type(name, valid[option], value)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
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


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
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


# ------------------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)

# Debian's dataset-fashion-mnist package installs the four .gz files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class _IdxSource:
    """One IDX dataset: which torchvision class reads it, where to look, how to check and normalize it."""

    display: str
    torchvision_class: type[tv_datasets.MNIST]
    folder: str
    search_root: bool
    extra_folders: tuple[Path, ...]
    # md5 of the *decompressed* files. Checked when a .gz does not match torchvision's md5: Debian re-gzips
    # the Fashion-MNIST files (new header, same deflate stream), so only their content still matches upstream.
    raw_md5: dict[str, str]
    mean: float
    std: float

    def folders(self, root: Path) -> list[Path]:
        folders = [root / self.folder, root / self.torchvision_class.__name__ / "raw"]
        if self.search_root:
            folders.append(root)
        return folders + list(self.extra_folders)


_MNIST = _IdxSource(
    display="MNIST",
    torchvision_class=tv_datasets.MNIST,
    folder="mnist",
    search_root=True,
    extra_folders=(),
    raw_md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mean=0.1307,
    std=0.3081,
)

_FASHION_MNIST = _IdxSource(
    display="Fashion-MNIST",
    torchvision_class=tv_datasets.FashionMNIST,
    folder="fashion-mnist",
    # Not the bare root: Fashion-MNIST's files have the same names as MNIST's, so a root holding MNIST's .gz
    # files would be read as Fashion-MNIST whenever checksums are off.
    search_root=False,
    extra_folders=(DEBIAN_FASHION_MNIST,),
    raw_md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mean=0.2860,
    std=0.3530,
)


def _decompress(source: _IdxSource, path: Path, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError.corrupt(source.display, path, f"not a valid gzip file: {error}") from error


def _check_idx(source: _IdxSource, path: Path, raw: bytes, n_classes: int) -> int:
    """Validate a decompressed IDX file (header, size, label range) and return its number of items."""
    ndim = 3 if "images" in path.name else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError.corrupt(source.display, path, f"{len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 | ndim:
        raise DataError.corrupt(
            source.display, path, f"IDX magic {magic:#06x}, expected {0x0800 | ndim:#06x}"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [28, 28]:
        raise DataError.corrupt(source.display, path, f"images are {dims[1]}x{dims[2]}, expected 28x28")
    if len(raw) != header + math.prod(dims):
        raise DataError.corrupt(
            source.display, path, f"{len(raw)} bytes, but the IDX header promises {header + math.prod(dims)}"
        )
    if ndim == 1 and dims[0] and max(raw[header:]) >= n_classes:
        raise DataError.corrupt(source.display, path, f"label {max(raw[header:])} is not below {n_classes}")
    return dims[0]


def _find_idx_files(source: _IdxSource, request: LoadRequest) -> dict[str, Path]:
    folders = source.folders(request.root)
    found = {name: _find_file(name, folders) for name, _ in source.torchvision_class.resources}
    if request.download and None in found.values():
        try:
            # torchvision downloads into <root>/<Class>/raw/, which is one of the folders we search.
            source.torchvision_class(root=str(request.root), train=True, download=True)
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"{source.display}: download into {request.root / source.torchvision_class.__name__ / 'raw'} "
                f"failed ({error}); check the connection and that the folder is writable, or point "
                "--data-dir at a folder that holds the files"
            ) from error
        found = {name: _find_file(name, folders) for name, _ in source.torchvision_class.resources}
    for name, path in found.items():
        if path is None:
            raise DataError.missing(source.display, name, folders, can_download=True)
    return found  # type: ignore[return-value]


def _idx_cache(source: _IdxSource, request: LoadRequest, verify_checksums: bool) -> Path:
    """Verify the .gz files and decompress them once into the cache; return the root torchvision should read.

    The cache folder is keyed by the md5s of the .gz files, so a different copy of the data never reuses files
    decompressed from another.
    """
    files = _find_idx_files(source, request)
    expected = dict(source.torchvision_class.resources)
    md5s = {name: _file_digest(path, "md5") for name, path in files.items()}
    key = hashlib.sha256("".join(md5s[name] for name in sorted(md5s)).encode()).hexdigest()[:16]
    torchvision_root = cache_dir() / "idx" / f"{source.torchvision_class.__name__}-{key}"
    raw_folder = torchvision_root / source.torchvision_class.__name__ / "raw"
    n_classes = len(source.torchvision_class.classes)
    counts = {}
    for name, path in files.items():
        raw_name = name.removesuffix(".gz")
        target = raw_folder / raw_name
        raw = None
        if verify_checksums and md5s[name] != expected[name]:
            raw = _decompress(source, path, path.read_bytes())
            raw_md5 = hashlib.md5(raw).hexdigest()
            if raw_md5 != source.raw_md5[raw_name]:
                raise DataError.corrupt(
                    source.display,
                    path,
                    f"md5 {md5s[name]} does not match the expected {expected[name]}",
                    fix=_CHECKSUM_FIX,
                )
        if not target.is_file():
            raw = raw if raw is not None else _decompress(source, path, path.read_bytes())
            _check_idx(source, path, raw, n_classes)
            _atomic_write(target, lambda partial, data=raw: partial.write_bytes(data))
        with target.open("rb") as handle:
            counts[raw_name] = int.from_bytes(handle.read(8)[4:8], "big")  # the item count in the IDX header
    for split in ("train", "t10k"):
        if counts[f"{split}-images-idx3-ubyte"] != counts[f"{split}-labels-idx1-ubyte"]:
            raise DataError.corrupt(
                source.display,
                files[f"{split}-labels-idx1-ubyte.gz"],
                f"{counts[f'{split}-labels-idx1-ubyte']} labels for "
                f"{counts[f'{split}-images-idx3-ubyte']} images",
            )
    return torchvision_root


def _idx_splits(
    name: str, source: _IdxSource, request: LoadRequest, *, verify_checksums: bool, keep: Sequence[int] = ()
) -> Splits:
    torchvision_root = _idx_cache(source, request, verify_checksums)
    tensors = []
    for train in (True, False):
        try:
            dataset = source.torchvision_class(root=str(torchvision_root), train=train, download=False)
        except (OSError, RuntimeError, ValueError) as error:
            raise DataError.corrupt(
                source.display,
                torchvision_root,
                f"torchvision could not read it: {error}",
                fix="delete that cache folder and load again",
            ) from error
        x, y = dataset.data, dataset.targets.to(torch.int64)
        if keep:
            kept = torch.tensor(sorted(keep))
            mask = torch.isin(y, kept)
            x, y = x[mask], torch.searchsorted(kept, y[mask])  # relabel the kept digits 0, 1, ...
        # (x / 255 - mean) / std as one scale and one shift, in place: 60,000 images make temporaries costly.
        x = x.to(torch.float32).mul_(1.0 / (255.0 * source.std)).sub_(source.mean / source.std).unsqueeze(1)
        tensors += [x, y]
    classes = source.torchvision_class.classes
    if keep:
        classes = [classes[label] for label in sorted(keep)]
    return _tensor_splits(name, request, *tensors, classes=classes)


@DATASETS.register("mnist")
def mnist(request: LoadRequest, *, verify_checksums: bool = True) -> Splits:
    """MNIST digits, 1x28x28, 10 classes, normalized to ``(x / 255 - 0.1307) / 0.3081``.

    The four ``.gz`` IDX files are looked for in ``<root>/mnist/``, ``<root>/MNIST/raw/`` (torchvision's
    layout) and ``<root>/``, checked against torchvision's md5s, and decompressed once into the cache, where
    torchvision reads them (the data root may be read-only). With ``download`` and no files found, torchvision
    downloads into ``<root>/MNIST/raw/``. Validation is carved from the 60,000 training images.

    Args:
        request: data root and split settings.
        verify_checksums: check the md5 of each ``.gz`` file; turn off only for files you made yourself.

    Returns:
        The splits (54,000 / 6,000 / 10,000 with the default ``val_fraction``).
    """
    return _idx_splits("mnist", _MNIST, request, verify_checksums=verify_checksums)


@DATASETS.register("mnist-01")
def mnist_01(request: LoadRequest, *, verify_checksums: bool = True) -> Splits:
    """MNIST digits 0 and 1 only, the binary task of the GTAP paper; 2 classes, labels 0 and 1.

    Read exactly as ``mnist``; validation is carved from the training zeros and ones.

    Args:
        request: data root and split settings.
        verify_checksums: check the md5 of each ``.gz`` file.

    Returns:
        The splits (12,665 training and 2,115 test images before carving).
    """
    return _idx_splits("mnist-01", _MNIST, request, verify_checksums=verify_checksums, keep=(0, 1))


@DATASETS.register("fashion-mnist")
def fashion_mnist(request: LoadRequest, *, verify_checksums: bool = True) -> Splits:
    """Fashion-MNIST, 1x28x28, 10 classes, normalized to ``(x / 255 - 0.2860) / 0.3530``.

    The ``.gz`` files are looked for in ``<root>/fashion-mnist/``, ``<root>/FashionMNIST/raw/`` and
    ``/usr/share/datasets/fashion-mnist/`` (where Debian's ``dataset-fashion-mnist`` package installs them);
    not in ``<root>/`` itself, where MNIST's identically named files may live. Debian re-gzips the files, so a
    ``.gz`` whose md5 differs from torchvision's is accepted when its decompressed content has the upstream
    md5.

    Args:
        request: data root and split settings.
        verify_checksums: check the md5 of each file.

    Returns:
        The splits (54,000 / 6,000 / 10,000 with the default ``val_fraction``).
    """
    return _idx_splits("fashion-mnist", _FASHION_MNIST, request, verify_checksums=verify_checksums)


# ------------------------------------------------------------------------------------------------------------
# Text: binary bag of words over a vocabulary built on the training split only


def _bag_of_words_splits(
    name: str,
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    test: tuple[list[str], list[int]],
    classes: Sequence[str],
    vocab_size: int,
) -> Splits:
    vocabulary = build_vocabulary(train[0], vocab_size=vocab_size)
    encoded = [
        TensorDataset(vocabulary.bag_of_words(texts), torch.tensor(labels, dtype=torch.int64))
        for texts, labels in (train, val, test)
    ]
    return Splits(
        name=name,
        train=encoded[0],
        val=encoded[1],
        test=encoded[2],
        num_classes=len(classes),
        input_shape=(len(vocabulary),),
        classes=tuple(classes),
    )


EMOTION_CLASSES = ("sadness", "joy", "love", "anger", "fear", "surprise")


def _read_carer(path: Path) -> tuple[list[str], list[int]]:
    label_ids = {label: i for i, label in enumerate(EMOTION_CLASSES)}
    texts: list[str] = []
    labels: list[int] = []
    for line_number, line in enumerate(_read_text("emotion", path).splitlines(), start=1):
        if not line.strip():
            continue
        text, separator, label = line.rpartition(";")
        if not separator or label.strip() not in label_ids:
            raise DataError.corrupt(
                "emotion",
                f"{path}:{line_number}",
                f"expected 'text;label' with a label in {', '.join(EMOTION_CLASSES)}, got {line[:60]!r}",
            )
        texts.append(text)
        labels.append(label_ids[label.strip()])
    if not texts:
        raise DataError.corrupt("emotion", path, "no examples")
    return texts, labels


@DATASETS.register("emotion")
def emotion(request: LoadRequest, *, vocab_size: int = 5000) -> Splits:
    """CARER emotion tweets (Saravia et al. 2018) as binary bag-of-words vectors; 6 classes.

    Reads ``<root>/emotion/{train,val,test}.txt``, one ``text;label`` line each, label names mapped to the HF
    ids (sadness 0, joy 1, love 2, anger 3, fear 4, surprise 5). The authors ship a validation split that they
    carved from their training data, so ``val.txt`` is our validation split and ``val_fraction`` /
    ``split_seed`` are ignored. The vocabulary is built on ``train.txt`` only.

    Args:
        request: data root (split settings are ignored, see above).
        vocab_size: the number of most document-frequent training tokens kept as features.

    Returns:
        The splits (16,000 / 2,000 / 2,000 on the full data); x has shape (vocab_size,), or fewer features
        when the training texts have fewer distinct tokens.
    """
    folder = request.root / "emotion"
    splits = [_read_carer(folder / f"{split}.txt") for split in ("train", "val", "test")]
    return _bag_of_words_splits("emotion", *splits, classes=EMOTION_CLASSES, vocab_size=vocab_size)


def _read_topic_csv(path: Path, n_classes: int) -> tuple[list[str], list[int]]:
    _require("twitter-topic", path)
    try:
        frame = pd.read_csv(path, dtype={"text": str}, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise DataError.corrupt("twitter-topic", path, f"not a readable CSV: {error}") from error
    if not {"text", "label"} <= set(frame.columns):
        raise DataError.corrupt("twitter-topic", path, f"columns {list(frame.columns)}, expected text,label")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels < 0) | (labels >= n_classes) | (labels != labels.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError.corrupt(
            "twitter-topic",
            path,
            f"row {row + 2} has label {frame['label'].iloc[row]!r}, not in 0..{n_classes - 1}",
        )
    return frame["text"].tolist(), labels.astype(int).tolist()


@DATASETS.register("twitter-topic")
def twitter_topic(request: LoadRequest, *, vocab_size: int = 5000) -> Splits:
    """Twitter financial news topics (zeroshot/twitter-financial-news-topic), binary bag of words; 20 classes.

    Reads ``<root>/twitter-financial-news-topic/``: ``topic_train.csv`` (columns text,label) gives train and
    the carved validation split; ``topic_valid.csv`` is our test split, because the dataset has no labelled
    test split. ``classes.txt`` names the classes (line i is label i). The vocabulary is built on the carved
    train part only.

    Args:
        request: data root and split settings.
        vocab_size: the number of most document-frequent training tokens kept as features.

    Returns:
        The splits (15,291 / 1,699 / 4,117 on the full data with the default ``val_fraction``).
    """
    folder = request.root / "twitter-financial-news-topic"
    classes_path = folder / "classes.txt"
    classes = [
        line.strip() for line in _read_text("twitter-topic", classes_path).splitlines() if line.strip()
    ]
    if not classes:
        raise DataError.corrupt("twitter-topic", classes_path, "no class names")
    texts, labels = _read_topic_csv(folder / "topic_train.csv", len(classes))
    test = _read_topic_csv(folder / "topic_valid.csv", len(classes))
    train_idx, val_idx = request.carve(len(texts))
    train = ([texts[i] for i in train_idx.tolist()], [labels[i] for i in train_idx.tolist()])
    val = ([texts[i] for i in val_idx.tolist()], [labels[i] for i in val_idx.tolist()])
    return _bag_of_words_splits("twitter-topic", train, val, test, classes=classes, vocab_size=vocab_size)


# ------------------------------------------------------------------------------------------------------------
# Image datasets


class UInt8Images(Dataset):
    """Images kept as one uint8 tensor and turned into float32 in [0, 1] one item at a time.

    A quarter of the memory of float32, and decoding the source JPEGs happens once, not every epoch. The
    splits of one dataset share the same ``images`` tensor and differ in ``indices``.

    Args:
        images: uint8 tensor of shape (N, C, H, W).
        targets: int64 tensor of shape (N,).
        indices: which rows of ``images`` this split holds.
    """

    def __init__(self, images: Tensor, targets: Tensor, indices: Tensor) -> None:
        self.images = images
        self.targets = targets
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        row = self.indices[i]
        return self.images[row].to(torch.float32) / 255.0, self.targets[row]

    def stacked(self, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """All items (or the items at ``index``) as (float32 images in [0, 1], int64 targets)."""
        rows = self.indices if index is None else self.indices[index]
        return self.images[rows].to(torch.float32) / 255.0, self.targets[rows]


def _open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file as RGB; the ``loader`` of our image-folder datasets."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as error:
        raise DataError.missing("image", Path(path).name, [Path(path).parent]) from error
    except OSError as error:
        raise DataError.corrupt("image", path, f"cannot decode: {error}") from error


class LabelledImages(Dataset):
    """Lazily decoded images with labels kept beside them.

    Args:
        images: a dataset whose item ``j`` is ``(image, anything)``; only the image is used.
        rows: which items of ``images`` this split holds.
        targets: int64 label of every item of ``images``.
        display: the dataset's name, for error messages.
    """

    def __init__(self, images: Dataset, rows: Tensor, targets: Tensor, display: str) -> None:
        self.images = images
        self.rows = rows
        self.targets = targets
        self.display = display

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        row = int(self.rows[i])
        try:
            image = self.images[row][0]
        except OSError as error:  # torchvision's CelebA opens files itself, so its errors arrive raw
            where = getattr(error, "filename", None) or f"item {row}"
            raise DataError.corrupt(self.display, where, f"cannot read the image: {error}") from error
        return image, self.targets[row]


class ImageFiles(Dataset):
    """Image files with known labels, decoded on access.

    Args:
        paths: one image file per item.
        targets: int64 labels, one per path.
        transform: maps a PIL image to a float tensor.
    """

    def __init__(
        self, paths: Sequence[Path], targets: Tensor, transform: Callable[[Image.Image], Tensor]
    ) -> None:
        self.paths = list(paths)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(_open_rgb(self.paths[i])), self.targets[i]


# --- UTKFace

UTKFACE_TARGETS = {
    "gender": ("male", "female"),
    "age": ("1-12", "13-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"),
}
# Lower edges of age groups 1..7; group 0 is everything below 13.
_AGE_EDGES = np.array([13, 20, 30, 40, 50, 60, 70])


def _read_utkface_labels(path: Path) -> pd.DataFrame:
    _require("UTKFace", path)
    try:
        frame = pd.read_csv(path, dtype={"filename": str, "split": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise DataError.corrupt("UTKFace", path, f"not a readable CSV: {error}") from error
    required = ["filename", "age", "gender", "split"]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError.corrupt("UTKFace", path, f"missing columns {', '.join(missing)}")
    for column in ("age", "gender"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any() or (values < 0).any():
            raise DataError.corrupt("UTKFace", path, f"column {column} holds a value that is not a count")
        frame[column] = values.astype(int)
    if not frame["gender"].isin([0, 1]).all():
        raise DataError.corrupt("UTKFace", path, "gender must be 0 (male) or 1 (female)")
    if not frame["split"].isin(["train", "test"]).all():
        raise DataError.corrupt("UTKFace", path, "split must be train or test")
    return frame


def _read_sha256sums(path: Path) -> dict[str, str]:
    sums = {}
    for line_number, line in enumerate(_read_text("UTKFace", path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError.corrupt("UTKFace", f"{path}:{line_number}", "expected '<sha256>  <filename>'")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def _decode_face(path: Path, expected_sha256: str | None, image_size: int, grayscale: bool) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise DataError.missing("UTKFace", path.name, [path.parent]) from error
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise DataError.corrupt(
            "UTKFace",
            path,
            f"sha256 {hashlib.sha256(data).hexdigest()} does not match SHA256SUMS",
            fix=_CHECKSUM_FIX,
        )
    mode = "L" if grayscale else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding: about twice as fast as
            # decoding 200x200 and resizing, and the final resize still antialiases.
            image.draft(mode, (image_size, image_size))
            resized = image.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.uint8)
    except OSError as error:
        raise DataError.corrupt("UTKFace", path, f"cannot decode the image: {error}") from error
    return pixels[None] if grayscale else pixels.transpose(2, 0, 1)


def _utkface_images(
    folder: Path, filenames: list[str], *, image_size: int, grayscale: bool, verify_checksums: bool
) -> Tensor:
    """All faces as one uint8 (N, C, S, S) tensor in ``filenames`` order, decoded once and cached.

    The cache file is keyed by (image_size, grayscale) and by a digest of labels.csv and SHA256SUMS, so a
    different copy of the data never reuses another's tensor.
    """
    labels_path = folder / "labels.csv"
    sums_path = folder / "SHA256SUMS"
    digest = hashlib.sha256(labels_path.read_bytes())
    if sums_path.is_file():
        digest.update(sums_path.read_bytes())
    color = "gray" if grayscale else "rgb"
    cache_file = cache_dir() / "utkface" / f"{digest.hexdigest()[:16]}-{image_size}px-{color}.pt"
    if cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            if cached["filenames"] == filenames and (cached["verified"] or not verify_checksums):
                return cached["images"]
        except Exception:  # it is our own cache: anything wrong with it means rebuild it
            pass

    image_folder = folder / "UTKFace"
    if not image_folder.is_dir():
        raise DataError.missing("UTKFace", "UTKFace/", [folder])
    sums: dict[str, str] = {}
    if verify_checksums:
        if not sums_path.is_file():
            raise DataError(
                f"UTKFace: SHA256SUMS not found (looked in {folder}); restore it from the original data, "
                "or pass verify_checksums=False"
            )
        sums = _read_sha256sums(sums_path)
        unlisted = [name for name in filenames if name not in sums]
        if unlisted:
            raise DataError.corrupt(
                "UTKFace", sums_path, f"{unlisted[0]} (and {len(unlisted) - 1} more) not listed"
            )
    for name in filenames:  # fail on the first missing file before spending time decoding
        if not (image_folder / name).is_file():
            raise DataError.missing("UTKFace", name, [image_folder])

    def decode(name: str) -> np.ndarray:
        return _decode_face(image_folder / name, sums.get(name), image_size, grayscale)

    # Decoding releases the GIL, so threads use every core without pickling images between processes.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = torch.from_numpy(np.stack(list(pool.map(decode, filenames))))
    _atomic_write(
        cache_file,
        lambda partial: torch.save(
            {"filenames": filenames, "images": images, "verified": verify_checksums}, partial
        ),
    )
    return images


@DATASETS.register("utkface")
def utkface(
    request: LoadRequest,
    *,
    target: str = "gender",
    image_size: int = 64,
    grayscale: bool = False,
    verify_checksums: bool = True,
) -> Splits:
    """UTKFace aligned & cropped faces, with gender or an age group as the target; float32 in [0, 1].

    Reads ``<root>/faces-utkface/labels.csv`` (columns filename,age,gender,race,split) and
    ``<root>/faces-utkface/UTKFace/*.jpg``. Rows with ``split == "test"`` are the test split; validation is
    carved from the ``train`` rows. The JPEGs are decoded and resized once into a uint8 tensor cached under
    :func:`~datasets.paths.cache_dir` (keyed by ``image_size`` and ``grayscale``) and reused afterwards.

    Args:
        request: data root and split settings.
        target: ``"gender"`` (0 male, 1 female) or ``"age"`` (8 groups: 1-12, 13-19, 20-29, 30-39, 40-49,
            50-59, 60-69, 70+).
        image_size: side of the square images, in pixels.
        grayscale: one luminance channel instead of RGB.
        verify_checksums: check every image against ``SHA256SUMS`` when the cached tensor is built.

    Returns:
        The splits (10,080 / 1,120 / 2,800 on the staged subset); x has shape
        (3 or 1, image_size, image_size).
    """
    if target not in UTKFACE_TARGETS:
        raise ValueError(f"utkface: unknown target {target!r}; valid targets: {', '.join(UTKFACE_TARGETS)}")
    if image_size < 1:
        raise ValueError(f"utkface: image_size must be positive, got {image_size}")
    folder = request.root / "faces-utkface"
    frame = _read_utkface_labels(folder / "labels.csv")
    images = _utkface_images(
        folder,
        frame["filename"].tolist(),
        image_size=image_size,
        grayscale=grayscale,
        verify_checksums=verify_checksums,
    )
    if target == "gender":
        targets = torch.tensor(frame["gender"].to_numpy(), dtype=torch.int64)
    else:
        groups = np.searchsorted(_AGE_EDGES, frame["age"].to_numpy(), side="right")
        targets = torch.tensor(groups, dtype=torch.int64)
    train_rows = torch.from_numpy(np.flatnonzero(frame["split"].to_numpy() == "train"))
    test_rows = torch.from_numpy(np.flatnonzero(frame["split"].to_numpy() == "test"))
    train_idx, val_idx = request.carve(len(train_rows))
    classes = UTKFACE_TARGETS[target]
    return Splits(
        name="utkface",
        train=UInt8Images(images, targets, train_rows[train_idx]),
        val=UInt8Images(images, targets, train_rows[val_idx]),
        test=UInt8Images(images, targets, test_rows),
        num_classes=len(classes),
        input_shape=tuple(images.shape[1:]),
        classes=classes,
    )


# --- Tiny ImageNet

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


@DATASETS.register("tiny-imagenet")
def tiny_imagenet(request: LoadRequest) -> Splits:
    """Tiny ImageNet (200 classes, 64x64 RGB), float32 in [0, 1], decoded lazily.

    Reads the standard ``<root>/tiny-imagenet-200/`` layout. Training images (``train/<wnid>/images/*.JPEG``)
    are read with torchvision's ``ImageFolder``, so labels follow the sorted wnids; validation is carved from
    them. The official validation split (``val/images`` labelled by ``val/val_annotations.txt``) is our test
    split, because the official test split has no labels. With ``download``, the cs231n zip is fetched and
    unpacked into the root.

    Args:
        request: data root and split settings.

    Returns:
        The splits (90,000 / 10,000 / 10,000 on the full data with the default ``val_fraction``).
    """
    base = request.root / "tiny-imagenet-200"
    if request.download and not (base / "wnids.txt").is_file():
        try:
            download_and_extract_archive(
                TINY_IMAGENET_URL, download_root=str(request.root), md5=TINY_IMAGENET_MD5
            )
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"tiny-imagenet: download of {TINY_IMAGENET_URL} into {request.root} failed ({error}); "
                "check the connection and that the folder is writable, or point --data-dir at a folder "
                "that holds tiny-imagenet-200/"
            ) from error
    for relative in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        path = base / relative
        if not path.is_file():
            raise DataError.missing("tiny-imagenet", relative, [base], can_download=True)
    wnids = [
        line.strip() for line in _read_text("tiny-imagenet", base / "wnids.txt").splitlines() if line.strip()
    ]
    words = {}
    for line in _read_text("tiny-imagenet", base / "words.txt").splitlines():
        wnid, _, name = line.partition("\t")
        words[wnid.strip()] = name.strip()

    to_tensor = transforms.ToTensor()
    try:
        train_folder = tv_datasets.ImageFolder(str(base / "train"), transform=to_tensor, loader=_open_rgb)
    except (FileNotFoundError, RuntimeError) as error:
        raise DataError.missing(
            "tiny-imagenet", "train/<wnid>/images/*.JPEG", [base], can_download=True
        ) from error
    if sorted(train_folder.classes) != sorted(wnids):
        extra = sorted(set(train_folder.classes) ^ set(wnids))
        raise DataError.corrupt(
            "tiny-imagenet",
            base / "wnids.txt",
            f"it and the folders in train/ disagree on {len(extra)} wnid(s), e.g. {extra[0]}",
        )

    annotations = base / "val" / "val_annotations.txt"
    val_paths: list[Path] = []
    val_labels: list[int] = []
    for line_number, line in enumerate(_read_text("tiny-imagenet", annotations).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in train_folder.class_to_idx:
            raise DataError.corrupt(
                "tiny-imagenet",
                f"{annotations}:{line_number}",
                f"expected '<file>\\t<wnid>', got {line[:60]!r}",
            )
        path = base / "val" / "images" / fields[0]
        if not path.is_file():
            raise DataError.missing("tiny-imagenet", fields[0], [path.parent], can_download=True)
        val_paths.append(path)
        val_labels.append(train_folder.class_to_idx[fields[1]])

    train_idx, val_idx = request.carve(len(train_folder))
    classes = tuple(words.get(wnid, wnid) for wnid in train_folder.classes)
    return Splits(
        name="tiny-imagenet",
        train=Subset(train_folder, train_idx.tolist()),
        val=Subset(train_folder, val_idx.tolist()),
        test=ImageFiles(val_paths, torch.tensor(val_labels, dtype=torch.int64), to_tensor),
        num_classes=len(classes),
        input_shape=(3, 64, 64),
        classes=classes,
    )


# --- CelebA


class _CelebA(tv_datasets.CelebA):
    """torchvision's CelebA with the md5 check of its txt files optional (tiny test files cannot match it)."""

    def __init__(self, root: str, *, verify_checksums: bool, **kwargs: Any) -> None:
        self.verify_checksums = verify_checksums
        super().__init__(root, **kwargs)

    def _check_integrity(self) -> bool:
        if self.verify_checksums:
            return super()._check_integrity()
        folder = Path(self.root) / self.base_folder
        texts = [filename for _, _, filename in self.file_list if filename.endswith(".txt")]
        return all((folder / name).is_file() for name in texts) and (folder / "img_align_celeba").is_dir()


class _ToRGB:
    """A picklable ``image.convert("RGB")``, so DataLoader workers can use the transform."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")


def _check_celeba_files(base: Path, verify_checksums: bool) -> None:
    for _, md5, filename in _CelebA.file_list:
        if not filename.endswith(".txt"):
            continue
        path = _require("CelebA", base / filename, can_download=True)
        if verify_checksums and _file_digest(path, "md5") != md5:
            raise DataError.corrupt(
                "CelebA",
                path,
                f"md5 does not match torchvision's {md5}",
                fix=_CHECKSUM_FIX,
            )
    if not (base / "img_align_celeba").is_dir():
        raise DataError.missing("CelebA", "img_align_celeba/", [base], can_download=True)


def _read_celeba_partition(path: Path) -> tuple[list[str], Tensor]:
    names: list[str] = []
    partition: list[int] = []
    for line_number, line in enumerate(_read_text("CelebA", path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError.corrupt("CelebA", f"{path}:{line_number}", "expected '<image> <0|1|2>'")
        names.append(fields[0])
        partition.append(int(fields[1]))
    return names, torch.tensor(partition, dtype=torch.int64)


@DATASETS.register("celeba")
def celeba(
    request: LoadRequest, *, attribute: str = "Male", image_size: int = 64, verify_checksums: bool = True
) -> Splits:
    """CelebA aligned faces with one binary attribute as the target; float32 in [0, 1], decoded lazily.

    Reads torchvision's layout, ``<root>/celeba/`` with ``img_align_celeba/`` and the five ``list_*.txt`` /
    ``identity_CelebA.txt`` files. The split comes from ``list_eval_partition.txt``: CelebA's own "valid"
    split (carved by its authors from the same pool) is our validation split, so ``val_fraction`` and
    ``split_seed`` are ignored; its "test" split is our test split. Images are resized (shorter side) and
    centre-cropped to a square.

    Args:
        request: data root (split settings are ignored, see above).
        attribute: a column of ``list_attr_celeba.txt``, e.g. ``"Male"`` or ``"Smiling"``; label 1 means
            present.
        image_size: side of the square images, in pixels.
        verify_checksums: check the txt files against torchvision's md5s.

    Returns:
        The splits (162,770 / 19,867 / 19,962 on the full data); x has shape (3, image_size, image_size).
    """
    if image_size < 1:
        raise ValueError(f"celeba: image_size must be positive, got {image_size}")
    base = request.root / _CelebA.base_folder
    transform = transforms.Compose(
        [_ToRGB(), transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()]
    )
    if request.download:
        try:
            _CelebA(str(request.root), verify_checksums=verify_checksums, split="all", download=True)
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"CelebA: download into {base} failed ({error}); Google Drive often refuses it, in which "
                f"case download the files by hand into {base}"
            ) from error
    _check_celeba_files(base, verify_checksums)
    try:
        # target_type=[]: the target is one attribute column, which LabelledImages serves beside the image.
        dataset = _CelebA(
            str(request.root),
            verify_checksums=verify_checksums,
            split="all",
            target_type=[],
            transform=transform,
        )
    except (OSError, RuntimeError, ValueError, IndexError) as error:
        raise DataError.corrupt(
            "CelebA", base, f"torchvision could not parse its txt files: {error}"
        ) from error
    attributes = [name for name in dataset.attr_names if name]
    if attribute not in attributes:
        raise ValueError(
            f"celeba: unknown attribute {attribute!r}; valid attributes: {', '.join(attributes)}"
        )
    names, partition = _read_celeba_partition(base / "list_eval_partition.txt")
    if names != list(dataset.filename) or len(dataset.attr) != len(names):
        raise DataError.corrupt(
            "CelebA", base / "list_attr_celeba.txt", "its images do not match list_eval_partition.txt"
        )
    targets = dataset.attr[:, attributes.index(attribute)].to(torch.int64)

    def split(code: int) -> LabelledImages:
        rows = torch.from_numpy(np.flatnonzero(partition.numpy() == code))
        return LabelledImages(dataset, rows, targets, "CelebA")

    return Splits(
        name="celeba",
        train=split(0),
        val=split(1),
        test=split(2),
        num_classes=2,
        input_shape=(3, image_size, image_size),
        classes=(f"not {attribute}", attribute),
    )
