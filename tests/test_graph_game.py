"""The neuron game on a graph (a residual net), against oracles written out here.

The expected values never come from ``methods``: coalition values come from a residual forward pass written below
with the masks applied by hand, power indices from their defining sums over every coalition, and "removing a
channel" from a copy of the net whose BatchNorm scale and shift of that channel are zero.
"""

import copy
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from datasets.sites import resolve_sites
from methods.games import GraphGame, naive_site_logits, neuron_game
from methods.games.graph import split_at_sites
from methods.games.skipping import mutates_inputs, select_units
from methods.network import prune_network, unit_groups
from methods.scorers import PruningProblem, build_scorer

UNITS = ("layer1.0.bn1", "layer1.1.bn1")  # the inner channels of two residual blocks: 4 + 8 players
SIZES = (4, 8)
N_UNITS = sum(SIZES)
GROUPS = (np.arange(0, 4), np.arange(4, 12))
SHAPE = (3, 8, 8)


def residual_net() -> nn.Sequential:
    """A stem and two torchvision basic blocks (the second one downsampling through a 1x1 conv shortcut), with
    random BatchNorm statistics so that no channel is trivial."""
    torch.manual_seed(0)
    shortcut = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    net = nn.Sequential()
    net.add_module("stem", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()))
    net.add_module("layer1", nn.Sequential(BasicBlock(4, 4), BasicBlock(4, 8, stride=2, downsample=shortcut)))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flatten", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 3))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.5)
    return net.double().eval()


