"""Suites: YAML files in ``bench/suites/`` that name pairs, methods, analyses, seeds and a kept-fraction grid.

A suite is validated completely when it loads (pairs, methods, their parameters, strategies, analyses, MCUE options,
profiles), before any work starts, and an error names the file, the place in it and the valid choices.
``bench.plan`` expands a loaded suite into runs.

Schema (``lenet.yaml`` is the full example)::

    name: lenet                       # must match the file name
    description: one line
    pairs: [lenet300-mnist, ...]      # registered pairs, or variants of one:
      # - {name: neurogame-p08-utkface, pair: neurogame-utkface, model_options: {top_p: 0.8}}
      #   (also dataset_options, merged into the pair's, and task); a variant is a pair of its own (own cache key)
    seeds: [0, 1, 2]                  # each seed trains its own model and seeds the methods
    fractions: [0.05, ..., 1.0]       # kept fractions of units: the compression curve's grid (with methods)
    step: 0.1                         # iterated strategies: units per round (count, or fraction of all units)
    recipe: {epochs: 1}               # optional overrides of every pair's training recipe
    mcue: {samples: 32, instances: 16, output: correct, grid: [...]}   # optional; d for beta_d and the d point
    fine_tune_epochs: 0               # optional fine-tuning of each pruned network
    physical: true                    # optional: build each curve point's physically pruned network and record its
                                      # parameters, MACs and CPU latency (batch 1 and 256)
    val_samples: 2000                 # optional: v(C) on a fixed subset of the validation split (cost knob)
    defaults: {gtap: {budget: 650}}   # parameters for every entry of a method
    tuning:                           # optional: override a method's declared search space for `bench tune`
      gtap: {keep_prob: {type: float, low: 0.1, high: 0.9}, step: {type: float, low: 0.05, high: 0.2}}
    methods:                          # optional: without methods a suite compares its pairs' trained models
      - {name: gtap-beta-top-n, method: gtap, params: {index: beta}, strategy: top-n, allocation: global}
      - {name: wmp, method: wmp, allocation: [uniform, normalized]}   # a list: one entry per variant, wmp-uniform
                                                                       # and wmp-normalized; reports show the best
      - {name: exact, method: gtap, params: {estimator: exact}, pairs: [vit-mnist]}   # only on these pairs
    analyses: [microstructure]        # optional: registered analyses of each trained pair (or {name:, params:})
    profiles:                         # named overrides of the keys above; "default" is the file as written
      full: {seeds: [0, 1, 2, 3, 4], defaults: {gtap: {budget: 20000}}}
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import yaml

import bench.suite_values as checks
from bench.errors import SuiteError
from datasets.errors import one_line
from datasets.registry import Registry, UnknownNameError

SUITES_DIR = Path(__file__).parent / "suites"
# An exponent-form number without a dot ("1e4", "2.5e-3" is fine already): YAML 1.1, and so PyYAML, reads it as a
# string, which a suite would then refuse far from where it was written.
EXPONENT_NUMBER = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
BYTES_PER_EVALUATION = 8  # every sampling estimator keeps one float64 value per coalition evaluation
DEFAULT_PROFILE = "default"

if TYPE_CHECKING:
    from methods.games.mcue import Output


class SuiteLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader (libyaml's parser when there is one: a suite listing 100,000 seeds loads in a fraction of a
    second), with exponent-form numbers read as numbers: ``1e4`` is the int 10000 (an integral value with a
    non-negative exponent and no fraction written), ``1e-3`` and ``2.5e4`` floats."""


def _exponent_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    text = loader.construct_scalar(node).replace("_", "")
    mantissa, _, exponent = text.lower().partition("e")
    value = float(text)
    if "." not in mantissa and int(exponent) >= 0 and math.isfinite(value):
        return int(mantissa) * 10 ** int(exponent)
    return value


SuiteLoader.add_implicit_resolver("tag:coalition-bench:exponent-number", EXPONENT_NUMBER, list("-+0123456789"))
SuiteLoader.add_constructor("tag:coalition-bench:exponent-number", _exponent_number)


class MCUEOptions(TypedDict, total=False):
    """A suite's ``mcue`` section: MCUE's options (``methods.games.mcue.mcue``), each optional."""

    samples: int
    instances: int
    output: Output
    grid: list[float]
    bands: list[str]


