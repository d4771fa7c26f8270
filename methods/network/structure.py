"""Which weights belong to which unit: parameter counts of pruned networks and per-unit weight statistics.

Removing a unit removes its incoming weights (the row or filter of the layer that produces it, when that layer
produces exactly this unit) and its outgoing weights (the columns of the next Linear or Conv layer that reads it;
after a Flatten a channel owns one column per spatial position).

An attention head (a ``HeadGate`` site, ``datasets.attention``) owns its q, k and v rows of the attention's ``qkv``
layer (its producer: ``head_dim`` rows in each of the three blocks q, k, v) and its ``head_dim`` columns of ``proj``
(its consumer, ``fan = head_dim``); :func:`producer_rows` reads a producer's weights unit by unit either way.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from datasets.sites import Site, SiteTracer, is_flat, resolve_sites

# Stages that keep the unit axis one-to-one (a unit's value only moves along the other axes).
_PASS_THROUGH = (nn.ReLU, nn.GELU, nn.Dropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.BatchNorm1d, nn.BatchNorm2d)
_WEIGHTED = (nn.Linear, nn.Conv2d)


def _passes_units(stage: nn.Module) -> bool:
    """Whether a stage keeps the unit axis one-to-one: a known pass-through, or a module that says so with a
    ``preserves_units = True`` attribute (e.g. NEUROGAME's layer, which zeroes units but never mixes them)."""
    return isinstance(stage, _PASS_THROUGH) or bool(getattr(stage, "preserves_units", False))


@dataclass(frozen=True)
class UnitGroup:
    """One prunable layer of units.

    Attributes:
        name: the unit site as the pair names it (``datasets.sites``): a module path, for a flat model the
            stage whose output holds the units, optionally with ``:axis``.
        size: number of units.
        players: slice of the group's players in the game's player order.
        producer: the module path of the layer whose output channels are these units (None, e.g. for flattened
            conv features).
        consumer: the module path of the Linear/Conv layer that reads the units (None when several read them).
        fan: columns of the consumer that one unit feeds (spatial positions after a Flatten, else 1).
        dim: the unit axis of the site's output, batch axis included.
        zero_safe: whether every module between the site and the consumer keeps a zero at zero (so zeroing a unit
            is removing it); a BatchNorm there would not.
        heads: the units are attention heads: the producer is the attention's ``qkv`` layer, whose rows hold each
            head's q, k and v rows in three blocks, and the consumer its ``proj``, ``fan`` (= head_dim) columns per
            head.
    """

    name: str
    size: int
    players: slice
    producer: str | None
    consumer: str | None
    fan: int
    dim: int = 1
    zero_safe: bool = True
    heads: bool = False

    @property
    def path(self) -> str:
        """The site's module path (the name without its axis)."""
        return self.name.partition(":")[0]


class Submodules(Mapping):
    """A model's modules by path (``model.get_submodule``): what ``dict(model.named_children())`` is to a flat
    model, for a module tree."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model

    def __getitem__(self, path: str) -> nn.Module:
        try:
            return self._model.get_submodule(path)
        except AttributeError as error:
            raise KeyError(path) from error

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._model.named_modules() if name)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def producer_rows(group: UnitGroup, weight: torch.Tensor) -> torch.Tensor:
    """A producer's weight (or any tensor of its shape) unit by unit: (units, everything a unit owns there).

    A unit owns one row (a conv filter); a head owns ``head_dim`` rows in each of the q, k and v blocks.
    """
    if not group.heads:
        return weight.reshape(group.size, -1)
    return weight.reshape(3, group.size, -1).transpose(0, 1).reshape(group.size, -1)


def consumer_columns(group: UnitGroup, weight: torch.Tensor) -> torch.Tensor:
    """A consumer's weight unit by unit: (units, every weight of the ``fan`` input columns a unit feeds)."""
    columns = weight.transpose(0, 1).reshape(weight.shape[1], -1)  # (inputs, outputs x kernel)
    return columns.reshape(group.size, group.fan * columns.shape[1])


def unit_shape(group: UnitGroup, output: torch.Tensor) -> list[int]:
    """The shape that broadcasts a (units,) mask over ``output`` (batch axis included) along the group's axis."""
    shape = [1] * output.dim()
    shape[group.dim] = group.size
    return shape


def unit_groups(model: nn.Module, units: Sequence[str], input_shape: Sequence[int]) -> list[UnitGroup]:
    """Finds the producer and consumer layer of every unit group by tracing one sample through the model.

    A flat ``nn.Sequential`` whose units are its stages is read stage by stage; any other model through its
    ``torch.fx`` graph (:func:`graph_unit_groups`).
    """
    sites = resolve_sites(model, units, input_shape)
    if not is_flat(model, sites):
        return graph_unit_groups(model, sites)
    units = [site.path for site in sites]
    stages = list(model.named_children())
    names = [n for n, _ in stages]
    shapes = []
    with torch.no_grad():
        a = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
        for _, stage in stages:
            a = stage(a)
            shapes.append(tuple(a.shape[1:]))
    groups, start = [], 0
    for name in units:
        pos = names.index(name)
        size = shapes[pos][0]
        producer = None
        for back in range(pos, -1, -1):
            stage = stages[back][1]
            if isinstance(stage, _WEIGHTED):
                out = stage.out_features if isinstance(stage, nn.Linear) else stage.out_channels
                producer = names[back] if out == size else None
                break
            if not _passes_units(stage):
                break
        consumer, fan = None, 1
        for ahead in range(pos + 1, len(stages)):
            stage = stages[ahead][1]
            if isinstance(stage, _WEIGHTED):
                consumer = names[ahead]
                width = stage.in_features if isinstance(stage, nn.Linear) else stage.in_channels
                fan = width // size
                break
            if isinstance(stage, nn.Flatten) and len(shapes[ahead - 1]) > 1:
                continue  # a channel becomes `fan` consecutive features
            if not _passes_units(stage):
                break
        groups.append(UnitGroup(name, size, slice(start, start + size), producer, consumer, fan))
        start += size
    return groups


def attached_parameters(model: nn.Sequential, groups: Sequence[UnitGroup]) -> list[str]:
    """Names of the weighted stages that produce or consume some unit group (the prunable parameters)."""
    seen: list[str] = []
    for group in groups:
        for name in (group.producer, group.consumer):
            if name is not None and name not in seen:
                seen.append(name)
    order = [n for n, _ in model.named_modules()]
    return sorted(seen, key=order.index)


def _unit_masks_per_layer(model, groups, mask):
    """For each attached layer: (input-unit mask or None, output-unit mask or None, fan of the input)."""
    layers = {name: [None, None, 1] for name in attached_parameters(model, groups)}
    for group in groups:
        keep = np.asarray(mask[group.players], dtype=bool)
        if group.producer is not None:
            layers[group.producer][1] = keep
        if group.consumer is not None:
            layers[group.consumer][0] = keep
            layers[group.consumer][2] = group.fan
    return layers


def parameter_counts(model: nn.Sequential, groups: Sequence[UnitGroup], mask: np.ndarray) -> tuple[int, int]:
    """(kept, total) parameters of the attached layers when only the units in ``mask`` are kept (structured)."""
    stages = Submodules(model)
    kept = total = 0
    for name, (in_keep, out_keep, fan) in _unit_masks_per_layer(model, groups, mask).items():
        stage = stages[name]
        weight = stage.weight
        n_out, n_in = weight.shape[0], weight.shape[1]
        per_connection = int(np.prod(weight.shape[2:])) if weight.dim() > 2 else 1
        k_out = int(out_keep.sum()) * (n_out // len(out_keep)) if out_keep is not None else n_out  # a head: 3 x d rows
        k_in = int(in_keep.sum()) * fan if in_keep is not None else n_in
        has_bias = stage.bias is not None
        kept += k_out * k_in * per_connection + (k_out if has_bias else 0)
        total += n_out * n_in * per_connection + (n_out if has_bias else 0)
    return kept, total


def per_unit_weight_statistic(model: nn.Sequential, groups: Sequence[UnitGroup],
                              values: dict[str, torch.Tensor]) -> np.ndarray:
    """Mean of ``values[layer]`` (e.g. |w| or |w * grad|) over each unit's incoming and outgoing weights.

    The mean, not the sum, keeps units of wide and narrow layers comparable in a global ranking.
    """
    scores = []
    for group in groups:
        total = torch.zeros(group.size, dtype=torch.float64)
        count = torch.zeros(group.size, dtype=torch.float64)
        if group.producer is not None:
            v = values[group.producer].detach().double().cpu()
            total += producer_rows(group, v).sum(1)
            count += v.numel() // group.size
        if group.consumer is not None:
            v = values[group.consumer].detach().double().cpu()
            per_column = v.transpose(0, 1).reshape(v.shape[1], -1).sum(1)  # (in,)
            total += per_column.reshape(group.size, group.fan).sum(1)
            count += v.numel() / v.shape[1] * group.fan
        scores.append((total / count.clamp(min=1)).numpy())
    return np.concatenate(scores)


# ----------------------------------------------------------------------------------- units anywhere in a graph
# Which weights belong to the units of a site anywhere in a graph: the producer and consumer layers, read from the
# model's ``torch.fx`` trace.
#
# From a site's node the trace is walked back through modules that keep the unit axis one-to-one (BatchNorm, ReLU,
# pooling, Dropout, ...) to the Linear or Conv layer whose output channels are the units, the producer; and forward,
# along the only path the units take, to the Linear or Conv layer that reads them, the consumer. Where the units
# take several paths (a residual stream read by a block and its shortcut), there is no single consumer (None); where
# the walk meets anything else (an addition, a concatenation), there is no producer or consumer on that side.

_PASS_FUNCTIONS = {F.relu, torch.relu, F.dropout, torch.flatten}
# Modules that map a zero activation to zero, channel by channel (so zeroing a unit before them = removing it).
ZERO_PRESERVING = (nn.ReLU, nn.Dropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


def _module(model: nn.Module, node: fx.Node) -> nn.Module | None:
    return model.get_submodule(node.target) if node.op == "call_module" else None


def _passes(model: nn.Module, node: fx.Node) -> bool:
    module = _module(model, node)
    if module is not None:
        return _passes_units(module) or isinstance(module, nn.Flatten)
    return node.op == "call_function" and node.target in _PASS_FUNCTIONS


def _keeps_zero(model: nn.Module, node: fx.Node) -> bool:
    module = _module(model, node)
    if module is not None:
        return isinstance(module, ZERO_PRESERVING) or bool(getattr(module, "preserves_units", False))
    return node.op == "call_function" and node.target in _PASS_FUNCTIONS


def graph_unit_groups(model: nn.Module, sites: Sequence[Site]) -> list[UnitGroup]:
    """The unit groups of ``sites`` with producers and consumers from the fx trace (see the module docstring).

    A model ``torch.fx`` cannot trace gets groups without producers or consumers (a warning says so): the
    game and every activation- or gradient-based scorer still work; weight-based scorers refuse it.
    """
    paths = {site.path for site in sites}
    try:
        graph = SiteTracer(paths).trace(copy.deepcopy(model))  # fx may add constants to the traced root
    except Exception as error:  # noqa: BLE001  (fx raises many kinds)
        warnings.warn(f"torch.fx cannot trace {type(model).__name__} ({type(error).__name__}); its unit groups have "
                      "no producer or consumer layers", stacklevel=2)
        graph = None
    nodes = {n.target: n for n in graph.nodes if n.op == "call_module"} if graph is not None else {}
    groups, start = [], 0
    for site in sites:
        producer = consumer = None
        fan, zero_safe = 1, True
        node = nodes.get(site.path)
        attention = _attention_of(model, site)
        if attention is not None:  # its weights are the attention's, by head (see UnitGroup.heads)
            groups.append(UnitGroup(site.spec, site.size, slice(start, start + site.size), f"{attention}.qkv",
                                    f"{attention}.proj", model.get_submodule(attention).head_dim, site.dim,
                                    heads=True))
            start += site.size
            continue
        if node is not None:
            producer = _producer(model, node, site)
            consumer, fan, zero_safe = _consumer(model, node, site)
        groups.append(UnitGroup(site.spec, site.size, slice(start, start + site.size), producer, consumer, fan,
                                site.dim, zero_safe))
        start += site.size
    return groups


def _attention_of(model: nn.Module, site: Site) -> str | None:
    """The path of the ``SelfAttention`` whose head gate is the site (its heads as players), else None."""
    from datasets.attention import HeadGate, SelfAttention

    parent, _, name = site.path.rpartition(".")
    if site.axis != "heads" or not isinstance(model.get_submodule(site.path), HeadGate):
        return None
    owner = model.get_submodule(parent) if parent else model
    return parent if isinstance(owner, SelfAttention) and name == "heads" else None


def _out_width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _producer(model: nn.Module, node: fx.Node, site: Site) -> str | None:
    while True:
        module = _module(model, node)
        if isinstance(module, _WEIGHTED):
            return node.target if _out_width(module) == site.size else None
        if not _passes(model, node) or not node.all_input_nodes:
            return None
        tensors = [n for n in node.all_input_nodes if n.op != "get_attr"]
        if len(tensors) != 1 or len(tensors[0].users) != 1:  # the units' values must come from this path only
            return None
        node = tensors[0]


def _consumer(model: nn.Module, node: fx.Node, site: Site) -> tuple[str | None, int, bool]:
    zero_safe = True
    flattened = False
    while True:
        users = list(node.users)
        if len(users) != 1:
            return None, 1, zero_safe
        node = users[0]
        module = _module(model, node)
        if isinstance(module, _WEIGHTED):
            reads = site.ndim - 1 if isinstance(module, nn.Linear) else 1  # the axis a Linear or Conv reads
            if not flattened and site.dim != reads:
                return None, 1, zero_safe
            width = module.in_features if isinstance(module, nn.Linear) else module.in_channels
            fan = width // site.size if flattened else 1
            if width != site.size * fan or (not flattened and width != site.size):
                return None, 1, zero_safe
            return node.target, fan, zero_safe
        if not _passes(model, node):
            return None, 1, zero_safe
        if isinstance(module, nn.Flatten) or (node.op == "call_function" and node.target is torch.flatten):
            if site.ndim > 2 and site.dim != 1:  # a unit's flattened columns would interleave with the others
                return None, 1, zero_safe
            flattened = site.ndim > 2
        zero_safe = zero_safe and _keeps_zero(model, node)

