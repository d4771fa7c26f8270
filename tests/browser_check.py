"""Browser check of the HTML report: build one from a synthetic lenet-like suite, open it in headless Chromium at
1,024 and 1,400 px and check what a reader sees.

    python tests/browser_check.py [--out DIR] [--shots DIR]

Checks, at each width: the page does not scroll sideways (every table fits or scrolls inside its own container),
no leaderboard scrolls sideways even inside its container, no figure is wider than the page's text column, no
kept-units figure draws a method ranked on kept weights, and every image is embedded as a data: URI (so it shows in
MLflow's artifact preview too), has loaded, and links to its full-size PNG beside the report. Screenshots of the
whole page go to ``--shots`` (report-1024.png, report-1400.png). Exits 0 when every check passes, 1 listing the
problems, 2 when no Chromium is installed (Debian: ``apt-get install chromium``). ``tests/test_report_browser.py``
runs the same checks under pytest and skips without Chromium.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

WIDTHS = (1024, 1400)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium's screenshots of taller windows fail or come back blank; a longer report is cut there.
MAX_SHOT_HEIGHT = 16000
MAX_FIGURE_WIDTH = 1400  # px: the report's widest text column
RESULT_ID = "browser-check-result"
# Runs after every image has loaded; reads the layout and writes it into the DOM that --dump-dom prints.
MEASURE_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const result = {
    viewport_width: root.clientWidth,
    scroll_width: root.scrollWidth,
    body_scroll_width: document.body.scrollWidth,
    scroll_height: root.scrollHeight,
    images: [...document.images].map((image) => ({
      alt: image.alt,
      src_start: (image.getAttribute("src") || "").slice(0, 22),
      loaded: image.complete && image.naturalWidth > 0,
      link: image.closest("a") ? image.closest("a").getAttribute("href") : null,
      shown_width: image.getBoundingClientRect().width,
      natural_width: image.naturalWidth,
    })),
    tables: [...document.querySelectorAll("table")].map((table) => ({
      width: table.getBoundingClientRect().width,
      container_width: table.parentElement.clientWidth,
      scrolls: getComputedStyle(table.parentElement).overflowX === "auto",
      role: table.dataset.role || "",
      folded: table.closest("details") !== null,
      weight_methods: [...table.querySelectorAll("td")].map((td) => td.textContent.trim())
        .filter((text) => text.endsWith("\u2020")).map((text) => text.slice(0, -1).replace(/ ?\\(.*\\)$/, "")),
    })),
    figures: [...document.querySelectorAll("figure")].map((figure) => ({
      role: figure.dataset.role || "",
      methods: (figure.dataset.methods || "").split(" ").filter(Boolean),
      caption: figure.querySelector("figcaption") ? figure.querySelector("figcaption").textContent.slice(0, 60) : "",
    })),
  };
  const out = document.createElement("script");
  out.type = "application/json";
  out.id = "RESULT_ID";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
""".replace("RESULT_ID", RESULT_ID)


def find_chromium() -> str | None:
    """The path of an installed Chromium (or Chrome), or None.

    Returns:
        The first of ``CHROMIUM_NAMES`` on PATH.
    """
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _chromium(chromium: str, url: str, width: int, height: int, *extra: str) -> str:
    """Run headless Chromium on one page with a private profile; returns its stdout."""
    with tempfile.TemporaryDirectory(prefix="browser-check-profile-") as profile:
        command = [
            chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
            "--virtual-time-budget=10000", *extra, url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-1000:]}")
    return done.stdout


