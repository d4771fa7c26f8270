"""What the library-backed scorers (Captum's, Torch-Pruning's) share.


Captum and Torch-Pruning are imported inside the functions that use them, so ``methods`` imports (and the registry
discovers these entries) on a machine that lacks them; a scorer of this module then fails when it is called, naming the
missing package.

Both libraries work on a private copy of the model (eval mode, in-place activations made out-of-place, every module
checked to be used once), so the caller's model is never modified and no library hook outlives a call. Excluded units
are zeroed on that copy by the hooks every scorer uses (``methods.scorers._unit_masks``). They are registered before
the library's own hooks, and PyTorch runs forward hooks in registration order and hands each hook the output the
previous one returned, so Captum sees (and DeepLift's rescale rule differentiates) the masked activations.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from torch import nn

from datasets.errors import UsageError


def _library(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"this scorer needs {package} (pip install {package}): {error}") from error


def check_modules_used_once(model: nn.Module) -> None:
    """Raises ValueError if one module instance sits at two places of the model.

    A reused module breaks DeepLift (its hooks keep one input and output per module) and would make a per-stage
    mask or a layer attribution ambiguous.
    """
    seen: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen:
            raise ValueError(f"module {seen[id(module)]!r} is used again as {name!r}; every stage must be its own "
                             "module instance for layer attributions")
        seen[id(module)] = name


def private_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode with every in-place activation made out-of-place (DeepLift needs that)."""
    check_modules_used_once(model)
    twin = copy.deepcopy(model).eval()
    for module in twin.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return twin


def _check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    if value not in valid:
        raise UsageError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
