"""Physically pruned networks: the units outside a keep-mask removed (not zeroed), and what the result costs.

The masked network of the neuron game (``methods.games.neuron.naive_logits``) zeroes the output of stage
``group.name`` for every unit outside the mask. :func:`prune_network` builds the network that computes the same
logits with those units gone: smaller weight matrices, fewer conv filters, so its parameter count, MACs and latency
are what a deployed pruned model would cost.

How each kind of group is removed:

* A group with a producer (a Linear/Conv whose output channels are the units): Torch-Pruning removes the
  producer's output channels, and its dependency graph shrinks everything coupled to them (BatchNorms between, the
  consumer's input columns, ``fan`` columns per channel after a Flatten).
* Attention heads: the attention module drops the heads' q, k and v rows and their output-projection columns
  (``datasets.attention.SelfAttention.keep_heads``).
* A group without a producer (LeNet5's 400 flattened conv features): each unit is one input column of a Linear
  consumer, and Torch-Pruning would remove whole conv channels instead (a different network). So the consumer's
  columns are dropped with Torch-Pruning's low-level ``prune_linear_in_channels`` and a :class:`KeptFeatures` stage,
  inserted right before the consumer, selects the kept features. A conv channel all of whose positions are removed is
  dead (nothing reads it), so it is also removed from the conv that produces it (through Torch-Pruning, which shrinks
  the stages in between) and the selection is renumbered; this changes no logit.
* A group with no unit kept: its layers become zero-width (a Linear with 0 outputs, the consumer with 0 inputs), so
  the consumer outputs its bias and the network a constant, as the masked network does. Torch supports zero-width
  Linear layers; it does not run convolutions or pooling with 0 channels, so an empty conv group instead keeps its
  first channel and zeroes its outgoing weights (the consumer's columns): the same constant, one channel's weights
  more than ``methods.network.structure.parameter_counts`` counts. Likewise, when no flattened feature is kept, the
  source conv keeps one channel, none of whose features is selected.

Equivalence needs every stage between a group's stage and its consumer to map 0 to 0 (ReLU, pooling, Dropout in
eval, Flatten); a BatchNorm there would turn a removed unit's zero into a constant, so :func:`prune_network` refuses
it. A BatchNorm between the producer and the group's stage is fine (its channels are removed with the producer's).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.network.structure import ZERO_PRESERVING, UnitGroup, _passes_units, parameter_counts


class KeptFeatures(nn.Module):
    """Selects the kept features along dimension 1: the input columns that a pruned consumer still reads.

    Args:
        index: positions (in the incoming activation's dimension 1) of the kept features, in order.
    """

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"kept={self.index.numel()}"


def _stage_shapes(model: nn.Sequential, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shape (without the batch axis) of every stage's output for one example."""
    shapes = []
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
            for _, stage in model.named_children():
                a = stage(a)
                shapes.append(tuple(a.shape[1:]))
    finally:
        model.train(was_training)
    return shapes


def _check_zero_preserving(stages: list[tuple[str, nn.Module]], group: UnitGroup) -> None:
    """Refuses a group whose units pass, on the way to the consumer, through a stage that maps 0 to non-0."""
    names = [n for n, _ in stages]
    end = names.index(group.consumer) if group.consumer is not None else len(stages)
    for name, stage in stages[names.index(group.name) + 1:end]:
        if not isinstance(stage, ZERO_PRESERVING):
            raise NotImplementedError(
                f"units of {group.name!r} pass through {name!r} ({type(stage).__name__}) before their consumer; "
                "it is not known to keep a removed unit's zero at zero without mixing units, so removing units might "
                "change the network")


def _feature_source(stages: list[tuple[str, nn.Module]], shapes: list[tuple[int, ...]],
                    group: UnitGroup) -> tuple[str, int] | None:
    """For flattened conv features: (the conv whose output channels they are, positions per channel), else None."""
    names = [n for n, _ in stages]
    pos = names.index(group.name)
    while pos > 0 and not isinstance(stages[pos][1], nn.Flatten):
        if not isinstance(stages[pos][1], ZERO_PRESERVING):
            return None
        pos -= 1
    if pos == 0 or len(shapes[pos - 1]) != 3:
        return None
    positions = shapes[pos - 1][1] * shapes[pos - 1][2]
    for back in range(pos - 1, -1, -1):
        stage = stages[back][1]
        if isinstance(stage, nn.Conv2d):
            return (names[back], positions) if stage.out_channels == shapes[pos - 1][0] else None
        if not _passes_units(stage):
            return None
    return None


def _out_channels_fn(layer: nn.Module):
    import torch_pruning as tp  # imported where used: methods/ loads on a machine without it

    if isinstance(layer, nn.Linear):
        return tp.prune_linear_out_channels
    if isinstance(layer, nn.Conv2d):
        return tp.prune_conv_out_channels
    raise NotImplementedError(f"cannot prune the output channels of {type(layer).__name__}")


def dependency_graph(model: nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's ``DependencyGraph`` of ``model``, traced on ``example``.

    Parameters outside any module (a transformer's positions and classification token) make Torch-Pruning warn that
    it would prune their last dimension; they belong to the residual stream, which no unit site removes (a producer
    coupled to it is refused), so the warning is silenced here.
    """
    import warnings

    import torch_pruning as tp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected", category=UserWarning)
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)


def prune_network(model: nn.Module, groups: Sequence[UnitGroup], mask: np.ndarray,
                  input_shape: Sequence[int]) -> nn.Module:
    """A copy of ``model`` with the units outside ``mask`` physically removed and the layers around them shrunk.

    Its logits equal those of the masked network (``naive_logits`` with the same mask) up to float rounding.

    Args:
        model: the network (left unchanged): a flat ``nn.Sequential`` whose unit groups are its stages, or any
            module tree (see :func:`_prune_graph`).
        groups: its unit groups (``methods.network.structure.unit_groups``).
        mask: bool, one entry per unit in group order; True keeps the unit.
        input_shape: one example's shape, without the batch axis.

    Returns:
        The pruned network, with the original stage names (plus a ``<group>_kept`` stage before the consumer of
        each group without a producer), in the original's training mode.
    """
    mask = np.asarray(mask, dtype=bool)
    n_units = sum(g.size for g in groups)
    if mask.shape != (n_units,):
        raise ValueError(f"mask has shape {mask.shape}, the groups have {n_units} units")
    stage_names = dict(model.named_children()) if isinstance(model, nn.Sequential) else {}
    if any(group.name not in stage_names or group.dim != 1 for group in groups):
        return _prune_graph(model, groups, mask, input_shape)
    pruned = copy.deepcopy(model)
    was_training = model.training
    pruned.eval()  # tracing must not update BatchNorm statistics
    stages = list(pruned.named_children())
    layers = dict(stages)
    shapes = _stage_shapes(pruned, input_shape)

    remove: dict[str, set[int]] = {}  # producer or source conv -> its output channels to remove
    zero_columns: list[tuple[str, int]] = []  # (consumer, columns): an empty conv group keeps one channel, unread
    for group in groups:
        _check_zero_preserving(stages, group)
        if group.producer is None:
            continue
        keep = mask[group.players]
        drop = set(np.flatnonzero(~keep).tolist())
        if not keep.any() and isinstance(layers[group.producer], nn.Conv2d):
            drop.discard(0)  # convolutions and pooling refuse 0 channels
            if group.consumer is not None:
                zero_columns.append((group.consumer, group.fan))
        remove.setdefault(group.producer, set()).update(drop)

    selections: list[tuple[UnitGroup, np.ndarray, tuple[str, int] | None]] = []
    for group in groups:  # after the producers: a feature of a removed channel is not kept either
        if group.producer is not None:
            continue
        if group.consumer is None or not isinstance(layers[group.consumer], nn.Linear) or group.fan != 1:
            raise NotImplementedError(f"group {group.name!r} has no producer and is not read column by column "
                                      "by a Linear layer; it cannot be removed physically")
        if any(other.consumer == group.consumer for other, _, _ in selections):
            raise NotImplementedError(f"two groups without a producer feed {group.consumer!r}")
        keep = mask[group.players].copy()
        source = _feature_source(stages, shapes, group)
        if source is not None:
            conv, positions = source
            keep = keep.reshape(-1, positions)
            keep[sorted(remove.get(conv, ()))] = False
            drop = remove.setdefault(conv, set())
            spare = min(set(range(keep.shape[0])) - drop)  # a producer group never removes every channel
            drop.update(np.flatnonzero(~keep.any(axis=1)).tolist())  # channels none of whose positions is read
            if len(drop) == keep.shape[0]:
                drop.discard(spare)  # convolutions and pooling refuse 0 channels: keep one, none of it selected
            keep = keep.reshape(-1)
        selections.append((group, keep, source))

    example = torch.zeros(1, *input_shape, device=next(pruned.parameters()).device,
                          dtype=next(pruned.parameters()).dtype)
    import torch_pruning as tp

    graph = dependency_graph(pruned, example)
    for name, channels in remove.items():
        if channels:
            layer = layers[name]
            graph.get_pruning_group(layer, _out_channels_fn(layer), sorted(channels)).prune()

    for consumer, fan in zero_columns:
        with torch.no_grad():
            layers[consumer].weight[:, :fan] = 0

    inserted: dict[str, tuple[str, KeptFeatures]] = {}
    for group, keep, source in selections:
        if source is not None:  # renumber the features: removed channels' positions are gone
            conv, positions = source
            alive = np.ones(keep.size // positions, dtype=bool)
            alive[sorted(remove.get(conv, ()))] = False
            keep = keep.reshape(-1, positions)[alive].reshape(-1)
        if keep.all():
            continue  # every remaining feature is read: nothing to select
        consumer = layers[group.consumer]
        tp.prune_linear_in_channels(consumer, np.flatnonzero(~keep).tolist())
        index = torch.as_tensor(np.flatnonzero(keep), device=consumer.weight.device)
        inserted[group.consumer] = (f"{group.name}_kept", KeptFeatures(index))

    rebuilt: list[tuple[str, nn.Module]] = []
    for name, stage in stages:
        if name in inserted:
            rebuilt.append(inserted[name])
        rebuilt.append((name, stage))
    return nn.Sequential(OrderedDict(rebuilt)).train(was_training)


def _prune_graph(model: nn.Module, groups: Sequence[UnitGroup], mask: np.ndarray,
                 input_shape: Sequence[int]) -> nn.Module:
    """:func:`prune_network` for a model that is not a flat ``nn.Sequential`` of its unit stages (a residual net, a
    module tree): the same module tree with every group's producer channels removed through Torch-Pruning's
    dependency graph, which shrinks whatever is coupled to them (the BatchNorm after the producer, the consumer's
    input channels).

    Every group needs a producer and a path to its consumer on which zero stays zero (``UnitGroup.zero_safe``).
    A producer coupled to further Linear or Conv layers (a channel of a residual stream, tied to every block of its
    stage) is refused: removing it there would remove it everywhere, which zeroing it at one site does not.
    A group with no unit kept keeps its first channel, whose outgoing weights are zeroed (torch runs no
    convolution with 0 channels), as the flat version does.

    Attention heads are removed by their attention module itself (``SelfAttention.keep_heads``: the heads' q, k, v
    rows and output-projection columns go), not through Torch-Pruning, whose graph cannot tell which rows of the
    fused qkv layer belong to which head; with no head kept, the projection outputs its bias.
    """
    pruned = copy.deepcopy(model)
    was_training = model.training
    pruned.eval()
    for group in groups:  # heads first: the attention's own layers shrink, by head (SelfAttention.keep_heads)
        if group.heads:
            keep = np.flatnonzero(mask[group.players])
            pruned.get_submodule(group.path.rpartition(".")[0]).keep_heads(keep.tolist())
    groups = [group for group in groups if not group.heads]
    if not groups:
        return pruned.train(was_training)
    for group in groups:
        if group.producer is None or not group.zero_safe:
            why = "no producer layer" if group.producer is None else "a module between it and its consumer that " \
                "does not keep zero at zero"
            raise NotImplementedError(f"units of {group.name!r} have {why}; they cannot be removed physically")
    param = next(pruned.parameters())

    with torch.enable_grad():  # the dependency graph is traced through autograd
        graph = dependency_graph(pruned, torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    layers = {name: pruned.get_submodule(name) for name in {g.producer for g in groups} | {
        g.consumer for g in groups if g.consumer is not None}}
    drops: dict[str, set[int]] = {}  # producer -> its output channels to remove (groups may share a producer)
    zero_inputs: list[tuple[str, int]] = []  # (consumer, fan): an emptied group keeps channel 0, unread
    for group in groups:
        keep = mask[group.players]
        drop = set(np.flatnonzero(~keep).tolist())
        if not keep.any():
            drop.discard(0)  # torch runs no convolution with 0 channels
            if group.consumer is None:
                raise NotImplementedError(f"every unit of {group.name!r} is removed and it has no single consumer")
            zero_inputs.append((group.consumer, group.fan))
        drops.setdefault(group.producer, set()).update(drop)
    for name, drop in drops.items():
        layer = layers[name]
        allowed = {layer, *(layers[g.consumer] for g in groups if g.producer == name and g.consumer is not None)}
        tp_group = graph.get_pruning_group(layer, _out_channels_fn(layer), sorted(drop) or [0])
        coupled = [dep.target.module for dep, _ in tp_group if isinstance(dep.target.module, nn.Linear | nn.Conv2d)
                   and dep.target.module not in allowed]
        if coupled:  # e.g. a channel of a residual stream: removing it removes it from every block of the stage
            raise NotImplementedError(f"the output channels of {name!r} are coupled to other layers (a residual "
                                      "stream); removing a unit there is not zeroing it at its site")
        if drop:
            tp_group.prune()
    for consumer, fan in zero_inputs:
        with torch.no_grad():
            layers[consumer].weight[:, :fan] = 0
    return pruned.train(was_training)


def network_cost(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """What one forward pass of one example costs.

    Args:
        model: any network.
        input_shape: one example's shape, without the batch axis.

    Returns:
        ``params``: every parameter of the network. ``macs``: Torch-Pruning's ``count_ops_and_params`` for one
        example, which counts a multiply-accumulate per weight use of Linear and Conv layers, plus one operation per
        bias add, ReLU output, pooled input element and (2 per element) BatchNorm; the weight MACs dominate.
        ``weight_macs``: the multiply-accumulates of Linear and Conv weights alone (no bias, no activation).
    """
    param = next(model.parameters())
    example = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
    weight_macs = 0

    def count(module, inputs, output):
        nonlocal weight_macs
        if isinstance(module, nn.Linear):
            weight_macs += inputs[0].numel() * module.out_features
        else:  # each output element reads in_channels / groups x kernel inputs
            weight_macs += output.numel() * module.weight[0].numel()

    import torch_pruning as tp

    was_training = model.training
    model.eval()
    ops, _ = tp.utils.count_ops_and_params(model, example_inputs=example)  # before the hooks: it copies the model
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": int(ops), "weight_macs": int(weight_macs)}


def measure_latency(model: nn.Module, input_shape: Sequence[int], *, batch_sizes: Sequence[int] = (1, 256),
                    repeats: int = 50, warmup: int = 3, budget_s: float = 0.5, device: str | torch.device = "cpu",
                    threads: int | None = None, seed: int = 0) -> dict[int, float]:
    """Median seconds of one forward pass (eval mode, ``torch.inference_mode``) at each batch size.

    Each batch size gets ``warmup`` untimed passes, then timed passes until ``repeats`` are done or ``budget_s``
    seconds have gone by, whichever comes first (at least one). CPU threads are whatever torch is set to
    (``torch.get_num_threads()``) unless ``threads`` says otherwise; the input is seeded Gaussian noise of the right
    shape. On a shared machine another busy process inflates multi-threaded times of small batches by orders of
    magnitude (threads wait for a descheduled sibling); ``threads=1`` is the stabler measure there.

    Args:
        model: the network; moved to ``device`` as a copy when its parameters live elsewhere.
        input_shape: one example's shape, without the batch axis.
        batch_sizes: the batch sizes to time.
        repeats: the most timed passes per batch size.
        warmup: untimed passes before timing.
        budget_s: seconds of timed passes per batch size, after which timing stops early.
        device: where to run; on CUDA each timed pass is bracketed by ``torch.cuda.synchronize``.
        threads: CPU threads for the timing (restored afterwards); None keeps torch's setting.
        seed: seed of the input.

    Returns:
        {batch size: median seconds per forward pass}.
    """
    device = torch.device(device)
    param = next(model.parameters())
    if param.device != device:
        model = copy.deepcopy(model).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(seed)
    was_training, torch_threads = model.training, torch.get_num_threads()
    model.eval()
    if threads is not None:
        torch.set_num_threads(threads)
    medians: dict[int, float] = {}
    try:
        with torch.inference_mode():
            for batch in batch_sizes:
                example = getattr(model, "example_input", None)  # a model of token ids makes valid ones
                x = example(batch, generator) if example is not None else torch.randn(batch, *input_shape,
                                                                                     generator=generator)
                x = x.to(device=device, dtype=param.dtype)
                for _ in range(warmup):
                    model(x)
                sync()
                times: list[float] = []
                spent = 0.0
                while len(times) < max(repeats, 1) and (not times or spent < budget_s):
                    start = time.perf_counter()
                    model(x)
                    sync()
                    times.append(time.perf_counter() - start)
                    spent += times[-1]
                medians[batch] = statistics.median(times)
    finally:
        model.train(was_training)
        torch.set_num_threads(torch_threads)
    return medians


def pruned_point(model: nn.Sequential, groups: Sequence[UnitGroup], mask: np.ndarray, input_shape: Sequence[int],
                 *, latency: bool = True, batch_sizes: Sequence[int] = (1, 256), repeats: int = 50,
                 budget_s: float = 0.5, device: str | torch.device = "cpu",
                 threads: int | None = None) -> dict[str, Any]:
    """The physically pruned network of one curve point and what it costs.

    Args:
        model: the trained network (left unchanged).
        groups: its unit groups.
        mask: bool keep-mask over all units, in group order.
        input_shape: one example's shape, without the batch axis.
        latency: also time it (``measure_latency``); False skips the timing, the costly part.
        batch_sizes, repeats, budget_s, device, threads: passed to ``measure_latency``.

    Returns:
        ``model`` (the pruned network), ``params``, ``macs`` and ``weight_macs`` (``network_cost``),
        ``attached_params`` (the kept parameters of the attached layers,
        ``methods.network.structure.parameter_counts``),
        and with ``latency`` a ``latency_b{batch}`` entry (median seconds) per batch size and ``threads``.
    """
    pruned = prune_network(model, groups, mask, input_shape)
    point: dict[str, Any] = {"model": pruned, **network_cost(pruned, input_shape),
                             "attached_params": parameter_counts(model, groups, mask)[0]}
    if latency:
        times = measure_latency(pruned, input_shape, batch_sizes=batch_sizes, repeats=repeats, budget_s=budget_s,
                                device=device, threads=threads)
        point.update({f"latency_b{batch}": seconds for batch, seconds in times.items()})
        point["threads"] = threads if threads is not None else torch.get_num_threads()
    return point