def measure(chromium: str, report: Path, width: int, height: int = 1200) -> dict:
    """Open a report at one window width and read its layout.

    Args:
        chromium: the browser's path.
        report: the report.html (a measuring copy is written beside it, so relative links resolve, then removed).
        width: the window width in CSS px.
        height: the window height.

    Returns:
        viewport_width, scroll_width, body_scroll_width, scroll_height, images (src_start, loaded, link,
        shown_width, natural_width) and tables (width, container_width, scrolls).
    """
    report = Path(report).resolve()
    probe = report.with_name(f".{report.stem}.measure.html")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE_SCRIPT + "</body>"),
                     encoding="utf-8")
    try:
        dom = _chromium(chromium, probe.as_uri(), width, height, "--dump-dom")
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(rf'<script type="application/json" id="{RESULT_ID}">(.*?)</script>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the measuring script left no result in the page (DOM starts {dom[:300]!r})")
    return json.loads(found.group(1))


def screenshot(chromium: str, report: Path, width: int, height: int, path: Path) -> Path:
    """A screenshot of the report in a window of the given size (use the page's height for the whole page).

    Args:
        chromium: the browser's path.
        report: the report.html.
        width, height: the window size in CSS px (the height is capped at ``MAX_SHOT_HEIGHT``).
        path: the PNG to write; its folder is created.

    Returns:
        ``path``.
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _chromium(chromium, Path(report).resolve().as_uri(), width, min(height, MAX_SHOT_HEIGHT), f"--screenshot={path}")
    if not path.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {path}")
    return path


def problems(layout: dict, width: int, report_dir: Path) -> list[str]:
    """What a reader would trip over at one width, from :func:`measure`'s layout.

    Args:
        layout: the measured layout.
        width: the window width it was measured at.
        report_dir: the report's folder (image links must point at files there).

    Returns:
        One line per problem; empty when the page is fine.
    """
    found = []
    if layout["scroll_width"] > layout["viewport_width"] or layout["body_scroll_width"] > layout["viewport_width"]:
        found.append(f"{width} px: the page scrolls sideways (scrollWidth {layout['scroll_width']}, body "
                     f"{layout['body_scroll_width']}, viewport {layout['viewport_width']})")
    if not layout["images"]:
        found.append(f"{width} px: the report shows no image")
    for image in layout["images"]:
        name = image["alt"][:60]
        if not image["src_start"].startswith("data:image/png;base64"):
            found.append(f"{width} px: image '{name}' is not embedded (src starts {image['src_start']!r})")
        if not image["loaded"]:
            found.append(f"{width} px: image '{name}' did not load")
        if not image["link"] or not (report_dir / image["link"]).is_file():
            found.append(f"{width} px: image '{name}' links to {image['link']!r}, not to a file beside the report")
    for number, table in enumerate(layout["tables"]):
        if table["width"] > table["container_width"] + 1 and not table["scrolls"]:
            found.append(f"{width} px: table {number} is {table['width']:.0f} px wide in {table['container_width']} "
                         "px and its container does not scroll")
        elif table.get("role") == "leaderboard" and not table.get("folded") \
                and table["width"] > table["container_width"] + 1:
            found.append(f"{width} px: leaderboard {number} scrolls sideways ({table['width']:.0f} px in "
                         f"{table['container_width']} px): its last columns are hidden")
    for image in layout["images"]:
        if image["natural_width"] > MAX_FIGURE_WIDTH:
            found.append(f"{width} px: image '{image['alt'][:60]}' is {image['natural_width']} px wide, wider than "
                         f"the page ({MAX_FIGURE_WIDTH} px), so its text is always shrunk")
    weights = {m for table in layout["tables"] for m in table.get("weight_methods", [])}
    weights |= {m for figure in layout.get("figures", []) if figure["role"] == "weights" for m in figure["methods"]}
    for figure in layout.get("figures", []):
        mixed = sorted(weights & set(figure["methods"])) if figure["role"] == "units" else []
        if mixed:
            found.append(f"{width} px: figure '{figure['caption']}' draws methods ranked on kept weights ({mixed}) "
                         "on a kept-units figure")
    return found


def build_synthetic_report(out_dir: Path) -> Path:
    """A report of a synthetic suite shaped like the lenet suite (15 methods, 2 pairs, 3 seeds, an analysis).

    Args:
        out_dir: the report folder.

    Returns:
        The path of report.html.
    """
    import dataclasses

    import numpy as np
    import pandas as pd
    from test_reports import synthetic_suite

    from reports import build_report

    methods = {}
    for index, auc in (("shapley", 0.84), ("banzhaf", 0.86), ("beta", 0.9)):
        for number, strategy in enumerate(("top-n", "iterated-pruning", "iterated-building")):
            short = {"top-n": "top-n", "iterated-pruning": "iter-prune", "iterated-building": "iter-build"}[strategy]
            aucs = tuple(auc - 0.04 * number + 0.01 * seed for seed in range(3))
            methods[f"gtap-{index}-{short}"] = ("gtap", "power-index", strategy, "unit_fraction", aucs)
    methods.update({
        "wmp": ("wmp", "magnitude", "top-n", "unit_fraction", (0.70, 0.75, 0.80)),
        "wmp-unstructured": ("wmp", "magnitude", "top-n", "param_fraction", (0.88, 0.88, 0.88)),
        "wgmp": ("wgmp", "gradient", "top-n", "unit_fraction", (0.72, 0.74, 0.71)),
        "random": ("random", "random", "top-n", "unit_fraction", (0.30, 0.35, 0.31)),
        "activation": ("activation", "activation", "top-n", "unit_fraction", (0.6, 0.62, 0.61)),
        "taylor": ("taylor", "gradient", "top-n", "unit_fraction", (0.77, 0.78, 0.76)),
    })
    data = synthetic_suite(methods, {"lenet300-mnist": 0.825, "lenet5-mnist": 0.775})
    rng = np.random.default_rng(1)
    histories = pd.DataFrame([
        {"pair": pair, "seed": seed, "epoch": epoch, "train_loss": 1 / epoch + 0.01 * seed,
         "train_accuracy": 1 - 0.2 / epoch, "val_loss": 1.1 / epoch, "val_accuracy": 0.97 - 0.2 / epoch,
         "seconds": 1.0}
        for pair in data.pairs for seed in range(3) for epoch in range(1, 6)
    ])
    layers = pd.DataFrame([
        {"pair": pair, "seed": seed, "layer": layer, "n_units": units, "weight_norm_mean": rng.uniform(0.5, 2),
         "weight_norm_sd": rng.uniform(0, 0.3), "dead_fraction": rng.uniform(0, 0.1), "kurtosis": rng.uniform(2, 9)}
        for pair in data.pairs for seed in range(3) for layer, units in (("fc1", 300), ("fc2", 100))
    ])
    data = dataclasses.replace(data, histories=histories, analyses={"microstructure/layers": layers})
    build_report(data, out_dir)
    return Path(out_dir) / "report.html"


def check(chromium: str, report: Path, shots: Path | None = None, widths: Sequence[int] = WIDTHS) -> list[str]:
    """Measure the report at each width (and screenshot the whole page into ``shots``); the problems found.

    Args:
        chromium: the browser's path.
        report: the report.html.
        shots: where report-<width>.png go; None takes none.
        widths: window widths in CSS px.

    Returns:
        The problems, empty when the report passes.
    """
    found = []
    for width in widths:
        layout = measure(chromium, report, width)
        found += problems(layout, width, Path(report).parent)
        if shots is not None:
            screenshot(chromium, report, width, int(layout["scroll_height"]), Path(shots) / f"report-{width}.png")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="report folder (default: a temporary one)")
    parser.add_argument("--shots", type=Path, default=Path("/tmp/shots"), help="screenshot folder")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium on PATH (Debian: apt-get install chromium); nothing checked", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="browser-check-") as tmp:
        report = build_synthetic_report(args.out or Path(tmp) / "report")
        found = check(chromium, report, args.shots)
        print(f"checked {report} at {', '.join(map(str, WIDTHS))} px; screenshots in {args.shots}")
    for line in found:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
