"""The checks of a suite file's values: each returns the value or raises a one-line ``SuiteError``."""

from __future__ import annotations

from typing import Any

from bench.errors import SuiteError


def nonempty_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{key!r} must be a non-empty list")
    return value


def str_list(value: Any, key: str) -> list[str]:
    items = nonempty_list(value, key)
    if len(set(items)) != len(items):
        raise SuiteError(f"{key!r} has duplicates")
    return [str(v) for v in items]


def int_list(value: Any, key: str) -> list[int]:
    items = nonempty_list(value, key)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise SuiteError(f"{key!r} must be non-negative integers, got {value}")
    if len(set(items)) != len(items):
        raise SuiteError(f"{key!r} has duplicates")
    return items


def fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise SuiteError(f"kept fractions must be numbers in (0, 1], got {value!r}")
    return float(value)


def step(value: Any) -> int | float:
    if isinstance(value, float) and 0 < value < 1:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise SuiteError(f"'step' must be a unit count >= 1 or a fraction in (0, 1), got {value!r}")


def mcue(options: dict[str, Any]) -> None:
    from methods.games.mcue import BANDS, OUTPUTS

    if options.get("output", "correct") not in OUTPUTS:
        raise SuiteError(f"mcue: unknown output {options['output']!r}; valid: {', '.join(OUTPUTS)}")
    for key in ("samples", "instances"):
        if key in options and (not isinstance(options[key], int) or options[key] < 1):
            raise SuiteError(f"mcue: {key} must be a positive integer")
    bands = options.get("bands", [])
    if not isinstance(bands, list) or len(set(map(str, bands))) != len(bands) \
            or not set(map(str, bands)) <= set(BANDS):
        raise SuiteError(f"mcue: bands must be a list of distinct names from {', '.join(BANDS)}, got {bands!r}")
    if "grid" in options:
        grid = options["grid"]
        if not isinstance(grid, list) or not grid or not all(isinstance(g, int | float) and 0 <= g < 1
                                                             for g in grid):
            raise SuiteError("mcue: grid must be a non-empty list of numbers in [0, 1)")


def val_samples(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 10:
        raise SuiteError(f"'val_samples' must be an integer >= 10 (or absent for the whole split), got {value!r}")
    return value