@pytest.fixture(scope="module")
def tiny():
    net = residual_net()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(40, *SHAPE, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(1)
    flip = torch.rand(40, generator=generator) < 0.3
    y[flip] = (y[flip] + 1) % 3  # some errors, so that accuracy and loss move both ways
    return net, x, y


def block(b: BasicBlock, a: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A basic block written out, its inner channels multiplied by ``keep`` (k, channels) per coalition."""
    inner = torch.relu(b.bn1(b.conv1(a)).unflatten(0, (len(keep), -1)) * keep[:, None, :, None, None]).flatten(0, 1)
    out = b.bn2(b.conv2(inner))
    identity = a if b.downsample is None else b.downsample(a)
    return torch.relu(out + identity)


@pytest.fixture(scope="module")
def coalition_values(tiny) -> np.ndarray:
    """v(C) = minus the mean cross-entropy for every C (bit j of the index = unit j), by the forward above."""
    net, x, y = tiny
    members = torch.from_numpy((np.arange(2 ** N_UNITS)[:, None] >> np.arange(N_UNITS)) & 1).double()
    values = []
    with torch.no_grad():
        for chunk in members.split(512):
            a = net.stem(x).repeat(len(chunk), 1, 1, 1)
            a = block(net.layer1[0], a, chunk[:, :4])
            a = block(net.layer1[1], a, chunk[:, 4:])
            logits = net.fc(a.mean((2, 3))).unflatten(0, (len(chunk), -1))
            loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(chunk)), reduction="none")
            values.append(-loss.view(len(chunk), -1).mean(1))
    return torch.cat(values).numpy()


def brute_force(values: np.ndarray, index: str, players, always_in=()) -> np.ndarray:
    """Shapley or Banzhaf of ``players`` in the game where ``always_in`` are in every coalition, by definition."""
    base = sum(1 << int(p) for p in always_in)
    players = [int(p) for p in players]
    n = len(players)
    result = np.full(N_UNITS, np.nan)
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(n):
            weight = (math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                      if index == "shapley" else 0.5 ** (n - 1))
            for chosen in itertools.combinations(others, size):
                c = base | sum(1 << p for p in chosen)
                total += weight * (values[c | 1 << i] - values[c])
        result[i] = total
    return result


@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_the_graph_game_equals_the_hand_written_residual_forward(tiny, coalition_values, strategy):
    net, x, y = tiny
    game = neuron_game(net, UNITS, x, y, metric="neg_loss", strategy=strategy)
    assert isinstance(game, GraphGame) and game.traced and game.n_players == N_UNITS
    assert game.strategy == strategy
    index = np.random.default_rng(0).choice(2 ** N_UNITS, 300, replace=False)
    coalitions = ((index[:, None] >> np.arange(N_UNITS)) & 1).astype(bool)
    np.testing.assert_allclose(game(coalitions), coalition_values[index], rtol=0, atol=1e-12)
    assert game.n_evaluations == 300


def test_chunks_that_fit_a_tiny_memory_cap_give_the_same_values(tiny, coalition_values):
    net, x, y = tiny
    index = np.arange(0, 2 ** N_UNITS, 97)
    coalitions = ((index[:, None] >> np.arange(N_UNITS)) & 1).astype(bool)
    per_sample = GraphGame(net, UNITS, x, y)._per_sample_bytes
    small = GraphGame(net, UNITS, x, y, metric="neg_loss", memory_cap=15 * per_sample)  # under one coalition's 40
    assert len(small._chunks(len(index), len(y))[0][1]) == 3  # so its samples are split too
    np.testing.assert_allclose(small(coalitions), coalition_values[index], rtol=0, atol=1e-12)


def test_the_naive_hooked_forward_agrees_with_the_hand_written_one(tiny, coalition_values):
    net, x, y = tiny
    for c in (0, 1234, 2 ** N_UNITS - 1):
        coalition = ((c >> np.arange(N_UNITS)) & 1).astype(bool)
        loss = F.cross_entropy(naive_site_logits(net, UNITS, x, coalition), y)
        assert -float(loss) == pytest.approx(coalition_values[c], abs=1e-12)


@pytest.mark.parametrize("index", ["shapley", "banzhaf"])
@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "layerwise"])
def test_gtap_exact_on_a_residual_net_matches_brute_force(tiny, coalition_values, index, layerwise):
    net, x, y = tiny
    problem = PruningProblem.build(net, UNITS, x, y, metric="neg_loss")
    scores = build_scorer("gtap", index=index, estimator="exact", layerwise=layerwise)(
        problem, rng=np.random.default_rng(0))
    if layerwise:  # each block's game, with the other block's channels all in
        expected = np.full(N_UNITS, np.nan)
        for group in GROUPS:
            others = np.setdiff1d(np.arange(N_UNITS), group)
            expected[group] = brute_force(coalition_values, index, group, others)[group]
    else:
        expected = brute_force(coalition_values, index, range(N_UNITS))
    np.testing.assert_allclose(scores.values, expected, rtol=0, atol=1e-10)
    assert scores.n_evaluations == (2 ** 4 + 2 ** 8 if layerwise else 2 ** 12)


@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_removing_one_player_is_zeroing_its_channel_by_hand(tiny, strategy):
    net, x, y = tiny
    game = neuron_game(net, UNITS, x, y, metric="neg_loss", strategy=strategy)
    for player in range(N_UNITS):
        coalition = np.ones(N_UNITS, bool)
        coalition[player] = False
        by_hand = copy.deepcopy(net)
        block_index, channel = (0, player) if player < 4 else (1, player - 4)
        bn = by_hand.layer1[block_index].bn1
        with torch.no_grad():
            bn.weight[channel] = 0  # the BatchNorm then outputs exactly its shift, made 0 too
            bn.bias[channel] = 0
            expected = -float(F.cross_entropy(by_hand(x), y))
        assert game(coalition[None])[0] == pytest.approx(expected, abs=1e-12)


def test_the_sparse_path_skips_the_block_channels_and_folds_the_other_norms(tiny):
    net, x, y = tiny
    game = GraphGame(net, UNITS, x, y, metric="neg_loss")
    assert game.strategy == "sparse"  # the CPU's choice when some site has a chain
    # Block 1's conv1 ran in the cached prefix (its output is indexed); block 2's is in the suffix.
    assert [(c.producer, c.boundary, c.site, c.consumer) for c in game.chains] == [
        (None, 1, "layer1_0_bn1", "layer1_0_conv2"), ("layer1_1_conv1", None, "layer1_1_bn1", "layer1_1_conv2")]
    assert game.folded == 3  # bn2 of both blocks and the shortcut's BatchNorm; the sites stay
    assert "bn2" not in game._suffix.code and "downsample_1" not in game._suffix.code
    assert game.fused == 2 and game._suffix.code.count("aten._add_relu.Tensor(") == 2  # each block's add and ReLU


@pytest.mark.parametrize("align", [1, 3, 8])
def test_sparse_values_with_padded_members_and_a_hooked_site_match_the_naive_forward(tiny, align):
    """A site that feeds a residual add (``bn2``) has no chain: it keeps its hook inside the same pass."""
    net, x, y = tiny
    units = ("layer1.0.bn1", "layer1.1.bn1", "layer1.1.bn2")
    game = GraphGame(net, units, x, y, metric="neg_loss", strategy="sparse", align=align)
    assert [c.group for c in game.chains] == [0, 1]
    rng = np.random.default_rng(align)
    coalitions = rng.random((12, game.n_players)) < 0.4
    coalitions[0] = False  # every channel dropped: nothing left to index
    coalitions[1] = True
    for coalition, value in zip(coalitions, game(coalitions), strict=True):
        expected = -float(F.cross_entropy(naive_site_logits(net, units, x, coalition), y))
        assert value == pytest.approx(expected, abs=1e-12)


def test_reusing_the_previous_coalitions_values_changes_nothing(tiny, coalition_values):
    """Permutation prefixes and pairs (C, C + i) reuse what depends on no changed block: the same values, bit for
    bit, as computing every coalition afresh, and the hand-written forward's."""
    net, x, y = tiny
    game = GraphGame(net, UNITS, x, y, metric="neg_loss", strategy="sparse")
    assert game._skipper.reuses
    rng = np.random.default_rng(5)
    chain = np.zeros((N_UNITS, N_UNITS), bool)
    for j, player in enumerate(rng.permutation(N_UNITS)):
        chain[j:, player] = True
    coalitions = np.concatenate([chain, np.repeat(rng.random((6, N_UNITS)) < 0.5, 2, axis=0)])
    coalitions[1::2][-6:, 5] = True  # the pairs' second halves add player 5 (block 2)
    reused = game(coalitions)
    afresh = []
    for coalition in coalitions:
        game._skipper.forget()
        afresh.append(game(coalition[None])[0])
    np.testing.assert_array_equal(reused, afresh)
    index = (coalitions.astype(int) << np.arange(N_UNITS)).sum(1)
    np.testing.assert_allclose(reused, coalition_values[index], rtol=0, atol=1e-12)


def test_the_sparse_strategy_refuses_a_game_without_a_chain(tiny):
    net, x, y = tiny
    with pytest.raises(ValueError, match="sparse strategy needs"):
        GraphGame(net, ("layer1.0.bn2",), x, y, strategy="sparse")
    assert GraphGame(net, ("layer1.0.bn2",), x, y).strategy == "dense"


class Counting(nn.Module):
    calls = 0

    def forward(self, a):
        Counting.calls += 1
        return a


def test_what_comes_before_the_first_site_runs_once(tiny):
    net, x, y = tiny
    counted = copy.deepcopy(net)
    counted.stem.append(Counting())
    _, suffix, n_boundary = split_at_sites(counted, UNITS)
    assert n_boundary == 2  # the stem's output (read by the shortcut) and conv1's (read by the site)
    assert "stem" not in suffix.code and "layer1_0_conv1" not in suffix.code
    game = GraphGame(counted, UNITS, x, y)
    Counting.calls = 0
    game(np.random.default_rng(0).random((50, N_UNITS)) < 0.5)
    assert Counting.calls == 0  # computed once, when the game was built


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        if x.sum() > -1e9:
            return self.net(x)
        return -self.net(x)


def test_a_model_fx_cannot_trace_runs_whole_and_still_agrees(tiny, coalition_values):
    net, x, y = tiny
    wrapped = Untraceable(net)
    units = tuple(f"net.{u}" for u in UNITS)
    with pytest.warns(UserWarning, match="cannot trace"):
        game = GraphGame(wrapped, units, x, y, metric="neg_loss")
    assert not game.traced
    index = np.arange(0, 2 ** N_UNITS, 131)
    coalitions = ((index[:, None] >> np.arange(N_UNITS)) & 1).astype(bool)
    np.testing.assert_allclose(game(coalitions), coalition_values[index], rtol=0, atol=1e-12)


def test_mcue_predictions_on_a_graph_match_the_naive_forward(tiny):
    net, x, y = tiny
    game = neuron_game(net, UNITS, x, y)
    rng = np.random.default_rng(3)
    coalitions = rng.random((5, N_UNITS)) < 0.6
    samples = rng.integers(0, len(y), (5, 7))
    correct, confidence, label = game.predicted(coalitions, samples)
    for j in range(5):
        logits = naive_site_logits(net, UNITS, x[samples[j]], coalitions[j])
        assert torch.equal(label[j], logits.argmax(1))
        torch.testing.assert_close(confidence[j], logits.softmax(1).max(1).values, rtol=0, atol=1e-12)
        assert torch.equal(correct[j], logits.argmax(1) == y[samples[j]])


def test_a_bad_site_stops_with_one_line_naming_the_closest_paths(tiny):
    net, _, _ = tiny
    with pytest.raises(ValueError, match=r"resnet-tiny: unit site 'layer1.0.bn3' is not a module .*layer1.0.bn1"):
        resolve_sites(net, ["layer1.0.bn3"], SHAPE, owner="resnet-tiny")
    with pytest.raises(ValueError, match="runs 2 times per forward"):  # torchvision reuses each block's ReLU
        resolve_sites(net, ["layer1.0.relu"], SHAPE)
    with pytest.raises(ValueError, match="spatial axis"):
        resolve_sites(net, ["layer1.0.bn1:features"], SHAPE)
    with pytest.raises(ValueError, match="unknown axis"):
        resolve_sites(net, ["fc:rows"], SHAPE)


def test_a_site_on_token_features_masks_the_last_axis():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2), nn.Flatten())  # (batch, 3 tokens, ...)
    x = torch.randn(10, 3, 5)
    y = torch.randint(0, 6, (10,))
    units = ("1:features",)
    [site] = resolve_sites(net, units, (3, 5))
    assert (site.size, site.dim) == (6, 2)
    game = neuron_game(net, units, x, y, metric="neg_loss")
    assert isinstance(game, GraphGame)  # the units are not on dimension 1: not the flat engine
    coalition = np.array([1, 0, 1, 1, 0, 1], bool)
    with torch.no_grad():
        by_hand = net[3](net[2](net[1](net[0](x)) * torch.as_tensor(coalition, dtype=torch.float32)))
    assert game(coalition[None])[0] == pytest.approx(-float(F.cross_entropy(by_hand, y)), abs=1e-6)


