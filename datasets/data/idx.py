"""MNIST, MNIST-01 and Fashion-MNIST, read from the four gzipped IDX files of each.

The ``.gz`` files are looked for in a few conventional folders (ours, torchvision's ``<Class>/raw/`` and, for
Fashion-MNIST, where Debian's ``dataset-fashion-mnist`` package installs them), checked against torchvision's
md5s (a re-gzipped copy passes when its decompressed content has the upstream md5), validated (IDX header,
size, label range) and decompressed once into :func:`~datasets.paths.cache_dir`, where torchvision reads them:
the data root may be read-only. The images are normalized with each dataset's mean and std and kept in memory
as float32 ``TensorDataset``\\ s; validation is carved from the training images.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets as tv_datasets

from datasets.data.core import (
    _CHECKSUM_FIX,
    DATASETS,
    LoadRequest,
    Splits,
    _atomic_write,
    _file_digest,
    _find_file,
    _read_bytes,
    _tensor_splits,
)
from datasets.errors import DataError
from datasets.paths import cache_dir

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
    md5s = {name: _file_digest(path, "md5", dataset=source.display) for name, path in files.items()}
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
            raw = _decompress(source, path, _read_bytes(source.display, path))
            raw_md5 = hashlib.md5(raw).hexdigest()
            if raw_md5 != source.raw_md5[raw_name]:
                raise DataError.corrupt(
                    source.display,
                    path,
                    f"md5 {md5s[name]} does not match the expected {expected[name]}",
                    fix=_CHECKSUM_FIX,
                )
        if not target.is_file():
            raw = raw if raw is not None else _decompress(source, path, _read_bytes(source.display, path))
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
