"""Planning: a loaded suite -> the runs to do, each identified by a hash of everything that determines its result.

Rerunning a suite skips the runs whose hash already has a finished run in the store (``bench.runner``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bench.suite import MethodEntry, Suite

SCHEMA_VERSION = 1  # bump when the meaning of a run's config changes, so old runs are not reused
KINDS = ("train", "mcue", "method")
# What a training run logs beyond its learning curves; bump when that grows, so stored training runs are redone.
# 2: per-class precision, recall and F1, the confusion matrix, test predictions and NEUROGAME's glass-box maps.
TRAIN_OUTPUTS = 2


@dataclass(frozen=True)
class RunSpec:
    """One unit of work on one pair and seed: training it (and its analyses), MCUE, or a method entry.

    Attributes:
        kind: "train", "mcue" or "method".
        pair, seed: the trained model.
        entry: the method entry (None for training and MCUE).
        config: everything that determines the result (logged as params).
        config_hash: identifies the run in the tracking store.
    """

    kind: str
    pair: str
    seed: int
    entry: MethodEntry | None
    config: dict[str, Any]
    config_hash: str

    @property
    def method(self) -> str:
        return self.entry.name if self.entry else self.kind

    @property
    def label(self) -> str:
        return f"{self.pair}/{self.method}/seed{self.seed}"


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _resolved_params(entry: MethodEntry) -> dict[str, Any]:
    """The scorer's parameters with its defaults filled in, so a changed default changes the hash."""
    from methods.scorers import SCORERS

    fields = dataclasses.fields(SCORERS.get(entry.method))
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    return {**defaults, **entry.params}


def tuned_entry(suite: Suite, pair: str, entry: MethodEntry) -> tuple[MethodEntry, int | float]:
    """An entry with its tuned parameters for this pair applied (``bench run --tuned``), and its step."""
    tuned = dict(suite.tuned.get(pair, {}).get(entry.name) or {})
    step = tuned.pop("step", suite.step)
    if not tuned:
        return entry, step
    return dataclasses.replace(entry, params={**entry.params, **tuned}), step


def plan(suite: Suite) -> list[RunSpec]:
    """The suite's runs: per pair and seed, the training run (learning curves and the suite's analyses), MCUE, then
    every method entry. The runner logs the training run last in its group, since analyses may read the methods'
    unit scores.

    The config of a run holds what determines its numbers: the pair's training key (model, data, recipe, family,
    seed), the method and its parameters, the strategy, the fraction grid, the step, MCUE's options (the d point of
    every curve, and d itself for beta_d), fine-tuning, and for the training run the analyses and their parameters.
    """
    from datasets.training import cache_key
    from methods.scorers import UNIT_AXIS

    specs = []
    for pair_name in suite.pairs:
        pair = suite.pair(pair_name)
        for seed in suite.seeds:
            common = {
                "schema": SCHEMA_VERSION,
                "suite": suite.name,
                "pair": pair_name,
                "seed": seed,
                "model_key": cache_key(pair, seed=seed, val_fraction=0.1, split_seed=0),
                "mcue": suite.mcue,
            }
            if suite.val_samples is not None:  # absent otherwise, so existing runs keep their hashes
                common["val_samples"] = suite.val_samples
            config = {**common, "kind": "train", "outputs": TRAIN_OUTPUTS, "model": pair.model,
                      "model_options": pair.model_options, "task": pair.task_label,
                      "analyses": [{"name": a.name, "params": a.params} for a in suite.analyses]}
            specs.append(RunSpec("train", pair_name, seed, None, config, config_hash(config)))
            if suite.mcue is not None:
                config = {**common, "kind": "mcue"}
                specs.append(RunSpec("mcue", pair_name, seed, None, config, config_hash(config)))
            for entry in suite.methods:
                if not entry.applies_to(pair_name):
                    continue
                entry, step = tuned_entry(suite, pair_name, entry)
                config = {**common, "kind": "method", "method": entry.name, "scorer": entry.method,
                          "params": _resolved_params(entry), "strategy": entry.strategy,
                          "allocation": entry.allocation, "fractions": list(suite.fractions),
                          "step": step, "fine_tune_epochs": suite.fine_tune_epochs}
                if entry.strategy == "top-n":
                    config["step"] = None  # Top-n has no step: changing it must not redo these runs
                if entry.axis != UNIT_AXIS:
                    config["mcue"] = None  # no d point on the parameter axis
                if suite.physical and entry.axis == UNIT_AXIS:
                    config["physical"] = True  # only when on, so suites without it keep their runs
                if suite.tuned.get(pair_name, {}).get(entry.name):
                    config["tuned"] = suite.tuned[pair_name][entry.name]
                specs.append(RunSpec("method", pair_name, seed, entry, config, config_hash(config)))
    return specs
