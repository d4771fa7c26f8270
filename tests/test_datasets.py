"""The dataset layer: every registered loader, on tiny files written here in the real formats.

Each writer in tests/helpers.py produces the on-disk layout the loader documents (gzipped IDX, ``text;label`` lines,
CSV, JPEG folders, CelebA's txt files) in ``tmp_path``; the tests then go through the public API only. Nothing is
downloaded.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib
import os
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    OPTIONS,
    WRITERS,
    noise_jpeg,
    write_celeba,
    write_emotion,
    write_idx_dataset,
    write_idx_gz,
    write_mnist,
    write_tiny_imagenet,
    write_twitter_topic,
    write_utkface,
)
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import datasets as tv_datasets

import datasets.data as data_package
from datasets.data import (
    DATASETS,
    DEBIAN_FASHION_MNIST,
    LoadRequest,
    as_tensors,
    dataset_options,
    load_dataset,
)
from datasets.data import idx as idx_module
from datasets.errors import DataError
from datasets.paths import cache_dir, resolve_data_root
from datasets.registry import UnknownNameError
from datasets.text import build_vocabulary, tokenize

# Patch private names in the module that uses them: a patch on a re-export in datasets.data would do nothing.
tiny_imagenet_module = importlib.import_module("datasets.data.imagenet_tiny")


# Every test gets its own cache folder (conftest.py), so nothing is read from or written to the user's cache.
pytestmark = pytest.mark.usefixtures("private_cache")


# Datasets whose validation split is the authors' own, so split_seed does not change it.
OFFICIAL_VALIDATION = {"emotion", "celeba"}
# Datasets whose features are fitted on the carved training split (a vocabulary), so split_seed changes them.
FEATURES_FITTED_ON_CARVED_TRAIN = {"twitter-topic"}


def _load(name: str, root: Path, **kwargs: object):
    return load_dataset(name, data_dir=root, **{**OPTIONS.get(name, {}), **kwargs})


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


# ------------------------------------------------------------------------------------------------------------
# The contract every registered dataset meets


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name: str, tmp_path: Path) -> None:
    assert name in WRITERS, f"registered dataset {name!r} has no fixture writer in tests/helpers.py"
    WRITERS[name](tmp_path)
    splits = _load(name, tmp_path, split_seed=0)

    assert splits.name == name
    assert splits.num_classes == len(splits.classes) >= 2
    tensors = {}
    for split_name in ("train", "val", "test"):
        split = getattr(splits, split_name)
        assert len(split) > 0, split_name
        x, y = split[0]
        assert x.dtype == torch.float32 and tuple(x.shape) == splits.input_shape
        assert 0 <= int(y) < splits.num_classes
        xs, ys = as_tensors(split)
        assert tuple(xs.shape) == (len(split), *splits.input_shape)
        assert xs.dtype == torch.float32 and ys.dtype == torch.int64
        assert int(ys.min()) >= 0 and int(ys.max()) < splits.num_classes
        tensors[split_name] = (xs, ys)
    assert not _rows(tensors["train"][0]) & _rows(tensors["val"][0]), "val overlaps train"

    again = _load(name, tmp_path, split_seed=0)
    for split_name in ("train", "val", "test"):
        assert torch.equal(as_tensors(getattr(again, split_name))[0], tensors[split_name][0])

    other = _load(name, tmp_path, split_seed=1)
    # The test examples never depend on the seed; their features do where a vocabulary is fitted on the carve.
    assert torch.equal(as_tensors(other.test)[1], tensors["test"][1]), "the test split depends on the seed"
    if name not in FEATURES_FITTED_ON_CARVED_TRAIN:
        assert torch.equal(as_tensors(other.test)[0], tensors["test"][0])
    same_val = torch.equal(as_tensors(other.val)[0], tensors["val"][0])
    assert same_val == (name in OFFICIAL_VALIDATION)


def test_every_writer_is_registered() -> None:
    assert set(WRITERS) == set(DATASETS.names())


# ------------------------------------------------------------------------------------------------------------
# Missing and corrupt files


MISSING = {  # the first file each loader looks for, and the folder it names
    "mnist": ("train-images-idx3-ubyte.gz", "mnist"),
    "mnist-01": ("train-images-idx3-ubyte.gz", "mnist"),
    "fashion-mnist": ("train-images-idx3-ubyte.gz", "fashion-mnist"),
    "emotion": ("train.txt", "emotion"),
    "twitter-topic": ("classes.txt", "twitter-financial-news-topic"),
    "utkface": ("labels.csv", "faces-utkface"),
    "tiny-imagenet": ("wnids.txt", "tiny-imagenet-200"),
    "celeba": ("list_attr_celeba.txt", "celeba"),
}


@pytest.mark.parametrize("name", DATASETS.names())
def test_missing_data_names_the_file_and_the_folder(name: str, tmp_path: Path) -> None:
    if name == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"Debian's Fashion-MNIST is installed in {DEBIAN_FASHION_MNIST}, so nothing is missing")
    filename, folder = MISSING[name]
    with pytest.raises(DataError) as caught:
        _load(name, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert filename in message and str(tmp_path / folder) in message
    assert "COALITION_BENCH_DATA" in message


def test_mnist_missing_message_lists_every_folder_searched(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz not found") as caught:
        _load("mnist", tmp_path)
    message = str(caught.value)
    for folder in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path):
        assert str(folder) in message
    assert "--download" in message


def test_mnist_finds_torchvision_layout(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    assert len(_load("mnist", tmp_path).test) == 20


def test_mnist_checksum_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is corrupt \(md5 ") as caught:
        load_dataset("mnist", data_dir=tmp_path)  # verification on: fake files cannot match the real md5s
    assert str(tmp_path / "mnist") in str(caught.value)


def test_mnist_accepts_regzipped_files_with_the_right_content(tmp_path: Path, monkeypatch) -> None:
    """Debian re-gzips Fashion-MNIST: the .gz md5 changes, the decompressed md5 does not."""
    write_mnist(tmp_path)
    folder = tmp_path / "mnist"
    published = [(f.name, hashlib.md5(f.read_bytes()).hexdigest()) for f in sorted(folder.iterdir())]
    content_md5 = {
        f.name[:-3]: hashlib.md5(gzip.decompress(f.read_bytes())).hexdigest() for f in folder.iterdir()
    }
    monkeypatch.setattr(tv_datasets.MNIST, "resources", published)
    monkeypatch.setattr(idx_module, "_MNIST", dataclasses.replace(idx_module._MNIST, raw_md5=content_md5))
    assert len(load_dataset("mnist", data_dir=tmp_path).train) == 54

    raw = gzip.decompress((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw, mtime=848331398))
    assert len(load_dataset("mnist", data_dir=tmp_path).train) == 54  # new header, same content: accepted

    labels = bytearray(raw)
    labels[-1] = (labels[-1] + 1) % 10
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is corrupt"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda raw: raw[:-5], "not a valid gzip file"),  # a truncated download
        (lambda raw: gzip.compress(b"\x00\x00\x09\x99" + gzip.decompress(raw)[4:]), "IDX magic"),
        (lambda raw: gzip.compress(gzip.decompress(raw)[:-28]), "header promises"),
    ],
)
def test_mnist_unparsable_file_is_a_data_error(tmp_path: Path, damage, problem: str) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=problem) as caught:
        _load("mnist", tmp_path)
    assert str(path) in str(caught.value)


def test_mnist_label_count_must_match_image_count(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.arange(59) % 10)
    with pytest.raises(DataError, match="59 labels for 60 images"):
        _load("mnist", tmp_path)


def test_emotion_bad_line_names_file_and_line(tmp_path: Path) -> None:
    write_emotion(tmp_path)
    path = tmp_path / "emotion" / "val.txt"
    path.write_text(path.read_text() + "i feel odd;boredom\n")
    with pytest.raises(DataError, match=rf"{path}:11 is corrupt .*boredom"):
        _load("emotion", tmp_path)


def test_twitter_label_out_of_range_is_a_data_error(tmp_path: Path) -> None:
    write_twitter_topic(tmp_path)
    path = tmp_path / "twitter-financial-news-topic" / "topic_valid.csv"
    path.write_text(path.read_text() + "a tweet,20\n")
    with pytest.raises(DataError, match=r"topic_valid\.csv is corrupt \(row 14 has label"):
        _load("twitter-topic", tmp_path)


def test_utkface_checksum_mismatch_names_the_image(tmp_path: Path) -> None:
    write_utkface(tmp_path)
    image = next((tmp_path / "faces-utkface" / "UTKFace").iterdir())
    noise_jpeg(image, (24, 24), seed=999)
    with pytest.raises(DataError, match="does not match SHA256SUMS") as caught:
        _load("utkface", tmp_path)
    assert image.name in str(caught.value)
    assert len(_load("utkface", tmp_path, verify_checksums=False).train) > 0


def test_utkface_undecodable_image_is_a_data_error(tmp_path: Path) -> None:
    write_utkface(tmp_path)
    image = next((tmp_path / "faces-utkface" / "UTKFace").iterdir())
    image.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode") as caught:
        _load("utkface", tmp_path, verify_checksums=False)
    assert image.name in str(caught.value)


def test_utkface_missing_image_names_it(tmp_path: Path) -> None:
    write_utkface(tmp_path)
    image = next((tmp_path / "faces-utkface" / "UTKFace").iterdir())
    image.unlink()
    with pytest.raises(DataError, match=f"{image.name} not found") as caught:
        _load("utkface", tmp_path)
    assert str(image.parent) in str(caught.value)


def test_celeba_checksum_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt is corrupt \(md5"):
        load_dataset("celeba", data_dir=tmp_path)


def test_celeba_missing_image_surfaces_as_data_error(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    splits = _load("celeba", tmp_path)
    (tmp_path / "celeba" / "img_align_celeba" / "000001.jpg").unlink()
    with pytest.raises(DataError, match="000001.jpg"):
        splits.train[0]


def test_tiny_imagenet_unknown_wnid_in_annotations(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    path = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    path.write_text(path.read_text() + "val_99.JPEG\tn99999999\t0\t0\t63\t63\n")
    with pytest.raises(DataError, match=r"val_annotations\.txt:7 is corrupt"):
        _load("tiny-imagenet", tmp_path)


@pytest.mark.parametrize(
    ("name", "target", "attribute"),
    [
        ("mnist", tv_datasets.MNIST, "download"),
        ("tiny-imagenet", tiny_imagenet_module, "download_and_extract_archive"),
        ("celeba", tv_datasets.CelebA, "download"),
    ],
)
def test_failed_download_is_a_data_error(
    name: str, target: object, attribute: str, tmp_path, monkeypatch
) -> None:
    calls = []

    def offline(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(target, attribute, offline)
    with pytest.raises(DataError, match="failed") as caught:
        _load(name, tmp_path, download=True)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)
    assert calls, f"the loader never called the patched {attribute}, so the patch missed"


# ------------------------------------------------------------------------------------------------------------
# Options and names


def test_unknown_option_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no option targt") as caught:
        load_dataset("utkface", data_dir=tmp_path, targt="age")
    for option in ("target", "image_size", "grayscale", "verify_checksums"):
        assert option in str(caught.value)
    with pytest.raises(ValueError, match="valid options: none"):
        load_dataset("tiny-imagenet", data_dir=tmp_path, vocab_size=10)


def test_option_of_the_wrong_type_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="vocab_size must be int"):
        load_dataset("emotion", data_dir=tmp_path, vocab_size="5000")
    with pytest.raises(TypeError, match="verify_checksums must be bool"):
        load_dataset("mnist", data_dir=tmp_path, verify_checksums=0)


def test_unknown_dataset_suggests_a_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist'"):
        load_dataset("mnits")


def test_options_come_from_the_factory_signature() -> None:
    assert list(dataset_options("utkface")) == ["target", "image_size", "grayscale", "verify_checksums"]
    assert dataset_options("emotion")["vocab_size"].default == 5000


@pytest.mark.parametrize(
    ("name", "option", "match"),
    [
        ("utkface", {"target": "race"}, "valid targets: gender, age"),
        ("celeba", {"attribute": "Bald"}, "Smiling"),
    ],
)
def test_bad_option_value_lists_the_valid_values(name: str, option: dict, match: str, tmp_path: Path) -> None:
    WRITERS[name](tmp_path)
    with pytest.raises(ValueError, match=match):
        _load(name, tmp_path, **option)


def test_val_fraction_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("mnist", data_dir=tmp_path, val_fraction=1.0)


# ------------------------------------------------------------------------------------------------------------
# Per-dataset behaviour


def test_carve_is_a_seeded_partition() -> None:
    request = LoadRequest(root=Path("."), val_fraction=0.1, split_seed=3)
    train, val = request.carve(100)
    assert len(val) == 10 and len(train) == 90
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    assert torch.equal(LoadRequest(root=Path("."), val_fraction=0.1, split_seed=3).carve(100)[1], val)
    assert not torch.equal(LoadRequest(root=Path("."), val_fraction=0.1, split_seed=4).carve(100)[1], val)
    assert len(LoadRequest(root=Path("."), val_fraction=0.0).carve(100)[1]) == 0
    assert len(LoadRequest(root=Path("."), val_fraction=0.001).carve(100)[1]) == 1


def test_mnist_normalization_and_sizes(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    splits = _load("mnist", tmp_path, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45, 15, 20)
    x, _ = as_tensors(splits.test)
    raw = np.frombuffer(
        gzip.decompress((tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8
    )
    expected = (torch.from_numpy(raw.copy()).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x.reshape(-1), expected)


def test_mnist_01_keeps_zeros_and_ones(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    splits = _load("mnist-01", tmp_path)
    labels = torch.cat([as_tensors(getattr(splits, s))[1] for s in ("train", "val", "test")])
    assert set(labels.tolist()) == {0, 1}
    assert len(labels) == 12 + 4  # labels cycle 0..9 over 60 train and 20 test images
    assert splits.classes == ("0 - zero", "1 - one")


def test_mnist_decompresses_once_into_the_cache(tmp_path: Path, private_cache: Path) -> None:
    data_root = tmp_path / "data"
    write_mnist(data_root)
    before = sorted(p.relative_to(data_root) for p in data_root.rglob("*"))
    _load("mnist", data_root)
    cached = list(private_cache.rglob("train-images-idx3-ubyte"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    _load("mnist", data_root)
    assert cached[0].stat().st_mtime_ns == stamp
    assert sorted(p.relative_to(data_root) for p in data_root.rglob("*")) == before, (
        "wrote into the data root"
    )


def test_utkface_targets_and_cache_reuse(tmp_path: Path) -> None:
    write_utkface(tmp_path)
    gender = _load("utkface", tmp_path)
    age = _load("utkface", tmp_path, target="age")
    assert gender.classes == ("male", "female") and age.num_classes == 8
    frame = pd.read_csv(tmp_path / "faces-utkface" / "labels.csv")
    test = frame[frame["split"] == "test"]
    assert as_tensors(gender.test)[1].tolist() == test["gender"].tolist()
    expected_groups = np.searchsorted([13, 20, 30, 40, 50, 60, 70], test["age"], side="right")
    assert as_tensors(age.test)[1].tolist() == expected_groups.tolist()
    assert [
        age.classes[g] for g in np.searchsorted([13, 20, 30, 40, 50, 60, 70], [12, 13, 70], side="right")
    ] == [
        "1-12",
        "13-19",
        "70+",
    ]

    for image in (tmp_path / "faces-utkface" / "UTKFace").iterdir():
        image.unlink()
    cached = _load("utkface", tmp_path)  # same image_size and colour: served from the cached tensor
    assert torch.equal(as_tensors(cached.train)[0], as_tensors(gender.train)[0])
    with pytest.raises(DataError, match="not found"):
        _load("utkface", tmp_path, grayscale=True)  # a different key needs the JPEGs again


def test_utkface_grayscale_shape(tmp_path: Path) -> None:
    write_utkface(tmp_path)
    splits = _load("utkface", tmp_path, grayscale=True, image_size=5)
    assert splits.input_shape == (1, 5, 5) and tuple(splits.train[0][0].shape) == (1, 5, 5)


def test_tiny_imagenet_labels_follow_wnids(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    splits = _load("tiny-imagenet", tmp_path)
    assert splits.classes == ("goldfish, Carassius auratus", "European fire salamander", "Persian cat")
    assert as_tensors(splits.test)[1].tolist() == [0, 1, 2, 0, 1, 2]
    assert len(splits.train) + len(splits.val) == 18


def test_celeba_uses_its_own_partition_and_attribute(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    splits = _load("celeba", tmp_path, attribute="Smiling")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 3, 3)
    assert splits.classes == ("not Smiling", "Smiling")
    # Row i has attribute k set when bit k of i is 1; Smiling is k = 2, and test rows are 11, 12, 13.
    assert as_tensors(splits.test)[1].tolist() == [(i >> 2) & 1 for i in (11, 12, 13)]


# ------------------------------------------------------------------------------------------------------------
# Text: tokenizer, vocabulary, features


def test_tokenize_lowercases_words() -> None:
    assert tokenize("I didn't feel GREAT, see https://t.co/X1 $TSLA_2") == [
        "i", "didn't", "feel", "great", "see", "https", "t", "co", "x1", "tsla", "2",
    ]  # fmt: skip


def test_vocabulary_ranks_by_document_frequency_then_alphabet() -> None:
    texts = ["b b b a", "a c", "c d", "e"]
    vocabulary = build_vocabulary(texts, vocab_size=3)
    # a and c occur in two texts each (b's repeats count once), then b, d and e tie at one: b comes first.
    assert vocabulary.tokens == ("a", "c", "b")
    assert build_vocabulary(list(reversed(texts)), vocab_size=3) == vocabulary
    features = vocabulary.bag_of_words(["c c zebra a", ""])
    assert features.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_twitter_vocabulary_comes_from_the_carved_train_split_only(tmp_path: Path) -> None:
    write_twitter_topic(tmp_path)
    splits = _load("twitter-topic", tmp_path, split_seed=2)
    texts = pd.read_csv(tmp_path / "twitter-financial-news-topic" / "topic_train.csv")["text"].tolist()
    train_idx, val_idx = LoadRequest(root=tmp_path, split_seed=2).carve(len(texts))
    train_texts = [texts[i] for i in train_idx]
    vocabulary = build_vocabulary(train_texts, vocab_size=5000)
    assert splits.input_shape == (len(vocabulary),)
    assert torch.equal(as_tensors(splits.train)[0], vocabulary.bag_of_words(train_texts))
    assert "leakword" not in vocabulary.tokens
    assert not {f"id{i}" for i in val_idx.tolist()} & set(vocabulary.tokens)
    assert len(build_vocabulary(texts, vocab_size=5000)) == len(vocabulary) + len(val_idx)
    small = _load("twitter-topic", tmp_path, vocab_size=4)
    assert small.input_shape == (4,)


def test_emotion_vocabulary_ignores_val_and_test(tmp_path: Path) -> None:
    write_emotion(tmp_path)
    splits = _load("emotion", tmp_path)
    train_texts = [
        line.rpartition(";")[0] for line in (tmp_path / "emotion" / "train.txt").read_text().splitlines()
    ]
    assert splits.input_shape == (len(build_vocabulary(train_texts, vocab_size=5000)),)
    every_text = [
        line.rpartition(";")[0] for line in (tmp_path / "emotion" / "test.txt").read_text().splitlines()
    ]
    assert len(build_vocabulary(train_texts + every_text, vocab_size=5000)) > splits.input_shape[0]
    assert len(splits.val) == 10 and len(splits.test) == 10
    assert as_tensors(splits.train)[1][:7].tolist() == [0, 1, 2, 3, 4, 5, 0]


# ------------------------------------------------------------------------------------------------------------
# as_tensors and paths


class _Squares(Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((2,), float(i * i)), i % 2


def test_as_tensors_fast_path_and_fallback() -> None:
    x, y = torch.randn(10, 3), torch.arange(10)
    dataset = TensorDataset(x, y)
    stacked_x, stacked_y = as_tensors(dataset)
    assert stacked_x.data_ptr() == x.data_ptr()  # no copy
    sub_x, sub_y = as_tensors(Subset(Subset(dataset, [9, 8, 7, 1]), [3, 0]))
    assert torch.equal(sub_x, x[[1, 9]]) and sub_y.tolist() == [1, 9]
    slow_x, slow_y = as_tensors(_Squares(), batch_size=2)
    assert slow_x[:, 0].tolist() == [0.0, 1.0, 4.0, 9.0, 16.0] and slow_y.tolist() == [0, 1, 0, 1, 0]
    assert slow_y.dtype == torch.int64


def test_data_root_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COALITION_BENCH_DATA", str(tmp_path / "from-env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root("~/x") == Path.home() / "x"
    assert resolve_data_root() == tmp_path / "from-env"
    monkeypatch.delenv("COALITION_BENCH_DATA")
    assert resolve_data_root() == tmp_path / "xdg" / "coalition-bench" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_root() == Path.home() / ".cache" / "coalition-bench" / "data"
    assert not (tmp_path / "xdg").exists(), "resolving the data root must not create it"


def test_cache_dir_resolution_and_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    monkeypatch.delenv("COALITION_BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "coalition-bench" and cache_dir().is_dir()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("COALITION_BENCH_CACHE", str(tmp_path / "file" / "sub"))
    with pytest.raises(DataError, match="COALITION_BENCH_CACHE"):
        cache_dir()


def test_our_datasets_package_shadows_hugging_face() -> None:
    # MLflow may import Hugging Face's `datasets`; ours must be the one on the path.
    package = Path(data_package.__file__).parent.parent
    assert package.name == "datasets"
    assert package.parent == Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------------------
# Real data


MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_real_mnist() -> None:
    if not os.environ.get("COALITION_BENCH_DATA"):
        pytest.skip("COALITION_BENCH_DATA is not set; point it at the staged data to run this test")
    root = resolve_data_root()
    folders = (root / "mnist", root / "MNIST" / "raw", root)
    if not any((folder / "train-images-idx3-ubyte.gz").is_file() for folder in folders):
        pytest.skip(f"no MNIST .gz files under {root} (looked in mnist/, MNIST/raw/ and the root)")
    splits = load_dataset("mnist")  # checksums verified
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54_000, 6_000, 10_000)
    train_labels = torch.cat([as_tensors(splits.train)[1], as_tensors(splits.val)[1]])
    assert torch.bincount(train_labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(as_tensors(splits.test)[1], minlength=10).tolist() == MNIST_TEST_COUNTS
    x, _ = as_tensors(splits.test)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05  # the normalization constants fit
