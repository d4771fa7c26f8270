"""The model zoo: registered factories of ``nn.Module`` s, each with its declared options.

Most models are flat ``nn.Sequential`` s of named stages: a unit group is then the name of a stage whose output is
masked (dimension 1: neurons of a Linear layer, channels of a conv layer), and the flat engines of the neuron game
apply (``methods.games.neuron``). Any other module tree works too, its units named as module paths such as
``layer2.0.bn1`` (``datasets.sites``); here ``resnet20``, whose residual blocks cannot be flattened.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from datasets.errors import UsageError
from datasets.registry import Registry
from datasets.sites import resolve_sites

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its factory and its contract, declared where the factory is.

    Attributes:
        build: the factory, called with keyword-only ``input_shape``, ``num_classes`` and the options.
        options: every option a pair, a suite or a tuning trial may set.
        defaults: each option's default (what an unset option means).
        check: refuses values the factory would refuse, before any data is loaded (None: the names are enough).
        search_space: the space ``bench tune --method MODEL`` searches (None: the model is not tunable).
    """

    build: ModelFactory
    options: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    check: Callable[..., Any] | None = None
    search_space: dict[str, dict[str, Any]] | None = None

    @classmethod
    def of(cls, build: ModelFactory, *, extra_options: tuple[str, ...] = (),
           extra_defaults: dict[str, Any] | None = None, check: Callable[..., Any] | None = None,
           search_space: dict[str, dict[str, Any]] | None = None) -> ModelSpec:
        """The spec of a factory: its keyword-only parameters (besides ``input_shape``, ``num_classes``) are options,
        with their defaults; ``extra_options`` are those it takes through ``**options``."""
        parameters = [p for p in inspect.signature(build).parameters.values()
                      if p.kind == p.KEYWORD_ONLY and p.name not in ("input_shape", "num_classes")]
        defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
        return cls(build, (*(p.name for p in parameters), *extra_options), {**defaults, **(extra_defaults or {})},
                   check, search_space)


MODELS: Registry[ModelSpec] = Registry("model")  # NEUROGAME's models are added by methods/neurogame/model.py


def register_model(name: str, **contract: Any) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: registers a factory under ``name`` with ``ModelSpec.of(factory, **contract)``."""

    def decorator(build: ModelFactory) -> ModelFactory:
        MODELS.add(name, ModelSpec.of(build, **contract))
        return build

    return decorator


@register_model("lenet300")
def lenet300(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """LeNet-300-100 (LeCun et al. 1998): two fully connected hidden layers of 300 and 100 ReLU units."""
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(math.prod(input_shape), 300),
            relu1=nn.ReLU(),
            fc2=nn.Linear(300, 100),
            relu2=nn.ReLU(),
            fc3=nn.Linear(100, num_classes),
        )
    )


@register_model("lenet5")
def lenet5(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """LeNet5: two 5x5 conv layers (6 and 16 channels, max-pooled) and a 120-84 fully connected head.

    For 28x28 MNIST the first conv is zero-padded by 2, the usual way to get LeNet5's 32x32 geometry, so the last
    conv block outputs 16x5x5 = 400 features (the units the GTAP paper treats as input neurons).
    """
    channels, height, width = input_shape
    pad = 2 if (height, width) == (28, 28) else 0
    flat = 16 * (((height + 2 * pad - 4) // 2 - 4) // 2) * (((width + 2 * pad - 4) // 2 - 4) // 2)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(channels, 6, kernel_size=5, padding=pad),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, kernel_size=5),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(flat, 120),
            relu3=nn.ReLU(),
            fc2=nn.Linear(120, 84),
            relu4=nn.ReLU(),
            fc3=nn.Linear(84, num_classes),
        )
    )


@register_model("ffn")
def ffn(*, input_shape: tuple[int, ...], num_classes: int, hidden: int = 256, depth: int = 3) -> nn.Sequential:
    """The GTAP paper's text classifier: ``depth`` fully connected ReLU layers of ``hidden`` units (k=3, h=256)."""
    stages: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = math.prod(input_shape)
    for i in range(1, depth + 1):
        stages[f"fc{i}"] = nn.Linear(width, hidden)
        stages[f"relu{i}"] = nn.ReLU()
        width = hidden
    stages[f"fc{depth + 1}"] = nn.Linear(width, num_classes)
    return nn.Sequential(stages)


