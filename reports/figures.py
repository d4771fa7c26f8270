"""What every figure of a report shares: matplotlib's Agg backend, the size and type it is drawn at, its file name,
and :func:`save_figure`, which writes it and closes it.

The lowest plotting module of ``reports``: it imports no other report module.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Report figures are drawn at dpi 100 no wider than about 1,200 px, the width the report shows them at on a
# 1,400 px page, so these point sizes are what the reader sees (9 pt at dpi 100 is 12.5 px).
DPI = 100
FIGURE_WIDTH = 12.0  # inches
READABLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 12,
}


def file_stem(text: str) -> str:
    """A string made safe for a file name (letters, digits, '-', '_' and '.').

    Args:
        text: e.g. a pair name.

    Returns:
        The text with every other character replaced by '_'.
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))


@contextmanager
def save_figure(fig: Figure, path: Path | str, *, dpi: float = DPI, bbox_inches: str | None = None,
                metadata: dict[str, str] | None = None) -> Iterator[Path]:
    """Draw on ``fig`` inside the ``with`` block; leaving it writes ``fig`` to ``path`` as a PNG (256-colour
    palette, see :func:`_palette_png`) and closes it.

    The figure is closed whatever happens, and written only when the block finishes, so a plot that fails midway
    leaves neither an open figure (a runner that logs plots in a loop would gather them) nor a partial PNG::

        fig, ax = plt.subplots()
        with save_figure(fig, folder / "curves.png") as path:
            ax.plot(...)

    Args:
        fig: the figure.
        path: the PNG to write (its folder must exist).
        dpi: the resolution, ``DPI`` unless a figure asks for another.
        bbox_inches: passed to ``savefig`` when given ("tight" crops the figure to what it draws).
        metadata: PNG text chunks (e.g. "Title", "Description"), passed to ``savefig`` when given.

    Yields:
        ``path`` as a Path.
    """
    path = Path(path)
    options: dict[str, Any] = {"dpi": dpi}
    if bbox_inches is not None:
        options["bbox_inches"] = bbox_inches
    if metadata is not None:
        options["metadata"] = metadata
    try:
        yield path
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **options)
        path.write_bytes(_palette_png(buffer.getvalue()))
    finally:
        plt.close(fig)


def _palette_png(data: bytes) -> bytes:
    """A figure's PNG with its colours reduced to a 256-colour palette (no dithering), its text chunks kept.

    A plot has few colours besides the anti-aliasing of its lines, so this looks the same and takes about a third
    of the bytes, which matters because report.html embeds every figure.
    """
    from PIL import Image, PngImagePlugin

    with Image.open(io.BytesIO(data)) as image:
        info = PngImagePlugin.PngInfo()
        for key, value in image.text.items():
            info.add_text(key, value)
        reduced = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out = io.BytesIO()
        reduced.save(out, format="PNG", optimize=True, pnginfo=info)
    return out.getvalue()
