"""UTKFace aligned & cropped faces, with gender or an age group as the target.

The JPEGs listed in ``labels.csv`` are checked against ``SHA256SUMS``, decoded and resized once (in threads)
into one uint8 tensor and cached under :func:`~datasets.paths.cache_dir`, keyed by the image size, the colour
mode and a digest of the label and checksum files; later loads read the cache. The splits are
:class:`~datasets.data.images.UInt8Images` views of that tensor.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from datasets.data.core import (
    _CHECKSUM_FIX,
    DATASETS,
    LoadRequest,
    Splits,
    _atomic_write,
    _read_bytes,
    _read_text,
    _reading,
    _require,
)
from datasets.data.images import UInt8Images
from datasets.errors import DataError
from datasets.paths import cache_dir

if TYPE_CHECKING:
    import pandas as pd

UTKFACE_TARGETS = {
    "gender": ("male", "female"),
    "age": ("1-12", "13-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"),
}
# Lower edges of age groups 1..7; group 0 is everything below 13.
_AGE_EDGES = np.array([13, 20, 30, 40, 50, 60, 70])


def _read_utkface_labels(path: Path) -> pd.DataFrame:
    import pandas as pd  # here: a machine with torch alone (bench doctor's) imports this module too

    _require("UTKFace", path)
    try:
        with _reading("UTKFace", path):
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
    data = _read_bytes("UTKFace", path)
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
    digest = hashlib.sha256(_read_bytes("UTKFace", labels_path))
    if sums_path.is_file():
        digest.update(_read_bytes("UTKFace", sums_path))
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
                "or set verify_checksums: false in the dataset_options of a suite's pair variant"
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
