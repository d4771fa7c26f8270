"""Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?": the importance of a unit as the
expected absolute gradient of the loss with respect to a gate on it.

Every head h of an attention layer is multiplied by a gate xi_h (1: kept, 0: masked), and

    I_h = E_x | dL(x) / d xi_h |,

L(x) the cross-entropy of example x, the expectation over the validation examples (their Eq. 2). The gradient of a
gate is the sum over the head's outputs of activation x gradient, so I_h is a first-order Taylor estimate of what
removing the head changes, example by example, with the sign dropped before averaging.

Readings where the paper leaves room (each a parameter):

* **Normalisation.** The paper normalises the importance scores of each layer by their l2 norm (Sec. 4.2, after
  Molchanov et al. 2017) before ranking all heads together; ``normalize="layer-l2"`` (the default) does that, and
  ``"none"`` keeps the raw expectation.
* **Iterative pruning.** The paper prunes 10% of the heads at a time, re-estimating the importances of the remaining
  heads with the pruned ones masked; that is this scorer under the ``iterated-pruning`` strategy (``step: 0.1``).
* **Units other than heads.** The gate works on any unit site, so the same scorer values MLP neurons or conv
  channels (a gate per unit); for those it is the per-example-|.| variant of first-order Taylor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from methods.network.structure import UnitGroup
from methods.scorers.base import SCORERS, ScorerBase, Scores, _fixed, _with_nan, site_hooks
from methods.scorers.library import _check_choice, _check_count, private_copy

NORMALIZATIONS = ("layer-l2", "none")


@contextlib.contextmanager
def unit_gates(model: nn.Module, groups: Sequence[UnitGroup], gates: Sequence[torch.Tensor]) -> Iterator[None]:
    """Multiplies each site's output by its gates during forward passes: ``gates[g]`` is (batch, units), one gate
    per example and unit, broadcast over the unit's other positions (tokens, head_dim, a feature map)."""
    def gate_hook(group: UnitGroup, gate: torch.Tensor):
        def hook(_module, _inputs, output):
            shape = [1] * output.dim()
            shape[0], shape[group.dim] = gate.shape[0], group.size
            return output * gate.view(shape).to(output.dtype)
        return hook

    with site_hooks(model, groups, [gate_hook(g, gate) for g, gate in zip(groups, gates, strict=True)]):
        yield


def gate_gradients(model: nn.Module, groups: Sequence[UnitGroup], x: torch.Tensor, y: torch.Tensor,
                   keep: np.ndarray) -> torch.Tensor:
    """dL(x_i)/d xi_u for every example i and unit u: (examples, units), float64; gates at ``keep`` (1 or 0)."""
    device = next(model.parameters()).device
    gates = [torch.as_tensor(keep[g.players], dtype=torch.float64, device=device).expand(len(x), -1).clone()
             .requires_grad_(True) for g in groups]
    with unit_gates(model, groups, gates):
        loss = F.cross_entropy(model(x.to(device)), y.to(device), reduction="sum")  # example i's term is L(x_i)
        grads = torch.autograd.grad(loss, gates)
    return torch.cat([g.detach().double() for g in grads], dim=1).cpu()


@SCORERS.register("michel")
@dataclass(frozen=True)
class GateGradientImportance(ScorerBase):
    """Michel et al. 2019's head importance, E_x |dL(x)/d xi_u| over the validation examples, for any unit site
    (module docstring); units already pruned are gated at 0 while scoring.

    Args:
        normalize: "layer-l2" (the paper: divide each layer's scores by their l2 norm) or "none".
        batch_size: validation examples per forward and backward pass.

    Returns (when called):
        Scores with n_forward = n_backward = validation examples.
    """

    normalize: str = "layer-l2"
    batch_size: int = 512

    family: ClassVar[str] = "gradient"

    def __post_init__(self) -> None:
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_count("batch_size", self.batch_size)

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        model = private_copy(problem.model)
        total = torch.zeros(problem.n_units, dtype=torch.float64)
        for xb, yb in zip(problem.x.split(self.batch_size), problem.y.split(self.batch_size), strict=True):
            total += gate_gradients(model, problem.groups, xb, yb, (~exclude).astype(float)).abs().sum(0)
        values = _with_nan((total / len(problem.y)).numpy(), include, exclude)
        if self.normalize == "layer-l2":
            for group in problem.groups:
                part = values[group.players]
                norm = np.sqrt(np.nansum(part ** 2))
                if norm > 0:
                    values[group.players] = part / norm
        n = len(problem.y)
        return Scores(values, n_forward=n, n_backward=n)
