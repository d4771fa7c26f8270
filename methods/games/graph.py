"""The neuron game on any ``nn.Module``: players live at unit sites (``datasets.sites``) anywhere in a graph.

Masking is a forward hook on every site module that multiplies its output by the coalition's mask along the unit
axis. A chunk of k coalitions is one pass over k x N samples, each coalition's mask broadcast over its own N samples
(``mask_units``), so a residual net, an AlexNet or a model tree is evaluated k coalitions at a time.

What no mask can change is computed once. ``torch.fx`` traces the model, with the site modules kept as leaves; a
node that depends on no site is coalition-free. The coalition-free nodes that feed the rest (the boundary: for a
ResNet whose first site is ``layer1.0.bn1``, the stem's output and ``layer1.0.conv1``'s output) are evaluated once
over the N samples and cached; every coalition runs only the nodes downstream of a site. A model that ``torch.fx``
cannot trace (data-dependent control flow, say) is evaluated whole, batched and hooked the same way, without the
cache; :attr:`GraphGame.traced` says which happened, and a warning says why.

BatchNorms that follow a conv (other than the sites) are folded into it: the same function in eval mode, up to
float rounding, with one pass over each activation less.

Two strategies, as the flat engines have: ``"dense"`` evaluates k coalitions in one batched pass (the GPU path);
``"sparse"`` evaluates one coalition at a time with each site's producer and consumer convolutions restricted to
its members, and reuses the previous coalition's values up to the first block whose members changed
(``methods.games.skipping``; the CPU path, where a batch of one coalition's N samples already fills the cores).
``"auto"`` picks sparse on the CPU when some site allows it.

A flat ``nn.Sequential`` whose sites are its stages keeps the faster flat engines of ``methods.games.neuron``;
:func:`neuron_game` picks.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from datasets.sites import SiteTracer, is_flat, mask_units, resolve_sites
from methods.games.base import check_coalitions
from methods.games.neuron import DEFAULT_MEMORY_CAP, METRICS, MaskedNetworkGame, NeuronGame
from methods.games.skipping import (
    SkippingInterpreter,
    find_chains,
    fold_batch_norms,
    fuse_add_relu,
    in_place,
    mutates_inputs,
    padded_members,
)

GRAPH_STRATEGIES = ("auto", "dense", "sparse")
# The sparse path pads a coalition's members to a multiple of this many channels (see methods.games.skipping).
CHANNEL_ALIGN = 1


def split_at_sites(model: nn.Module, paths: Sequence[str]) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """Splits ``model`` into a coalition-free prefix and the suffix that depends on the sites.

    Returns:
        (prefix, suffix, n_boundary): ``prefix(x)`` returns the tuple of boundary values; ``suffix(*boundary)``
        returns the logits and calls every site module as a submodule (so hooks on them fire).

    Raises:
        torch.fx's errors when the model cannot be traced, or ValueError when a site is not a node of the trace.
    """
    leaves = set(paths)
    graph = SiteTracer(leaves).trace(model)
    nodes = list(graph.nodes)
    site_nodes = [n for n in nodes if n.op == "call_module" and n.target in leaves]
    if sorted(n.target for n in site_nodes) != sorted(leaves):
        raise ValueError("some unit sites are not single calls in the traced graph")
    tainted: set[fx.Node] = set(site_nodes)
    per_sample: set[fx.Node] = set()
    for node in nodes:
        inputs = node.all_input_nodes
        if node.op == "placeholder" or any(i in per_sample for i in inputs):
            per_sample.add(node)
        if any(i in tainted for i in inputs):
            tainted.add(node)
    output = next(n for n in nodes if n.op == "output")
    if output not in tainted:
        raise ValueError("the model's output depends on no unit site")
    # Values computed from shapes alone (``b, t, d = x.shape``, ``x.size(0)``) are not cached: the suffix runs on
    # k coalitions x N samples at once, so it recomputes them from the batched tensors they read.
    structural: set[fx.Node] = set()
    for node in nodes:
        reads_shape = ((node.op == "call_function" and node.target is getattr and node.args[1:2] == ("shape",))
                       or (node.op == "call_method" and node.target in ("size", "dim")))
        if reads_shape or (node.all_input_nodes and all(i in structural for i in node.all_input_nodes)):
            structural.add(node)
    needed = set(tainted)  # what the suffix computes
    for node in reversed(nodes):
        if node in structural and any(user in needed for user in node.users):
            needed.add(node)
    boundary = [n for n in nodes if n not in needed and n in per_sample and n.op != "output"
                and any(user in needed for user in n.users)]
    for node in (n for n in nodes if in_place(model, n)):
        if node.args and node.args[0] in boundary:
            raise ValueError(f"{node.name} changes in place a value the cache would hold; nothing can be cached")

    prefix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in nodes:
        if node.op == "output":
            break
        if node not in tainted:
            env[node] = prefix_graph.node_copy(node, lambda n: env[n])
    prefix_graph.output(tuple(env[n] for n in boundary))

    suffix_graph = fx.Graph()
    env = {n: suffix_graph.placeholder(f"boundary_{i}") for i, n in enumerate(boundary)}
    for node in nodes:
        if node in env:
            continue
        if node in needed or node not in per_sample:  # constants (parameters read directly) come along
            env[node] = suffix_graph.node_copy(node, lambda n: env[n])
    parts = []
    for part_graph in (prefix_graph, suffix_graph):
        part = fx.GraphModule(model, part_graph)
        part.graph.eliminate_dead_code(lambda n, part=part: n.op in ("placeholder", "output") or in_place(part, n))
        part.recompile()
        parts.append(part)
    if mutates_inputs(parts[1]):  # through a view: the cache would change, and the prefix may read it before
        raise ValueError("the part after the first site changes a cached value in place (through a view); "
                         "nothing can be cached")
    return parts[0], parts[1], len(boundary)


class GraphGame(MaskedNetworkGame):
    """GTAP's neuron game over unit sites of any network; the interface of :class:`~methods.games.neuron.NeuronGame`.

    Args:
        model: any ``nn.Module`` in eval mode's semantics (the game works on its own copy, in eval mode).
        units: site specs (``"path"`` or ``"path:axis"``), in the player order wanted.
        x, y: evaluation inputs and labels (the validation split when estimating indices).
        metric: "accuracy" or "neg_loss".
        strategy: "dense" (k coalitions in one batched hooked pass: the GPU path), "sparse" (one coalition at a
            time, each site's producer and consumer convolutions restricted to its members where the graph allows,
            ``methods.games.skipping``: the CPU path) or "auto" (sparse on the CPU when some site allows it).
        memory_cap: bytes of activations one chunk of coalitions may use.
        device: where to evaluate (default: the model's device).
        align: the sparse path computes a coalition's members padded to a multiple of this many units.

    Attributes:
        sites: the resolved sites, in player order.
        traced: whether ``torch.fx`` split off the coalition-free part (else the whole model runs per chunk).
        n_players, group_names, group_sizes, group_slices, n_evaluations, n_samples: as NeuronGame's.
    """

    def __init__(self, model: nn.Module, units: Sequence[str], x: torch.Tensor, y: torch.Tensor, *,
                 metric: str = "accuracy", strategy: str = "auto", memory_cap: int = DEFAULT_MEMORY_CAP,
                 device: torch.device | str | None = None, align: int = CHANNEL_ALIGN) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        if strategy not in GRAPH_STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(GRAPH_STRATEGIES)}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.metric, self.memory_cap, self.align = metric, int(memory_cap), int(align)
        self.n_evaluations = 0
        self.gemm_flops = 0  # not counted on this path
        net = copy.deepcopy(model).to(self.device).eval()
        self.sites = resolve_sites(net, units, tuple(x.shape[1:]))
        # Image models run in channels-last layout: the same values, and oneDNN's and cuDNN's faster convolutions
        # (1.5x to 1.8x on a 2-core CPU for ResNet-20 and AlexNet at 64x64).
        self.channels_last = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in net.modules())
        if self.channels_last:
            converted = _channels_last(net, x[:2].to(self.device))
            self.channels_last, net = converted is not net, converted
        self.group_names = tuple(site.spec for site in self.sites)
        self.group_sizes = tuple(site.size for site in self.sites)
        bounds = np.cumsum([0, *self.group_sizes])
        self.group_slices = tuple(slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        self.n_players = int(bounds[-1])
        try:
            prefix, self._suffix, _ = split_at_sites(net, [site.path for site in self.sites])
            self.traced = True
        except Exception as error:  # noqa: BLE001  (fx raises many kinds; every one means: run the model whole)
            warnings.warn(f"torch.fx cannot trace {type(model).__name__} ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); every coalition runs the whole "
                          "model, with nothing cached", stacklevel=2)
            prefix, self._suffix, self.traced = None, net, False
        # BatchNorms after a conv, other than the sites, fold into the conv (eval mode: the same function).
        self.folded = fold_batch_norms(self._suffix, {site.path for site in self.sites}) if self.traced else 0
        # A residual add and the ReLU after it run as one op (the same values, one pass over the map less).
        self.fused = fuse_add_relu(self._suffix, {site.path for site in self.sites}) if self.traced else 0
        self.chains = find_chains(self._suffix, self.sites) if self.traced else []
        if strategy == "auto":
            strategy = "sparse" if self.chains and self.device.type == "cpu" else "dense"
        if strategy == "sparse" and not self.chains:
            raise ValueError("the sparse strategy needs a traced model with at least one site between a conv or "
                             "Linear producer and a conv or Linear consumer (methods.games.skipping)")
        self.strategy = strategy
        self._previous: np.ndarray | None = None  # the sparse path's last coalition, for reuse
        self._skipper = SkippingInterpreter(self._suffix, self.chains, self.sites) if strategy == "sparse" else None
        # The cache is passed to the suffix as it is: a traced suffix never changes its inputs (split_at_sites
        # refuses one that could); a whole untraced model might change its input, so that gets a copy.
        self._copy_inputs = not self.traced
        self._masks: list[torch.Tensor | None] | None = None
        for g, site in enumerate(self.sites):
            self._suffix.get_submodule(site.path).register_forward_hook(self._hook(g, site.dim))
        self.y = y.to(self.device)
        self.n_samples = len(self.y)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.no_grad():
            parts = [prefix(c.to(self.device, memory_format=layout)) if prefix is not None
                     else (c.to(self.device, memory_format=layout),) for c in x.split(4096)]
        self._cached = [_layout(torch.cat([p[i] for p in parts]), self.channels_last)
                        for i in range(len(parts[0]))] if parts else []
        self._per_sample_bytes = self._activation_bytes()

    def _hook(self, g: int, dim: int):
        def hook(_module, _inputs, output):
            if self._masks is None or self._masks[g] is None:
                return output
            return mask_units(output, self._masks[g], dim)
        return hook

    def _activation_bytes(self) -> int:
        """Bytes of every module output of the suffix for one sample of one coalition (the chunking's estimate)."""
        total = 0

        def count(_module, _inputs, output):
            nonlocal total
            if isinstance(output, torch.Tensor):
                total += output.numel() * output.element_size()

        handles = [m.register_forward_hook(count) for m in self._suffix.modules() if not list(m.children())]
        try:
            with torch.no_grad():
                self._suffix(*(c[:1].clone() for c in self._cached))
        finally:
            for handle in handles:
                handle.remove()
        return 2 * total + sum(c[:1].numel() * c.element_size() for c in self._cached)

    # ------------------------------------------------------------------ the Game protocol
    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """v(C) for each row of a bool (k, n_players) coalition matrix."""
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        out = []
        with torch.no_grad():
            if self._skipper is not None:
                return self._sparse_values(coalitions)
            for rows, samples in self._chunks(len(coalitions), self.n_samples):
                total = torch.zeros(rows.stop - rows.start, device=self.device, dtype=torch.float64)
                for part in samples:
                    logits = self._logits(coalitions[rows], [c[part] for c in self._cached], shared=True)
                    total += self._metric_sum(logits, self.y[part])
                out.append(total / self.n_samples)
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def _sparse_values(self, coalitions: np.ndarray) -> np.ndarray:
        """v(C) one coalition at a time, the chained sites' convolutions over the members only."""
        samples = self._chunks(1, self.n_samples)[0][1]
        values = np.zeros(len(coalitions))
        chained = {chain.group for chain in self.chains}
        # Values are reused from the previous coalition when the samples fit one pass (see SkippingInterpreter).
        reuse = len(samples) == 1
        for j, coalition in enumerate(coalitions):
            previous = self._previous
            changed = None if previous is None or not reuse else {
                g for g, s in enumerate(self.group_slices) if not np.array_equal(previous[s], coalition[s])}
            self._previous = coalition.copy() if reuse else None
            kept = [padded_members(coalition[self.group_slices[chain.group]], self.align, self.device)
                    for chain in self.chains]
            full = torch.as_tensor(coalition[None], device=self.device, dtype=torch.float32)
            self._masks = [full[:, s] if g not in chained else None for g, s in enumerate(self.group_slices)]
            total = torch.zeros((), device=self.device, dtype=torch.float64)
            try:
                for part in samples:
                    inputs = [c[part] for c in self._cached]
                    inputs = [_layout(c.clone() if self._copy_inputs else c, self.channels_last) for c in inputs]
                    logits = self._skipper.run_coalition(inputs, kept, changed)
                    total += self._metric_sum(logits.unsqueeze(0), self.y[part])[0]
            finally:
                self._masks = None
            values[j] = float(total) / self.n_samples
        return values

    def _prediction_rows(self, k: int, n_samples: int) -> list[slice]:
        return [rows for rows, _ in self._chunks(k, n_samples)]

    def _sample_logits(self, coalitions: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        return self._logits(coalitions, [c[idx.flatten()] for c in self._cached], shared=False)

    # ------------------------------------------------------------------ evaluation
    def _chunks(self, k: int, n_samples: int) -> list[tuple[slice, list[slice]]]:
        """Coalition chunks that fit ``memory_cap``; a single coalition too big for it splits its samples too."""
        per_coalition = max(self._per_sample_bytes * n_samples, 1)
        step = int(max(1, min(k, self.memory_cap // per_coalition)))
        sample_step = n_samples
        if step == 1:
            sample_step = int(max(1, min(n_samples, self.memory_cap // max(self._per_sample_bytes, 1))))
        samples = [slice(s, s + sample_step) for s in range(0, n_samples, sample_step)]
        return [(slice(i, min(i + step, k)), samples) for i in range(0, k, step)]

    def _logits(self, coalitions: np.ndarray, inputs: list[torch.Tensor], *, shared: bool) -> torch.Tensor:
        """Logits (k, n, C); ``inputs`` are the cached values of n samples shared by all k coalitions, or (k * n)
        rows coalition-major when not ``shared``."""
        k = len(coalitions)
        full = torch.as_tensor(coalitions, device=self.device, dtype=torch.float32)
        if shared:  # k > 1 copies anyway; one coalition's are copied when the suffix could change them in place
            inputs = [(c.clone() if self._copy_inputs else c) if k == 1
                      else c.unsqueeze(0).expand(k, *c.shape).flatten(0, 1) for c in inputs]
        inputs = [_layout(c, self.channels_last) for c in inputs]
        self._masks = [full[:, s] for s in self.group_slices]
        try:
            logits = self._suffix(*inputs)
        finally:
            self._masks = None
        return logits.unflatten(0, (k, -1))


def _channels_last(net: nn.Module, example: torch.Tensor) -> nn.Module:
    """``net`` in channels-last layout when it runs that way (a ``.view`` of a conv map refuses it), else as it is."""
    candidate = copy.deepcopy(net).to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            candidate(example.contiguous(memory_format=torch.channels_last))
    except RuntimeError:
        return net
    return candidate


def _layout(a: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return a.contiguous(memory_format=torch.channels_last) if channels_last and a.dim() == 4 else a


def neuron_game(model: nn.Module, units: Sequence[str], x: torch.Tensor, y: torch.Tensor,
                **options: Any) -> NeuronGame | GraphGame:
    """The neuron game of ``model``'s units: the flat engines for a flat ``nn.Sequential`` whose units are its
    stages (bit for bit what they have always computed), the graph engine for anything else."""
    sites = resolve_sites(model, units, tuple(x.shape[1:]))
    if is_flat(model, sites):
        return NeuronGame(model, [site.path for site in sites], x, y, **options)
    return GraphGame(model, units, x, y, **options)
