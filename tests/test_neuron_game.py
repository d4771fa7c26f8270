"""The neuron game: both evaluation strategies agree with a naive hooked forward pass of the whole network."""

import numpy as np
import pytest
import torch

from datasets.models import build_model
from methods.games.neuron import NeuronGame, naive_logits


def _accuracy(logits, y):
    return float((logits.argmax(-1) == y).float().mean())


def _setup(model_name, input_shape, units, n=300, classes=4, seed=0):
    torch.manual_seed(seed)
    model = build_model(model_name, input_shape=input_shape, num_classes=classes).eval()
    x = torch.randn(n, *input_shape)
    with torch.no_grad():  # labels the net mostly gets right, so accuracy is informative
        y = model(x).argmax(1)
    flip = torch.rand(n) < 0.3
    y[flip] = torch.randint(0, classes, (int(flip.sum()),))
    return model, x, y, units


CASES = {
    "lenet300": ("lenet300", (1, 8, 8), ("relu1", "relu2")),
    "lenet5": ("lenet5", (1, 28, 28), ("flatten", "relu3", "relu4")),
    "ffn": ("ffn", (40,), ("relu1", "relu2", "relu3")),
    "face-cnn": ("face-cnn", (3, 16, 16), ("relu1", "relu3", "relu4")),
}


def _coalitions(n_players, rng, k=12, walk=30):
    random_rows = rng.random((k, n_players)) < rng.uniform(0.1, 0.9, size=(k, 1))
    # A walk that toggles one player at a time (what permutation and paired estimators emit): exercises the
    # incremental updates of the sparse path, across every unit group.
    walk_rows = np.repeat(random_rows[:1], walk, axis=0)
    for j, player in enumerate(rng.choice(n_players, size=walk, replace=False)):
        walk_rows[j:, player] = ~walk_rows[j:, player]
    return np.concatenate([random_rows, walk_rows, random_rows[:3], np.ones((1, n_players), bool)])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_strategies_match_naive_forward(case, strategy):
    model_name, shape, units = CASES[case]
    model, x, y, units = _setup(model_name, shape, units, n=96 if case == "face-cnn" else 300)
    try:
        game = NeuronGame(model, units, x, y, strategy=strategy, memory_cap=2_000_000)
    except ValueError:
        assert strategy == "sparse" and case == "face-cnn", "only conv suffixes may refuse the sparse path"
        return
    rng = np.random.default_rng(0)
    coalitions = _coalitions(game.n_players, rng)
    values = game(coalitions)
    expected = [_accuracy(naive_logits(model, units, x, c), y) for c in coalitions]
    np.testing.assert_allclose(values, expected, atol=1.5 / len(y))  # at most one near-tie argmax may flip
    assert game.n_evaluations == len(coalitions)


def test_loss_metric_matches_naive():
    model, x, y, units = _setup(*CASES["lenet300"])
    rng = np.random.default_rng(1)
    coalitions = _coalitions(400, rng, k=4, walk=8)
    for strategy in ("dense", "sparse"):
        game = NeuronGame(model, units, x, y, metric="neg_loss", strategy=strategy)
        expected = [-float(torch.nn.functional.cross_entropy(naive_logits(model, units, x, c), y)) for c in coalitions]
        np.testing.assert_allclose(game(coalitions), expected, rtol=1e-4, atol=1e-5)


def test_grand_and_empty_coalitions():
    model, x, y, units = _setup(*CASES["lenet5"])
    game = NeuronGame(model, units, x, y)
    assert game.n_players == 400 + 120 + 84
    assert game.grand_value() == pytest.approx(_accuracy(model(x), y))
    empty = game(np.zeros((1, game.n_players), bool))[0]
    bias_only = naive_logits(model, units, x, np.zeros(game.n_players, bool))
    assert empty == pytest.approx(_accuracy(bias_only, y))


def test_dense_chunks_respect_memory_cap_and_agree():
    model, x, y, units = _setup(*CASES["lenet300"])
    coalitions = np.random.default_rng(2).random((40, 400)) < 0.5
    big = NeuronGame(model, units, x, y, strategy="dense", memory_cap=1 << 30)
    tiny = NeuronGame(model, units, x, y, strategy="dense", memory_cap=50_000)  # forces 1 coalition, split samples
    assert len(tiny._chunks(40, len(y))) == 40
    np.testing.assert_allclose(big(coalitions), tiny(coalitions), atol=1.5 / len(y))


