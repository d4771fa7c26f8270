"""NEUROGAME: the layer's exact Shapley against brute force, its filter, its gradient, its model and its family."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from datasets import training
from datasets.models import MODELS, build_model, unit_counts
from datasets.pairs import Recipe
from methods.indices import exact_shapley
from methods.neurogame import (
    NeuroGameConfig,
    NeuroGameFamily,
    NeuroGameLayer,
    PatchGame,
    explain_model,
    game_layers,
    sub_coalitions,
)
from methods.scorers import PruningProblem


def _maps(seed: int, shape: tuple[int, ...], low: float = 0.0, high: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=generator)


def _relu_maps(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Post-ReLU-like maps: about a third of the units silent."""
    return torch.relu(_maps(seed, shape, -1.0, 2.0))


@pytest.mark.parametrize("neighbourhood", [4, 8])
@pytest.mark.parametrize("size", [2, 3])
def test_layer_shapley_is_exact_shapley_of_the_patch_game(size, neighbourhood):
    """Every patch's values from the layer's two GEMMs equal brute-force enumeration of the float64 patch game."""
    config = NeuroGameConfig(coalition_size=size, neighbourhood=neighbourhood, top_p=1.0, alpha=0.7, beta=0.4,
                             temperature=0.8)
    layer = NeuroGameLayer(config).eval()
    x = _relu_maps(size * 10 + neighbourhood, (2, 2, 2 * size, 2 * size + 1))
    maps = layer.explain(x)
    n_patches = maps.coalition_shapley.shape[2]
    assert n_patches == 4
    for sample in range(2):
        for channel in range(2):
            for patch in range(n_patches):
                game = layer.patch_game(x, sample=sample, channel=channel, patch=patch)
                exact = exact_shapley(game)
                assert game.n_evaluations == 2 ** (size * size)
                ours = maps.coalition_shapley[sample, channel, patch].double().numpy()
                np.testing.assert_allclose(ours, exact.values, rtol=1e-4, atol=1e-6 * np.abs(exact.values).max())


def test_overlapping_patches_are_exact_too():
    config = NeuroGameConfig(coalition_size=2, stride=1, neighbourhood=8, top_p=1.0, beta=-0.5)
    layer = NeuroGameLayer(config)
    x = _relu_maps(1, (1, 1, 4, 5))
    maps = layer.explain(x)
    assert maps.coalition_shapley.shape == (1, 1, 12, 4)
    for patch in range(12):
        exact = exact_shapley(layer.patch_game(x, sample=0, channel=0, patch=patch)).values
        np.testing.assert_allclose(maps.coalition_shapley[0, 0, patch].double().numpy(), exact, rtol=1e-4,
                                   atol=1e-7)
    # a unit is strong when it is strong in any patch that covers it
    strong_anywhere = torch.zeros(20)
    index = layer.grid(4, 5).index
    for patch in range(12):
        strong = maps.coalition_shapley[0, 0, patch] > maps.threshold[0, 0]
        strong_anywhere[index[patch]] = torch.maximum(strong_anywhere[index[patch]], strong.float())
    assert torch.equal(maps.mask.flatten(), strong_anywhere)


def test_shapley_weights_reproduce_a_known_game():
    """W itself: on a unanimity game of T = {0, 2} the Shapley value is 1/2 on T and 0 elsewhere."""
    members, _, weights = sub_coalitions(2, 4)
    values = members[:, 0] * members[:, 2]
    np.testing.assert_allclose(values @ weights, [0.5, 0.0, 0.5, 0.0], atol=1e-12)


def test_efficiency_values_sum_to_payoff_minus_empty():
    config = NeuroGameConfig(coalition_size=3, neighbourhood=8, top_p=1.0, beta=0.6, temperature=0.5)
    layer = NeuroGameLayer(config)
    x = _relu_maps(2, (3, 4, 9, 9))
    maps = layer.explain(x)
    log_z = torch.logsumexp(-maps.energy.flatten(2) / 0.5, dim=-1)  # (B, C)
    v_all = maps.payoff.flatten(2)  # v(N) = P_m
    v_empty = torch.exp(-log_z)[..., None]  # v(empty) = 1 / Z (all spins inactive: E = 0)
    torch.testing.assert_close(maps.coalition_shapley.sum(-1), v_all - v_empty, rtol=1e-4, atol=1e-7)


def _patch_values(spins: np.ndarray, *, alpha: float, beta: float, temperature: float = 1.0) -> np.ndarray:
    config = NeuroGameConfig(coalition_size=2, top_p=1.0, alpha=alpha, beta=beta, temperature=temperature)
    game = PatchGame(spins, 0, config=config)
    return exact_shapley(game).values, game


