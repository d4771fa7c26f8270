"""Captum's layer attributions as unit scorers."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from datasets.errors import UsageError
from methods.network.structure import Submodules
from methods.scorers.base import (
    SCORERS,
    PruningProblem,
    ScorerBase,
    Scores,
    _fixed,
    _unit_masks,
    _with_nan,
)
from methods.scorers.library import _check_choice, _check_count, _library, private_copy

REDUCES = ("abs", "signed")


def _per_unit(attribution: torch.Tensor, reduce: str, dim: int = 1) -> torch.Tensor:
    """(batch, ..., units at ``dim``, ...) -> (batch, units): the mean over a unit's positions (a conv channel's
    map, a token sequence), then |.| if "abs"."""
    values = attribution.detach().movedim(dim, 1)
    if values.dim() > 2:
        values = values.mean(tuple(range(2, values.dim())))
    return values.abs() if reduce == "abs" else values


# ----------------------------------------------------------------------------------------------------------- Captum


def captum_layer_scores(problem: PruningProblem, exclude: np.ndarray, *, method: str, reduce: str,
                        batch_size: int, baseline: float | str = 0.0, n_steps: int = 50,
                        output: str = "logit") -> tuple[np.ndarray, int, int]:
    """Mean over the validation examples of each unit's layer attribution to the example's true class.

    Args:
        problem: the model, its unit groups and the validation data.
        exclude: bool (n_units,); these units are zeroed while attributing.
        method: "gxa" (LayerGradientXActivation, every group in one pass), "ig" (LayerIntegratedGradients),
            "conductance" (LayerConductance) or "deeplift" (LayerDeepLift); the last three attribute one group at a
            time, since each integrates along its own path.
        reduce: "abs" (mean |attribution|) or "signed" (mean attribution); conv channels average their positions
            first.
        batch_size: validation examples per attribution call.
        baseline: the reference input: a constant (0, Captum's default) or "mean" (the mean validation input).
        n_steps: integration steps of "ig" and "conductance".
        output: "logit" (the target is the true class's logit) or "log_prob" (its log-softmax, i.e. minus the
            example's cross-entropy).

    Returns:
        (scores (n_units,), forward passes, backward passes), passes counted over single examples.
    """
    _check_choice("output", output, ("logit", "log_prob"))
    if method != "gxa" and getattr(problem.model, "discrete_inputs", False):
        raise UsageError(f"Captum's {method!r} interpolates inputs towards a baseline; {type(problem.model).__name__} "
                         "reads discrete token ids, where that means nothing (captum-gxa works on them)")
    attr = _library("captum.attr", "captum")
    model = private_copy(problem.model)
    stages = Submodules(model)
    layers = [stages[g.path] for g in problem.groups]
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if output == "log_prob":
        if method == "deeplift":
            raise ValueError("DeepLift has no rule for log-softmax; attribute the logit")

        def forward(x: torch.Tensor) -> torch.Tensor:
            return F.log_softmax(model(x), dim=-1)

    mean_input = problem.x.mean(0, keepdim=True) if baseline == "mean" else None
    sums = [torch.zeros(g.size, dtype=torch.float64) for g in problem.groups]
    n_forward = n_backward = 0
    with _unit_masks(model, problem.groups, ~exclude), warnings.catch_warnings():
        # DeepLift announces on every call that it hooks the non-linearities (it removes them again).
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        for xb, yb in zip(problem.x.split(batch_size), problem.y.split(batch_size), strict=True):
            b = len(yb)
            base = (mean_input if mean_input is not None else torch.full_like(xb[:1], float(baseline))).expand_as(xb)
            if method == "gxa":
                attributions = attr.LayerGradientXActivation(forward, layers).attribute(xb, target=yb)
                n_forward, n_backward = n_forward + b, n_backward + b
            else:
                attributions = []
                for layer in layers:
                    if method == "ig":
                        a = attr.LayerIntegratedGradients(forward, layer).attribute(
                            xb, baselines=base, target=yb, n_steps=n_steps)
                        # Layer values at the inputs and at the baselines, then n_steps interpolated passes.
                        n_forward, n_backward = n_forward + (n_steps + 2) * b, n_backward + n_steps * b
                    elif method == "conductance":
                        a = attr.LayerConductance(forward, layer).attribute(
                            xb, baselines=base, target=yb, n_steps=n_steps)
                        # Conductance differences need the n_steps + 1 points of the path.
                        n_forward, n_backward = n_forward + (n_steps + 1) * b, n_backward + (n_steps + 1) * b
                    elif method == "deeplift":
                        a = attr.LayerDeepLift(model, layer).attribute(xb, baselines=base, target=yb)
                        # Inputs and baselines go through the network together, as one batch of 2b.
                        n_forward, n_backward = n_forward + 2 * b, n_backward + 2 * b
                    else:
                        raise ValueError(f"unknown Captum method {method!r}")
                    attributions.append(a)
            for g, attribution in enumerate(attributions):
                sums[g] += _per_unit(attribution, reduce, problem.groups[g].dim).sum(0).double().cpu()
    values = torch.cat(sums).numpy() / len(problem.y)
    return values, n_forward, n_backward


@dataclass(frozen=True)
class _CaptumLayerScorer(ScorerBase):
    """What the Captum scorers share: the statistic over examples and the batching."""

    reduce: str = "abs"
    batch_size: int = 256

    family: ClassVar[str] = "attribution"
    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_choice("reduce", self.reduce, REDUCES)
        _check_count("batch_size", self.batch_size)
        baseline = getattr(self, "baseline", 0.0)
        if baseline != "mean" and (isinstance(baseline, bool) or not isinstance(baseline, int | float)):
            raise UsageError(f"baseline must be a number (a constant input) or 'mean', got {baseline!r}")
        if hasattr(self, "n_steps"):
            _check_count("n_steps", self.n_steps)

    def _options(self) -> dict[str, Any]:
        """The options of ``captum_layer_scores`` that this method's fields set (a baseline, integration steps)."""
        return {name: getattr(self, name) for name in ("baseline", "n_steps") if hasattr(self, name)}

    def __call__(self, problem, *, rng, include=None, exclude=None, target=None) -> Scores:
        include, exclude = _fixed(problem, include, exclude)
        values, n_forward, n_backward = captum_layer_scores(
            problem, exclude, method=self.method, reduce=self.reduce, batch_size=self.batch_size, **self._options())
        return Scores(_with_nan(values, include, exclude), n_forward=n_forward, n_backward=n_backward)


@SCORERS.register("captum-gxa")
@dataclass(frozen=True)
class CaptumGradientXActivation(_CaptumLayerScorer):
    """Captum's LayerGradientXActivation: a * d(logit of the true class)/da at each unit's output.

    The target of every validation example is its true label y, and the attributed output is that class's logit (not
    the loss: see ``taylor`` for a * dL/da). Conv channels average over their positions before ``reduce``.

    Args:
        reduce: "abs" (mean over examples of |attribution|) or "signed" (mean of the signed attribution).
        batch_size: validation examples per pass; all unit groups are attributed in the same pass.

    Returns (when called):
        Scores with n_forward = n_backward = validation examples.
    """

    method: ClassVar[str] = "gxa"


@dataclass(frozen=True)
class _CaptumPathScorer(_CaptumLayerScorer):
    """What the path-integral methods (integrated gradients, conductance) add: a baseline and integration steps."""

    baseline: float | str = 0.0
    n_steps: int = 50
    batch_size: int = 64


@SCORERS.register("captum-ig")
@dataclass(frozen=True)
class CaptumIntegratedGradients(_CaptumPathScorer):
    """Captum's LayerIntegratedGradients: integrated gradients of the true class's logit along the straight path, in
    the unit layer's space, from the layer's value at the baseline input to its value at the example.

    Args:
        reduce: "abs" (mean over examples of |attribution|) or "signed" (mean of the signed attribution).
        baseline: the baseline input, a constant (0.0: Captum's default, a black input) or "mean" (the mean
            validation input).
        n_steps: integration steps (Captum's default 50, Gauss-Legendre).
        batch_size: validation examples per call (Captum evaluates batch_size x n_steps at once).

    Returns (when called):
        Scores with, per unit group, (n_steps + 2) x examples forward and n_steps x examples backward passes.
    """

    method: ClassVar[str] = "ig"


@SCORERS.register("captum-conductance")
@dataclass(frozen=True)
class CaptumConductance(_CaptumPathScorer):
    """Captum's LayerConductance (Dhamdhere et al. 2018): the flow of the input path integral of the true class's
    logit through each unit.

    Args:
        reduce: "abs" (mean over examples of |attribution|) or "signed" (mean of the signed attribution).
        baseline: the baseline input, a constant (0.0: Captum's default) or "mean" (the mean validation input).
        n_steps: integration steps (Captum's default 50, Gauss-Legendre).
        batch_size: validation examples per call (Captum evaluates batch_size x (n_steps + 1) at once).

    Returns (when called):
        Scores with, per unit group, (n_steps + 1) x examples forward and backward passes.
    """

    method: ClassVar[str] = "conductance"


@SCORERS.register("captum-deeplift")
@dataclass(frozen=True)
class CaptumDeepLift(_CaptumLayerScorer):
    """Captum's LayerDeepLift (Shrikumar et al. 2017, rescale rule): each unit's contribution to the difference of
    the true class's logit between the example and the baseline input.

    Runs on a private eval-mode copy whose activations are out-of-place modules, each used once (DeepLift hooks every
    ReLU and max-pool and needs their own inputs and outputs).

    Args:
        reduce: "abs" (mean over examples of |attribution|) or "signed" (mean of the signed attribution).
        baseline: the baseline input, a constant (0.0: Captum's default) or "mean" (the mean validation input).
        batch_size: validation examples per call.

    Returns (when called):
        Scores with, per unit group, 2 x examples forward and backward passes (example and baseline).
    """

    baseline: float | str = 0.0

    method: ClassVar[str] = "deeplift"