def test_predictions_give_per_sample_correctness_and_confidence():
    model, x, y, units = _setup(*CASES["lenet300"])
    game = NeuronGame(model, units, x, y)
    coalitions = np.ones((2, game.n_players), bool)
    coalitions[1, :200] = False
    index = np.array([[0, 1, 2], [3, 4, 5]])
    correct, confidence = game.predictions(coalitions, index)
    assert correct.shape == confidence.shape == (2, 3)
    logits = naive_logits(model, units, x[3:6], coalitions[1])
    assert torch.equal(correct[1], logits.argmax(1) == y[3:6])
    torch.testing.assert_close(confidence[1], logits.softmax(1).max(1).values)
    again, _, label = game.predicted(coalitions, index)  # MCUE's label readings: the predicted classes too
    assert torch.equal(again, correct) and label.dtype == torch.int64
    assert torch.equal(label[1], logits.argmax(1)) and not torch.equal(label[0], label[1])


def test_rejects_bad_input():
    model, x, y, units = _setup(*CASES["lenet300"])
    with pytest.raises(ValueError, match="not stages"):
        NeuronGame(model, ("nope",), x, y)
    with pytest.raises(ValueError, match="forward order"):
        NeuronGame(model, ("relu2", "relu1"), x, y)
    game = NeuronGame(model, units, x, y)
    with pytest.raises(ValueError, match="shape"):
        game(np.ones((2, 3), bool))


def test_sparse_path_is_safe_when_the_caller_reuses_its_buffer():
    """A caller (shapiq, a hand-written loop) may flip players in one buffer between calls."""
    model, x, y, units = _setup(*CASES["lenet300"])
    game = NeuronGame(model, units, x, y, metric="neg_loss", strategy="sparse")
    buffer = np.ones((1, 400), bool)
    for player in np.random.default_rng(0).permutation(400)[:12]:
        buffer[0, player] = False
        expected = -float(torch.nn.functional.cross_entropy(naive_logits(model, units, x, buffer[0]), y))
        assert game(buffer)[0] == pytest.approx(expected, rel=1e-4)


def test_game_leaves_the_callers_model_alone():
    model, x, y, units = _setup(*CASES["lenet300"])
    model.train()
    game = NeuronGame(model, units, x, y)
    assert model.training and all(m.training for m in model.children())
    before = game(np.ones((1, 400), bool))[0]
    with torch.no_grad():
        model[1].weight.zero_()  # editing the caller's model does not desynchronise the game
    assert game(np.ones((1, 400), bool))[0] == before


def test_predictions_of_no_coalitions():
    model, x, y, units = _setup(*CASES["lenet300"])
    correct, confidence = NeuronGame(model, units, x, y).predictions(np.zeros((0, 400), bool), np.zeros((0, 3), int))
    assert correct.shape == confidence.shape == (0, 3)
    assert NeuronGame(model, units, x, y).predicted(np.zeros((0, 400), bool), np.zeros((0, 3), int))[2].shape == (0, 3)


@pytest.mark.parametrize("case", ["face-cnn", "lenet5"])
def test_a_chunk_that_keeps_the_early_groups_whole_starts_at_its_first_masked_group(case):
    """Layer-wise games mask one late group: the dense path starts from that group's cached site output, and its
    values, losses and per-sample predictions still match the whole masked network's."""
    import torch.nn.functional as F

    model_name, shape, units = CASES[case]
    model, x, y, units = _setup(model_name, shape, units, n=64)
    game = NeuronGame(model, units, x, y, strategy="dense", metric="neg_loss")
    rng = np.random.default_rng(1)
    for group in range(1, len(units)):
        coalitions = np.ones((5, game.n_players), bool)
        part = game.group_slices[group]
        coalitions[:, part] = rng.random((5, part.stop - part.start)) < 0.6
        assert game._first_masked(coalitions) == group
        expected = [-float(F.cross_entropy(naive_logits(model, units, x, c), y)) for c in coalitions]
        np.testing.assert_allclose(game(coalitions), expected, rtol=1e-5, atol=1e-6)
        index = rng.integers(0, len(y), size=(5, 7))
        _, confidence, label = game.predicted(coalitions, index)
        for row, c in enumerate(coalitions):
            logits = naive_logits(model, units, x[index[row]], c)
            assert torch.equal(label[row], logits.argmax(1))
            torch.testing.assert_close(confidence[row], logits.softmax(1).max(1).values)
    assert group in game._sites  # computed once and kept
    whole = np.ones((2, game.n_players), bool)
    assert game._first_masked(whole) == len(units) - 1
    np.testing.assert_allclose(game(whole), [-float(F.cross_entropy(model(x), y))] * 2, rtol=1e-5)