@register_model("alexnet")
def alexnet(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """torchvision's AlexNet, adapted to small inputs and flattened into named stages.

    For inputs of 64 pixels or fewer (Tiny ImageNet) the 11x11 stride-4 stem would leave a 1x1 map after the third
    pooling, so the stem becomes 5x5 stride 2 (64 -> 32 -> 15 -> 7 -> 3) and the adaptive pool keeps the 3x3 map;
    the classifier's first layer is resized to match. Larger inputs keep torchvision's layout unchanged. Inputs
    below 32 pixels stop with one line.
    """
    from torchvision.models import alexnet as tv_alexnet

    channels, height, width = input_shape
    if min(height, width) < 32:
        raise ValueError(f"alexnet needs inputs of at least 32x32 pixels (its three poolings leave no map below "
                         f"that); got {height}x{width}")
    net = tv_alexnet(weights=None, num_classes=num_classes)
    if height <= 64:
        net.features[0] = nn.Conv2d(channels, 64, kernel_size=5, stride=2, padding=2)
        net.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        net.classifier[1] = nn.Linear(256 * 3 * 3, 4096)
    elif channels != 3:
        net.features[0] = nn.Conv2d(channels, 64, kernel_size=11, stride=4, padding=2)
    names = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4", "conv5",
             "relu5", "pool3"]
    stages: OrderedDict[str, nn.Module] = OrderedDict(zip(names, net.features, strict=True))
    stages["avgpool"] = net.avgpool
    stages["flatten"] = nn.Flatten()
    for name, module in zip(["drop1", "fc1", "relu6", "drop2", "fc2", "relu7", "fc3"], net.classifier, strict=True):
        stages[name] = module
    return nn.Sequential(stages)