def test_the_producer_and_consumer_of_inner_channels(tiny):
    net, _, _ = tiny
    groups = unit_groups(net, UNITS, SHAPE)
    assert [(g.producer, g.consumer, g.fan, g.zero_safe) for g in groups] == [
        ("layer1.0.conv1", "layer1.0.conv2", 1, True), ("layer1.1.conv1", "layer1.1.conv2", 1, True)]
    [stream] = unit_groups(net, ["layer1.1"], SHAPE)  # a block's output: pooled, flattened, read by fc
    assert (stream.producer, stream.consumer) == (None, "fc")


@pytest.mark.parametrize("seed", range(4))
def test_the_physically_pruned_residual_net_gives_the_masked_logits(tiny, seed):
    net, x, _ = tiny
    groups = unit_groups(net, UNITS, SHAPE)
    mask = np.random.default_rng(seed).random(N_UNITS) < 0.5
    if seed == 3:
        mask[:4] = False  # a whole block's inner channels
    pruned = prune_network(net, groups, mask, SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), naive_site_logits(net, UNITS, x, mask), rtol=0, atol=1e-5)
    assert pruned.layer1[1].conv1.out_channels == max(int(mask[4:].sum()), 1)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in net.parameters())


UNIT_SCORERS = ["wmp", "wgmp", "taylor", "activation", "random", "captum-gxa", "captum-ig", "tp-magnitude",
                "tp-taylor", "tp-hessian"]


