"""The transformer pairs: token sequences of the text datasets, the pairs over one trained network, and suite
entries that run on some pairs only (an exact head game where the heads are few)."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers import OPTIONS, write_emotion

from bench.plan import plan
from bench.selection import run_count
from bench.suite import SUITES_DIR, SuiteError, load_suite
from datasets.data import load_dataset
from datasets.pairs import PAIRS
from datasets.text import CLS_ID, PAD_ID, UNK_ID, Vocabulary, sequences
from datasets.training import cache_key, checkpoint_path


def test_a_sequence_is_the_classification_token_then_words_then_padding():
    vocabulary = Vocabulary(("the", "cat", "sat"))
    ids = sequences(vocabulary, ["The cat sat on the mat", "", "cat " * 10], 5)
    assert ids.dtype == torch.float32
    assert ids.tolist() == [[CLS_ID, 3, 4, 5, UNK_ID],  # cut after length - 1 words; "on" is outside the vocabulary
                            [CLS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
                            [CLS_ID, 4, 4, 4, 4]]
    with pytest.raises(ValueError, match="sequence_length must be at least 2"):
        sequences(vocabulary, ["x"], 1)


def test_emotion_as_sequences_builds_its_vocabulary_on_the_training_split(tmp_path):
    write_emotion(tmp_path)
    options = {**OPTIONS.get("emotion", {}), "sequence_length": 8}
    splits = load_dataset("emotion", data_dir=tmp_path, **options)
    bag = load_dataset("emotion", data_dir=tmp_path, **OPTIONS.get("emotion", {}))
    assert splits.input_shape == (8,)
    x, _ = splits.val.tensors
    assert (x[:, 0] == CLS_ID).all() and x.max() < bag.input_shape[0] + 3
    # "leakword" occurs in the validation and test texts only: it is outside the vocabulary there.
    assert (x[0] == UNK_ID).any()


def test_the_heads_and_the_mlp_pairs_share_one_trained_network():
    heads, mlp = PAIRS.get("vit-mnist"), PAIRS.get("vit-mnist-mlp")
    assert heads.units == tuple(f"blocks.{b}.attn.heads" for b in range(4))
    assert mlp.units == tuple(f"blocks.{b}.act:features" for b in range(4))
    key = cache_key(heads, seed=0, val_fraction=0.1, split_seed=0)
    assert key == cache_key(mlp, seed=0, val_fraction=0.1, split_seed=0)
    assert checkpoint_path(heads, key) == checkpoint_path(mlp, key)
    assert checkpoint_path(PAIRS.get("lenet300-mnist"), key).name.startswith("lenet300-mnist-")


def test_an_entry_runs_on_the_pairs_it_names():
    suite = load_suite("transformers")
    specs = plan(suite)
    assert len(specs) == run_count(suite)
    exact = {s.pair for s in specs if s.entry is not None and s.entry.name == "gtap-shapley-exact"}
    layer = {s.pair for s in specs if s.entry is not None and s.entry.name == "gtap-shapley-layer-exact"}
    assert exact == {"transformer-emotion"} and layer == {"vit-mnist", "transformer-emotion"}
    assert {s.pair for s in specs if s.entry is not None and s.entry.name == "michel"} == set(suite.pairs)


@pytest.mark.parametrize(("pairs", "message"), [
    (["vit-mnst"], "pairs: 'vit-mnst' is not a pair of this suite. Did you mean 'vit-mnist'?"),
    ([], "'pairs' must be a non-empty list"),
    ("vit-mnist", "'pairs' must be a non-empty list"),
])
def test_an_entry_naming_a_pair_outside_the_suite_stops_at_load(tmp_path, pairs, message):
    raw = yaml.safe_load((SUITES_DIR / "transformers.yaml").read_text())
    raw["methods"][0]["pairs"] = pairs
    raw.pop("profiles")
    path = tmp_path / "transformers.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    assert message in str(error.value) and "methods[0]" in str(error.value) and "\n" not in str(error.value)
