"""The HTML report as a reader sees it: headless Chromium at 1,024 and 1,400 px (see tests/browser_check.py)."""

from __future__ import annotations

import pytest
from browser_check import WIDTHS, build_synthetic_report, check, find_chromium, measure, problems

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium on PATH, so the browser check of report.html did not run (Debian: apt-get install "
                    "chromium)")
    return path


def test_report_fits_the_window_and_embeds_every_image(chromium, tmp_path):
    report = build_synthetic_report(tmp_path / "report")
    shots = tmp_path / "shots"
    assert check(chromium, report, shots) == []
    from PIL import Image

    for width in WIDTHS:
        assert Image.open(shots / f"report-{width}.png").size[0] == width


def test_the_check_sees_an_overflowing_table_and_a_linked_image(chromium, tmp_path):
    """The check can fail: a wide table outside a scrolling box, and an image by path, are both reported."""
    page = tmp_path / "report.html"
    (tmp_path / "a.png").write_bytes(b"")
    cells = "".join(f"<td>{'x' * 40}</td>" for _ in range(40))
    page.write_text(f'<!DOCTYPE html><html><body><table><tr>{cells}</tr></table><img src="a.png" alt="a">'
                    "</body></html>", encoding="utf-8")
    found = problems(measure(chromium, page, 1024), 1024, tmp_path)
    assert any("scrolls sideways" in line for line in found)
    assert any("does not scroll" in line for line in found)
    assert any("not embedded" in line for line in found) and any("did not load" in line for line in found)


def test_the_check_sees_a_wide_leaderboard_a_mixed_axis_figure_and_a_huge_image(chromium, tmp_path):
    from PIL import Image

    Image.new("RGB", (1600, 40), "white").save(tmp_path / "big.png")
    import base64

    data = base64.b64encode((tmp_path / "big.png").read_bytes()).decode()
    cells = "".join(f"<td>{'x' * 30}</td>" for _ in range(40))
    page = tmp_path / "report.html"
    page.write_text(
        '<!DOCTYPE html><html><body><div style="overflow-x: auto; max-width: 100%">'
        f'<table data-role="leaderboard"><tr><td>wmp-unstructured†</td>{cells}</tr></table></div>'
        f'<figure data-role="units" data-methods="gtap-beta-top-n wmp-unstructured"><a href="big.png">'
        f'<img src="data:image/png;base64,{data}" alt="curves"></a><figcaption>curves</figcaption></figure>'
        "</body></html>", encoding="utf-8")
    found = problems(measure(chromium, page, 1024), 1024, tmp_path)
    assert any("leaderboard 0 scrolls sideways" in line for line in found), found
    assert any("wmp-unstructured" in line and "kept-units figure" in line for line in found), found
    assert any("1600 px wide" in line for line in found), found
