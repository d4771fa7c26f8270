"""Text features over a vocabulary built on the training split only, so nothing about the validation or test texts
leaks into them: binary bag-of-words vectors (the GTAP paper's representation) or token-id sequences (for
transformers).

Bag of words: each text becomes a {0, 1} vector over the vocabulary, 1 where the token occurs at least once.

Token sequences: each text becomes ``length`` token ids, ``[CLS] t1 t2 ... [PAD] [PAD]``: id 0 pads, id 1 is the
classification token that starts every sequence, id 2 stands for a token outside the vocabulary, and vocabulary
token i is id i + 3 (``SPECIAL_TOKENS``). A text longer than ``length - 1`` tokens is cut at the end. The ids are
stored as float32 (exact up to 2^24), so every layer of the project that reads a float tensor of inputs reads
these too; the model casts them back to integers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from datasets.errors import UsageError

# Unicode letters and digits (not underscores), keeping an inner apostrophe so "didn't" stays one token.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens of a text.

    Args:
        text: any string.

    Returns:
        The tokens in order of appearance, repeats included.
    """
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """An ordered token list; token ``tokens[i]`` is feature ``i``.

    Args:
        tokens: the tokens, most frequent first.
    """

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise UsageError("vocabulary tokens must be unique")
        object.__setattr__(self, "index", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def bag_of_words(self, texts: Sequence[str]) -> torch.Tensor:
        """Binary bag-of-words matrix of some texts.

        Args:
            texts: the texts to encode; tokens outside the vocabulary are dropped.

        Returns:
            float32 tensor of shape (len(texts), len(self)), 1.0 where the text contains the token.
        """
        rows: list[int] = []
        cols: list[int] = []
        for row, text in enumerate(texts):
            ids = {self.index[token] for token in tokenize(text) if token in self.index}
            rows.extend([row] * len(ids))
            cols.extend(ids)
        features = torch.zeros(len(texts), len(self), dtype=torch.float32)
        if rows:
            features[torch.tensor(rows), torch.tensor(cols)] = 1.0
        return features


SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[UNK]")
PAD_ID, CLS_ID, UNK_ID = 0, 1, 2


def sequences(vocabulary: Vocabulary, texts: Sequence[str], length: int) -> torch.Tensor:
    """Token-id sequences of some texts (see the module docstring for the layout).

    Args:
        vocabulary: the training vocabulary.
        texts: the texts to encode.
        length: ids per text, the classification token included (at least 2).

    Returns:
        float32 tensor (len(texts), length) of ids in [0, len(vocabulary) + 3).
    """
    if length < 2:
        raise UsageError(f"sequence_length must be at least 2 (the classification token and one word), got {length}")
    out = torch.full((len(texts), length), float(PAD_ID), dtype=torch.float32)
    out[:, 0] = CLS_ID
    offset = len(SPECIAL_TOKENS)
    for row, text in enumerate(texts):
        ids = [vocabulary.index[token] + offset if token in vocabulary.index else UNK_ID
               for token in tokenize(text)][: length - 1]
        if ids:
            out[row, 1: 1 + len(ids)] = torch.tensor(ids, dtype=torch.float32)
    return out


def build_vocabulary(texts: Iterable[str], *, vocab_size: int) -> Vocabulary:
    """The ``vocab_size`` tokens that occur in the most texts.

    Frequency is document frequency (how many texts contain the token), matching the binary features. Ties are
    broken alphabetically so the vocabulary does not depend on hash or input order.

    Args:
        texts: the training texts; never pass validation or test texts here.
        vocab_size: the most tokens to keep; fewer when the texts have fewer distinct tokens.

    Returns:
        The vocabulary, most frequent token first.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
    document_frequency: Counter[str] = Counter()
    for text in texts:
        document_frequency.update(set(tokenize(text)))
    ranked = sorted(document_frequency.items(), key=lambda item: (-item[1], item[0]))
    return Vocabulary(tuple(token for token, _ in ranked[:vocab_size]))
