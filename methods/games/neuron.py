"""The neuron game of GTAP: players are prunable units, v(C) is the network's accuracy with only C kept.

Masking a unit zeroes its activation (the output of a named stage of a flat ``nn.Sequential``, along dimension 1:
a neuron of a Linear layer or a channel of a conv layer). Everything before the first masked stage does not depend
on the coalition, so it is computed once and cached; a coalition value is a masked pass over the rest only.

Two exact evaluation strategies, chosen by ``strategy``:

``"dense"``
    Batched: a chunk of k coalitions is one pass over k x N samples. A mask that feeds a Linear layer is folded into
    its weight, (X * m) W^T = X (m[:, None] * W^T), so k coalitions become one batched GEMM. The chunk size k adapts
    to ``memory_cap`` (bytes), so a large game never exhausts RAM or GPU memory. A chunk starts at its first
    group that some coalition masks: the unmasked output at that group's site is cached once, so a layer-wise game
    over a late layer costs only the layers after it. Works for any architecture; it is the GPU path.
``"sparse"``
    For suffixes made only of Linear and ReLU stages (LeNets, the text nets), in features x samples layout. A
    coalition touches only the weight columns of its members, so each masked GEMM is computed from the cheapest of:
    the members alone (cost |C|), the cached full product minus the non-members (cost n - |C|, first layer only),
    or the previous coalition's result plus the players that differ (cost |C xor C_prev|). Estimators emit
    structured coalitions (permutation prefixes, pairs C and C+i) in order, so the last option is often a rank-1
    update. It is the CPU path.

``"auto"`` picks sparse on the CPU when the suffix allows it, else dense. Both agree with ``naive_logits`` (a
per-coalition masked forward of the whole network through hooks), which the tests use as the oracle.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.sites import resolve_sites
from methods.games.base import check_coalitions

DEFAULT_MEMORY_CAP = 1 << 30  # bytes for the dense path's activations per chunk (1 GiB)
METRICS = ("accuracy", "neg_loss")
STRATEGIES = ("auto", "dense", "sparse")
# The sparse path updates a layer's pre-activations incrementally; recompute from scratch after this many updates
# so float rounding cannot accumulate along a long chain of coalitions.
MAX_DELTA_CHAIN = 64


@dataclass(frozen=True)
class _Block:
    """A Linear layer of the sparse path: z = W a + b, optional ReLU, input masked by ``group`` (or unmasked)."""

    weight: torch.Tensor  # (out, in)
    bias: torch.Tensor  # (out, 1)
    relu: bool
    group: int | None


class MaskedNetworkGame:
    """What the neuron games share: the metric, v(N), and per-sample predictions for MCUE.

    A subclass provides ``_prediction_rows(k, m)`` (the chunks of k coalitions on m samples each that fit its
    memory) and ``_sample_logits(coalitions, idx)`` (logits (k, m, C) of k coalitions, each on its own samples).
    """

    n_players: int
    n_evaluations: int
    metric: str
    device: torch.device
    y: torch.Tensor

    def grand_value(self) -> float:
        """v(N): the unpruned network's metric."""
        return float(self(np.ones((1, self.n_players), dtype=bool))[0])

    def predictions(self, coalitions: np.ndarray, sample_index: np.ndarray | torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        """Per-sample outputs of sub-networks, for uncertainty estimation (MCUE).

        Args:
            coalitions: bool (k, n_players).
            sample_index: (k, m) indices into the evaluation samples: row j is evaluated on its own m instances.

        Returns:
            (correct, confidence), each (k, m): whether the prediction is right, and the softmax probability of the
            predicted class.
        """
        correct, confidence, _ = self.predicted(coalitions, sample_index)
        return correct, confidence

    def predicted(self, coalitions: np.ndarray, sample_index: np.ndarray | torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predictions` plus the predicted labels themselves.

        Args:
            coalitions: bool (k, n_players).
            sample_index: (k, m) indices into the evaluation samples: row j is evaluated on its own m instances.

        Returns:
            (correct, confidence, label), each (k, m): whether the prediction is right, the softmax probability of
            the predicted class, and the predicted class (int64).
        """
        coalitions = check_coalitions(coalitions, self.n_players)
        sample_index = torch.as_tensor(np.asarray(sample_index), device=self.device, dtype=torch.long)
        if sample_index.dim() != 2 or sample_index.shape[0] != len(coalitions):
            raise ValueError(f"sample_index must have shape ({len(coalitions)}, m), got {tuple(sample_index.shape)}")
        if len(coalitions) == 0:
            empty = torch.zeros(0, sample_index.shape[1])
            return empty.bool(), empty, empty.long()
        self.n_evaluations += len(coalitions)
        correct, confidence, label = [], [], []
        with torch.no_grad():
            for rows in self._prediction_rows(len(coalitions), sample_index.shape[1]):
                idx = sample_index[rows]
                logits = self._sample_logits(coalitions[rows], idx)
                prob = logits.softmax(-1)
                confidence.append(prob.max(-1).values)
                label.append(logits.argmax(-1))
                correct.append(label[-1] == self.y[idx])
        return torch.cat(correct).cpu(), torch.cat(confidence).cpu(), torch.cat(label).cpu()

    def _metric_sum(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over samples of the metric, per coalition; logits (k, n, C), y (n,) or (k, n)."""
        y = y.expand(logits.shape[:2])
        if self.metric == "accuracy":
            return (logits.argmax(-1) == y).sum(-1, dtype=torch.float64)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        return -loss.sum(-1, dtype=torch.float64)


class NeuronGame(MaskedNetworkGame):
    """GTAP's cooperative game over the prunable units of a trained network.

    Args:
        model: a flat ``nn.Sequential`` (see ``datasets.models``); the game works on its own copy.
        units: names of the stages whose outputs are the players, in forward order.
        x: evaluation inputs (the validation split: never the test split when estimating indices).
        y: evaluation labels.
        metric: "accuracy" (the paper's v) or "neg_loss" (minus the mean cross-entropy).
        strategy: "auto", "dense" or "sparse" (see the module docstring).
        memory_cap: bytes the dense path may use for one chunk of coalitions.
        device: where to evaluate (default: the model's device).

    Attributes:
        n_players: total number of units.
        group_names: the unit groups (stage names), in player order.
        group_slices: the player indices of each group.
        n_evaluations: coalitions evaluated so far.
    """

    def __init__(
        self,
        model: nn.Sequential,
        units: Sequence[str],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        metric: str = "accuracy",
        strategy: str = "auto",
        memory_cap: int = DEFAULT_MEMORY_CAP,
        device: torch.device | str | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        stages = list(model.named_children())
        names = [name for name, _ in stages]
        missing = [u for u in units if u not in names]
        if missing:
            raise ValueError(f"unit groups {missing} are not stages of the model; stages: {names}")
        positions = [names.index(u) for u in units]
        if positions != sorted(positions) or len(set(positions)) != len(positions):
            raise ValueError("units must be distinct stages listed in forward order")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.metric = metric
        self.memory_cap = int(memory_cap)
        self.n_evaluations = 0
        self.gemm_flops = 0  # multiply-adds x 2 executed by coalition evaluations (for throughput reports)
        self.group_names = tuple(units)
        self._mask_after = {pos: g for g, pos in enumerate(positions)}
        self._positions = positions

        first = positions[0]
        # A private copy: the caller's model keeps its mode and device, and later edits to it cannot desynchronise
        # the cached activations from the weights used here.
        stages = [(name, copy.deepcopy(m).to(self.device).eval()) for name, m in stages]
        prefix = nn.Sequential(*[m for _, m in stages[: first + 1]])
        self._suffix = [m for _, m in stages[first + 1:]]
        self._suffix_positions = list(range(first + 1, len(stages)))
        self.y = y.to(self.device)
        with torch.no_grad():
            self._cached = torch.cat([prefix(chunk.to(self.device)) for chunk in x.split(4096)])
        self.n_samples = len(self.y)
        self._sites: dict[int, torch.Tensor] = {0: self._cached}  # group -> the whole network's output at its site

        sizes = [int(self._cached.shape[1])]
        self._widths: list[int] = []  # per-sample size of every suffix output, for the dense path's chunking
        with torch.no_grad():  # one sample through the suffix gives every group's width
            a = self._cached[:1]
            for pos, stage in zip(self._suffix_positions, self._suffix, strict=True):
                a = stage(a)
                self._widths.append(int(a[0].numel()))
                if pos in self._mask_after:
                    sizes.append(int(a.shape[1]))
        self.group_sizes = tuple(sizes)
        bounds = np.cumsum([0, *sizes])
        self.group_slices = tuple(slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        self.n_players = int(bounds[-1])

        self._blocks = self._sparse_blocks()
        if strategy == "auto":
            strategy = "sparse" if self._blocks is not None and self.device.type == "cpu" else "dense"
        if strategy == "sparse" and self._blocks is None:
            raise ValueError("the sparse strategy needs a suffix of Linear/ReLU stages after the first unit group")
        self.strategy = strategy
        if strategy == "sparse":
            self._x_t = self._cached.t().contiguous()  # features x samples: row gathers are contiguous
            first_block = self._blocks[0]
            self._full_first = torch.addmm(first_block.bias, first_block.weight, self._x_t)
            self._reset_chain()

    # ------------------------------------------------------------------ public API
    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """v(C) for each row of a bool (k, n_players) coalition matrix."""
        coalitions = check_coalitions(coalitions, self.n_players)
        self.n_evaluations += len(coalitions)
        if len(coalitions) == 0:
            return np.zeros(0)
        with torch.no_grad():
            if self.strategy == "sparse":
                # A private copy: the incremental updates compare against the previous rows, which must not change
                # under us if the caller reuses its buffer.
                coalitions = coalitions.copy()
                values = [self._sparse_value(row) for row in coalitions]
                return np.asarray(values, dtype=np.float64)
            return self._dense_values(coalitions)

    # ------------------------------------------------------------------ dense path
    def _prediction_rows(self, k: int, n_samples: int) -> list[slice]:
        return self._chunks(k, n_samples)

    def _sample_logits(self, coalitions: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        start = self._first_masked(coalitions)
        return self._dense_logits(self._masks(coalitions), self._site(start)[idx], shared=False, start=start)

    def _first_masked(self, coalitions: np.ndarray) -> int:
        """The first group that some coalition of a chunk does not keep whole (the last group if none).

        The groups before it are whole in every coalition, so the chunk can start from that group's cached site
        output (:meth:`_site`): a layer-wise game over a late layer then costs only the layers after it.
        """
        for g, s in enumerate(self.group_slices[:-1]):
            if not coalitions[:, s].all():
                return g
        return len(self.group_slices) - 1

    def _site(self, group: int) -> torch.Tensor:
        """The unmasked network's output at ``group``'s site, for every evaluation sample (computed once)."""
        if group not in self._sites:
            stop = self._suffix_positions.index(self._positions[group]) + 1
            parts = []
            with torch.no_grad():
                for a in self._cached.split(4096):
                    for stage in self._suffix[:stop]:
                        a = stage(a)
                    parts.append(a)
            self._sites[group] = torch.cat(parts)
        return self._sites[group]

    def _masks(self, coalitions: np.ndarray) -> list[torch.Tensor]:
        full = torch.as_tensor(coalitions, device=self.device, dtype=self._cached.dtype)
        return [full[:, s] for s in self.group_slices]

    def _chunks(self, k: int, n_samples: int) -> list[slice]:
        # Activation bytes of one coalition over n_samples: every suffix output, plus the folded weights.
        per_sample = sum(self._widths) + self.group_sizes[0]
        per_coalition = 4 * (2 * n_samples * per_sample + self._folded_weight_elements())
        step = int(max(1, min(k, self.memory_cap // max(per_coalition, 1))))
        return [slice(i, min(i + step, k)) for i in range(0, k, step)]

    def _folded_weight_elements(self) -> int:
        return sum(s.weight.numel() for s in self._suffix if isinstance(s, nn.Linear))

    def _dense_values(self, coalitions: np.ndarray) -> np.ndarray:
        out = []
        for rows in self._chunks(len(coalitions), self.n_samples):
            masks = self._masks(coalitions[rows])
            first = self._first_masked(coalitions[rows])
            site = self._site(first)
            k = rows.stop - rows.start
            sample_step = self.n_samples
            if k == 1:  # a single coalition may still be too big: split the samples too
                per_sample = 4 * 2 * (sum(self._widths) + self.group_sizes[0])
                sample_step = int(max(1, min(self.n_samples, self.memory_cap // per_sample)))
            total = torch.zeros(k, device=self.device, dtype=torch.float64)
            for start in range(0, self.n_samples, sample_step):
                part = slice(start, start + sample_step)
                logits = self._dense_logits(masks, site[part], shared=True, start=first)
                total += self._metric_sum(logits, self.y[part])
            out.append(total / self.n_samples)
        return torch.cat(out).cpu().numpy()

    def _dense_logits(self, masks: list[torch.Tensor], a: torch.Tensor, *, shared: bool,
                      start: int = 0) -> torch.Tensor:
        """Logits (k, n, C) of k masked sub-networks; ``a`` is group ``start``'s cached site output (the groups
        before it whole), (n, ...) if ``shared`` (the same samples for every coalition) else (k, n, ...)."""
        k = masks[0].shape[0]
        pending = masks[start]
        begin = 0 if start == 0 else self._suffix_positions.index(self._positions[start]) + 1
        for pos, stage in zip(self._suffix_positions[begin:], self._suffix[begin:], strict=True):
            n_rows = a.shape[0] if shared else a.shape[1]
            # Folding costs k*in*out multiplies, masking the activations k*n*in: fold only when it is cheaper.
            if (pending is not None and isinstance(stage, nn.Linear) and a.dim() == (2 if shared else 3)
                    and n_rows >= stage.out_features):
                folded = pending[:, :, None] * stage.weight.t()[None]  # (k, in, out)
                a = torch.matmul(a, folded) if shared else torch.bmm(a, folded)
                self.gemm_flops += 2 * a.numel() * stage.in_features
                if stage.bias is not None:
                    a = a + stage.bias
                shared, pending = False, None
            else:
                if pending is not None:
                    a, shared, pending = self._apply_mask(a, pending, shared), False, None
                if shared:
                    a = stage(a)
                else:
                    a = stage(a.flatten(0, 1)).unflatten(0, (k, -1))
                if isinstance(stage, nn.Linear):
                    self.gemm_flops += 2 * a.numel() * stage.in_features
            if pos in self._mask_after:
                pending = masks[self._mask_after[pos]]
        if pending is not None:
            a, shared = self._apply_mask(a, pending, shared), False
        return a.expand(k, *a.shape) if shared else a

    @staticmethod
    def _apply_mask(a: torch.Tensor, mask: torch.Tensor, shared: bool) -> torch.Tensor:
        k = mask.shape[0]
        if shared:
            a = a.unsqueeze(0)
        view = mask.view(k, 1, mask.shape[1], *([1] * (a.dim() - 3)))
        return a * view

    # ------------------------------------------------------------------ sparse path
    def _sparse_blocks(self) -> list[_Block] | None:
        if self._cached.dim() != 2:
            return None
        blocks: list[_Block] = []
        group: int | None = 0
        for pos, stage in zip(self._suffix_positions, self._suffix, strict=True):
            if isinstance(stage, nn.Linear):
                bias = stage.bias if stage.bias is not None else torch.zeros(stage.out_features, device=self.device)
                blocks.append(_Block(stage.weight.detach().contiguous(), bias.detach()[:, None], False, group))
                group = None
            elif isinstance(stage, nn.ReLU) and blocks and not blocks[-1].relu and group is None:
                blocks[-1] = _Block(blocks[-1].weight, blocks[-1].bias, True, blocks[-1].group)
            elif isinstance(stage, (nn.Dropout, nn.Identity, nn.Flatten)):
                pass  # identities in eval mode on 2-d activations
            else:
                return None
            if pos in self._mask_after:
                if group is not None:
                    return None  # two masks without a Linear in between
                group = self._mask_after[pos]
        if group is not None or not blocks:
            return None  # the last unit group must feed a Linear layer
        return blocks

    def _reset_chain(self) -> None:
        self._prev_masks: list[np.ndarray | None] = [None] * len(self._blocks)
        self._prev_z: list[torch.Tensor | None] = [None] * len(self._blocks)
        self._chain = [0] * len(self._blocks)

    def _sparse_value(self, coalition: np.ndarray) -> float:
        a_t = self._x_t
        upstream_same = True
        last = len(self._blocks) - 1
        for j, block in enumerate(self._blocks):
            mask = None if block.group is None else coalition[self.group_slices[block.group]]
            prev_z, prev_mask = self._prev_z[j], self._prev_masks[j]
            can_delta = upstream_same and prev_z is not None and self._chain[j] < MAX_DELTA_CHAIN
            if j == last:
                # The logits are computed samples x classes, so the argmax runs along contiguous rows.
                z = self._last_logits(block, a_t, mask)
                self._prev_z[j], self._prev_masks[j] = None, mask
                break
            if mask is None:
                if can_delta:
                    z = prev_z
                else:
                    z, self._chain[j] = torch.addmm(block.bias, block.weight, a_t), 0
            else:
                members = int(np.count_nonzero(mask))
                costs = {"gather": members}
                if j == 0:
                    costs["complement"] = mask.size - members
                if can_delta:
                    changed = mask != prev_mask
                    costs["delta"] = int(np.count_nonzero(changed))
                how = min(costs, key=costs.__getitem__)
                if how == "delta":
                    if costs["delta"] == 0:
                        z = prev_z
                    else:
                        idx = self._index(changed)
                        sign = torch.from_numpy(np.where(mask[changed], 1.0, -1.0).astype(np.float32))
                        z = torch.addmm(prev_z, block.weight.index_select(1, idx) * sign.to(self.device),
                                        a_t.index_select(0, idx))
                        self._chain[j] += 1
                        self.gemm_flops += 2 * z.numel() * len(idx)
                elif how == "complement":
                    idx = self._index(~mask)
                    z = torch.addmm(self._full_first, block.weight.index_select(1, idx), a_t.index_select(0, idx),
                                    alpha=-1.0)
                    self._chain[j] = 0
                    self.gemm_flops += 2 * z.numel() * len(idx)
                else:
                    idx = self._index(mask)
                    z = torch.addmm(block.bias, block.weight.index_select(1, idx), a_t.index_select(0, idx))
                    self._chain[j] = 0
                    self.gemm_flops += 2 * z.numel() * len(idx)
            upstream_same = z is prev_z
            self._prev_z[j], self._prev_masks[j] = z, mask
            a_t = torch.relu(z) if block.relu else z
        logits = z  # (N, C)
        if self.metric == "accuracy":
            return int((logits.argmax(1) == self.y).sum()) / self.n_samples
        return -float(F.cross_entropy(logits, self.y))

    def _index(self, selector: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(selector)).to(self.device)

    def _last_logits(self, block: _Block, a_t: torch.Tensor, mask: np.ndarray | None) -> torch.Tensor:
        """Logits (N, C) of the output layer; cheap (C is small), so always computed from the members."""
        if mask is None:
            out = torch.addmm(block.bias.t(), a_t.t(), block.weight.t())
        else:
            idx = self._index(mask)
            out = torch.addmm(block.bias.t(), a_t.index_select(0, idx).t(), block.weight.index_select(1, idx).t())
            self.gemm_flops += 2 * out.numel() * len(idx)
        return out


def naive_logits(model: nn.Sequential, units: Sequence[str], x: torch.Tensor, coalition: np.ndarray) -> torch.Tensor:
    """Logits of the whole network with the units outside ``coalition`` zeroed by forward hooks.

    The reference (oracle) implementation: one full forward pass per coalition, nothing cached. ``units`` are the
    flat model's stage names, which are its unit sites (:func:`naive_site_logits`).
    """
    return naive_site_logits(model, units, x, coalition)


def naive_site_logits(model: nn.Module, units: Sequence[str], x: torch.Tensor,
                      coalition: np.ndarray) -> torch.Tensor:
    """Logits of the whole network with the units outside ``coalition`` zeroed by forward hooks at their sites.

    The oracle of the graph engine: one full forward per coalition, nothing cached, nothing traced.
    """
    sites = resolve_sites(model, units, tuple(x.shape[1:]))
    bounds = np.cumsum([0, *(s.size for s in sites)])
    handles = []
    for g, site in enumerate(sites):
        shape = [1] * site.ndim
        shape[site.dim] = site.size
        keep = torch.as_tensor(np.asarray(coalition[bounds[g]:bounds[g + 1]]), dtype=x.dtype, device=x.device)
        keep = keep.view(shape)

        def hook(_module, _inputs, output, keep=keep):
            return output * keep

        handles.append(model.get_submodule(site.path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()
