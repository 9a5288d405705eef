"""The tiny CLAP in the offline hub cache: loads offline through transformers' own path; old caches are rebuilt."""

from __future__ import annotations

import json
import subprocess
import sys

from stable_audio_tools_ext.model import tiny
from stable_audio_tools_ext.model.tiny import CLAP_REPO_ID, DEMO_REPO_ID, build_tiny_hub_cache

LOAD = f"""
from transformers import ClapModel, ClapProcessor
model = ClapModel.from_pretrained({CLAP_REPO_ID!r})
processor = ClapProcessor.from_pretrained({CLAP_REPO_ID!r})
print(type(model).__name__, model.config.audio_config.enable_fusion, processor.feature_extractor.sampling_rate,
      processor.tokenizer("rain on a roof")["input_ids"][:3])
"""


def test_the_demo_cache_holds_a_clap_that_loads_offline(full_hub_env) -> None:
    """``make demo``'s cache (the full-window build): ``--score clap`` works there without a network."""
    result = subprocess.run([sys.executable, "-c", LOAD], env=full_hub_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:3] == ["ClapModel", "True", "48000"]


def test_a_cache_of_an_older_format_is_rebuilt_with_the_same_models(small_hub, tmp_path) -> None:
    hf_home = build_tiny_hub_cache(tmp_path / "hf", sample_size=64 * 2048)
    refs = {repo.name: (repo / "refs" / "main").read_text() for repo in (hf_home / "hub").iterdir()}
    # The build is seeded: the same parameters give the commits of the session's cache.
    sao = f"models--{DEMO_REPO_ID.replace('/', '--')}"
    assert refs[sao] == (small_hub / "hub" / sao / "refs" / "main").read_text()
    marker = hf_home / tiny._MARKER
    old = {**json.loads(marker.read_text()), "format": tiny._FORMAT_VERSION - 1}
    marker.write_text(json.dumps(old))
    clap = hf_home / "hub" / f"models--{CLAP_REPO_ID.replace('/', '--')}"
    clap.rename(tmp_path / "moved")  # what a cache from before the CLAP lacks

    assert build_tiny_hub_cache(hf_home, sample_size=64 * 2048) == hf_home
    assert json.loads(marker.read_text())["format"] == tiny._FORMAT_VERSION
    assert {repo.name: (repo / "refs" / "main").read_text() for repo in (hf_home / "hub").iterdir()} == refs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # no stale or building leftovers
