"""The dataset registry: every dataset the benchmark trains on, loaded into train / val / test splits.

``load_dataset("mnist")`` returns a :class:`Splits`. Each loader is a factory registered with
``@DATASETS.register`` right above it; it takes a :class:`LoadRequest` (data root, how to carve the validation
split, whether to download) and keyword-only, typed options. ``load_dataset`` rejects options a factory does
not declare, so a typo fails loudly.

The package has one module per format; importing it imports them all, so every loader is registered:

- :mod:`~datasets.data.core`: the registry, :class:`Splits`, :class:`LoadRequest`, :func:`load_dataset`,
  :func:`as_tensors` and the file helpers the loaders share.
- :mod:`~datasets.data.idx`: MNIST, MNIST-01 and Fashion-MNIST (gzipped IDX files).
- :mod:`~datasets.data.text`: emotion and twitter-topic (binary bag of words).
- :mod:`~datasets.data.images`: the dataset types shared by the image loaders.
- :mod:`~datasets.data.faces` (UTKFace), :mod:`~datasets.data.imagenet_tiny` (Tiny ImageNet),
  :mod:`~datasets.data.celeba_faces` (CelebA): one image dataset each. (Module names differ from the loader
  functions re-exported here, so ``datasets.data.celeba`` is the function and never hides a module.)

Import the public API from here (``from datasets.data import load_dataset``).

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

from datasets.data.celeba_faces import celeba
from datasets.data.core import DATASETS, LoadRequest, Splits, as_tensors, dataset_options, load_dataset
from datasets.data.faces import UTKFACE_TARGETS, utkface
from datasets.data.idx import DEBIAN_FASHION_MNIST, fashion_mnist, mnist, mnist_01
from datasets.data.imagenet_tiny import TINY_IMAGENET_MD5, TINY_IMAGENET_URL, tiny_imagenet
from datasets.data.images import ImageFiles, LabelledImages, UInt8Images
from datasets.data.text import EMOTION_CLASSES, emotion, twitter_topic

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "EMOTION_CLASSES",
    "TINY_IMAGENET_MD5",
    "TINY_IMAGENET_URL",
    "UTKFACE_TARGETS",
    "ImageFiles",
    "LabelledImages",
    "LoadRequest",
    "Splits",
    "UInt8Images",
    "as_tensors",
    "celeba",
    "dataset_options",
    "emotion",
    "fashion_mnist",
    "load_dataset",
    "mnist",
    "mnist_01",
    "tiny_imagenet",
    "twitter_topic",
    "utkface",
]