class RecipeOverrides(TypedDict, total=False):
    """A suite's ``recipe`` section: fields of ``datasets.pairs.Recipe`` that replace every pair's."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["adam", "sgd"]
    momentum: float
    weight_decay: float
    schedule: Literal["cosine", "constant"]
    patience: int


MCUE_KEYS = tuple(MCUEOptions.__annotations__)
TOP_KEYS = ("name", "description", "pairs", "seeds", "fractions", "step", "recipe", "mcue", "fine_tune_epochs",
            "physical", "val_samples", "defaults", "methods", "analyses", "tuning", "profiles")
SPACE_KEYS = ("type", "low", "high", "log", "choices")
PROFILE_KEYS = tuple(k for k in TOP_KEYS if k not in ("name", "profiles"))
ENTRY_KEYS = ("name", "method", "params", "strategy", "allocation", "pairs")
ANALYSIS_KEYS = ("name", "params")
VARIANT_KEYS = ("name", "pair", "model_options", "dataset_options", "task", "description")


@dataclass(frozen=True)
class MethodEntry:
    """One method of a suite: a scorer with its parameters under a pruning strategy.

    Attributes:
        name: the entry's name in the suite (the ``method`` tag of its runs).
        method: the registered scorer.
        params: the scorer's parameters, suite defaults applied.
        strategy: the registered pruning strategy.
        allocation: "global" (raw scores ranked network-wide), "uniform" (the same kept fraction in every layer),
            "normalized" (scores divided by their layer's mean, then ranked network-wide) or "wmp@F" (each layer's
            share from unstructured WMP at F, the GTAP paper's AlexNet protocol; Top-n only).
        variant_of: the name an entry with a list of allocations was written under (its variants are named
            ``NAME-ALLOCATION``); reports rank such a baseline at its best variant. Empty for a plain entry.
        pairs: the suite's pairs it runs on (an exact game only where the players are few); empty: every pair.
    """

    name: str
    method: str
    params: dict[str, Any]
    strategy: str = "top-n"
    allocation: str = "global"
    variant_of: str = ""
    pairs: tuple[str, ...] = ()

    def applies_to(self, pair: str) -> bool:
        """Whether the entry runs on ``pair``."""
        return not self.pairs or pair in self.pairs

    @property
    def scorer(self) -> Any:
        """The scorer this entry runs (its declarations say what it needs and on which axis it prunes)."""
        from methods.scorers import build_scorer

        return build_scorer(self.method, **self.params)

    @property
    def axis(self) -> str:
        """The curve's x axis, as the scorer declares it: kept units, or kept weights for unstructured pruning."""
        return self.scorer.axis

    @property
    def family(self) -> str:
        return self.scorer.family

    @property
    def needs_mcue(self) -> bool:
        """Whether the scorer needs MCUE's d (beta_d without a fixed d)."""
        return "keep_prob" in self.scorer.needs


@dataclass(frozen=True)
class AnalysisEntry:
    """One analysis of a suite: a registered analysis with its parameters, run on every trained pair and seed."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def analysis(self) -> Any:
        from methods.analyses.base import build_analysis

        return build_analysis(self.name, **self.params)


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite under one profile."""

    name: str
    description: str
    profile: str
    pairs: tuple[str, ...]
    seeds: tuple[int, ...]
    fractions: tuple[float, ...]
    step: int | float
    methods: tuple[MethodEntry, ...]
    analyses: tuple[AnalysisEntry, ...] = ()
    mcue: MCUEOptions | None = None
    recipe: RecipeOverrides = field(default_factory=dict)  # type: ignore[assignment]
    fine_tune_epochs: int = 0
    physical: bool = False
    val_samples: int | None = None
    tuning: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tuned: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # pair -> entry -> tuned params
    path: Path | None = None
    variants: dict[str, Any] = field(default_factory=dict)  # pair name -> Pair, for the suite's own pair variants

    def pair(self, name: str) -> Any:
        """The pair ``name`` as this suite trains it: a registered pair or one of the suite's variants, with the
        suite's recipe overrides applied."""
        from datasets.pairs import PAIRS

        pair = self.variants[name] if name in self.variants else PAIRS.get(name)
        return pair.with_recipe(**self.recipe) if self.recipe else pair

    def entry(self, name: str) -> MethodEntry:
        for entry in self.methods:
            if entry.name == name:
                return entry
        registry: Registry[MethodEntry] = Registry(f"method of suite {self.name!r}")
        for entry in self.methods:
            registry.add(entry.name, entry)
        return registry.get(name)

    def to_dict(self) -> dict[str, Any]:
        """The resolved suite (profile applied), as logged with every run."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path) if self.path else None
        return out


def suite_registry() -> Registry[Path]:
    """The suites shipped in ``bench/suites/``, by name."""
    registry: Registry[Path] = Registry("suite")
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        registry.add(path.stem, path)
    return registry


def suite_path(name_or_path: str | Path) -> Path:
    """A shipped suite's file, or a path to a YAML file of one's own."""
    candidate = Path(name_or_path)
    registry = suite_registry()
    if candidate.suffix not in (".yaml", ".yml") and str(name_or_path) in registry:
        return registry.get(str(name_or_path))  # a shipped suite's name wins over a folder of that name
    if candidate.is_dir():
        raise SuiteError(f"{candidate} is a directory; a suite is a YAML file (or a shipped suite's name: "
                         f"{', '.join(registry.names())})")
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise SuiteError(f"suite file {candidate} does not exist")
        return candidate
    if candidate.is_file():
        raise SuiteError(f"{candidate}: a suite file's name ends in .yaml or .yml")
    return registry.get(str(name_or_path))


def load_suite(name_or_path: str | Path, profile: str = DEFAULT_PROFILE) -> Suite:
    """Loads and validates a suite under a profile.

    Args:
        name_or_path: a shipped suite's name (``lenet``) or a path to a YAML file.
        profile: "default" (the file as written) or one of its ``profiles``.

    Returns:
        The resolved suite.

    Raises:
        SuiteError, UnknownNameError: anything invalid, with the file and the valid choices in the message.
    """
    path = suite_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SuiteError(f"{path}: not UTF-8 text: byte {err.start} is 0x{err.object[err.start]:02x} ({err.reason}); "
                         "save the suite as UTF-8") from None
    except OSError as err:
        raise SuiteError(f"{path}: cannot read the suite: {err.strerror or one_line(err)}") from None
    try:
        raw = yaml.load(text, Loader=SuiteLoader)
    except yaml.YAMLError as err:
        raise SuiteError(f"{path}: not valid YAML: {one_line(err)}") from None
    try:
        return _parse(raw, path, profile)
    except (SuiteError, UnknownNameError, ValueError, TypeError) as err:
        message = str(err)
        raise SuiteError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_budget_fits(scorer: Any, memory: int | None = None) -> None:
    """Refuses a scorer whose ``budget`` (coalition evaluations per estimate) cannot fit in memory, before any work:
    its estimator keeps one float64 per evaluation, so ``budget: 1000000000000`` would need 7.3 TiB.

    Raises:
        SuiteError: one line with the budget, what it needs and what the machine has.
    """
    budget = getattr(scorer, "budget", None)
    memory = physical_memory() if memory is None else memory
    if isinstance(budget, int) and memory and budget * BYTES_PER_EVALUATION > memory:
        raise SuiteError(f"budget {budget:,} coalition evaluations needs at least "
                         f"{budget * BYTES_PER_EVALUATION / 2**30:,.1f} GiB for the values alone, more than this "
                         f"machine's {memory / 2**30:,.1f} GiB of memory")


def _unknown_keys(given: Iterable[str], valid: Sequence[str], where: str) -> None:
    for key in given:
        if key not in valid:
            hint = difflib.get_close_matches(str(key), valid, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise SuiteError(f"{where}: unknown key {key!r}.{did_you_mean} Valid keys: {', '.join(valid)}")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Profile overrides: mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse(raw: Any, path: Path, profile: str) -> Suite:
    from datasets.pairs import PAIRS, Recipe
    from methods.pruning.strategies import STRATEGIES, check_allocation, is_per_layer
    from methods.scorers import build_scorer, check_method_params

    if not isinstance(raw, dict):
        raise SuiteError("a suite is a YAML mapping with keys: " + ", ".join(TOP_KEYS))
    _unknown_keys(raw, TOP_KEYS, "top level")
    for key in ("name", "pairs", "seeds"):
        if key not in raw:
            raise SuiteError(f"missing required key {key!r}")
    if raw["name"] != path.stem and path.parent == SUITES_DIR:
        raise SuiteError(f"name {raw['name']!r} does not match the file name {path.stem!r}")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise SuiteError("'profiles' must map profile names to overrides")
    if profile != DEFAULT_PROFILE:
        if profile not in profiles:
            valid = ", ".join([DEFAULT_PROFILE, *profiles])
            raise SuiteError(f"unknown profile {profile!r} for suite {raw['name']!r}; valid: {valid}")
    for name, overrides in profiles.items():
        if not isinstance(overrides, dict):
            raise SuiteError(f"profile {name!r} must be a mapping")
        _unknown_keys(overrides, PROFILE_KEYS, f"profile {name!r}")
    config = _merge({k: v for k, v in raw.items() if k != "profiles"}, profiles.get(profile) or {})

    recipe = dict(config.get("recipe") or {})
    valid_recipe = [f.name for f in dataclasses.fields(Recipe)]
    _unknown_keys(recipe, valid_recipe, "recipe")
    pairs, variants = _pairs(config["pairs"])
    for name in pairs:
        pair = variants.get(name) or PAIRS.get(name)
        try:
            pair.with_recipe(**recipe)  # a bad recipe value (epochs: 0, patience: -1) fails now
        except ValueError as err:
            raise SuiteError(f"recipe: {err}") from None
    seeds = tuple(checks.int_list(config["seeds"], "seeds"))
    has_methods = bool(config.get("methods"))
    if has_methods and "fractions" not in config:
        raise SuiteError("missing required key 'fractions' (the kept fractions of the methods' compression curves)")
    fractions = tuple(sorted({checks.fraction(f) for f in checks.nonempty_list(config["fractions"], "fractions")})) \
        if "fractions" in config else ()
    step = checks.step(config.get("step", 0.05))

    mcue = config.get("mcue")
    if mcue is not None:
        if not isinstance(mcue, dict):
            raise SuiteError("'mcue' must be a mapping (or absent)")
        _unknown_keys(mcue, MCUE_KEYS, "mcue")
        mcue = dict(mcue)

    defaults = config.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise SuiteError("'defaults' must map method names to parameters")
    for method, params in defaults.items():
        check_method_params(method, params or {})

    entries: list[MethodEntry] = []
    methods = config.get("methods") or []
    if not isinstance(methods, list):
        raise SuiteError("'methods' must be a list of method entries (or absent, to compare the trained models)")
    for i, item in enumerate(methods):
        where = f"methods[{i}]"
        if not isinstance(item, dict):
            raise SuiteError(f"{where}: an entry is a mapping with keys {', '.join(ENTRY_KEYS)}")
        _unknown_keys(item, ENTRY_KEYS, where)
        if "method" not in item:
            raise SuiteError(f"{where}: missing 'method'")
        name = str(item.get("name", item["method"]))
        where = f"methods[{i}] ({name})"
        try:
            params = {**(defaults.get(item["method"]) or {}), **(item.get("params") or {})}
            check_method_params(item["method"], params)
            check_budget_fits(build_scorer(item["method"], **params))  # a bad value (index: shaply) fails now
            strategy = str(item.get("strategy", "top-n"))
            STRATEGIES.get(strategy)
            allocations = item.get("allocation", "global")
            chosen = [str(a) for a in allocations] if isinstance(allocations, list) else [str(allocations)]
            if not chosen or len(set(chosen)) != len(chosen):
                raise SuiteError(f"allocation: a list needs distinct values, got {allocations}")
            for allocation in chosen:
                if is_per_layer(allocation) and strategy != "top-n":
                    raise SuiteError(f"allocation {allocation!r} works with strategy 'top-n' only")
                check_allocation(allocation)
        except (UnknownNameError, ValueError) as err:
            raise SuiteError(f"{where}: {err}") from None
        only = _entry_pairs(item.get("pairs"), pairs, where)
        listed = isinstance(allocations, list)
        for allocation in chosen:
            entry = MethodEntry(f"{name}-{allocation}" if listed else name, item["method"], params, strategy,
                                allocation, variant_of=name if listed else "", pairs=only)
            if any(e.name == entry.name for e in entries):
                raise SuiteError(f"{where}: duplicate method name {entry.name!r}")
            entries.append(entry)
    if any(e.needs_mcue for e in entries) and mcue is None:
        mcue = {}  # beta_d without a fixed d needs MCUE's d
    if mcue is not None:
        checks.mcue(mcue)
    tuning = config.get("tuning") or {}
    _check_tuning(tuning)
    analyses = _analyses(config.get("analyses") or [])

    return Suite(name=str(config["name"]), description=str(config.get("description", "")), profile=profile,
                 pairs=pairs, seeds=seeds, fractions=fractions, step=step, methods=tuple(entries),
                 analyses=analyses, mcue=mcue,
                 recipe=recipe, fine_tune_epochs=int(config.get("fine_tune_epochs", 0)),
                 physical=_flag(config.get("physical", False), "physical"),
                 val_samples=checks.val_samples(config.get("val_samples")), tuning=tuning, path=path,
                 variants=variants)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SuiteError(f"'{key}' is true or false, got {value!r}")
    return value


def _entry_pairs(items: Any, pairs: Sequence[str], where: str) -> tuple[str, ...]:
    """A method entry's ``pairs``: absent (every pair), or a list of the suite's pairs."""
    if items is None:
        return ()
    if not isinstance(items, list) or not items or not all(isinstance(p, str) for p in items):
        raise SuiteError(f"{where}: 'pairs' must be a non-empty list of the suite's pairs, got {items!r}")
    for name in items:
        if name not in pairs:
            close = difflib.get_close_matches(name, pairs, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SuiteError(f"{where}: pairs: {name!r} is not a pair of this suite.{hint} Its pairs: "
                             f"{', '.join(pairs)}")
    return tuple(dict.fromkeys(items))


def _pairs(items: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The suite's pair names, and its variants of registered pairs (validated: options, names, duplicates)."""
    from datasets.models import check_model_options
    from datasets.pairs import PAIRS

    items = checks.nonempty_list(items, "pairs")
    names: list[str] = []
    variants: dict[str, Any] = {}
    for i, item in enumerate(items):
        where = f"pairs[{i}]"
        if isinstance(item, str):
            PAIRS.get(item)
            name = item
        elif isinstance(item, dict):
            _unknown_keys(item, VARIANT_KEYS, where)
            if "name" not in item or "pair" not in item:
                raise SuiteError(f"{where}: a pair variant needs 'name' and 'pair' (the registered pair it varies)")
            name = str(item["name"])
            if name in PAIRS:
                raise SuiteError(f"{where}: variant name {name!r} is already a registered pair; choose another")
            base = PAIRS.get(str(item["pair"]))
            options = {**base.model_options, **(item.get("model_options") or {})}
            try:
                check_model_options(base.model, options)
            except (ValueError, TypeError) as err:
                raise SuiteError(f"{where} ({name}): {err}") from None
            variants[name] = dataclasses.replace(
                base, name=name, model_options=options,
                dataset_options={**base.dataset_options, **(item.get("dataset_options") or {})},
                task=str(item.get("task", base.task)), description=str(item.get("description", base.description)))
        else:
            raise SuiteError(f"{where}: a pair is a registered name or a mapping with keys {', '.join(VARIANT_KEYS)}")
        if name in names:
            raise SuiteError(f"'pairs' lists {name!r} twice")
        names.append(name)
    for name in names:  # registered pairs with model options of their own are checked too
        if name not in variants:
            pair = PAIRS.get(name)
            if pair.model_options:
                check_model_options(pair.model, pair.model_options)
    return tuple(names), variants


def _analyses(items: Any) -> tuple[AnalysisEntry, ...]:
    from methods.analyses.base import build_analysis

    if not isinstance(items, list):
        raise SuiteError("'analyses' must be a list of analysis names or {name:, params:} mappings")
    entries: list[AnalysisEntry] = []
    for i, item in enumerate(items):
        where = f"analyses[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise SuiteError(f"{where}: an analysis is a name or a mapping with keys {', '.join(ANALYSIS_KEYS)}")
        _unknown_keys(item, ANALYSIS_KEYS, where)
        entry = AnalysisEntry(str(item["name"]), dict(item.get("params") or {}))
        try:
            build_analysis(entry.name, **entry.params)
        except (UnknownNameError, ValueError, TypeError) as err:
            raise SuiteError(f"{where} ({entry.name}): {err}") from None
        if any(e.name == entry.name for e in entries):
            raise SuiteError(f"{where}: analysis {entry.name!r} is listed twice")
        entries.append(entry)
    return tuple(entries)


def _check_tuning(tuning: Any) -> None:
    from methods.scorers import SCORERS

    if not isinstance(tuning, dict):
        raise SuiteError("'tuning' must map method names to search spaces")
    from datasets.models import MODELS, model_options

    for method, space in tuning.items():
        if method in MODELS and method not in SCORERS:  # a model's options (a suite of trained models)
            fields = model_options(method)
        else:
            fields = [*(f.name for f in dataclasses.fields(SCORERS.get(method))), "step"]
        if not isinstance(space, dict):
            raise SuiteError(f"tuning.{method} must map parameter names to ranges")
        for name, spec in space.items():
            where = f"tuning.{method}.{name}"
            if name not in fields:
                raise SuiteError(f"{where}: {method!r} has no parameter {name!r}; valid: {', '.join(fields)}")
            if not isinstance(spec, dict):
                raise SuiteError(f"{where}: a range is a mapping like {{type: float, low: 0.1, high: 0.9}}")
            _unknown_keys(spec, SPACE_KEYS, where)
            kind = spec.get("type", "float")
            if kind == "categorical":
                if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                    raise SuiteError(f"{where}: a categorical range needs a non-empty 'choices' list")
            elif kind in ("float", "int"):
                low, high = spec.get("low"), spec.get("high")
                if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or low > high:
                    raise SuiteError(f"{where}: needs numbers low <= high, got low={low!r}, high={high!r}")
            else:
                raise SuiteError(f"{where}: unknown type {kind!r}; valid: float, int, categorical")
