"""What one invocation runs of a suite: ``--seeds``, the ``--pairs``/``--methods`` filters, and the size of the plan."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence

from bench.suite import Suite, SuiteError

MAX_SEEDS = 1_000_000  # --seeds expands its ranges: a typo like 0-1000000000 must not fill the memory
MAX_RUNS = 20_000  # a plan above this many runs needs --yes (a typo like --seeds 0-100000 is 100,001 seeds' worth)


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: "0,1,2", a range "0-4", or a mix ("0-2,7"); each seed once, where it first appears."""
    seeds: dict[int, None] = {}  # ordered, and a linear-time de-duplication
    negative = SuiteError(f"--seeds expects non-negative integers, got {text!r}")
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = (int(low), int(high)) if sep else (int(part), int(part))
        except ValueError:
            raise SuiteError(f"--seeds expects integers and ranges like 0,1,2 or 0-4, got {text!r}") from None
        if min(first, last) < 0:  # "3--1"
            raise negative
        if first > last:
            raise SuiteError(f"--seeds: range {part} runs backwards; write {last}-{first}")
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise SuiteError(f"--seeds {text!r} holds more than {MAX_SEEDS:,} seeds")
        seeds.update(dict.fromkeys(range(first, last + 1)))
    if not seeds:
        raise negative
    return tuple(seeds)


def run_count(suite: Suite) -> int:
    """How many runs ``bench.plan.plan(suite)`` holds, without planning them: per pair and seed, the training run,
    MCUE (when the suite has it) and one run per method entry that applies to the pair."""
    per_seed = sum(1 + (suite.mcue is not None) + sum(e.applies_to(p) for e in suite.methods) for p in suite.pairs)
    return len(suite.seeds) * per_seed


def check_plan_size(suite: Suite, *, yes: bool = False, limit: int | None = None) -> int:
    """The suite's run count; a SuiteError above ``limit`` (default MAX_RUNS) unless ``yes``, before anything is
    planned or run."""
    limit = MAX_RUNS if limit is None else limit
    count = run_count(suite)
    if count > limit and not yes:
        per_seed = count // max(len(suite.seeds), 1)
        raise SuiteError(f"suite {suite.name} ({suite.profile}) plans {count:,} runs ({len(suite.seeds):,} seed(s) x "
                         f"{per_seed} run(s) over its {len(suite.pairs)} pair(s)), above {limit:,}; check --seeds "
                         "and the suite's seeds, or pass --yes to run it anyway")
    return count


def select(suite: Suite, *, pairs: Sequence[str] = (), methods: Sequence[str] = (),
           seeds: Sequence[int] | None = None) -> Suite:
    """The suite restricted by ``--pairs`` / ``--methods`` (glob patterns on names) and with ``--seeds`` replaced.

    A pattern that matches nothing is an error, so a typo cannot silently run nothing. A method pattern matches an
    entry's name or, for the variants of an entry with a list of allocations, the name it was written under.
    """
    def matching(names: Sequence[str], patterns: Sequence[str], what: str) -> list[str]:
        if not patterns:
            return list(names)
        for pattern in patterns:
            if not fnmatch.filter(names, pattern):
                raise SuiteError(f"--{what} {pattern!r} matches none of the suite's {what}: {', '.join(names)}")
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]

    kept_pairs = tuple(matching(suite.pairs, pairs, "pairs"))
    # A baseline written with a list of allocations answers to its own name too: --methods wmp keeps its variants.
    names = list(dict.fromkeys([*(e.name for e in suite.methods),
                                *(e.variant_of for e in suite.methods if e.variant_of)]))
    kept_methods = set(matching(names, methods, "methods"))
    entries = tuple(e for e in suite.methods if e.name in kept_methods or e.variant_of in kept_methods)
    return dataclasses.replace(suite, pairs=kept_pairs, methods=entries,
                               seeds=tuple(seeds) if seeds else suite.seeds)
