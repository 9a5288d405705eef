"""report.html: built from real generated files, parsed, and rendered by a headless Chromium."""

from __future__ import annotations

import base64
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from stable_audio_tools_ext.datasets.report import REPORT_NAME
from stable_audio_tools_ext.output.manifest import ManifestWriter, fold_parts, load_records
from stable_audio_tools_ext.output.stats import audio_stats, status_of
from stable_audio_tools_ext.run import cli, exits
from tests.chromium import CHROMIUM_ARGS
from tests.conftest import REPO_ROOT
from tests.support import write

TREE = """\
drums:
  _defaults: {seconds_total: 1.2, n_samples: 3}
  kick: {prompt: kick drum}
  snare: {prompt: snare drum}
fx:
  rain: {prompt: rain on a roof, seconds_total: 2}
  door: {prompt: a door slams, seconds_total: 0.3}
pad: {prompt: warm <b>analog</b> pad & strings, seconds_total: 1.5}
"""
SR = 44100
FLAGGED = {"fx/broken_item-1.wav", "fx/quiet_item-1.wav", "drums/loud_item-1.wav"}


def add_flagged_items(out: Path) -> None:
    """A NaN item (recorded, not written), a silent file and a clipped file, the way run/job.py records them."""
    base = dict(next(iter(load_records(out).values())))
    records = [{**base, "path": "fx/broken_item-1.wav", "leaf": "fx/broken", "prompt": "nan", "status": "nonfinite",
                "frames": 0, "bytes": 0, "peak": None, "rms": None}]  # fmt: skip
    t = np.arange(SR) / SR
    for relpath, samples in [("fx/quiet_item-1.wav", np.full((SR, 2), 2e-5, np.float32)),
                             ("drums/loud_item-1.wav", np.repeat(np.clip(3 * np.sin(2 * np.pi * 60 * t), -1, 1)[:, None], 2, 1))]:  # fmt: skip
        sf.write(out / relpath, samples, SR)
        stats = audio_stats(samples.astype(np.float32), SR)
        records.append({**base, "path": relpath, "leaf": relpath.removesuffix("_item-1.wav"), "prompt": "synthetic",
                        "status": status_of(stats["peak"]), "frames": SR, **stats})  # fmt: skip
    writer = ManifestWriter(out, rank=0)
    writer.append(records)
    writer.close()
    fold_parts(out)


@pytest.fixture(scope="module")
def report(small_model, tmp_path_factory) -> Path:
    """``generate.py --report`` on real generated files, then the report command after adding flagged items."""
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "out"
    argv = ["--cond-yaml-path", str(write(tmp, TREE)), "--output-dir", str(out), "--clip-length",
            "--sample-steps", "6", "--batch-size", "10", "--report"]  # fmt: skip
    assert cli.main(argv) == exits.EXIT_OK
    assert (out / REPORT_NAME).is_file()
    add_flagged_items(out)
    result = subprocess.run([sys.executable, "-m", "stable_audio_tools_ext.datasets.report", str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {out / REPORT_NAME}"
    return out / REPORT_NAME


class Page(HTMLParser):
    """What the tests look at: section ids, headings, images, audio sources, table cells, external refs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.audio: list[str] = []
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._in_cell = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(values["id"])
        elif tag == "img":
            self.images.append(values)
        elif tag == "audio":
            self.audio.append(values["src"])
        elif tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


def test_report_has_every_section_with_real_plots_and_players(report) -> None:
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == ["summary", "branches", "variables", "histograms", "flagged", "samples"]
    histograms = [img for img in page.images if img["alt"].endswith("histogram")]
    assert [img["alt"] for img in histograms] == ["duration histogram", "loudness histogram", "peak histogram"]
    spectrograms = [img for img in page.images if img["alt"].startswith("spectrogram of ")]
    # Samples per branch: drums 4 of its 7 files, fx 3 of 3 (the NaN item has no file), the top-level pad.
    assert len(spectrograms) == 8 and len(page.audio) == 8
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        if "quiet" not in img["alt"]:  # the silent file's spectrogram is rightly one flat colour
            assert len(png) > 2000  # a real plot, not an empty canvas
    for src in page.audio:  # players link the generated files, relative to the report
        assert not src.startswith(("/", "http", "file:")) and (report.parent / unquote(src)).is_file()
    assert "quiet_item-1.wav" in " ".join(page.audio)  # a flagged (silent) file can still be listened to


def test_report_summary_and_flagged_items(report) -> None:
    page = Page(report.read_text(encoding="utf-8"))
    cells = page.cells
    assert "12 (1 nonfinite, 10 ok, 1 silent)" in cells  # 9 generated + 3 added, one of them never written
    written_seconds = 6 * 1.2 + 2 + 0.3 + 1.5 + 2 * 1.0
    assert f"{written_seconds / 3600:.3f} h ({written_seconds:.1f} s)" in cells
    flagged_rows = [cells[i] for i in range(len(cells)) if cells[i] in FLAGGED]
    assert sorted(flagged_rows) == sorted(FLAGGED)
    assert "NaN/Inf output: not written" in cells and any(c.startswith("silent (peak -94.0 dBFS)") for c in cells)
    assert any(c.startswith("clipped: ") for c in cells)
    text = report.read_text(encoding="utf-8")
    assert "warm &lt;b&gt;analog&lt;/b&gt; pad &amp; strings" in text and "<b>" not in text  # escaped, never markup


def test_report_is_self_contained(report) -> None:
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_chromium_renders_the_report(report, chromium, tmp_path) -> None:
    """A headless Chromium screenshot, kept in this test's tmp_path (pytest keeps the last runs' dirs)."""
    screenshot = tmp_path / "report.png"
    command = [str(chromium), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={screenshot}", "--window-size=1280,2000", report.as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and screenshot.is_file(), result.stderr[-2000:]
    image = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert image.shape == (2000, 1280, 3)
    # The plots are on the page: blue histogram bars, and magma-purple spectrogram thumbnails.
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    assert ((blue > 150) & (red < 90)).mean() > 0.005
    assert ((red > green + 40) & (blue > green + 40)).mean() > 0.02
    print(f"screenshot: {screenshot}")
