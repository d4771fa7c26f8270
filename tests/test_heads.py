"""Attention heads as players: a 2-block, 2-head toy transformer whose head game is checked against brute force over
every coalition, each coalition's value computed by an attention written out independently of the model's code."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datasets.attention import Block
from datasets.errors import UsageError
from datasets.sites import resolve_sites
from methods.games import neuron_game
from methods.games.graph import GraphGame
from methods.scorers import PruningProblem, build_scorer

WIDTH, HEADS, TOKENS, CLASSES = 8, 2, 5, 3
SITES = ("blocks.0.attn.heads", "blocks.1.attn.heads")
N = 2 * HEADS  # players: block 0's heads, then block 1's


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, WIDTH)
        self.blocks = nn.Sequential(Block(WIDTH, HEADS, 16), Block(WIDTH, HEADS, 16))
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)).mean(1))


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    net = Toy().double().eval()
    x = torch.randn(30, TOKENS, 4, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[::3] = (y[::3] + 1) % CLASSES  # some errors, so that removing a head can help or hurt
    return net, x, y


def written_out(net: Toy, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The toy's logits with head h of block b multiplied by keep[2 b + h], from the weights alone."""
    a = F.linear(x, net.embed.weight, net.embed.bias)
    for b, block in enumerate(net.blocks):
        attn = block.attn
        h = F.layer_norm(a, (WIDTH,), block.norm1.weight, block.norm1.bias)
        q, k, v = F.linear(h, attn.qkv.weight, attn.qkv.bias).split(WIDTH, dim=-1)
        heads = []
        for i in range(HEADS):
            cols = slice(i * WIDTH // HEADS, (i + 1) * WIDTH // HEADS)
            scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(WIDTH // HEADS)
            heads.append(torch.softmax(scores, -1) @ v[..., cols] * keep[b * HEADS + i])
        a = a + F.linear(torch.cat(heads, -1), attn.proj.weight, attn.proj.bias)
        h = F.layer_norm(a, (WIDTH,), block.norm2.weight, block.norm2.bias)
        a = a + F.linear(F.gelu(F.linear(h, block.fc1.weight, block.fc1.bias)), block.fc2.weight, block.fc2.bias)
    return F.linear(a.mean(1), net.head.weight, net.head.bias)


@pytest.fixture(scope="module")
def values(toy) -> np.ndarray:
    """v(C) = minus the mean cross-entropy, for every C (bit j of the index = player j)."""
    net, x, y = toy
    with torch.no_grad():
        return np.array([-float(F.cross_entropy(written_out(net, x, torch.tensor([(c >> j) & 1 for j in range(N)],
                                                                                 dtype=torch.float64)), y))
                         for c in range(2 ** N)])


def brute_shapley(values: np.ndarray, players: list[int], base: int = 0) -> dict[int, float]:
    n, out = len(players), {}
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for chosen in itertools.combinations(others, size):
                c = base | sum(1 << p for p in chosen)
                total += weight * (values[c | 1 << i] - values[c])
        out[i] = total
    return out


def test_a_head_site_resolves_to_the_heads_axis(toy):
    net, _, _ = toy
    sites = resolve_sites(net, SITES, (TOKENS, 4))
    assert [(s.axis, s.size, s.dim, s.spec) for s in sites] == [("heads", HEADS, 2, path) for path in SITES]


def test_the_heads_axis_on_a_module_without_heads_stops_with_one_line(toy):
    net, _, _ = toy
    with pytest.raises(UsageError, match=r"unit site 'head': the heads axis needs .*got \(1, 3\)"):
        resolve_sites(net, ["head:heads"], (TOKENS, 4))


def test_the_head_game_is_the_written_out_attention_for_every_coalition(toy, values):
    net, x, y = toy
    game = neuron_game(net, SITES, x, y, metric="neg_loss")
    assert isinstance(game, GraphGame) and game.traced and game.n_players == N
    coalitions = ((np.arange(2 ** N)[:, None] >> np.arange(N)) & 1).astype(bool)
    np.testing.assert_allclose(game(coalitions), values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
def test_exact_shapley_of_heads_matches_brute_force(toy, values, layerwise):
    net, x, y = toy
    problem = PruningProblem.build(net, SITES, x, y, metric="neg_loss")
    scores = build_scorer("gtap", index="shapley", estimator="exact", layerwise=layerwise)(
        problem, rng=np.random.default_rng(0))
    if layerwise:  # each block's heads, the other block's all kept
        expected = {**brute_shapley(values, [0, 1], base=0b1100), **brute_shapley(values, [2, 3], base=0b0011)}
    else:
        expected = brute_shapley(values, list(range(N)))
    np.testing.assert_allclose(scores.values, [expected[i] for i in range(N)], rtol=0, atol=1e-10)


# -- Michel et al.'s head importance ---------------------------------------------------------------------------------


def hand_gate_gradients(net: Toy, x: torch.Tensor, y: torch.Tensor, keep: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dL(x_i)/d xi_j by central differences of the written-out attention, example by example: (examples, heads)."""
    out = np.zeros((len(x), N))
    with torch.no_grad():
        for j in range(N):
            up, down = torch.tensor(keep, dtype=torch.float64), torch.tensor(keep, dtype=torch.float64)
            up[j] += eps
            down[j] -= eps
            plus = F.cross_entropy(written_out(net, x, up), y, reduction="none")
            minus = F.cross_entropy(written_out(net, x, down), y, reduction="none")
            out[:, j] = ((plus - minus) / (2 * eps)).numpy()
    return out


@pytest.mark.parametrize("pruned", [(), (1,)], ids=["all-heads", "head-1-pruned"])
def test_michel_importance_is_the_mean_absolute_gate_gradient(toy, pruned):
    """I_h = E_x |dL(x)/d xi_h| against finite differences of an independently written attention; pruned heads are
    gated at 0 while the others are scored."""
    net, x, y = toy
    keep = np.ones(N)
    keep[list(pruned)] = 0
    expected = np.abs(hand_gate_gradients(net, x, y, keep)).mean(0)
    problem = PruningProblem.build(net, SITES, x, y)
    exclude = keep == 0
    raw = build_scorer("michel", normalize="none")(problem, rng=np.random.default_rng(0), exclude=exclude)
    free = ~exclude
    np.testing.assert_allclose(raw.values[free], expected[free], rtol=1e-6, atol=1e-9)
    assert np.isnan(raw.values[exclude]).all() and (raw.n_forward, raw.n_backward) == (len(x), len(x))
    # The paper's reading: each layer's scores divided by their l2 norm.
    normed = build_scorer("michel")(problem, rng=np.random.default_rng(0), exclude=exclude).values
    for layer in (slice(0, HEADS), slice(HEADS, N)):
        part = expected[layer].copy()
        part[exclude[layer]] = np.nan
        np.testing.assert_allclose(normed[layer], part / np.sqrt(np.nansum(part ** 2)), rtol=1e-6)


# -- weights of a head, and removing it ----------------------------------------------------------------------------


def test_a_heads_weights_are_its_qkv_rows_and_its_projection_columns(toy):
    """WMP of a head: the mean |w| over its q, k and v rows of qkv and its columns of the output projection."""
    net, x, y = toy
    problem = PruningProblem.build(net, SITES, x, y)
    scores = build_scorer("wmp")(problem, rng=np.random.default_rng(0)).values
    d = WIDTH // HEADS
    for b, block in enumerate(net.blocks):
        qkv, proj = block.attn.qkv.weight.detach().abs(), block.attn.proj.weight.detach().abs()
        for h in range(HEADS):
            rows = [part * WIDTH + h * d + j for part in range(3) for j in range(d)]
            weights = torch.cat([qkv[rows].flatten(), proj[:, h * d:(h + 1) * d].flatten()])
            assert scores[b * HEADS + h] == pytest.approx(float(weights.mean()), rel=1e-12)


def _random_inputs(model: nn.Module, shape: tuple[int, ...], n: int) -> torch.Tensor:
    if len(shape) == 1:  # token ids: the classification token, words, then padding
        ids = torch.randint(3, 40, (n, shape[0])).float()
        ids[:, 0] = 1
        ids[n // 2:, shape[0] // 2:] = 0
        return ids
    return torch.randn(n, *shape)


@pytest.mark.parametrize("model_name", ["vit", "text-transformer"])
@pytest.mark.parametrize("players", ["heads", "mlp", "both"])
def test_a_physically_pruned_transformer_gives_the_masked_logits(model_name, players):
    """Heads removed from qkv and the output projection, MLP neurons through Torch-Pruning: the pruned network's
    logits equal the masked network's to 1e-5, down to layers with nothing kept, and it is smaller."""
    from datasets.models import build_model
    from methods.games.neuron import naive_site_logits
    from methods.network.physical import network_cost, prune_network
    from methods.network.structure import unit_groups

    torch.manual_seed(0)
    if model_name == "vit":
        shape, options = (1, 28, 28), {"depth": 2}
    else:
        shape, options = (12,), {"vocab_size": 40}
    model = build_model(model_name, input_shape=shape, num_classes=5, **options).eval()
    units = {"heads": ["blocks.0.attn.heads", "blocks.1.attn.heads"],
             "mlp": ["blocks.0.act:features", "blocks.1.act:features"]}
    units["both"] = units["heads"] + units["mlp"]
    groups = unit_groups(model, units[players], shape)
    n = sum(g.size for g in groups)
    x = _random_inputs(model, shape, 6)
    full = network_cost(model, shape)["params"]
    rng = np.random.default_rng(0)
    for keep_fraction in (0.0, 0.4, 0.8):
        mask = rng.random(n) < keep_fraction
        mask[groups[0].players] = False  # the first layer emptied
        pruned = prune_network(model, groups, mask, shape)
        with torch.no_grad():
            np.testing.assert_allclose(pruned(x).numpy(), naive_site_logits(model, units[players], x, mask).numpy(),
                                       rtol=0, atol=1e-5)
        assert network_cost(pruned, shape)["params"] < full


def test_nn_multihead_attention_becomes_a_gated_attention_with_the_same_outputs():
    """torchvision's ViT and nn.TransformerEncoderLayer use nn.MultiheadAttention, whose fused call no hook can
    split into heads; the same weights in a SelfAttention give the same outputs, with or without padding."""
    from datasets.attention import from_multihead_attention

    torch.manual_seed(0)
    fused = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    gated = from_multihead_attention(fused).eval()
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 4:] = True
    with torch.no_grad():
        expected, _ = fused(x, x, x, need_weights=False)
        np.testing.assert_allclose(gated(x).numpy(), expected.numpy(), rtol=0, atol=1e-6)
        expected, _ = fused(x, x, x, key_padding_mask=pad, need_weights=False)
        np.testing.assert_allclose(gated(x, pad).numpy(), expected.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="batch-first"):
        from_multihead_attention(nn.MultiheadAttention(16, 4))


def test_a_layer_curve_prunes_one_layers_heads_in_score_order(toy):
    """Each layer's heads kept from the highest score down, the other layer whole: accuracies of the written-out
    attention, in one batched call."""
    from methods.network.structure import unit_groups
    from methods.pruning.curves import layer_curves

    net, x, y = toy
    game = neuron_game(net, SITES, x, y)  # accuracy
    groups = unit_groups(net, SITES, (TOKENS, 4))
    scores = np.array([0.2, 0.9, 0.5, 0.1])  # block 0: head 1 first; block 1: head 0 first
    records = layer_curves(scores, groups, game)
    cache: dict = {}
    before = game.n_evaluations
    assert layer_curves(scores, groups, game, cache=cache) == records
    assert game.n_evaluations - before == 1 + 2 * 2  # the whole net once, then each layer's 1 and 0 heads kept
    assert layer_curves(scores, groups, game, cache=cache) == records and game.n_evaluations - before == 5
    expected_keep = {("blocks.0.attn.heads", 2): [1, 1, 1, 1], ("blocks.0.attn.heads", 1): [0, 1, 1, 1],
                     ("blocks.0.attn.heads", 0): [0, 0, 1, 1], ("blocks.1.attn.heads", 2): [1, 1, 1, 1],
                     ("blocks.1.attn.heads", 1): [1, 1, 1, 0], ("blocks.1.attn.heads", 0): [1, 1, 0, 0]}
    assert [(r["layer"], r["units_kept"]) for r in records] == list(expected_keep)
    with torch.no_grad():
        for record in records:
            keep = torch.tensor(expected_keep[(record["layer"], record["units_kept"])], dtype=torch.float64)
            accuracy = float((written_out(net, x, keep).argmax(1) == y).double().mean())
            assert record["accuracy"] == pytest.approx(accuracy, abs=1e-12) and record["size"] == HEADS


def test_torch_prunings_magnitude_of_a_head_sums_its_own_weights(toy):
    """tp-magnitude on heads: per coupled layer the sum of w^2 over the head's weights (its q, k, v rows of qkv; its
    columns of proj), the two layers' terms averaged (Torch-Pruning's group_reduction "mean")."""
    net, x, y = toy
    problem = PruningProblem.build(net, SITES, x, y)
    scores = build_scorer("tp-magnitude", p=2)(problem, rng=np.random.default_rng(0)).values
    d = WIDTH // HEADS
    for b, block in enumerate(net.blocks):
        qkv, proj = block.attn.qkv.weight.detach(), block.attn.proj.weight.detach()
        for h in range(HEADS):
            rows = [part * WIDTH + h * d + j for part in range(3) for j in range(d)]
            terms = [float(qkv[rows].pow(2).sum()), float(proj[:, h * d:(h + 1) * d].pow(2).sum())]
            assert scores[b * HEADS + h] == pytest.approx(np.mean(terms), rel=1e-6)


@pytest.mark.parametrize("name", ["tp-magnitude", "tp-taylor", "tp-hessian"])
def test_every_torch_pruning_importance_scores_heads(toy, name):
    net, x, y = toy
    problem = PruningProblem.build(net, SITES, x, y)
    values = build_scorer(name)(problem, rng=np.random.default_rng(0)).values
    assert values.shape == (N,) and np.isfinite(values).all() and (values > 0).all()


def test_a_head_layout_counts_the_parameters_that_removing_heads_removes():
    """parameter_counts of the attached layers (qkv, proj) equals what the physically pruned attention holds."""
    from datasets.models import build_model
    from methods.network.physical import prune_network
    from methods.network.structure import parameter_counts, unit_groups

    torch.manual_seed(0)
    model = build_model("vit", input_shape=(1, 28, 28), num_classes=3, depth=2).eval()
    units = ["blocks.0.attn.heads", "blocks.1.attn.heads"]
    groups = unit_groups(model, units, (1, 28, 28))
    mask = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    pruned = prune_network(model, groups, mask, (1, 28, 28))
    held = sum(p.numel() for b in pruned.blocks for p in [*b.attn.qkv.parameters(), *b.attn.proj.parameters()])
    assert parameter_counts(model, groups, mask)[0] == held


def test_keep_heads_and_the_multihead_conversion_refuse_what_they_cannot_do():
    from datasets.attention import SelfAttention, from_multihead_attention

    attention = SelfAttention(8, 4)
    for bad in ([0, 0, 1], [2, 1], [4]):
        with pytest.raises(ValueError, match=r"distinct increasing indices in \[0, 4\)"):
            attention.keep_heads(bad)
    for options in ({"add_bias_kv": True}, {"add_zero_attn": True}):
        with pytest.raises(ValueError, match="neither add_bias_kv nor add_zero_attn"):
            from_multihead_attention(nn.MultiheadAttention(8, 2, batch_first=True, **options))


def test_token_ids_outside_the_models_vocabulary_stop_with_one_line(tmp_path):
    """A text transformer whose vocab_size is smaller than its data's stops before training, naming the pair."""
    from helpers import OPTIONS, write_emotion

    from datasets.pairs import get_pair
    from datasets.training import train_pair

    write_emotion(tmp_path)
    pair = get_pair("transformer-emotion")
    pair = type(pair)(**{**pair.__dict__, "dataset_options": {**OPTIONS.get("emotion", {}), "sequence_length": 8},
                         "model_options": {"vocab_size": 3}})
    with pytest.raises(UsageError, match=r"pair 'transformer-emotion', train split: token ids must be whole numbers "
                                         r"in \[0, 6\)") as error:
        train_pair(pair, seed=0, data_dir=tmp_path, progress=False)
    assert "\n" not in str(error.value)


def test_captum_path_methods_refuse_token_ids():
    from datasets.models import build_model

    torch.manual_seed(0)
    model = build_model("text-transformer", input_shape=(6,), num_classes=3, vocab_size=20, depth=1).eval()
    x = torch.randint(3, 23, (8, 6)).float()
    x[:, 0] = 1
    problem = PruningProblem.build(model, ["blocks.0.attn.heads"], x, torch.randint(0, 3, (8,)))
    assert np.isfinite(build_scorer("captum-gxa")(problem, rng=np.random.default_rng(0)).values).all()
    for name in ("captum-ig", "captum-conductance", "captum-deeplift"):
        with pytest.raises(UsageError, match="reads discrete token ids"):
            build_scorer(name)(problem, rng=np.random.default_rng(0))
