"""Tiny ImageNet (200 classes, 64x64 RGB), decoded lazily from the standard ``tiny-imagenet-200/`` layout.

Training images are read with torchvision's ``ImageFolder`` and validation is carved from them; the official
validation split is our test split, because the official test split has no labels. This is the one image
dataset that can be downloaded (the cs231n zip).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Subset
from torchvision import datasets as tv_datasets
from torchvision import transforms
from torchvision.datasets.utils import download_and_extract_archive

from datasets.data.core import DATASETS, LoadRequest, Splits, _read_text
from datasets.data.images import ImageFiles, _open_rgb
from datasets.errors import DataError

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
