"""Model/dataset pairs: a model, a dataset, a training recipe and the units that may be pruned.

Each pair is registered next to its definition. ``units`` names the model stages whose outputs are the prunable
units (players of the neuron game), in forward order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from datasets.errors import UsageError
from datasets.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """How a pair is trained. Part of the checkpoint cache key, so changing any field retrains.

    Args:
        epochs: passes over the training split.
        batch_size: examples per step.
        lr: peak learning rate.
        optimizer: "adam" or "sgd" (SGD uses Nesterov momentum ``momentum``).
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        schedule: "cosine" (to zero over all steps) or "constant".
        patience: early stopping on the validation loss: stop after this many epochs without a new lowest
            validation loss and restore the weights of the best epoch; 0 trains all ``epochs`` and keeps the last.
    """

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid: adam, sgd")
        if self.schedule not in ("cosine", "constant"):
            raise UsageError(f"unknown schedule {self.schedule!r}; valid: cosine, constant")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UsageError("epochs and batch_size must be >= 1 and lr > 0")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise UsageError(f"patience must be an integer >= 0 (0: no early stopping), got {self.patience!r}")


@dataclass(frozen=True)
class Pair:
    """A registered model/dataset combination.

    Args:
        name: registry name, e.g. "lenet300-mnist".
        model: a name in ``datasets.models.MODELS``.
        dataset: a name in ``datasets.data.DATASETS``.
        recipe: the training recipe.
        units: model stages whose outputs are the prunable units, in forward order.
        dataset_options: keyword options for the dataset loader (vocabulary size, image size, target, ...).
        description: one line for ``bench list``.
        gpu_sized: True when training or evaluating it on a 2-core CPU is impractical.
        family: how the model trains, a name in ``datasets.training.FAMILIES`` ("plain": cross-entropy); part of
            the checkpoint cache key, so checkpoints of different families are never confused.
        model_options: keyword options of the model factory (NEUROGAME's layer choices: ``top_p``,
            ``coalition_size``, ...); part of the cache key.
        task: what the pair is asked to predict, for leaderboards that compare models per task ("UTKFace gender,
            64x64x3"); the dataset's name when empty.
        checkpoint: the name its trained models are cached under (default: the pair's name). Pairs that train the
            same network and differ only in their players (a transformer's heads, its MLP neurons) name the same
            checkpoint, so the network is trained once per seed for both.
    """

    name: str
    model: str
    dataset: str
    recipe: Recipe
    units: tuple[str, ...]
    dataset_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    gpu_sized: bool = False
    family: str = "plain"
    model_options: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    checkpoint: str = ""

    @property
    def task_label(self) -> str:
        """The task, or the dataset's name when the pair does not name one."""
        return self.task or self.dataset

    def with_recipe(self, **changes: Any) -> Pair:
        """The same pair with some recipe fields changed (a different cache key, so it retrains)."""
        return dataclasses.replace(self, recipe=dataclasses.replace(self.recipe, **changes))


PAIRS: Registry[Pair] = Registry("pair")


def register_pair(pair: Pair) -> Pair:
    PAIRS.add(pair.name, pair)
    return pair


def get_pair(name: str) -> Pair:
    return PAIRS.get(name)


register_pair(Pair(
    name="lenet300-mnist", model="lenet300", dataset="mnist",
    recipe=Recipe(epochs=12, batch_size=128, lr=1e-3),
    # The GTAP paper prunes every layer of LeNet-300-100 but the output: the 300 and 100 hidden neurons.
    units=("relu1", "relu2"),
    description="LeNet-300-100 on MNIST; players: the 300+100 hidden neurons",
))
register_pair(Pair(
    name="lenet5-mnist", model="lenet5", dataset="mnist",
    recipe=Recipe(epochs=10, batch_size=128, lr=2e-3),
    # The paper leaves the conv layers alone and treats the last conv block's 400 output features as input
    # neurons of the fully connected part, which it prunes together with the 120 and 84 hidden neurons.
    units=("flatten", "relu3", "relu4"),
    description="LeNet5 on MNIST; players: 400 conv features + 120 + 84 hidden neurons",
))
register_pair(Pair(
    name="lenet5-mnist01", model="lenet5", dataset="mnist-01",
    recipe=Recipe(epochs=2, batch_size=128, lr=2e-3),
    units=("flatten", "relu3", "relu4"),
    description="LeNet5 on MNIST digits 0 and 1 (the paper's binary task)",
))
register_pair(Pair(
    name="ffn-emotion", model="ffn", dataset="emotion",
    recipe=Recipe(epochs=6, batch_size=64, lr=1e-3, weight_decay=1e-5),
    units=("relu1", "relu2", "relu3"),
    dataset_options={"vocab_size": 5000},
    description="3x256 ReLU feed-forward net on CARER emotion, binary bag of words",
))
register_pair(Pair(
    name="ffn-twitter-topic", model="ffn", dataset="twitter-topic",
    recipe=Recipe(epochs=6, batch_size=64, lr=1e-3, weight_decay=1e-5),
    units=("relu1", "relu2", "relu3"),
    dataset_options={"vocab_size": 5000},
    description="3x256 ReLU feed-forward net on twitter financial news topics, binary bag of words",
))
register_pair(Pair(
    name="alexnet-tiny-imagenet", model="alexnet", dataset="tiny-imagenet",
    recipe=Recipe(epochs=30, batch_size=256, lr=0.02, optimizer="sgd", weight_decay=5e-4),
    # Conv channels and fully connected neurons, as in the paper's AlexNet experiment (usually per-layer games).
    units=("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7"),
    description="AlexNet (adapted to 64x64) on Tiny ImageNet; players: conv channels + FC neurons",
    gpu_sized=True,
))
# Face attributes (NEUROGAME's experiments): every face model on every face task, with the same recipe. The
# models: the MLP and CNN baselines, the CNN with dropout at NEUROGAME's drop rate (the regularisation control), and
# NEUROGAME, whose pairs methods/neurogame/model.py adds with its model. The tasks: UTKFace gender at 64x64x3 (the
# default), UTKFace age in 8 groups, UTKFace gender at the paper's 128x128x1, and CelebA gender (GPU-sized: 162,770
# training images decoded lazily).
FACE_TASKS = {  # pair suffix -> (dataset, options, task, gpu_sized)
    "utkface": ("utkface", {"target": "gender", "image_size": 64}, "UTKFace gender, 64x64x3", False),
    "utkface-age": ("utkface", {"target": "age", "image_size": 64}, "UTKFace age (8 groups), 64x64x3", False),
    "utkface128g": ("utkface", {"target": "gender", "image_size": 128, "grayscale": True},
                    "UTKFace gender, 128x128x1", False),
    "celeba": ("celeba", {"attribute": "Male", "image_size": 64}, "CelebA gender, 64x64x3", True),
}
FACE_RECIPE = Recipe(epochs=10, batch_size=128, lr=1e-3)


def register_face_pairs(model: str, units: tuple[str, ...], description: str, *, family: str = "plain") -> None:
    """Registers ``model`` on every face task (``{model}-{task suffix}``), with the shared face recipe.

    Args:
        model: a registered model; units: its unit groups; description: what the model is (the task is appended);
        family: its training family.
    """
    for suffix, (dataset, options, task, gpu_sized) in FACE_TASKS.items():
        register_pair(Pair(
            name=f"{model}-{suffix}", model=model, dataset=dataset, recipe=FACE_RECIPE, units=units,
            dataset_options=dict(options), task=task, gpu_sized=gpu_sized, family=family,
            description=f"{description} on {task}",
        ))


register_face_pairs("face-mlp", ("relu1", "relu2"), "MLP baseline (512-256)")
register_face_pairs("face-cnn", ("relu1", "relu2", "relu3", "relu4"), "CNN baseline (3 conv blocks, 256 head)")
register_face_pairs("face-cnn-dropout", ("relu1", "relu2", "relu3", "relu4"),
                    "CNN with dropout 0.55 (NEUROGAME's drop rate): the regularisation control")

# A residual CNN (He et al. 2016's ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels) on UTKFace age groups at
# 64x64x3: harder than MNIST (8 classes, the faces' appearance only loosely tied to age), so a pruning method has
# room to show what it keeps. Residual coupling: a block's second conv writes into the residual stream, whose
# channels are tied across the whole stage (the stem or shortcut that starts it, every block's bn2, the addition);
# removing one means removing it from all of them (Torch-Pruning's coupled group). The players here are the inner
# channels of every block, ``layerS.B.bn1`` (after the BatchNorm, so a zeroed channel reaches only ``conv2``): each
# one is free of coupling, removable alone, and its game is the GTAP paper's neuron game unchanged. 3 x 16 + 3 x 32
# + 3 x 64 = 336 players. The coupled stream channels stay (playing a coupled group as one player would need a mask
# shared by several sites; it is not offered).
RESNET20_UNITS = tuple(f"layer{stage}.{block}.bn1" for stage in (1, 2, 3) for block in range(3))
register_pair(Pair(
    name="resnet20-utkface-age", model="resnet20", dataset="utkface",
    recipe=Recipe(epochs=5, batch_size=128, lr=1e-3),
    units=RESNET20_UNITS, dataset_options={"target": "age", "image_size": 64},
    task="UTKFace age (8 groups), 64x64x3",
    description="ResNet-20 on UTKFace age groups (64x64x3); players: the 336 inner channels of its 9 blocks",
))

# The GTAP paper's AlexNet protocol (Sec. IV-C) on data staged here: Tiny ImageNet cannot be, so the same 64x64x3
# AlexNet (``datasets.models.alexnet``) learns UTKFace age groups instead. A stand-in, labelled so everywhere: its
# numbers say how the protocol behaves on an AlexNet without BatchNorm, not what the paper measured. The players are
# the paper's: the conv channels and the FC neurons, 64 + 192 + 384 + 256 + 256 + 4096 + 4096 = 9,344.
ALEXNET_UNITS = ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7")
register_pair(Pair(
    name="alexnet-utkface-age", model="alexnet", dataset="utkface",
    # Adam at 3e-4 in batches of 64 leaves the majority-class plateau within the first epoch here; 2 epochs reach
    # 0.385 test accuracy (seed 0), as 4 epochs in batches of 128 do (0.389), in half the time (about 4 min).
    recipe=Recipe(epochs=2, batch_size=64, lr=3e-4),
    units=ALEXNET_UNITS, dataset_options={"target": "age", "image_size": 64},
    task="UTKFace age (8 groups), 64x64x3",
    description="AlexNet (64x64) on UTKFace age groups, a stand-in for Tiny ImageNet; players: 9,344 conv channels "
                "+ FC neurons",
))


# Transformers: attention heads as players (``datasets.attention``; a head is removed by zeroing its output before
# the output projection), and, as a second pair over the same trained network, the MLP neurons of every block
# (``blocks.N.act:features``, the GELU outputs). Heads and neurons are separate games here, so each gets its own
# leaderboard; both pairs name one checkpoint, so each seed trains once.
def register_transformer_pairs(name: str, *, model: str, dataset: str, depth: int, recipe: Recipe,
                               description: str, dataset_options: dict[str, Any] | None = None,
                               model_options: dict[str, Any] | None = None) -> None:
    """Registers NAME (players: the heads of every block) and NAME-mlp (the MLP neurons of every block)."""
    common = {"model": model, "dataset": dataset, "recipe": recipe, "checkpoint": name,
              "dataset_options": dict(dataset_options or {}), "model_options": dict(model_options or {})}
    register_pair(Pair(name=name, units=tuple(f"blocks.{b}.attn.heads" for b in range(depth)),
                       description=f"{description}; players: the heads of its {depth} blocks", **common))
    register_pair(Pair(name=f"{name}-mlp", units=tuple(f"blocks.{b}.act:features" for b in range(depth)),
                       description=f"{description}; players: the MLP neurons of its {depth} blocks", **common))


register_transformer_pairs(
    "vit-mnist", model="vit", dataset="mnist", depth=4,
    # 10 epochs of Adam at 2e-3: test accuracy 0.982 (seed 0; 5 epochs at 1e-3: 0.966), about 3 minutes here.
    recipe=Recipe(epochs=10, batch_size=128, lr=2e-3),
    description="ViT (4 blocks x 4 heads, width 64, 7x7 patches) on MNIST")
register_transformer_pairs(
    "transformer-emotion", model="text-transformer", dataset="emotion", depth=2,
    # Validation accuracy peaks by epoch 4 (0.909, seed 0) and the loss rises after epoch 2: 4 epochs, about 40 s.
    recipe=Recipe(epochs=4, batch_size=64, lr=1e-3),
    dataset_options={"vocab_size": 5000, "sequence_length": 48}, model_options={"vocab_size": 5000},
    description="text transformer (2 blocks x 4 heads, width 64) on emotion token sequences")
