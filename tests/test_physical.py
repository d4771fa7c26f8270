"""Physically pruned networks: the same logits as the masked network, and really fewer parameters and MACs."""

import math
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from datasets.models import build_model
from methods.games.neuron import naive_logits
from methods.network.physical import KeptFeatures, measure_latency, network_cost, prune_network, pruned_point
from methods.network.structure import unit_groups


def _bn_cnn(*, input_shape, num_classes):
    """Conv channels as units, each conv followed by a BatchNorm (no pair has one; Torch-Pruning must shrink it)."""
    channels = input_shape[0]
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(channels, 8, 3, padding=1), bn1=nn.BatchNorm2d(8), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 12, 3, padding=1), bn2=nn.BatchNorm2d(12), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(12 * (input_shape[1] // 4) * (input_shape[2] // 4), 20), relu3=nn.ReLU(),
        fc2=nn.Linear(20, num_classes),
    ))


CASES = {  # name -> (factory, input shape, units)
    "lenet300": ("lenet300", (1, 28, 28), ("relu1", "relu2")),
    "lenet5": ("lenet5", (1, 28, 28), ("flatten", "relu3", "relu4")),
    # A conv group and the flattened features of the same channels, both feeding fc1.
    "lenet5-channels": ("lenet5", (1, 28, 28), ("relu2", "flatten", "relu3", "relu4")),
    "ffn": ("ffn", (40,), ("relu1", "relu2", "relu3")),
    "face-cnn": ("face-cnn", (3, 16, 16), ("relu1", "relu2", "relu3", "relu4")),
    "bn-cnn": (_bn_cnn, (3, 12, 12), ("relu1", "relu2", "relu3")),
}


def _setup(case, seed=0):
    factory, shape, units = CASES[case]
    torch.manual_seed(seed)
    if callable(factory):
        model = factory(input_shape=shape, num_classes=5)
    else:
        model = build_model(factory, input_shape=shape, num_classes=5)
    for module in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    model.eval()
    return model, shape, units, unit_groups(model, units, shape)


def _random_mask(groups, fraction, rng):
    return np.concatenate([rng.random(g.size) < fraction for g in groups])


def _assert_same_logits(model, units, pruned, mask, shape, n=64):
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = naive_logits(model, units, x, mask)
        got = pruned(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))  # hence the same accuracy on any labels


def _attached_difference(model, groups, mask):
    from methods.network.structure import parameter_counts

    kept, total = parameter_counts(model, groups, mask)
    return total - kept


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_pruned_network_computes_the_masked_network(case, fraction):
    model, shape, units, groups = _setup(case)
    mask = _random_mask(groups, fraction, np.random.default_rng(int(fraction * 10)))
    pruned = prune_network(model, groups, mask, shape)
    _assert_same_logits(model, units, pruned, mask, shape)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_group_empty_in_turn_and_everything_kept(case):
    model, shape, units, groups = _setup(case)
    rng = np.random.default_rng(3)
    full = np.ones(sum(g.size for g in groups), dtype=bool)
    pruned = prune_network(model, groups, full, shape)
    _assert_same_logits(model, units, pruned, full, shape)
    assert network_cost(pruned, shape) == network_cost(model, shape)
    for group in groups:
        mask = _random_mask(groups, 0.5, rng)
        mask[group.players] = False
        _assert_same_logits(model, units, prune_network(model, groups, mask, shape), mask, shape)
    nothing = ~full
    _assert_same_logits(model, units, prune_network(model, groups, nothing, shape), nothing, shape)


@pytest.mark.parametrize("case", ["lenet300", "ffn", "face-cnn"])
def test_removed_parameters_are_the_attached_ones(case):
    """With only producer-owned groups and no BatchNorm, the whole network loses exactly what
    ``parameter_counts`` says its attached layers lose."""
    model, shape, _, groups = _setup(case)
    before = network_cost(model, shape)["params"]
    for fraction in (0.2, 0.6):
        mask = _random_mask(groups, fraction, np.random.default_rng(7))
        after = network_cost(prune_network(model, groups, mask, shape), shape)["params"]
        assert before - after == _attached_difference(model, groups, mask)


