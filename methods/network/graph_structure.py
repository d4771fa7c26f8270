"""Which weights belong to the units of a site anywhere in a graph: the producer and consumer layers, read from the
model's ``torch.fx`` trace.

From a site's node the trace is walked back through modules that keep the unit axis one-to-one (BatchNorm, ReLU,
pooling, Dropout, ...) to the Linear or Conv layer whose output channels are the units, the producer; and forward,
along the only path the units take, to the Linear or Conv layer that reads them, the consumer. Where the units
take several paths (a residual stream read by a block and its shortcut), there is no single consumer (None); where
the walk meets anything else (an addition, a concatenation), there is no producer or consumer on that side.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from methods.network.sites import Site
from methods.network.structure import _WEIGHTED, UnitGroup, _passes_units

_PASS_FUNCTIONS = {F.relu, torch.relu, F.dropout, torch.flatten}
_ZERO_KEEPING = (nn.ReLU, nn.Dropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


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
        return isinstance(module, _ZERO_KEEPING) or bool(getattr(module, "preserves_units", False))
    return node.op == "call_function" and node.target in _PASS_FUNCTIONS


def graph_unit_groups(model: nn.Module, sites: Sequence[Site]) -> list[UnitGroup]:
    """The unit groups of ``sites`` with producers and consumers from the fx trace (see the module docstring).

    A model ``torch.fx`` cannot trace gets groups without producers or consumers (a warning says so): the
    game and every activation- or gradient-based scorer still work; weight-based scorers refuse it.
    """
    from methods.games.graph import _SiteTracer

    paths = {site.path for site in sites}
    try:
        graph = _SiteTracer(paths).trace(model)
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
        if node is not None:
            producer = _producer(model, node, site)
            consumer, fan, zero_safe = _consumer(model, node, site)
        groups.append(UnitGroup(site.spec, site.size, slice(start, start + site.size), producer, consumer, fan,
                                site.dim, zero_safe))
        start += site.size
    return groups


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
        if len(tensors) != 1:
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
            width = module.in_features if isinstance(module, nn.Linear) else module.in_channels
            fan = width // site.size if flattened else 1
            if width != site.size * fan or (not flattened and width != site.size):
                return None, 1, zero_safe
            return node.target, fan, zero_safe
        if not _passes(model, node):
            return None, 1, zero_safe
        if isinstance(module, nn.Flatten) or (node.op == "call_function" and node.target is torch.flatten):
            flattened = site.ndim > 2
        zero_safe = zero_safe and _keeps_zero(model, node)

