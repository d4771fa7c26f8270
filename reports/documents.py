"""The two renderers of a report: its blocks (:class:`reports.format.Block`) as one Markdown and one HTML document.

A report is described once as a list of blocks and written by both, so Markdown and HTML always say the same thing;
nothing here knows what a report is about.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reports.format import MISSING, Block

# A cell that starts like a number ("0.912 ± 0.010", "3 (4 runs)", "12,345", "–") is right-aligned.
NUMERIC_CELL = re.compile(rf"^([-+]?\d|{MISSING}$)")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num, th.num { text-align: right; }
td.name { white-space: nowrap; }
table[data-role="leaderboard"] { font-size: 0.8em; }
table[data-role="leaderboard"] th, table[data-role="leaderboard"] td { padding: 0.2em 0.35em; }
figure { margin: 1em 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.3em; }
details { margin: 0.6em 0; }
summary { cursor: pointer; color: #333; }
p.csv { margin: 0.2em 0 0.8em; font-size: 0.85em; }
ul.headline li { margin: 0.3em 0; }
"""


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        table: cells (converted to text; '|' is escaped).

    Returns:
        The table's lines.
    """
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(column) for column in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# Kept on one line: a name broken at its hyphens ("iterated-" / "pruning") reads as two.
NAME_COLUMNS = ("method", "pair", "strategy")


def column_classes(table: pd.DataFrame) -> list[str]:
    """The CSS class of each column of a table, from its cells, not from its position: "num" (right-aligned) when
    every cell starts like a number or is a dash, "name" (one line) for method and pair names, else "".

    Args:
        table: cells (converted to text).

    Returns:
        One class per column.
    """
    classes = []
    for column in table.columns:
        cells = [str(value) for value in table[column] if str(value) != ""]
        if str(column) in NAME_COLUMNS:
            classes.append("name")
        elif cells and all(NUMERIC_CELL.match(cell) for cell in cells):
            classes.append("num")
        else:
            classes.append("")
    return classes


def _folded(part: str, summary: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{part}</details>" if summary else part


def html_table(table: pd.DataFrame, *, role: str = "") -> str:
    """An HTML table with escaped cells, in a container that scrolls sideways if the table is wider than the page.

    Numeric columns are right-aligned (see :func:`column_classes`). A "mean ± sd" cell may wrap before its ± only,
    so a narrow window shows the sd under the mean rather than a page wider than the window.

    Args:
        table: cells (converted to text).

        role: the table's role (``Block.role``), written as its ``data-role``.

    Returns:
        The <div class="table-wrap"> holding the <table>.
    """
    classes = [f' class="{name}"' if name else "" for name in column_classes(table)]

    def cell(value: object, kind: str) -> str:
        text = html.escape(str(value)).replace("± ", "±&nbsp;")
        # A name with a note in brackets ("wmp (uniform, best of 2)") puts the note on a second line.
        return text.replace(" (", "<br>(", 1) if kind == ' class="name"' else text

    # A long column name (an analysis's "weight_norm_mean") may break after its underscores.
    header = "".join(f"<th{kind}>{html.escape(str(column)).replace('_', '_<wbr>')}</th>"
                     for column, kind in zip(table.columns, classes, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{kind}>{cell(value, kind)}</td>" for value, kind in zip(row, classes, strict=True))
        + "</tr>"
        for row in table.itertuples(index=False)
    )
    data = f' data-role="{html.escape(role, quote=True)}"' if role else ""
    return (f'<div class="table-wrap"><table{data}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
            "</div>")


def image_source(path: str, image_dir: Path | None) -> str:
    """The src of a report image: the PNG itself as a data: URI when its folder is given, else its relative path.

    Embedding makes report.html whole: MLflow's artifact preview shows it in a frame where relative paths do not
    resolve, and a copied report.html keeps its pictures.

    Args:
        path: the image's file name, relative to the report.
        image_dir: the folder that holds it now, or None to link by path.

    Returns:
        The attribute value (not yet escaped).
    """
    if image_dir is None:
        return path
    return "data:image/png;base64," + base64.b64encode((Path(image_dir) / path).read_bytes()).decode("ascii")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The report as Markdown.

    Args:
        blocks: the report, e.g. from :func:`reports.render.report_blocks`.

    Returns:
        The document text.
    """
    parts = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            parts.append("#" * int(block.kind[1]) + " " + block.text)
        elif block.kind == "p":
            parts.append(block.text)
        elif block.kind == "table":
            text = markdown_table(block.table) + (f"\n\n[{block.csv}]({block.csv}) (CSV)" if block.csv else "")
            parts.append(f"<details><summary>{block.fold}</summary>\n\n{text}\n\n</details>" if block.fold else text)
        elif block.kind == "list":
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif block.kind == "image":
            text = f"![{block.text}]({block.path})\n\n*{block.text}*"
            parts.append(f"<details><summary>{block.fold}</summary>\n\n{text}\n\n</details>" if block.fold else text)
    return "\n\n".join(parts) + "\n"


def render_html(blocks: Sequence[Block], title: str, *, image_dir: Path | None = None) -> str:
    """The report as one static HTML page (inline CSS). Each image links to its full-size PNG beside the report.

    Args:
        blocks: the report, e.g. from :func:`reports.render.report_blocks`.
        title: the page title.
        image_dir: the folder holding the blocks' PNGs now; given, every image is embedded as a data: URI (see
            :func:`image_source`), else shown from its relative path.

    Returns:
        The document text.
    """
    parts = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            parts.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "p":
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "table":
            part = html_table(block.table, role=block.role)
            if block.csv:
                link = html.escape(block.csv, quote=True)
                part += f'<p class="csv"><a href="{link}" target="_blank">{html.escape(block.csv)}</a> (CSV)</p>'
            parts.append(_folded(part, block.fold))
        elif block.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif block.kind == "image":
            caption = html.escape(block.text)
            link = html.escape(block.path, quote=True)
            source = html.escape(image_source(block.path, image_dir), quote=True)
            # A new tab: inside MLflow's artifact preview, following the link in place blanks the pane.
            data = (f' data-role="{html.escape(block.role, quote=True)}"' if block.role else "") + (
                f' data-methods="{html.escape(" ".join(block.methods), quote=True)}"' if block.methods else "")
            parts.append(_folded(f'<figure{data}><a href="{link}" target="_blank" title="full size">'
                                 f'<img src="{source}" alt="{caption}"></a><figcaption>{caption}</figcaption>'
                                 "</figure>", block.fold))
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