@register_model("resnet20")
def resnet20(*, input_shape: tuple[int, ...], num_classes: int, stem_stride: int = 2,
             stem_pool: bool = True) -> nn.Sequential:
    """ResNet-20 (He et al. 2016, the CIFAR layout): a 3x3 conv stem of 16 channels, three stages of three
    torchvision ``BasicBlock`` s (16, 32, 64 channels; the second and third stages start at stride 2 with
    torchvision's 1x1-conv + BatchNorm shortcut), a global average pool and one Linear classifier.

    Not flat: the children are ``stem`` (``conv``, ``bn``, ``relu`` and, with ``stem_pool``, ``pool``),
    ``layer1`` .. ``layer3`` (blocks ``layerS.B``, e.g. ``layer2.0.bn1``), ``avgpool``, ``flatten`` and ``fc``.
    The natural players are the inner channels of every block, the outputs of ``layerS.B.bn1``: 3*16 + 3*32 +
    3*64 = 336. (A ``BasicBlock`` calls its one ``relu`` twice, after ``bn1`` and after the residual add, so hook
    ``bn1``, not ``relu``.)

    The default stem, as torchvision's ImageNet ResNets have it (a stride-2 conv and a 3x3 stride-2 max-pool),
    suits 64x64 faces on a 2-core CPU: layer1 sees 16x16 maps, 10.7 M MACs per image, a 256-image forward in
    about 0.03 s and a UTKFace training epoch in about 4.5 s. CIFAR's stride-1 stem (``stem_stride=1,
    stem_pool=False``) costs 166 M MACs, 0.7 s and 60 s; a stride-2 stem without the pool 41 M, 0.1 s and 13 s.
    On UTKFace age groups (8 classes), 5 epochs of Adam 1e-3, the pooled and unpooled stride-2 stems reached the
    same accuracy within seed noise (validation 0.48-0.49, test 0.50-0.52, as face-cnn), so the cheaper is the
    default.

    Args:
        stem_stride: the stride of the stem's conv (He et al. use 1 on 32x32 CIFAR).
        stem_pool: a 3x3 stride-2 max-pool after the stem's ReLU (``stem.pool``).
    """
    from torchvision.models.resnet import BasicBlock

    if isinstance(stem_stride, bool) or not isinstance(stem_stride, int) or stem_stride < 1:
        raise UsageError(f"stem_stride must be an integer >= 1, got {stem_stride!r}")
    channels = input_shape[0]
    stem: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(channels, 16, kernel_size=3, stride=stem_stride, padding=1, bias=False),
        bn=nn.BatchNorm2d(16),
        relu=nn.ReLU(inplace=True),
    )
    if stem_pool:
        stem["pool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    stages: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(stem))
    width = 16
    for index, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        blocks = []
        for block in range(3):
            step = stride if block == 0 else 1
            downsample = None
            if step != 1 or width != planes:
                downsample = nn.Sequential(nn.Conv2d(width, planes, kernel_size=1, stride=step, bias=False),
                                           nn.BatchNorm2d(planes))
            blocks.append(BasicBlock(width, planes, stride=step, downsample=downsample))
            width = planes
        stages[f"layer{index}"] = nn.Sequential(*blocks)
    stages["avgpool"] = nn.AdaptiveAvgPool2d(1)
    stages["flatten"] = nn.Flatten()
    stages["fc"] = nn.Linear(width, num_classes)
    model = nn.Sequential(stages)
    for module in model.modules():  # torchvision's ResNet initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


@register_model("vit")
def vit(*, input_shape: tuple[int, ...], num_classes: int, patch: int = 7, width: int = 64, depth: int = 4,
        heads: int = 4, hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    """A small vision transformer (``datasets.attention.VisionTransformer``): on 28x28 MNIST with the defaults, 16
    patches of 7x7 and a classification token, 4 blocks of 4 heads and 128 MLP neurons, 0.14 M parameters.

    Not flat: its players are ``blocks.N.attn.heads`` (the heads of block N) and ``blocks.N.act:features`` (its MLP
    neurons)."""
    from datasets.attention import VisionTransformer

    return VisionTransformer(input_shape=input_shape, num_classes=num_classes, patch=patch, width=width, depth=depth,
                             heads=heads, hidden=hidden, dropout=dropout)


@register_model("text-transformer")
def text_transformer(*, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 5000, width: int = 64,
                     depth: int = 2, heads: int = 4, hidden: int = 128, dropout: float = 0.1) -> nn.Module:
    """A small text transformer over token ids (``datasets.attention.TextTransformer``); ``vocab_size`` must be the
    dataset's. Players: ``blocks.N.attn.heads`` and ``blocks.N.act:features``."""
    from datasets.attention import TextTransformer

    return TextTransformer(input_shape=input_shape, num_classes=num_classes, vocab_size=vocab_size, width=width,
                           depth=depth, heads=heads, hidden=hidden, dropout=dropout)


@register_model("face-mlp")
def face_mlp(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The fully connected baseline for face attributes (NEUROGAME's "standard MLP"): 512-256 ReLU hidden layers."""
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(math.prod(input_shape), 512),
            relu1=nn.ReLU(),
            fc2=nn.Linear(512, 256),
            relu2=nn.ReLU(),
            fc3=nn.Linear(256, num_classes),
        )
    )


@register_model("face-cnn")
def face_cnn(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The convolutional baseline for face attributes (NEUROGAME's "standard CNN"): three conv blocks and a 256 head."""
    channels, height, width = input_shape
    flat = 128 * (height // 8) * (width // 8)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(channels, 32, kernel_size=3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, kernel_size=3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(64, 128, kernel_size=3, padding=1),
            relu3=nn.ReLU(),
            pool3=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(flat, 256),
            relu4=nn.ReLU(),
            fc2=nn.Linear(256, num_classes),
        )
    )


@register_model("face-cnn-dropout")
def face_cnn_dropout(*, input_shape: tuple[int, ...], num_classes: int, p: float = 0.55) -> nn.Sequential:
    """face-cnn with ``nn.Dropout(p)`` on the last conv block's pooled maps: the random-regularisation control for
    NEUROGAME.

    The dropout sits where NEUROGAME's game layer sits, between the conv features and the fully connected head, and
    drops units (positions of the maps) one by one as that layer does. p = 0.55 is the share of *active* units
    NEUROGAME's game layer dropped on UTKFace gender (0.56, measured over 4 epochs, seed 0): dropout hits active and
    silent units alike, so that is the comparable rate. (Dropout after every ReLU at this rate was tried first: it
    cost twice face-cnn's epoch on the CPU and lost 5 points of accuracy, a control too weak to tell anything.)
    """
    if not 0 <= p < 1:
        raise UsageError(f"dropout p must be in [0, 1), got {p}")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in face_cnn(input_shape=input_shape, num_classes=num_classes).named_children():
        if name == "flatten":
            stages["drop3"] = nn.Dropout(p)
        stages[name] = module
    return nn.Sequential(stages)


def model_options(name: str) -> list[str]:
    """The options a registered model takes besides ``input_shape`` and ``num_classes``."""
    return list(MODELS.get(name).options)


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Rejects options the model does not take, and values its ``check`` refuses.

    Raises:
        ValueError: one line naming the option and what is valid.
    """
    spec = MODELS.get(name)
    valid = list(spec.options)
    for key in options:
        if key not in valid:
            hint = difflib.get_close_matches(str(key), valid, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UsageError(f"model {name!r} has no option {key!r}.{did_you_mean} Valid: {', '.join(valid) or 'none'}")
    if spec.check is not None:
        spec.check(**options)


def model_search_space(name: str) -> dict[str, dict[str, Any]] | None:
    """The search space a registered model declares for ``bench tune``, or None."""
    return MODELS.get(name).search_space


def model_option_defaults(name: str) -> dict[str, Any]:
    """Every option of a registered model at its default."""
    return dict(MODELS.get(name).defaults)


def build_model(name: str, *, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Sequential:
    """Builds a registered model for the given input shape and class count, with the model's own ``options``."""
    check_model_options(name, options)
    return MODELS.get(name).build(input_shape=tuple(input_shape), num_classes=num_classes, **options)


def unit_counts(model: nn.Module, units: tuple[str, ...], input_shape: tuple[int, ...]) -> dict[str, int]:
    """Number of units of each unit site (``datasets.sites``: a flat model's stage names, or module paths), found
    with one dummy forward."""
    return {spec: site.size for spec, site in zip(units, resolve_sites(model, units, input_shape), strict=True)}
