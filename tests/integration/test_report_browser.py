"""Render the demo report in headless Chromium and check that the screenshot shows what the page holds.

Chromium is a system package (Debian: ``apt-get install -y chromium``); without it the test skips.
The screenshot is kept as ``<tmp>/report.png`` (and copied to ``$DLCR_REPORT_SCREENSHOT`` when set)
so a person can look at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcr.report import build_demo_report

CHROMIUM = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found (install it with: apt-get install -y chromium)"
)


def _fake_demo_module():
    import fake_demo

    return fake_demo


def screenshot(html: Path, out: Path, width: int, height: int, profile: Path) -> np.ndarray:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", f"--screenshot={out}",
        f"--window-size={width},{height}", "--virtual-time-budget=5000", html.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.is_file(), f"chromium wrote no screenshot (exit {res.returncode}): {res.stderr[-2000:]}"
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB"))


def _count(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(img == np.array(rgb, np.uint8), axis=-1).sum())


def test_report_renders_in_headless_chromium(tmp_path):
    fake = _fake_demo_module()
    root = fake.make_fake_demo(tmp_path / "demo")
    report = build_demo_report(root)

    # What a reader sees first: the top of the page at a laptop-sized window.
    top = screenshot(report, tmp_path / "report.png", 1280, 2000, tmp_path / "profile")
    assert top.shape == (2000, 1280, 3)
    assert top.std() > 10  # not a blank page
    if os.environ.get("DLCR_REPORT_SCREENSHOT"):
        shutil.copy(tmp_path / "report.png", os.environ["DLCR_REPORT_SCREENSHOT"])

    # The whole page in one tall window: images and outlines must really be drawn.
    full = screenshot(report, tmp_path / "full.png", 1280, 7000, tmp_path / "profile")
    # Thumbnails are scaled with nearest-neighbour, so the fake shirts' exact colours appear in blocks.
    for shirt in fake.COLOURS.values():
        assert _count(full, shirt) > 500, f"no thumbnail with shirt colour {shirt} rendered"
    # Outlines of the retrieval panels: query blue, correct green, wrong red (CSS in dlcr.report.html).
    for outline in ((0x3B, 0x6F, 0xD6), (0x1A, 0x98, 0x50), (0xD7, 0x30, 0x27)):
        assert _count(full, outline) > 200, f"outline colour {outline} not drawn"
    # Matplotlib figures loaded (their white axes area inside a bordered <img>): the PCA plot uses tab10 blue.
    assert _count(full, (0x1F, 0x77, 0xB4)) > 50
