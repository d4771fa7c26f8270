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
