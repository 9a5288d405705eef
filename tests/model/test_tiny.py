"""The tiny SAO 1.0 hub cache loads through the real, unmodified ``get_pretrained_model``.

Loading runs in a subprocess because huggingface_hub reads ``HF_HOME`` and the offline
switches at import time, so only a fresh interpreter sees the environment under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID, build_tiny_hub_cache, offline_hub_env, tiny_model_config

SAMPLE_SIZE = 64 * 2048  # 64 latent frames, about 2.97 s: keeps the test fast

_LOAD_AND_PROBE = f"""
import json, torch
from stable_audio_tools import get_pretrained_model

model, config = get_pretrained_model({DEMO_REPO_ID!r})
with torch.no_grad():
    cond = model.conditioner([{{"prompt": "rain", "seconds_start": 0, "seconds_total": 2}}], "cpu")
    audio = model.pretransform.decode(torch.randn(1, 64, 8))
prompt_embeds = cond["prompt"][0]
print(json.dumps({{
    "sample_rate": config["sample_rate"],
    "sample_size": config["sample_size"],
    "downsampling_ratio": model.pretransform.downsampling_ratio,
    "prompt_shape": list(prompt_embeds.shape),
    "prompt_finite": bool(torch.isfinite(prompt_embeds).all()),
    "audio_shape": list(audio.shape),
    "audio_finite": bool(torch.isfinite(audio).all()),
}}))
"""


def _tree(root: Path) -> dict[str, bytes]:
    """Every path under ``root`` mapped to its bytes (symlink targets for links), to compare builds."""
    return {
        str(path.relative_to(root)): str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_symlink() or path.is_file()
    }


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hub_cache(tmp_path_factory.mktemp("tiny") / "hf", sample_size=SAMPLE_SIZE)


def test_real_get_pretrained_model_loads_it_offline(hf_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PROBE], env=offline_hub_env(hf_home),
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])  # stable_audio_tools prints notices first
    assert probe == {
        "sample_rate": 44100,
        "sample_size": SAMPLE_SIZE,
        "downsampling_ratio": 2048,
        "prompt_shape": [1, 128, 768],
        "prompt_finite": True,
        "audio_shape": [1, 2, 8 * 2048],
        "audio_finite": True,
    }


def test_second_build_returns_at_once_and_changes_nothing(hf_home: Path) -> None:
    before = _tree(hf_home)
    start = time.perf_counter()
    assert build_tiny_hub_cache(hf_home, sample_size=SAMPLE_SIZE) == hf_home
    assert time.perf_counter() - start < 1.0
    assert _tree(hf_home) == before


def test_builds_in_different_dirs_are_identical(hf_home: Path, tmp_path: Path) -> None:
    assert build_tiny_hub_cache(tmp_path, sample_size=SAMPLE_SIZE) == tmp_path  # an existing empty dir is fine
    assert _tree(tmp_path) == _tree(hf_home)
    assert list(hf_home.parent.iterdir()) == [hf_home]  # the temporary build dir is gone


def test_other_parameters_need_another_dir(hf_home: Path) -> None:
    with pytest.raises(ValueError, match="another directory"):
        build_tiny_hub_cache(hf_home, sample_size=2 * SAMPLE_SIZE)


def test_cli_prints_only_the_hf_home(hf_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stable_audio_tools_ext.model.tiny", "--hf-home", str(hf_home), "--sample-size", str(SAMPLE_SIZE)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert result.stdout == f"{hf_home}\n"


def test_config_keeps_real_shapes_with_small_widths() -> None:
    config = tiny_model_config()
    assert config["sample_size"] == 2097152
    dit = config["model"]["diffusion"]["config"]
    assert dit["embed_dim"] == 64 and dit["global_cond_dim"] == 2 * 768  # two seconds embeddings, concatenated
    assert config["model"]["pretransform"]["config"]["downsampling_ratio"] == 2048
    with pytest.raises(ValueError):
        tiny_model_config(1000)


def test_offline_env_points_only_at_hf_home(tmp_path: Path) -> None:
    env = offline_hub_env(tmp_path, {"HF_HUB_CACHE": "/elsewhere", "TRANSFORMERS_CACHE": "/x", "PATH": "/bin"})
    assert env == {"HF_HOME": str(tmp_path.resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/bin",
                   "TORCH_HOME": str(tmp_path.resolve() / "torch")}  # fmt: skip
