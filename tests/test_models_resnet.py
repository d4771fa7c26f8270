"""ResNet-20: the CIFAR layout on 64x64 faces, with module paths that name its blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from datasets.errors import UsageError
from datasets.models import build_model, model_option_defaults

FACE_SHAPE = (3, 64, 64)


def _inner_channels(model: nn.Module) -> dict[str, int]:
    """The channels of every block's ``bn1`` (the players of a channel game), by module path."""
    return {name: module.num_features for name, module in model.named_modules()
            if name.startswith("layer") and name.endswith(".bn1")}


@pytest.mark.parametrize("options", [{}, {"stem_pool": False}, {"stem_stride": 1, "stem_pool": False}])
def test_resnet20_shape_paths_and_inner_channels(options):
    model = build_model("resnet20", input_shape=FACE_SHAPE, num_classes=8, **options).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, *FACE_SHAPE)).shape == (2, 8)
    for path in ("stem", "layer1", "layer2", "layer3", "avgpool", "flatten", "fc", "layer1.0.bn1", "layer3.2.bn1"):
        model.get_submodule(path)
    assert list(dict(model.get_submodule("stem").named_children())) == ["conv", "bn", "relu"] + (
        ["pool"] if options.get("stem_pool", True) else [])
    assert isinstance(model.get_submodule("layer2.0.downsample.0"), nn.Conv2d)  # the stride-2 shortcut
    channels = _inner_channels(model)
    assert len(channels) == 9
    assert sum(channels.values()) == 3 * 16 + 3 * 32 + 3 * 64 == 336


def test_resnet20_stem_stride_sets_the_maps():
    def layer1_size(**options):
        model = build_model("resnet20", input_shape=FACE_SHAPE, num_classes=8, **options).eval()
        with torch.no_grad():
            return model.layer1(model.stem(torch.zeros(1, *FACE_SHAPE))).shape[-1]

    assert model_option_defaults("resnet20") == {"stem_stride": 2, "stem_pool": True}
    assert layer1_size() == 16
    assert layer1_size(stem_pool=False) == 32
    assert layer1_size(stem_stride=1, stem_pool=False) == 64
    with pytest.raises(UsageError, match="stem_stride"):
        build_model("resnet20", input_shape=FACE_SHAPE, num_classes=8, stem_stride=0)