def test_closed_forms_null_player_and_symmetry():
    """beta = 0 with one active unit: phi = (exp(alpha s / T) - 1) / Z for it, 0 for the silent (null) players.
    Equal spins: every player gets (v(N) - v(empty)) / n^2, whatever beta."""
    spins = np.array([[0.8, 0.0], [0.0, 0.0]])
    phi, game = _patch_values(spins, alpha=1.5, beta=0.0, temperature=0.7)
    z = math.exp(game.log_partition)
    np.testing.assert_allclose(phi, [(math.exp(1.5 * 0.8 / 0.7) - 1) / z, 0, 0, 0], rtol=1e-12, atol=1e-15)

    layer = NeuroGameLayer(NeuroGameConfig(top_p=1.0, alpha=1.5, beta=0.0, temperature=0.7))
    maps = layer.explain(torch.atanh(torch.tensor(spins, dtype=torch.float32))[None, None])
    np.testing.assert_allclose(maps.coalition_shapley[0, 0, 0].double().numpy(), phi, rtol=1e-5, atol=1e-7)
    assert maps.coalition_shapley[0, 0, 0, 1:].eq(0).all()  # null players: exactly zero, not rounding noise

    for beta in (0.0, 0.9, -0.9):
        phi, game = _patch_values(np.full((2, 2), 0.6), alpha=1.0, beta=beta)
        full, empty = game(np.array([[True] * 4, [False] * 4]))
        np.testing.assert_allclose(phi, np.full(4, (full - empty) / 4), rtol=1e-12)


def test_coupling_makes_it_a_real_game():
    """With beta != 0 a unit's Shapley value is not its own payoff v({i}) - v(empty), and active neighbours raise it."""
    spins = np.array([[0.5, 0.9], [0.9, 0.0]])
    phi, game = _patch_values(spins, alpha=1.0, beta=1.0)
    own = game(np.eye(4, dtype=bool)) - game(np.zeros((1, 4), bool))
    assert not np.allclose(phi[:3], own[:3], rtol=0.05)
    assert np.all(phi[:3] > own[:3])  # positive coupling: every active unit earns more with its neighbours

    def neighbour_bonus(beta: float) -> float:
        """phi of a 0.5 unit with two 0.9 neighbours over phi of a lone 0.5 unit, in the same map."""
        map_spins = np.zeros((2, 4))
        map_spins[:, :2] = spins
        map_spins[0, 2] = 0.5
        config = NeuroGameConfig(coalition_size=2, top_p=1.0, alpha=1.0, beta=beta)
        coupled = exact_shapley(PatchGame(map_spins, 0, config=config)).values[0]
        lone = exact_shapley(PatchGame(map_spins, 1, config=config)).values[0]
        return coupled / lone

    assert neighbour_bonus(1.0) > neighbour_bonus(0.0) * 1.2
    assert neighbour_bonus(-1.0) < neighbour_bonus(0.0)


@pytest.mark.parametrize("top_p", [0.1, 0.3, 0.5, 0.99, 1.0])
def test_top_p_keeps_the_right_number_of_coalitions(top_p):
    layer = NeuroGameLayer(NeuroGameConfig(top_p=top_p))
    maps = layer.explain(_relu_maps(3, (2, 3, 8, 8)))  # 16 patches per map
    winning = maps.winning.flatten(2)
    assert winning.sum(-1).eq(math.ceil(top_p * 16)).all()
    payoff = maps.payoff.flatten(2)
    if top_p < 1:  # the winners are the largest payoffs
        lowest_winner = payoff.masked_fill(~winning, math.inf).amin(-1)
        highest_loser = payoff.masked_fill(winning, -math.inf).amax(-1)
        assert (lowest_winner >= highest_loser).all()
    # only units of winning patches propagate, and only above rho
    in_winner = winning[..., :, None].expand(-1, -1, -1, 4).reshape(2, 3, -1)
    index = layer.grid(8, 8).index.reshape(-1)
    assert not maps.mask.flatten(2)[..., index][~in_winner].any()
    strong = maps.coalition_shapley > maps.threshold[..., None, None]
    assert maps.mask.sum() == strong.sum()


