"""Helpers several test files import (plain functions and constants; the shared fixtures are in conftest.py).

The dataset writers produce, in a folder given to them, the on-disk layout each loader documents (gzipped IDX,
``text;label`` lines, CSV, JPEG folders, CelebA's txt files) at tiny sizes, so the tests go through the public API
and nothing is downloaded. ``WRITERS`` maps every registered dataset to its writer (tests/test_datasets.py checks
that), ``OPTIONS`` holds the loader options the tiny files need.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from datasets.data import EMOTION_CLASSES
from datasets.pairs import Pair, Recipe

# ------------------------------------------------------------------------------------------------------------
# Dataset writers: real formats, tiny sizes


def write_idx_gz(path: Path, array: np.ndarray, *, mtime: int = 0) -> None:
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=mtime))


def write_idx_dataset(folder: Path, *, n_train: int = 60, n_test: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def write_mnist(root: Path) -> None:
    write_idx_dataset(root / "mnist")


def write_fashion_mnist(root: Path) -> None:
    write_idx_dataset(root / "fashion-mnist", seed=1)


# Every document is a distinct pair of these words, and every word occurs in many documents, so every split's
# bag-of-words vectors stay distinct even though the vocabulary comes from the training split alone.
_WORDS = [f"word{k}" for k in range(16)]
_PAIRS = list(itertools.combinations(_WORDS, 2))
np.random.default_rng(0).shuffle(_PAIRS)


def document(i: int) -> str:
    first, second = _PAIRS[i]
    return f"Today, {first} and {second}"


def write_emotion(root: Path) -> None:
    folder = root / "emotion"
    folder.mkdir(parents=True)
    ranges = {"train": range(0, 40), "val": range(40, 50), "test": range(50, 60)}
    for split, ids in ranges.items():
        lines = [f"{document(i).lower()};{EMOTION_CLASSES[i % 6]}" for i in ids]
        if split != "train":
            lines[0] = lines[0].replace(";", " leakword;")  # a token the vocabulary must never see
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")


TOPIC_CLASSES = [f"Topic {k}" for k in range(19)] + ["Fed | Central Banks"]


def write_twitter_topic(root: Path) -> None:
    folder = root / "twitter-financial-news-topic"
    folder.mkdir(parents=True)
    (folder / "classes.txt").write_text("\n".join(TOPIC_CLASSES) + "\n")
    train = pd.DataFrame(
        {
            # id{i} occurs in one text only, so which rows the vocabulary was built on shows in its size.
            "text": [f'{document(i)} "quoted", $TSLA id{i}' for i in range(40)],
            "label": [i % 20 for i in range(40)],
        }
    )
    valid = pd.DataFrame(
        {"text": [document(i) + " leakword" for i in range(40, 52)], "label": list(range(12))}
    )
    train.to_csv(folder / "topic_train.csv", index=False)
    valid.to_csv(folder / "topic_valid.csv", index=False)


def noise_jpeg(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode=mode).save(path, quality=95)


UTKFACE_AGES = [5, 12, 13, 19, 20, 29, 30, 45, 55, 65, 70, 90]


def write_utkface(root: Path, *, n: int = 30, n_test: int = 6) -> None:
    folder = root / "faces-utkface"
    rows = []
    for i in range(n):
        age, gender, race = UTKFACE_AGES[i % len(UTKFACE_AGES)], i % 2, i % 5
        name = f"{age}_{gender}_{race}_20170110{i:09d}.jpg.chip.jpg"
        noise_jpeg(folder / "UTKFace" / name, (24, 24), seed=i)
        rows.append({"filename": name, "age": age, "gender": gender, "race": race, "split": "train"})
    for row in rows[-n_test:]:
        row["split"] = "test"
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    digests = [
        hashlib.sha256((folder / "UTKFace" / row["filename"]).read_bytes()).hexdigest() for row in rows
    ]
    sums = [f"{digest}  {row['filename']}" for digest, row in zip(digests, rows, strict=True)]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")


TINY_WNIDS = ["n01443537", "n01629819", "n02123394"]


def write_tiny_imagenet(root: Path, *, per_class: int = 6, n_val: int = 6) -> None:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(reversed(TINY_WNIDS)) + "\n")  # not sorted, like the real file
    words = [
        "n00001740\tentity",
        "n01443537\tgoldfish, Carassius auratus",
        "n01629819\tEuropean fire salamander",
    ]
    (base / "words.txt").write_text("\n".join(words + ["n02123394\tPersian cat"]) + "\n")
    seed = 0
    for wnid in TINY_WNIDS:
        (base / "train" / wnid).mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
        for k in range(per_class):
            mode = (
                "L" if (wnid, k) == (TINY_WNIDS[0], 0) else "RGB"
            )  # the real data has a few grayscale JPEGs
            noise_jpeg(base / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", (64, 64), seed, mode)
            seed += 1
    annotations = []
    for k in range(n_val):
        noise_jpeg(base / "val" / "images" / f"val_{k}.JPEG", (64, 64), seed)
        seed += 1
        annotations.append(f"val_{k}.JPEG\t{TINY_WNIDS[k % 3]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")


CELEBA_ATTRIBUTES = ["5_o_Clock_Shadow", "Male", "Smiling"]


def write_celeba(root: Path, *, partition: tuple[int, ...] = (0,) * 8 + (1,) * 3 + (2,) * 3) -> None:
    base = root / "celeba"
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for i, name in enumerate(names):
        noise_jpeg(base / "img_align_celeba" / name, (20, 24), seed=100 + i)
    n = len(names)

    def table(header: str | None, rows: list[str]) -> str:
        head = [str(n), header] if header is not None else []
        return "\n".join(head + rows) + "\n"

    signs = [["-1", " 1"][(i >> k) & 1] for i in range(n) for k in range(3)]
    attr_rows = [f"{name} {' '.join(signs[3 * i : 3 * i + 3])}" for i, name in enumerate(names)]
    files = {
        # The real header line ends in a space, which torchvision reads as an empty column name.
        "list_attr_celeba.txt": table(" ".join(CELEBA_ATTRIBUTES) + " ", attr_rows),
        "identity_CelebA.txt": table(None, [f"{name} {i % 4 + 1}" for i, name in enumerate(names)]),
        "list_bbox_celeba.txt": table(
            "image_id x_1 y_1 width height", [f"{name} 95 71 226 313" for name in names]
        ),
        "list_landmarks_align_celeba.txt": table(
            "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
            "rightmouth_y",
            [f"{name} 69 109 106 113 77 142 73 152 108 154" for name in names],
        ),
        "list_eval_partition.txt": table(
            None, [f"{name} {p}" for name, p in zip(names, partition, strict=True)]
        ),
    }
    for filename, text in files.items():
        (base / filename).write_text(text)


WRITERS: dict[str, Callable[[Path], None]] = {
    "mnist": write_mnist,
    "mnist-01": write_mnist,
    "fashion-mnist": write_fashion_mnist,
    "emotion": write_emotion,
    "twitter-topic": write_twitter_topic,
    "utkface": write_utkface,
    "tiny-imagenet": write_tiny_imagenet,
    "celeba": write_celeba,
}

# Options for the tiny files: fake IDX and CelebA txt files cannot match the published md5s (the UTKFace
# writer writes a real SHA256SUMS, so its verification stays on), and small images keep the tests fast.
OPTIONS: dict[str, dict[str, object]] = {
    "mnist": {"verify_checksums": False},
    "mnist-01": {"verify_checksums": False},
    "fashion-mnist": {"verify_checksums": False},
    "utkface": {"image_size": 8},
    "celeba": {"image_size": 16, "verify_checksums": False},
}


# ------------------------------------------------------------------------------------------------------------
# The tiny pair: LeNet-300-100 on the fake MNIST above, one epoch


def tiny_pair(**recipe: object) -> Pair:
    """The tiny LeNet-300-100 pair on fake MNIST (not registered; the ``register`` fixture adds it for a test)."""
    return Pair(name="tiny-lenet300", model="lenet300", dataset="mnist", units=("relu1", "relu2"),
                recipe=Recipe(**{"epochs": 1, "batch_size": 16, **recipe}), dataset_options={"verify_checksums": False})


TINY_PAIR = tiny_pair()


def run_argv(tiny: dict, *extra: str) -> list[str]:
    """``bench run`` arguments for a suite file, a data folder and a tracking store (a test's ``tiny`` dict)."""
    return ["run", "--suite", str(tiny["suite"]), "--data-dir", str(tiny["data"]), "--tracking-uri", tiny["uri"],
            "--no-progress", "--no-report", *extra]


# Python source that registers the tiny pair, for a test that runs the CLI in a child process.
REGISTER_TINY_PAIR = f"from datasets.pairs import PAIRS, Pair, Recipe\nPAIRS.add({TINY_PAIR.name!r}, {TINY_PAIR!r})\n"


def stored_runs(db: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(run_id, status, tags) of every active run of a sqlite tracking store, read straight from the database."""
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_uuid, status FROM runs WHERE lifecycle_stage = 'active'").fetchall()
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run_id, {})[key] = value
    return [(run_id, status, tags.get(run_id, {})) for run_id, status in rows]


def tiny_suite(folder: Path, data: Path, *, fractions: tuple[float, ...] = (0.5, 1.0),
               methods: tuple[str, ...] | None = None, store: Path | None = None) -> dict:
    """The smoke suite pointed at the tiny pair (4 MCUE samples, GTAP budget 40), written as ``folder/tiny.yaml``.

    Args:
        folder: where the suite file goes.
        data: the fake data root (the ``tiny_mnist`` fixture).
        fractions: the suite's kept-fraction grid.
        methods: keep only these entries (all of the smoke suite's by default).
        store: the sqlite database (default ``folder/store.db``).

    Returns:
        A test's ``tiny`` dict: suite, data, uri and db.
    """
    import yaml

    from bench.suite import SUITES_DIR

    suite = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    suite.update(name="tiny", pairs=[TINY_PAIR.name], fractions=list(fractions))
    suite["mcue"]["samples"] = 4
    suite["defaults"]["gtap"]["budget"] = 40
    if methods is not None:
        suite["methods"] = [m for m in suite["methods"] if m["name"] in methods]
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    db = store or folder / "store.db"
    return {"suite": path, "data": data, "uri": f"sqlite:///{db}", "db": db}
