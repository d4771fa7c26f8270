"""The README's "Extending" snippet, run exactly as written: a torchvision ResNet-18 becomes a pair whose players
are its blocks' inner channels, and the game, a scorer and the physical pruning work on it."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.models import MODELS, build_model
from datasets.pairs import PAIRS
from datasets.sites import resolve_sites
from methods.games import GraphGame, naive_site_logits
from methods.network import prune_network
from methods.scorers import PruningProblem, build_scorer

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    section = README.read_text().split("## Extending", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def registered():
    exec(compile(readme_snippet(), str(README), "exec"), {})  # noqa: S102  (our own README)
    try:
        yield PAIRS.get("resnet18-utkface-age")
    finally:
        PAIRS.remove("resnet18-utkface-age")
        MODELS.remove("resnet18")


def test_the_readme_snippet_makes_a_torchvision_resnet_a_pair(registered):
    pair = registered
    shape = (3, 32, 32)
    torch.manual_seed(0)
    model = build_model(pair.model, input_shape=shape, num_classes=8).eval()
    sites = resolve_sites(model, pair.units, shape, owner=pair.name)
    assert [s.size for s in sites] == [64, 64, 128, 128, 256, 256, 512, 512]
    x, y = torch.randn(12, *shape), torch.randint(0, 8, (12,))
    problem = PruningProblem.build(model, pair.units, x, y, metric="neg_loss")
    assert isinstance(problem.game, GraphGame) and problem.game.traced
    assert [(g.producer, g.consumer) for g in problem.groups[:2]] == [
        ("layer1.0.conv1", "layer1.0.conv2"), ("layer1.1.conv1", "layer1.1.conv2")]
    scores = build_scorer("wmp")(problem, rng=np.random.default_rng(0))
    assert scores.values.shape == (problem.n_units,) and np.isfinite(scores.values).all()
    keep = scores.values >= np.quantile(scores.values, 0.5)
    value = problem.game(keep[None])[0]
    masked = naive_site_logits(model, pair.units, x, keep)
    pruned = prune_network(model, problem.groups, keep, shape).eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked, rtol=0, atol=1e-5)
    assert value == pytest.approx(-float(torch.nn.functional.cross_entropy(masked, y)), abs=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_site_that_does_not_exist_names_the_pair_and_the_closest_paths(registered):
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=8)
    message = r"pair 'x': unit site 'layer1.0.bn' is not a module of ResNet; closest: layer1.0.bn2, layer1.0.bn1"
    with pytest.raises(ValueError, match=message):
        resolve_sites(model, ["layer1.0.bn"], (3, 32, 32), owner="pair 'x'")
