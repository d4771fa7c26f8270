"""How a suite's methods look in every figure: one hue per family (and per index of a power index), one line style
per strategy, one marker per axis, and the order of the strategy panels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import seaborn as sns

from reports.data import PARAM_AXIS
from reports.tables import POWER_INDEX_FAMILY

STRATEGY_ORDER = ("top-n", "iterated-pruning", "iterated-building")
# One hue per family, and per index within the power-index family, so that a line's colour says what kind of
# method it is; methods that share a hue and a strategy get lighter and darker shades of it.
INDEX_COLOURS = {"shapley": "#1f77b4", "banzhaf": "#9467bd", "beta": "#d62728"}  # blue, purple, red
FAMILY_COLOURS = {
    POWER_INDEX_FAMILY: "#17becf",  # cyan: a power index named by none of INDEX_COLOURS
    "magnitude": "#8c564b",  # brown
    "gradient": "#2ca02c",  # green
    "activation": "#ff7f0e",  # orange
    "random": "#7f7f7f",  # grey
    "attribution": "#bcbd22",  # olive
}
OTHER_COLOUR = "#e377c2"  # pink: a family this table does not know
STRATEGY_LINES = {"top-n": "-", "iterated-pruning": "--", "iterated-building": "-."}
AXIS_MARKERS = {PARAM_AXIS: "s"}  # squares for kept parameters, circles for kept units
UNPRUNED_LINE = (0, (6, 2, 1, 2, 1, 2))  # dash-dot-dot: unlike any strategy's line and MCUE's dotted d


def method_palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One distinct colour per method, stable for a given method list.

    Args:
        methods: method names.

    Returns:
        method -> RGB colour.
    """
    names = list(dict.fromkeys(methods))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "husl", len(names))
    return dict(zip(names, colours, strict=True))


def colour_key(method: str, family: str) -> str:
    """What decides a method's hue: its power index for the power-index family (read from the method's name, e.g.
    "gtap-beta-top-n" -> "beta"), else its family.

    Args:
        method: the suite entry's name.
        family: its family (see :func:`reports.tables.method_families`).

    Returns:
        A key of ``INDEX_COLOURS`` or ``FAMILY_COLOURS``, or the family itself when neither knows it.
    """
    if family == POWER_INDEX_FAMILY:
        tokens = set(re.split(r"[^a-z0-9]+", method.lower()))
        return next((index for index in INDEX_COLOURS if index in tokens), family)
    return family


def _shade(colour: str, position: int, count: int) -> tuple[float, float, float]:
    """The position-th of count shades of a colour, from darker to lighter (the colour itself when count is 1)."""
    rgb = np.array(mcolors.to_rgb(colour))
    if count == 1:
        return tuple(rgb)
    amount = -0.35 + 0.7 * position / (count - 1)  # < 0 mixes in black, > 0 white
    mixed = rgb * (1 + amount) if amount < 0 else rgb + (1 - rgb) * amount
    return tuple(np.clip(mixed, 0, 1))


def method_styles(methods: pd.DataFrame) -> dict[str, dict[str, object]]:
    """How each method is drawn: the colour says the family (and the index of a power index), the line style the
    strategy (solid Top-n, dashed Iterated Pruning, dash-dot Iterated Building), the marker the axis (circles kept
    units, squares kept parameters).

    Args:
        methods: rows with method, family, strategy and axis (as :func:`reports.tables.method_table`).

    Returns:
        method -> matplotlib keyword arguments color, linestyle and marker.
    """
    rows = methods.drop_duplicates("method")
    keys = [colour_key(str(method), str(family)) for method, family in zip(rows["method"], rows["family"],
                                                                              strict=True)]
    groups: dict[tuple[str, str], list[str]] = {}
    for method, key, strategy in zip(rows["method"], keys, rows["strategy"], strict=True):
        groups.setdefault((key, str(strategy)), []).append(method)
    styles = {}
    for method, key, strategy, axis in zip(rows["method"], keys, rows["strategy"], rows["axis"], strict=True):
        shared = groups[(key, str(strategy))]
        base = INDEX_COLOURS.get(key) or FAMILY_COLOURS.get(key, OTHER_COLOUR)
        styles[method] = {
            "color": _shade(base, shared.index(method), len(shared)),
            "linestyle": STRATEGY_LINES.get(str(strategy), ":"),
            "marker": AXIS_MARKERS.get(axis, "o"),
        }
    return styles


def strategy_panels(methods: pd.DataFrame) -> list[str]:
    """The strategies of a pair's methods, in the order top-n, iterated pruning, iterated building, then others."""
    present = list(dict.fromkeys(methods["strategy"].astype(str)))
    return [strategy for strategy in STRATEGY_ORDER if strategy in present] + [
        strategy for strategy in present if strategy not in STRATEGY_ORDER
    ]