@pytest.mark.parametrize("method", UNIT_SCORERS)
def test_every_unit_scorer_scores_the_channels_of_a_residual_net(tiny, method):
    net, x, y = tiny
    problem = PruningProblem.build(net, UNITS, x, y)
    exclude = np.zeros(N_UNITS, bool)
    exclude[[1, 6]] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = build_scorer(method)(problem, rng=np.random.default_rng(0), exclude=exclude)
    assert scores.values.shape == (N_UNITS,)
    assert np.isnan(scores.values[[1, 6]]).all()
    free = np.delete(scores.values, [1, 6])
    assert np.isfinite(free).all() and np.ptp(free) > 0


class InPlace(nn.Module):
    """A residual add written in place on the coalition-free branch, and an in-place op whose result is unused."""

    def __init__(self, mutate_boundary: bool) -> None:
        super().__init__()
        self.mutate_boundary = mutate_boundary
        self.main, self.side = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)
        self.bn, self.fc = nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x):
        out = self.main(x)
        if self.mutate_boundary:
            out = out.add_(self.bn(self.side(x)))  # changes the cached main branch in place
        else:
            out = self.bn(self.side(x)) + out
            out.mul_(2.0)  # result unused: must still run
        return self.fc(out.mean((2, 3)))


@pytest.mark.parametrize("mutate_boundary", [True, False], ids=["mutates-the-cache", "unused-result"])
def test_in_place_ops_neither_vanish_nor_corrupt_the_cache(mutate_boundary):
    torch.manual_seed(0)
    net = InPlace(mutate_boundary).double().eval()
    x, y = torch.randn(20, *SHAPE, dtype=torch.float64), torch.randint(0, 3, (20,))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        game = GraphGame(net, ["bn"], x, y, metric="neg_loss")
    assert game.traced is not mutate_boundary  # a cached value changed in place: the model runs whole
    with torch.no_grad():
        expected = -float(F.cross_entropy(net(x), y))
    for k in (1, 1, 3):
        np.testing.assert_allclose(game(np.ones((k, 4), bool)), expected, rtol=0, atol=1e-12)


