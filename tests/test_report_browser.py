"""report.html in a real headless Chromium: every figure decodes and renders, trajectory links resolve,
and a 1400 px window shows every page without horizontal scrolling.

Chromium comes from the Debian package `chromium` (`apt-get install -y chromium`); without it these
tests skip with that reason. They never install anything themselves.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from bench.report_cli import cmd_report

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


WINDOW = 1400


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(
        "chromium is not installed (Debian: `apt-get install -y chromium`); the report's browser checks did not run"
    )


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    binary = find_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(url: str, *extra: str) -> str:
        proc = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    return run


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """The fixture run, one error message made as wide as real ones get (an unbroken path and command)."""
    runs = tmp_path_factory.mktemp("browser-runs")
    shutil.copytree(FIXTURES / "fx-report", runs / "fx-report")
    result = runs / "fx-report" / "add-new-model__mixtral" / "megatron" / "builtin" / "3" / "result.json"
    data = json.loads(result.read_text())
    data["error"]["message"] += " while running /tmp/" + "atebench-trial-workspace/" * 12 + "--option=" + "x" * 120
    result.write_text(json.dumps(data))
    out = tmp_path_factory.mktemp("browser-report")
    assert cmd_report(["fx-report", "--results-dir", str(runs), "--out", str(out)]) == 0
    return out


def test_figures_render(chromium, report_dir):
    dom = chromium((report_dir / "report.html").as_uri(), "--dump-dom")
    body = re.search(r'<body data-images-total="(\d+)" data-images-rendered="(\d+)"', dom)
    assert body, "the page's load script did not run"
    total, rendered = int(body.group(1)), int(body.group(2))
    # 8 metric bar charts, 8 per-trial strips and the throughput scatter: all metrics have data somewhere
    assert total == 17
    assert rendered == total


def test_trajectory_links_resolve(chromium, report_dir):
    dom = chromium((report_dir / "report.html").as_uri(), "--dump-dom")
    links = re.findall(r'<a class="trajectory" href="([^"]+)"', dom)
    assert len(links) == 19
    for link in links:
        assert (report_dir / link).is_file(), link
    page = (report_dir / links[0]).as_uri()
    trajectory_dom = chromium(page, "--dump-dom")
    assert "<h2>Conversation</h2>" in trajectory_dom and "← report" in trajectory_dom


def test_escaped_output_stays_text(chromium, report_dir):
    page = report_dir / "trajectories" / "fx-report__add-new-model__mixtral__reference__builtin__0.html"
    dom = chromium(page.as_uri(), "--dump-dom")
    assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in dom
    assert dom.count("<script>") == 1  # only the page's own render check


def test_screenshot_is_not_blank(chromium, report_dir, tmp_path):
    shot = tmp_path / "report.png"
    chromium((report_dir / "report.html").as_uri(), f"--screenshot={shot}", "--window-size=1400,2200")
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (2200, 1400)
    assert float(np.std(pixels[..., :3])) > 0.05  # tables and bars, not an empty page


def _page_widths(chromium, page: Path) -> tuple[int, int]:
    """(document scroll width, window width) as the page's own load script recorded them."""
    dom = chromium(page.as_uri(), "--dump-dom", f"--window-size={WINDOW},1000")
    widths = re.search(r'data-scroll-width="(\d+)" data-window-width="(\d+)"', dom)
    assert widths, "the page's load script did not record its width"
    return int(widths.group(1)), int(widths.group(2))


def test_no_horizontal_overflow_at_1400_px(chromium, report_dir):
    """Wide tables scroll inside their own box; the page itself fits a 1400 px window."""
    scroll_width, window_width = _page_widths(chromium, report_dir / "report.html")
    assert window_width == WINDOW
    assert scroll_width <= WINDOW
    trajectory = report_dir / "trajectories" / "fx-report__add-new-model__mixtral__reference__builtin__0.html"
    assert _page_widths(chromium, trajectory)[0] <= WINDOW


def test_overflow_check_can_fail(chromium, report_dir, tmp_path):
    """The width check sees overflow when there is some: a table forced wider than the window."""
    page = tmp_path / "wide.html"
    page.write_text(
        (report_dir / "report.html")
        .read_text()
        .replace("<h2>Trials</h2>", '<h2>Trials</h2><table><tr><td style="min-width:2000px">wide</td></tr></table>')
    )
    assert _page_widths(chromium, page)[0] > WINDOW