def test_threshold_is_the_scheduled_first_quartile():
    layer = NeuroGameLayer(NeuroGameConfig(top_p=0.5, schedule="warmup", warmup_epochs=2))
    x = _relu_maps(4, (2, 2, 8, 8))
    scales = []
    for epoch in range(4):
        layer.start_epoch(epoch, 4)
        scales.append(float(layer.threshold_scale))
        maps = layer.explain(x)
        values = maps.coalition_shapley.flatten(2)
        q1 = torch.stack([torch.quantile(row[~row.isnan()], 0.25) for row in values.flatten(0, 1)]).view(2, 2)
        torch.testing.assert_close(maps.threshold, scales[-1] * q1)
    assert scales == [0.0, 0.5, 1.0, 1.0]
    short = NeuroGameLayer(NeuroGameConfig(schedule="warmup", warmup_epochs=5))
    ramp = []
    for epoch in range(3):  # 3 epochs with a 5-epoch warm-up: the ramp ends at the last epoch
        short.start_epoch(epoch, 3)
        ramp.append(float(short.threshold_scale))
    assert ramp == [0.0, 0.5, 1.0]
    short.start_epoch(0, 1)
    assert float(short.threshold_scale) == 1.0
    constant = NeuroGameLayer(NeuroGameConfig(schedule="constant"))
    constant.start_epoch(0, 4)
    assert float(constant.threshold_scale) == 1.0
    # at rho = 0 every active unit of a winning patch passes; the quartile then drops some
    layer.start_epoch(0, 4)
    loose = layer.explain(x).mask.sum()
    layer.start_epoch(3, 4)
    assert layer.explain(x).mask.sum() < loose


def test_mask_is_deterministic_in_eval_and_independent_of_the_batch():
    layer = NeuroGameLayer(NeuroGameConfig(coalition_size=3, top_p=0.6)).eval()
    x = _relu_maps(5, (6, 4, 12, 12))
    first, second = layer(x), layer(x)
    assert torch.equal(first, second)
    assert torch.equal(layer(x[2:3]), first[2:3])
    layer.train()  # the same filter in training mode
    assert torch.equal(layer(x), first)


def test_gradient_reaches_kept_activations_only():
    layer = NeuroGameLayer(NeuroGameConfig(top_p=0.5)).train()
    x = _relu_maps(6, (3, 4, 8, 8)).requires_grad_()
    out = layer(x)
    upstream = _maps(7, out.shape, 0.5, 1.5)
    (out * upstream).sum().backward()
    mask = layer.explain(x.detach()).mask
    assert 0 < mask.mean() < 1
    torch.testing.assert_close(x.grad, upstream * mask)
    assert torch.equal(out, x.detach() * mask)
    assert list(layer.parameters()) == []  # fixed alpha, beta, T


def test_learnable_energy_parameters_train_through_the_surrogate():
    layer = NeuroGameLayer(NeuroGameConfig(learnable=True, top_p=0.5)).train()
    names = {name for name, _ in layer.named_parameters()}
    assert names == {"alpha", "beta", "log_temperature"}
    x = _relu_maps(8, (3, 4, 8, 8)).requires_grad_()
    out = layer(x)
    (out * _maps(9, out.shape, 0.5, 1.5)).sum().backward()
    for parameter in layer.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad) and parameter.grad != 0
    mask = layer.explain(x.detach()).mask
    assert torch.equal(x.grad == 0, mask == 0)  # the forward value and the activations' gradient: the hard mask
    assert torch.equal(out.detach(), x.detach() * mask)


def test_random_filter_keeps_the_same_number_per_map():
    x = _relu_maps(10, (4, 5, 8, 8))
    shapley = NeuroGameLayer(NeuroGameConfig(top_p=0.5)).explain(x).mask
    layer = NeuroGameLayer(NeuroGameConfig(top_p=0.5, filter="random", seed=3))
    random = layer.explain(x).mask
    assert torch.equal(random.sum((-1, -2)), shapley.sum((-1, -2)))
    assert not torch.equal(random, shapley)
    assert torch.equal(layer.explain(x).mask, random)  # eval: seeded, deterministic
    layer.train()
    torch.manual_seed(0)
    drawn = layer(x) != 0
    assert drawn.sum() <= random.sum()  # silent units may be drawn, so at most the same number of nonzeros
    assert layer.pass_fraction() == pytest.approx(float(shapley.mean()))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top_p": 0.0}, "top_p must be in \\(0, 1\\]"),
        ({"top_p": 1.5}, "top_p must be in \\(0, 1\\]"),
        ({"coalition_size": 1}, "coalition_size n must be an integer >= 2"),
        ({"coalition_size": 4}, "coalition_size n must be 2 or 3"),
        ({"temperature": 0.0}, "temperature T must be > 0"),
        ({"temperature": -1.0}, "temperature T must be > 0"),
        ({"stride": 0}, "stride must be an integer >= 1"),
        ({"neighbourhood": 6}, "neighbourhood must be 4 or 8"),
        ({"filter": "dropout"}, "unknown filter 'dropout'"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"uncovered": "pad"}, "unknown uncovered 'pad'"),
        ({"spin_scale": 0.0}, "spin_scale must be > 0"),
        ({"warmup_epochs": 0}, "warmup_epochs must be an integer >= 1"),
    ],
)
def test_bad_parameters_raise_one_line(options, message):
    with pytest.raises(ValueError, match=message) as error:
        NeuroGameConfig(**options)
    assert "\n" not in str(error.value)


