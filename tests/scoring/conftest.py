"""A tree generated once with ``generate.py --score clap`` (in process, small-window tiny model, tiny CLAP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stable_audio_tools_ext.run import cli
from tests.support import write

# Two top-level branches (the report's per-branch means), two items per leaf, clipped files of 1-2 s.
SCORED_TREE = """\
drums:
  kick: {prompt: kick drum, seconds_total: 1.5}
  snare: {prompt: snare, seconds_start: 0.5, seconds_total: 2}
fx:
  rain: {prompt: rain on a roof, seconds_total: 1}
"""
RUN = ["--sample-steps", "8", "--n-sample-per-cond", "2", "--clip-length"]


@pytest.fixture(scope="session")
def scored_tree(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("scored-tree"), SCORED_TREE)


@pytest.fixture(scope="session")
def scored_output(small_hub, scored_tree, tmp_path_factory) -> Path:
    """The output dir of ``generate.py --score clap`` on ``SCORED_TREE`` (6 items); read it, do not change it."""
    out = tmp_path_factory.mktemp("scored") / "out"
    code = cli.main(["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *RUN, "--score", "clap"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_openl3(tmp_path_factory) -> Path:
    """A tiny random OpenL3 weights file (``scoring.standins``), under torchopenl3's own file name."""
    from stable_audio_tools_ext.scoring.openl3 import weights_file_name
    from stable_audio_tools_ext.scoring.standins import write_tiny_openl3

    return write_tiny_openl3(tmp_path_factory.mktemp("openl3") / weights_file_name("music"))


@pytest.fixture(scope="session")
def tiny_passt(tmp_path_factory) -> Path:
    """A tiny random PaSST weights file (``scoring.standins``), under hear21passt's own file name."""
    from stable_audio_tools_ext.scoring.passt import WEIGHTS_FILE
    from stable_audio_tools_ext.scoring.standins import write_tiny_passt

    return write_tiny_passt(tmp_path_factory.mktemp("passt") / WEIGHTS_FILE)