class ViewInPlace(nn.Module):
    """Changes a cached value in place through a view made after a site (so the split cannot see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.main, self.side = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)
        self.bn, self.fc = nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x):
        out = self.main(x)  # coalition-free: cached
        h = self.bn(self.side(x))
        out.view(h.shape).add_(h)
        return self.fc(out.mean((2, 3)) + h.mean((2, 3)))


def test_a_cached_value_changed_through_a_view_runs_the_model_whole():
    """fx cannot see that ``out.mean`` reads ``out`` after the in-place add: cached, it would miss the add."""
    torch.manual_seed(0)
    net = ViewInPlace().double().eval()
    x, y = torch.randn(20, *SHAPE, dtype=torch.float64), torch.randint(0, 3, (20,))
    with pytest.warns(UserWarning, match="changes a cached value in place"):
        game = GraphGame(net, ["bn"], x, y, metric="neg_loss")
    assert not game.traced and game._copy_inputs
    coalition = np.array([1, 0, 1, 1], bool)
    expected = -float(F.cross_entropy(naive_site_logits(net, ["bn"], x, coalition), y))
    for k in (1, 1, 2):  # one coalition at a time would change the cached input, were it not copied
        np.testing.assert_allclose(game(np.repeat(coalition[None], k, 0)), expected, rtol=0, atol=1e-12)


def test_a_residual_nets_cache_goes_to_the_suffix_uncopied(tiny, coalition_values):
    net, x, y = tiny
    game = GraphGame(net, UNITS, x, y, metric="neg_loss", strategy="sparse")
    assert not game._copy_inputs and not mutates_inputs(game._suffix)
    before = [c.clone() for c in game._cached]
    coalitions = np.random.default_rng(3).random((8, N_UNITS)) < 0.5
    index = (coalitions.astype(int) << np.arange(N_UNITS)).sum(1)
    np.testing.assert_allclose(game(coalitions), coalition_values[index], rtol=0, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, game._cached, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_selecting_channels_is_index_select_in_the_maps_layout(dtype, layout):
    x = torch.randn(5, 7, 3, 4, dtype=dtype).contiguous(memory_format=layout) * 1e3
    for index in ([0, 2, 3, 6], [5], list(range(7)), []):
        index = torch.tensor(index, dtype=torch.long)
        got = select_units(x, 1, index)
        assert torch.equal(got, x.index_select(1, index))  # bit for bit
        if layout == torch.channels_last and len(index) > 1:
            assert got.is_contiguous(memory_format=torch.channels_last)


class Viewed(nn.Module):
    """A conv map flattened with ``.view``, which channels-last layout refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.view(h.size(0), -1))


