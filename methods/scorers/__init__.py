"""Unit scorers: every method of the benchmark, one score per prunable unit (Torch-Pruning's ``Importance``).

``base`` holds the protocol, the :class:`PruningProblem` a scorer sees and the ``SCORERS`` registry; each family has a
module of its own, imported here so that importing ``methods.scorers`` registers every scorer (a module that fails to
import fails here, naming itself, rather than leaving a half-filled registry). A new scorer is a new module plus one
line below.
"""

from methods.scorers import activation, captum, gradient, heads, magnitude, power, random, torch_pruning  # noqa: F401
from methods.scorers.activation import MeanActivation
from methods.scorers.base import (
    FAMILIES,
    PARAM_AXIS,
    SCORERS,
    UNIT_AXIS,
    PruningProblem,
    Scorer,
    ScorerBase,
    Scores,
    build_scorer,
    check_method_params,
)
from methods.scorers.captum import (
    CaptumConductance,
    CaptumDeepLift,
    CaptumGradientXActivation,
    CaptumIntegratedGradients,
    captum_layer_scores,
)
from methods.scorers.gradient import FirstOrderTaylor, WeightGradientMagnitude
from methods.scorers.heads import GateGradientImportance, gate_gradients
from methods.scorers.magnitude import WeightMagnitude
from methods.scorers.power import FOLLOW, GTAPScorer, followed_keep_prob
from methods.scorers.random import RandomScorer
from methods.scorers.torch_pruning import TPHessian, TPMagnitude, TPTaylor, tp_scores

__all__ = [
    "FAMILIES", "FOLLOW", "PARAM_AXIS", "SCORERS", "UNIT_AXIS", "CaptumConductance", "CaptumDeepLift",
    "CaptumGradientXActivation", "CaptumIntegratedGradients", "FirstOrderTaylor", "GTAPScorer",
    "GateGradientImportance", "MeanActivation", "PruningProblem", "RandomScorer", "Scorer", "ScorerBase", "Scores",
    "TPHessian", "TPMagnitude", "TPTaylor", "WeightGradientMagnitude", "WeightMagnitude", "build_scorer",
    "captum_layer_scores", "check_method_params", "followed_keep_prob", "gate_gradients", "tp_scores",
]
