"""The pieces every report is made of: :class:`Block` (one heading, paragraph, table, image or list) and the text
formats of its numbers.

The lowest module of ``reports`` that writes text: it imports no other report module, so the sections that build
blocks (``render``, ``models``, ``estimators``) and the renderers that write them (``documents``) all stand on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

MISSING = "–"  # the cell of a value that is missing (NaN, None, not run)


@dataclass(frozen=True)
class Block:
    """One piece of the report.

    Attributes:
        kind: "h1", "h2", "h3", "p", "table", "image" or "list".
        text: the heading or paragraph text, the image's caption.
        table: the cells of a table (all strings).
        path: an image's file name, relative to the report.
        items: the entries of a list.
        fold: a table or image folded away under this one-line summary (HTML ``<details>``), for long material a
            reader opens on demand.
        csv: the file name of the table as CSV beside the report, linked under it.
        role: what the block is, for the reader's tools and the report's checks: "leaderboard" for a ranking
            table that must fit the page, "units" / "weights" for a figure that draws methods on that axis.
        methods: the methods a figure draws.
    """

    kind: str
    text: str = ""
    table: pd.DataFrame | None = None
    path: str = ""
    items: tuple[str, ...] = ()
    fold: str = ""
    csv: str = ""
    role: str = ""
    methods: tuple[str, ...] = ()


def format_number(value: float, digits: int = 4) -> str:
    """A number with fixed decimals, or a dash for NaN/None.

    Args:
        value: the number.
        digits: decimals.

    Returns:
        e.g. "0.8734" or "–".
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def format_mean_sd(mean: float, sd: float, digits: int = 4) -> str:
    """Mean ± sd as text, e.g. "0.8734 ± 0.0121"; the mean alone when sd is NaN (one seed).

    Args:
        mean: the mean, may be NaN.
        sd: the sample sd, may be NaN.
        digits: decimals of both.

    Returns:
        The text.
    """
    if pd.isna(mean):
        return MISSING
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def format_count(value: float) -> str:
    """A large count, rounded, with thousands separators (or a dash for NaN).

    Args:
        value: e.g. a mean number of coalition evaluations.

    Returns:
        e.g. "12,345".
    """
    return MISSING if pd.isna(value) else f"{value:,.0f}"


def compact_count(value: float) -> str:
    """A count with a k / M / G suffix and one decimal, e.g. "2.0M"; plain below 1,000."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}"