def test_batchnorm_channels_are_removed_with_their_conv():
    model, shape, _, groups = _setup("bn-cnn")
    mask = _random_mask(groups, 0.5, np.random.default_rng(5))
    pruned = prune_network(model, groups, mask, shape)
    removed_channels = int((~mask[groups[0].players]).sum() + (~mask[groups[1].players]).sum())
    assert pruned.bn1.num_features == int(mask[groups[0].players].sum())
    assert pruned.bn2.running_mean.numel() == int(mask[groups[1].players].sum())
    before, after = network_cost(model, shape)["params"], network_cost(pruned, shape)["params"]
    assert before - after == _attached_difference(model, groups, mask) + 2 * removed_channels  # BN weight, bias


def test_flattened_features_are_selected_and_dead_channels_removed():
    model, shape, _, groups = _setup("lenet5")
    flat = groups[0]
    assert flat.producer is None and flat.size == 400
    mask = _random_mask(groups, 0.5, np.random.default_rng(11))
    features = mask[flat.players].reshape(16, 25)
    features[[2, 9, 13]] = False  # three conv2 channels none of whose positions is read
    features[4] = True  # one channel read in full
    pruned = prune_network(model, groups, mask, shape)
    assert pruned.conv2.out_channels == 13
    assert isinstance(pruned.flatten_kept, KeptFeatures)
    assert pruned.flatten_kept.index.numel() == pruned.fc1.in_features == int(features.sum())
    assert pruned.conv1.out_channels == 6  # not a unit: untouched
    # Each dead channel takes its filter (6 x 5 x 5 weights + a bias) with it, beyond the attached layers' share.
    before, after = network_cost(model, shape)["params"], network_cost(pruned, shape)["params"]
    assert before - after == _attached_difference(model, groups, mask) + 3 * (6 * 25 + 1)
    _assert_same_logits(model, CASES["lenet5"][2], pruned, mask, shape)


def test_features_of_channels_removed_by_their_conv_group_count_as_removed():
    """Every kept flattened feature lies in a channel that the conv group removes: no feature is read, yet conv2
    keeps a channel (convolutions refuse 0 channels)."""
    model, shape, units, groups = _setup("lenet5-channels")
    channels, flat = groups[0], groups[1]
    mask = np.ones(sum(g.size for g in groups), dtype=bool)
    mask[channels.players] = np.isin(np.arange(16), [1, 2])
    features = np.zeros((16, 25), dtype=bool)
    features[0, ::3] = True  # only in channel 0, which the conv group removes
    mask[flat.players] = features.reshape(-1)
    pruned = prune_network(model, groups, mask, shape)
    assert pruned.conv2.out_channels >= 1 and pruned.fc1.in_features == 0
    _assert_same_logits(model, units, pruned, mask, shape)


def test_stage_names_survive_and_the_original_is_untouched():
    model, shape, _, groups = _setup("lenet5")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    mask = _random_mask(groups, 0.3, np.random.default_rng(0))
    pruned = prune_network(model, groups, mask, shape)
    assert pruned.training
    names = [n for n, _ in pruned.named_children()]
    assert [n for n in names if n != "flatten_kept"] == [n for n, _ in model.named_children()]
    assert names.index("flatten_kept") == names.index("fc1") - 1
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_lenet300_costs_have_the_closed_form():
    """MACs of a 784-k1-k2-10 MLP: the weight MACs, plus one op per bias add and per ReLU output in Torch-Pruning."""
    model, shape, _, groups = _setup("lenet300")
    mask = _random_mask(groups, 0.4, np.random.default_rng(2))
    k1, k2 = int(mask[groups[0].players].sum()), int(mask[groups[1].players].sum())
    cost = network_cost(prune_network(model, groups, mask, shape), shape)
    weights = 784 * k1 + k1 * k2 + k2 * 5
    assert cost["weight_macs"] == weights
    assert cost["macs"] == weights + (k1 + k2 + 5) + (k1 + k2)
    assert cost["params"] == weights + k1 + k2 + 5


