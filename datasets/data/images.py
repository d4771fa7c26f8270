"""The dataset types the image loaders share, and the image decoder they use.

- :class:`UInt8Images`: images decoded once into one uint8 tensor, turned into float32 in [0, 1] per item
  (UTKFace); :func:`~datasets.data.core.as_tensors` stacks it without iterating.
- :class:`LabelledImages`: lazily decoded images from another dataset, with labels kept beside them (CelebA).
- :class:`ImageFiles`: a list of image files with known labels, decoded on access (Tiny ImageNet's test split).

Decoding errors surface as :class:`~datasets.errors.DataError`, never as raw ``OSError``\\ s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from datasets.errors import DataError


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
