"""CelebA aligned faces with one binary attribute as the target, decoded lazily.

Built on torchvision's ``CelebA`` class, with the md5 check of its txt files made optional so tiny test files
can stand in for the real ones. CelebA's own train / valid / test partition is used as is, so
``val_fraction`` and ``split_seed`` are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import datasets as tv_datasets
from torchvision import transforms

from datasets.data.core import _CHECKSUM_FIX, DATASETS, LoadRequest, Splits, _file_digest, _read_text, _require
from datasets.data.images import LabelledImages
from datasets.errors import DataError


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
    """A picklable ``image.convert("RGB")`` (``"L"`` for grayscale), so DataLoader workers can use the transform."""

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert(self.mode)


def _check_celeba_files(base: Path, verify_checksums: bool) -> None:
    for _, md5, filename in _CelebA.file_list:
        if not filename.endswith(".txt"):
            continue
        path = _require("CelebA", base / filename, can_download=True)
        if verify_checksums and _file_digest(path, "md5", dataset="CelebA") != md5:
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
    request: LoadRequest, *, attribute: str = "Male", image_size: int = 64, grayscale: bool = False,
    verify_checksums: bool = True,
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
        grayscale: one luminance channel instead of RGB (NEUROGAME's 128x128x1 input).
        verify_checksums: check the txt files against torchvision's md5s.

    Returns:
        The splits (162,770 / 19,867 / 19,962 on the full data); x has shape (3 or 1, image_size, image_size).
    """
    if image_size < 1:
        raise ValueError(f"celeba: image_size must be positive, got {image_size}")
    base = request.root / _CelebA.base_folder
    transform = transforms.Compose(
        [_ToRGB("L" if grayscale else "RGB"), transforms.Resize(image_size), transforms.CenterCrop(image_size),
         transforms.ToTensor()]
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
        if isinstance(error, OSError):  # torchvision reads the txt files itself: find the one that cannot be read
            for _, _, filename in _CelebA.file_list:
                if filename.endswith(".txt"):
                    _file_digest(base / filename, "md5", dataset="CelebA")
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
        input_shape=(1 if grayscale else 3, image_size, image_size),
        classes=(f"not {attribute}", attribute),
    )
