"""The NEUROGAME model for face attributes and its training family, registered with the model zoo and the training
loop when ``methods`` is imported."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from datasets.models import MODELS, ModelSpec
from datasets.pairs import register_face_pairs
from datasets.training import FAMILIES
from methods.neurogame.config import NeuroGameConfig, configured
from methods.neurogame.layer import NeuroGameLayer, game_layers


def neurogame(*, input_shape: tuple[int, ...], num_classes: int, config: NeuroGameConfig | None = None,
              channels: tuple[int, int] = (32, 64), hidden: int = 256, **options: Any) -> nn.Sequential:
    """NEUROGAME for face attributes: two conv blocks, a NEUROGAME layer on the pooled maps, a ``hidden`` ReLU head.

    For 64x64 inputs the game layer plays on 64 maps of 16x16 (n = 2: 64 coalitions per map).

    Args:
        input_shape: (C, H, W).
        num_classes: outputs.
        config: the NEUROGAME layer's choices (default ``NeuroGameConfig()``).
        channels: output channels of the two conv layers.
        hidden: width of the fully connected hidden layer.
        options: fields of :class:`NeuroGameConfig` that replace ``config``'s (a pair's ``model_options``, a suite's
            ablation, a tuning trial: ``top_p=0.8``, ``coalition_size=3``, ...).

    Returns:
        A flat nn.Sequential: conv1, relu1, pool1, conv2, relu2, pool2, game1, flatten, fc1, relu3, fc2.
    """
    in_channels, height, width = input_shape
    game = NeuroGameLayer(configured(config, options))
    map_shape = (channels[1], height // 4, width // 4)
    game.check_input_shape(map_shape)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(channels[0], channels[1], kernel_size=3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            game1=game,
            flatten=nn.Flatten(),
            fc1=nn.Linear(math.prod(map_shape), hidden),
            relu3=nn.ReLU(),
            fc2=nn.Linear(hidden, num_classes),
        )
    )


OPTIONS = tuple(f.name for f in dataclasses.fields(NeuroGameConfig))
# `bench tune --method neurogame`: top-p, coalition size, rho's schedule (schedule, warmup, quantile), alpha, beta, T.
SEARCH_SPACE = {
    "top_p": {"type": "float", "low": 0.2, "high": 0.9},
    "coalition_size": {"type": "categorical", "choices": [2, 3]},
    "schedule": {"type": "categorical", "choices": ["warmup", "constant"]},
    "warmup_epochs": {"type": "int", "low": 1, "high": 4},
    "quantile": {"type": "float", "low": 0.05, "high": 0.5},
    "alpha": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "beta": {"type": "float", "low": 0.0, "high": 2.0},
    "temperature": {"type": "float", "low": 0.25, "high": 4.0, "log": True},
}


def _check(**options: Any) -> None:
    """Refuses a bad value of a layer option (the factory's own options, ``channels`` and ``hidden``, pass)."""
    configured(None, {key: value for key, value in options.items() if key in OPTIONS})


def _spec(config: NeuroGameConfig | None) -> ModelSpec:
    """NEUROGAME with ``config`` as its layer's defaults. A pair, a suite or a tuning trial may set any field of
    :class:`NeuroGameConfig` (checked at suite load, before the data or the shape is known; a patch larger than the
    game layer's maps is caught when the model is first built, also before any training)."""
    build = neurogame if config is None else functools.partial(neurogame, config=config)
    return ModelSpec.of(build, extra_options=OPTIONS, extra_defaults=dataclasses.asdict(config or NeuroGameConfig()),
                        check=_check, search_space=SEARCH_SPACE)


MODELS.add("neurogame", _spec(None))
# The paper's second coalition size and the random-filter ablation, as models a pair can name.
MODELS.add("neurogame-3x3", _spec(NeuroGameConfig(coalition_size=3)))
MODELS.add("neurogame-random", _spec(NeuroGameConfig(filter="random")))


@dataclass(frozen=True)
class NeuroGameFamily:
    """Cross-entropy of the logits; each epoch advances every NEUROGAME layer's rho schedule and reports what it passed.

    Attributes:
        name: the registry name.
    """

    name: str = "neurogame"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        for _, layer in game_layers(model):
            layer.start_epoch(epoch, epochs)

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        metrics = {}
        for name, layer in game_layers(model):
            fraction = layer.pass_fraction()
            if fraction is not None:
                metrics[f"neurogame/pass_fraction/{name}"] = fraction
        return metrics


FAMILIES.add("neurogame", NeuroGameFamily())
register_face_pairs("neurogame", ("relu1", "relu2", "relu3"),
                    "NEUROGAME (2x2 coalitions, top-p 0.5, a game layer on the pooled maps)", family="neurogame")
