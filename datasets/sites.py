"""Unit sites: where the players of a neuron game live, in any ``nn.Module``.

A site is a module path plus a unit axis, written ``"path"`` or ``"path:axis"``:

* ``"layer2.0.bn1"``: the output channels of that BatchNorm (axis ``channels``, dimension 1);
* ``"classifier.4"``: the output features of a Linear layer (axis ``features``, the last dimension);
* ``"relu1"``: a stage of a flat ``nn.Sequential``, as the flat models have always named their units;
* ``"blocks.0.attn.heads"``: the heads of an attention module, at its ``HeadGate`` (axis ``heads``, dimension -2 of
  its (batch, tokens, heads, head_dim) output; ``datasets.attention``).

A unit is removed by zeroing it in the site module's output (a forward hook), so a site should be where a zero means
"this unit is gone" for everything downstream: after the BatchNorm that follows a conv (zeroing the conv's output
would leave the BatchNorm's shift), or after the ReLU.

The default axis is ``features`` for a Linear layer (its output may be (batch, tokens, features)), ``heads`` for a
``HeadGate``, and ``channels`` for every other module. A site module must run exactly once per forward pass: a
module reused at two places (as torchvision's ResNet reuses each block's ReLU) would mask both, so it is refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn

from datasets.errors import UsageError

AXES = {"channels": 1, "features": -1, "heads": -2}


@dataclass(frozen=True)
class Site:
    """One group of units: a module path, the axis of its output that holds the units, and how many there are.

    Attributes:
        path: the module path (``model.get_submodule(path)``); a flat model's stage name.
        axis: ``"channels"`` (dimension 1), ``"features"`` (the last dimension) or ``"heads"`` (dimension -2).
        size: the number of units.
        ndim: dimensions of the site's output, batch axis included.
        spec: how a pair writes it: the path alone when the axis is the module's default, else ``path:axis``.
    """

    path: str
    axis: str
    size: int
    ndim: int
    spec: str

    @property
    def dim(self) -> int:
        """The unit axis as a non-negative dimension of the output (batch axis included)."""
        return AXES[self.axis] % self.ndim


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"path:axis"`` -> (path, axis); a spec without an axis gives (path, None)."""
    path, sep, axis = str(spec).partition(":")
    if sep and axis not in AXES:
        raise UsageError(f"unit site {spec!r}: unknown axis {axis!r}; valid: {', '.join(AXES)}")
    return path, (axis if sep else None)


def default_axis(module: nn.Module) -> str:
    from datasets.attention import HeadGate

    if isinstance(module, HeadGate):
        return "heads"
    return "features" if isinstance(module, nn.Linear) else "channels"


def module_paths(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def find_module(model: nn.Module, path: str, *, owner: str = "") -> nn.Module:
    """``model.get_submodule(path)``, or one line naming the closest valid paths.

    Args:
        owner: who names the path (a pair's name), for the message.
    """
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        pass
    close = difflib.get_close_matches(path, module_paths(model), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else f"; its modules: {', '.join(module_paths(model)[:12])} ..."
    where = f"{owner}: " if owner else ""
    raise UsageError(f"{where}unit site {path!r} is not a module of {type(model).__name__}{hint}")


def resolve_sites(model: nn.Module, specs: Sequence[str], input_shape: Sequence[int], *,
                  owner: str = "") -> list[Site]:
    """The sites named by ``specs``, checked against one dummy forward pass of ``model``.

    Raises:
        UsageError: one line naming ``owner`` (the pair) when a path does not exist, a module runs more or less
            than once per forward, or its output has no such axis.
    """
    where = f"{owner}: " if owner else ""
    parsed = [split_spec(spec) for spec in specs]
    modules = [find_module(model, path, owner=owner) for path, _ in parsed]
    if len({path for path, _ in parsed}) != len(parsed):
        raise UsageError(f"{where}unit sites {list(specs)} name a module twice")
    outputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(parsed))}

    def recorder(i: int):
        def hook(_module, _inputs, output):
            outputs[i].append(output)
        return hook

    handles = [module.register_forward_hook(recorder(i)) for i, module in enumerate(modules)]
    param = next(model.parameters(), None)
    was_training = model.training
    try:
        model.eval()
        example = torch.zeros(1, *input_shape, device=param.device if param is not None else None,
                              dtype=param.dtype if param is not None else None)
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    sites = []
    for i, ((path, axis), module) in enumerate(zip(parsed, modules, strict=True)):
        calls = outputs[i]
        if len(calls) != 1:
            raise UsageError(f"{where}unit site {path!r} runs {len(calls)} times per forward pass; a site must run "
                             "exactly once (name a module that is not reused)")
        output = calls[0]
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            raise UsageError(f"{where}unit site {path!r} outputs no (batch, units, ...) tensor")
        axis = axis or default_axis(module)
        if axis == "features" and output.dim() > 2 and isinstance(module, nn.Conv2d | nn.BatchNorm2d):
            raise UsageError(f"{where}unit site {path!r}: the features axis of a {type(module).__name__}'s "
                             f"{tuple(output.shape[1:])} output is a spatial axis; use channels")
        if axis == "heads" and output.dim() < 4:
            raise UsageError(f"{where}unit site {path!r}: the heads axis needs a (batch, tokens, heads, head_dim) "
                             f"output; got {tuple(output.shape)}")
        spec = path if axis == default_axis(module) else f"{path}:{axis}"
        sites.append(Site(path, axis, int(output.shape[AXES[axis]]), output.dim(), spec))
    return sites


class SiteTracer(fx.Tracer):
    """Keeps the site modules (and torch's own modules, fx's default) as single nodes."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self._leaves or super().is_leaf_module(module, qualified_name)


def is_flat(model: nn.Module, sites: Sequence[Site]) -> bool:
    """Whether the flat engines apply: a ``nn.Sequential`` whose sites are its own stages, units on dimension 1."""
    if not isinstance(model, nn.Sequential):
        return False
    stages = dict(model.named_children())
    return all(site.path in stages and site.dim == 1 for site in sites)


def mask_units(output: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``output`` (k * n, ...) with unit ``u`` of coalition ``j`` multiplied by ``mask[j, u]``.

    The batch holds k coalitions' n samples each, coalition-major; ``mask`` is (k, units); ``dim`` is the unit axis
    of ``output`` (batch axis included, non-negative).
    """
    k = mask.shape[0]
    grouped = output.unflatten(0, (k, -1))  # (k, n, ...): the unit axis moves to dim + 1
    shape = [1] * grouped.dim()
    shape[0], shape[dim + 1] = k, mask.shape[1]
    return (grouped * mask.to(output.dtype).view(shape)).flatten(0, 1)
