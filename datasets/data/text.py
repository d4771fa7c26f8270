"""The text datasets, emotion (CARER) and twitter-topic, as binary bag-of-words vectors or token-id sequences.

Each text becomes a {0, 1} float32 vector over a vocabulary (see :mod:`datasets.text`), or with
``sequence_length`` a sequence of token ids over it (for transformers); the vocabulary is built on the training
split only, so nothing about the validation or test texts leaks into the features. Emotion ships its own
validation split, carved by its authors from their training data, and uses it; twitter-topic carves one from
its training CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from datasets.data.core import DATASETS, LoadRequest, Splits, _read_text, _reading, _require
from datasets.errors import DataError
from datasets.text import build_vocabulary, sequences


def _bag_of_words_splits(
    name: str,
    train: tuple[list[str], list[int]],
    val: tuple[list[str], list[int]],
    test: tuple[list[str], list[int]],
    classes: Sequence[str],
    vocab_size: int,
    sequence_length: int | None = None,
) -> Splits:
    vocabulary = build_vocabulary(train[0], vocab_size=vocab_size)

    def encode(texts: list[str]) -> torch.Tensor:
        if sequence_length is None:
            return vocabulary.bag_of_words(texts)
        return sequences(vocabulary, texts, sequence_length)

    encoded = [
        TensorDataset(encode(texts), torch.tensor(labels, dtype=torch.int64))
        for texts, labels in (train, val, test)
    ]
    return Splits(
        name=name,
        train=encoded[0],
        val=encoded[1],
        test=encoded[2],
        num_classes=len(classes),
        input_shape=(len(vocabulary),) if sequence_length is None else (sequence_length,),
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
def emotion(request: LoadRequest, *, vocab_size: int = 5000, sequence_length: int | None = None) -> Splits:
    """CARER emotion tweets (Saravia et al. 2018) as binary bag-of-words vectors, or token-id sequences; 6 classes.

    Reads ``<root>/emotion/{train,val,test}.txt``, one ``text;label`` line each, label names mapped to the HF
    ids (sadness 0, joy 1, love 2, anger 3, fear 4, surprise 5). The authors ship a validation split that they
    carved from their training data, so ``val.txt`` is our validation split and ``val_fraction`` /
    ``split_seed`` are ignored. The vocabulary is built on ``train.txt`` only.

    Args:
        request: data root (split settings are ignored, see above).
        vocab_size: the number of most document-frequent training tokens kept as features.
        sequence_length: None for bag-of-words vectors; else each text is this many token ids, its classification
            token included (``datasets.text.sequences``: 0 pads, 1 classifies, 2 is a token outside the
            vocabulary, word i of the vocabulary is i + 3). 48 keeps every word of 99% of the training texts.

    Returns:
        The splits (16,000 / 2,000 / 2,000 on the full data); x has shape (vocab_size,), or fewer features
        when the training texts have fewer distinct tokens; with ``sequence_length``, (sequence_length,) ids below
        vocab_size + 3.
    """
    folder = request.root / "emotion"
    splits = [_read_carer(folder / f"{split}.txt") for split in ("train", "val", "test")]
    return _bag_of_words_splits("emotion", *splits, classes=EMOTION_CLASSES, vocab_size=vocab_size,
                                sequence_length=sequence_length)


def _read_topic_csv(path: Path, n_classes: int) -> tuple[list[str], list[int]]:
    import pandas as pd  # here: a machine with torch alone (bench doctor's) imports this module too

    _require("twitter-topic", path)
    try:
        with _reading("twitter-topic", path):
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