def test_a_model_that_refuses_channels_last_runs_in_its_own_layout():
    torch.manual_seed(0)
    net = Viewed().eval()
    x, y = torch.randn(10, *SHAPE), torch.randint(0, 3, (10,))
    game = GraphGame(net, ["bn"], x, y, metric="neg_loss")
    assert not game.channels_last
    coalition = np.array([1, 0, 1, 1], bool)
    expected = -float(F.cross_entropy(naive_site_logits(net, ["bn"], x, coalition), y))
    assert game(coalition[None])[0] == pytest.approx(expected, abs=1e-6)


def test_a_residual_stream_channel_is_not_removed_physically(tiny):
    net, _, _ = tiny
    groups = unit_groups(net, ["layer1.0.bn2"], SHAPE)  # coupled to the stem and the next block
    with pytest.raises(NotImplementedError, match="coupled to other layers"):
        prune_network(net, groups, np.array([1, 0, 1, 1], bool), SHAPE)


class SharedProducer(nn.Module):
    """Two sites after one conv (its BatchNorm, and the ReLU after it), and a conv read through a Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.act(self.bn(self.conv(x))))))


@pytest.mark.parametrize("keep", [[1, 0, 1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]])
def test_sites_sharing_a_producer_and_a_flattened_consumer_prune_exactly(keep):
    torch.manual_seed(0)
    net = SharedProducer().eval()
    units = ["bn", "act"]
    groups = unit_groups(net, units, SHAPE)
    assert [(g.producer, g.consumer, g.fan) for g in groups] == [("conv", "fc", 4)] * 2
    mask = np.array(keep, bool)
    x = torch.randn(6, *SHAPE)
    pruned = prune_network(net, groups, mask, SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), naive_site_logits(net, units, x, mask), rtol=0, atol=1e-5)


def test_features_flattened_across_tokens_have_no_consumer():
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2))
    [group] = unit_groups(net, ["1:features"], (3, 5))
    assert (group.producer, group.consumer) == ("0", None)  # unit u's columns interleave: t * 6 + u
