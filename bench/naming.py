"""What a suite's runs are called in MLflow: run names short enough for the UI's Run Name column, metric names that
say what they measure, and the saved view of the runs table that ``bench run`` links to.

A run name is ``PAIR WHAT sSEED``: the pair's code, the method's code (``fit`` for the training run, ``mcue`` for
MCUE's) and the seed, e.g. ``L300 bd-ib s0`` for LeNet-300-100 on MNIST, GTAP beta_d with Iterated Building, seed 0.
A code abbreviates the registry name word by word (words are separated by "-"): every word or run of words in
``PAIR_WORDS`` / ``METHOD_WORDS`` is replaced by its abbreviation, words that abbreviate to "" are left out (what
every entry shares: "gtap", "captum", MNIST for LeNet, ...), and any other word is kept as it is. The run's tags
(``pair``, ``method``) keep the full names, and the names never enter a run's config hash (``bench.plan``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench.plan import RunSpec
from bench.suite import Suite
from methods.scorers import UNIT_AXIS

# What the Run Name column shows without cutting at its default width, also for a run nested under its parent.
RUN_NAME_WIDTH = 16
PAIR_WORDS = {
    "lenet300": "L300", "lenet5": "L5", "mnist": "", "mnist01": "01",
    "ffn": "", "emotion": "emo", "twitter-topic": "twt",
    "alexnet": "alex", "tiny-imagenet": "", "alexnet-utkface-age": "A-age", "resnet20-utkface-age": "R-age",
    "neurogame": "NG", "face-cnn-dropout": "CNNd", "face-cnn": "CNN", "face-mlp": "MLP",
    "utkface": "", "utkface128g": "128g", "celeba": "cel", "rho-constant": "rhoc", "random-filter": "rndf",
    "vit": "ViT", "transformer-emotion": "TE", "mlp": "m",
}
METHOD_WORDS = {
    "gtap": "", "shapley": "sh", "banzhaf": "bz", "beta": "bd", "follow-target": "ft",
    "top-n": "tn", "iter-prune": "ip", "iter-build": "ib",
    "activation": "act", "taylor": "tay", "random": "rnd", "unstructured": "un",
    "captum": "", "deeplift": "dl", "conductance": "cond",
    "tp-magnitude": "tpm", "tp-hessian": "tph", "tp-taylor": "tpt",
    "global": "g", "uniform": "u", "normalized": "n", "shared": "shr", "wmp@0.3": "@.3",
    "michel": "mi", "exact": "x", "layer-exact": "lx",
}
KIND_WORDS = {"train": "fit", "mcue": "mcue"}

# The AUC of a method run, named by its axis: unit-axis and weight-axis AUCs are different quantities, so one
# sortable column must not rank them together. Runs logged before the split have the one metric "auc".
AUC_UNITS = "auc_units"
AUC_WEIGHTS = "auc_weights"
LEGACY_AUC = "auc"
# Latency step metrics, in milliseconds (curve.csv keeps seconds, as latency_b1 and latency_b256).
LATENCY_BATCHES = (1, 256)


def abbreviate(name: str, words: Mapping[str, str]) -> str:
    """A registry name with its words abbreviated (the longest run of words in ``words`` first).

    Args:
        name: e.g. "gtap-beta-iter-build".
        words: word or "-"-joined words -> abbreviation ("" leaves it out).

    Returns:
        e.g. "bd-ib"; the name itself when every word is left out.
    """
    parts, out, i = name.split("-"), [], 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            phrase = "-".join(parts[i:j])
            if phrase in words:
                out += [words[phrase]] if words[phrase] else []
                i = j
                break
        else:
            out.append(parts[i])
            i += 1
    return "-".join(out) or name


def run_name(spec: RunSpec) -> str:
    """A run's name in the MLflow UI (see the module docstring): "L300 bd-ib s0", "L5 fit s1", "emo mcue s2".

    Args:
        spec: the planned run (a ``bench.plan.RunSpec``).

    Returns:
        The name.
    """
    what = abbreviate(spec.method, METHOD_WORDS) if spec.kind == "method" else KIND_WORDS[spec.kind]
    return f"{abbreviate(spec.pair, PAIR_WORDS)} {what} s{spec.seed}"


def auc_metric(axis: str) -> str:
    """The metric name of a method run's AUC on ``axis`` (``auc_units`` or ``auc_weights``)."""
    return AUC_UNITS if axis == UNIT_AXIS else AUC_WEIGHTS


def stored_auc(metrics: Mapping[str, float]) -> float:
    """A stored method run's AUC, whichever name it was logged under (NaN when it has none)."""
    for name in (AUC_UNITS, AUC_WEIGHTS, LEGACY_AUC):
        if name in metrics:
            return metrics[name]
    return math.nan


def latency_metric(batch: int) -> str:
    """The step metric of a curve's CPU latency at a batch size, in milliseconds."""
    return f"curve/latency_ms_b{batch}"


def suite_view(suite: Suite) -> dict:
    """The runs table ``bench run`` links to: the suite's method runs, best AUC first, with the columns a comparison
    reads (unit-axis runs ranked by ``auc_units``; weight-axis runs, which have none, after them, with their
    ``auc_weights``); for a suite without methods, its training runs by test accuracy.

    Args:
        suite: the suite as written (its runs carry its name as the tag ``suite``; filters do not change the view).

    Returns:
        The keyword arguments of ``bench.tracking.RunsView``.
    """
    key = "bench-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in suite.name)
    if not suite.methods:
        return {"key": f"{key}-models", "name": f"{suite.name}: models by test accuracy",
                "search_filter": f"tags.kind = 'train' AND tags.suite = '{suite.name}'", "order_by": "test_accuracy",
                "metrics": ("test_accuracy", "test_macro_f1", "trained_val_accuracy", "n_parameters",
                            "seconds_per_epoch"), "tags": ("pair", "model")}
    on_units = any(entry.axis == UNIT_AXIS for entry in suite.methods)
    macs = ("acc_at_2x_macs", "acc_at_4x_macs") if suite.physical else ()
    metrics = (AUC_UNITS, AUC_WEIGHTS, "accuracy_at_d", *macs, "trained_test_accuracy", "n_evaluations", "seconds")
    return {"key": key, "name": f"{suite.name}: methods by AUC",
            "search_filter": f"tags.kind = 'method' AND tags.suite = '{suite.name}'",
            "order_by": AUC_UNITS if on_units else AUC_WEIGHTS, "metrics": metrics, "tags": ("pair", "method")}