def test_a_patch_larger_than_the_map_fails_when_the_model_is_built():
    with pytest.raises(ValueError, match="a 3x3 coalition does not fit a 2x2 activation map") as error:
        build_model("neurogame-3x3", input_shape=(3, 8, 8), num_classes=2)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="does not fit"):
        NeuroGameLayer(NeuroGameConfig(coalition_size=3))(torch.zeros(1, 1, 2, 5))


def test_uncovered_units_are_dropped_or_kept():
    x = _maps(11, (1, 1, 7, 7), 0.5, 1.0)  # n = 3: a 2x2 grid of patches covers the top-left 6x6
    dropped = NeuroGameLayer(NeuroGameConfig(coalition_size=3, uncovered="drop", top_p=1.0)).explain(x).mask
    kept = NeuroGameLayer(NeuroGameConfig(coalition_size=3, uncovered="keep", top_p=1.0)).explain(x).mask
    assert not dropped[..., 6, :].any() and not dropped[..., :, 6].any()
    assert kept[..., 6, :].all() and kept[..., :, 6].all()
    assert torch.equal(kept[..., :6, :6], dropped[..., :6, :6])


@pytest.mark.parametrize("input_shape", [(3, 64, 64), (1, 128, 128)])
def test_model_builds_with_named_stages(input_shape):
    torch.manual_seed(0)
    model = build_model("neurogame", input_shape=input_shape, num_classes=3).eval()
    assert [name for name, _ in model.named_children()] == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "game1", "flatten", "fc1", "relu3", "fc2"]
    assert model(torch.rand(2, *input_shape)).shape == (2, 3)
    sizes = unit_counts(model, ("relu1", "game1", "relu3"), input_shape)
    assert sizes == {"relu1": 32, "game1": 64, "relu3": 256}
    maps = explain_model(model, torch.rand(2, *input_shape), stage="game1")
    side = input_shape[1] // 4
    assert maps.mask.shape == maps.shapley.shape == maps.activation.shape == (2, 64, side, side)
    assert maps.energy.shape == maps.payoff.shape == (2, 64, side // 2, side // 2)
    with pytest.raises(ValueError, match="not a NEUROGAME stage"):
        explain_model(model, torch.rand(1, *input_shape), stage="relu3")


def test_registered_variants_build():
    assert {"neurogame", "neurogame-3x3", "neurogame-random"} <= set(MODELS.names())
    for name in ("neurogame-3x3", "neurogame-random"):
        model = build_model(name, input_shape=(3, 16, 16), num_classes=2)
        assert model(torch.rand(2, 3, 16, 16)).shape == (2, 2)


def test_trains_through_fit_with_the_family_and_reports_pass_fractions():
    assert isinstance(training.FAMILIES.get("neurogame"), NeuroGameFamily)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 16, 16, generator=generator)
    y = torch.randint(0, 2, (32,), generator=generator)
    data = TensorDataset(x, y)
    model = build_model("neurogame", input_shape=(3, 16, 16), num_classes=2)
    before = model.fc1.weight.detach().clone()
    history = training.fit(model, data, Recipe(epochs=2, batch_size=16, lr=1e-3), seed=0,
                           device=torch.device("cpu"), family=training.FAMILIES.get("neurogame"), val=data,
                           progress=False)
    assert not torch.equal(model.fc1.weight, before)
    assert len(history) == 2
    for record in history:
        fraction = record["neurogame/pass_fraction/game1"]
        assert 0 < fraction < 1
        assert math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
    assert history[1]["neurogame/pass_fraction/game1"] < history[0]["neurogame/pass_fraction/game1"]  # warmup
    # a 2-epoch run ends its warm-up (3 epochs by default) early: the last epoch trains under the full rho
    assert float(dict(game_layers(model))["game1"].threshold_scale) == pytest.approx(1.0)
    # the schedule's position travels with the checkpoint
    assert "game1.threshold_scale" in model.state_dict()


def test_a_neuron_game_plays_on_the_model():
    """GTAP's neuron game batches coalitions x samples through the layer; per-sample filtering keeps that exact."""
    torch.manual_seed(0)
    model = build_model("neurogame", input_shape=(3, 16, 16), num_classes=2).eval()
    x = _maps(12, (8, 3, 16, 16), 0.0, 1.0)
    y = model(x).argmax(1)
    problem = PruningProblem.build(model, ("relu1", "relu2", "relu3"), x, y, strategy="dense")
    full = np.ones((1, problem.n_units), bool)
    keep = np.random.default_rng(0).random((3, problem.n_units)) < 0.7
    values = problem.game(np.concatenate([full, keep]))
    assert values[0] == 1.0 and values.shape == (4,)