@pytest.mark.parametrize("case", ["lenet5", "face-cnn", "bn-cnn"])
def test_costs_grow_with_the_kept_fraction_for_nested_masks(case):
    model, shape, _, groups = _setup(case)
    order = np.random.default_rng(4).permutation(sum(g.size for g in groups))
    costs = []
    for fraction in (0.0, 0.1, 0.3, 0.6, 1.0):
        mask = np.zeros(order.size, dtype=bool)
        mask[order[:math.ceil(fraction * order.size)]] = True
        costs.append(network_cost(prune_network(model, groups, mask, shape), shape))
    for key in ("params", "macs", "weight_macs"):
        values = [c[key] for c in costs]
        assert all(a <= b for a, b in zip(values, values[1:], strict=False)), (key, values)
        assert values[0] < values[1] < values[-1], (key, values)
    assert costs[-1] == network_cost(model, shape)


def test_a_batchnorm_after_the_units_is_refused():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), relu1=nn.ReLU(), bn=nn.BatchNorm1d(8),
                                      fc2=nn.Linear(8, 3))).eval()
    groups = unit_groups(model, ("relu1",), (6,))
    with pytest.raises(NotImplementedError, match="bn"):
        prune_network(model, groups, np.arange(8) % 2 == 0, (6,))


def test_a_mask_of_the_wrong_length_is_refused():
    model, shape, _, groups = _setup("lenet300")
    with pytest.raises(ValueError, match="400 units"):
        prune_network(model, groups, np.ones(399, dtype=bool), shape)


def test_latency_is_a_median_per_batch_size_within_the_budget():
    model, shape, _, groups = _setup("lenet300")
    model.train()
    calls = []
    model.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].shape[0]))
    times = measure_latency(model, shape, batch_sizes=(1, 8), repeats=5, warmup=2, budget_s=10.0)
    assert set(times) == {1, 8} and all(t > 0 for t in times.values())
    assert calls == [1] * 7 + [8] * 7  # warm-up then repeats, at each batch size
    calls.clear()
    measure_latency(model, shape, batch_sizes=(4,), repeats=1000, warmup=0, budget_s=0.0)
    assert calls == [4]  # an exhausted budget stops after one timed pass
    threads = torch.get_num_threads()
    seen = []
    model.register_forward_pre_hook(lambda _m, _inputs: seen.append(torch.get_num_threads()))
    measure_latency(model, shape, batch_sizes=(1,), repeats=1, warmup=0, threads=1)
    assert seen == [1] and torch.get_num_threads() == threads  # timed at 1 thread, torch's setting restored
    assert model.training  # timed in eval mode, handed back as it came


def test_pruned_point_reports_costs_and_latency():
    model, shape, _, groups = _setup("lenet5")
    mask = _random_mask(groups, 0.5, np.random.default_rng(0))
    point = pruned_point(model, groups, mask, shape, repeats=3, budget_s=0.05)
    assert {"model", "params", "macs", "weight_macs", "attached_params", "latency_b1", "latency_b256",
            "threads"} <= set(point)
    assert point["params"] == network_cost(point["model"], shape)["params"]
    assert "latency_b1" not in pruned_point(model, groups, mask, shape, latency=False)


@pytest.mark.slow
def test_trained_lenet5_keeps_its_masked_test_accuracy():
    if not os.environ.get("COALITION_BENCH_DATA"):
        pytest.skip("set COALITION_BENCH_DATA to the staged data root to train lenet5-mnist")
    from datasets.data import as_tensors
    from datasets.training import train_pair
    from methods.network.structure import per_unit_weight_statistic

    trained = train_pair("lenet5-mnist", seed=0, device="cpu", progress=False)
    model, units = trained.model.eval(), trained.pair.units
    shape = trained.splits.input_shape
    groups = unit_groups(model, units, shape)
    x, y = as_tensors(trained.splits.test)
    scores = per_unit_weight_statistic(model, groups, {n: m.weight.abs() for n, m in model.named_children()
                                                       if hasattr(m, "weight")})
    mask = np.zeros(scores.size, dtype=bool)
    mask[np.argsort(-scores)[: scores.size // 2]] = True
    pruned = prune_network(model, groups, mask, shape)
    with torch.no_grad():
        pruned_predictions, masked_predictions = pruned(x).argmax(1), naive_logits(model, units, x, mask).argmax(1)
    assert torch.equal(pruned_predictions, masked_predictions)
    assert float((pruned_predictions == y).float().mean()) > 0.5  # a real network, not a constant
    assert network_cost(pruned, shape)["params"] < network_cost(model, shape)["params"] / 2
