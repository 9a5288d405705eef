"""``generate.py`` and ``run_gradio.py`` answer help, flag errors and tree errors before importing anything heavy.

Counted in modules, not seconds: torch alone takes 2-4 s to import on this machine, k-diffusion and
stable-audio-tools several more, and a hub lookup without HF_HUB_OFFLINE can wait 30 s on a network
timeout. None of that may stand between a user and "you mistyped a field on line 4".
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import REPO_ROOT
from tests.support import write

HEAVY = ("torch", "k_diffusion", "stable_audio_tools", "transformers", "gradio", "matplotlib", "pyloudnorm", "huggingface_hub")

# Runs an entry point's main (generate.py's unless told) in a fresh interpreter, then reports its exit code
# and which heavy modules it imported.
PROBE = """
import json, sys
from %s import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


def _probe(args: list[str], env: dict[str, str], entry: str = "stable_audio_tools_ext.run.cli") -> dict:
    probe = PROBE % (entry, HEAVY)
    result = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


@pytest.mark.parametrize(
    "args, code",
    [(["-h"], 0), (["--cond-yaml-path", "t.yaml"], 2), (["--cond-yaml-path", "t.yaml", "--output-dir", "o", "--steps", "3"], 2)],
    ids=["help", "missing-flag", "unknown-flag"],
)
def test_help_and_flag_errors_import_nothing_heavy(args, code, small_hub_env) -> None:
    probe = _probe(args, small_hub_env)
    assert probe["code"] == code
    assert probe["heavy"] == []


def test_flag_error_is_one_line_and_a_pointer_to_help(small_hub_env) -> None:
    probe = _probe(["--cond-yaml-path", "t.yaml", "--output-dir", "o", "--steps", "3"], small_hub_env)
    assert probe["stderr"].splitlines() == [
        "error: unrecognized arguments: --steps 3",
        "(run `generate.py -h` for every flag)",
    ]


def test_tree_errors_are_reported_before_the_hub_or_torch(small_hub_env, tmp_path) -> None:
    tree = write(tmp_path, "music:\n  loop: {prompt: x, secons_total: 3}\n")
    probe = _probe(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out")], small_hub_env)
    assert probe["code"] == 2
    assert "music/loop/secons_total: unknown leaf field; did you mean 'seconds_total'?" in probe["stderr"]
    assert probe["heavy"] == []  # not even huggingface_hub: the model is not looked up for a broken tree


def test_check_validates_everything_without_torch(small_hub_env, tmp_path) -> None:
    """``--check`` (what the SLURM scripts run before torchrun) reads the model config from the hub cache."""
    tree = write(tmp_path, "music:\n  loop: {prompt: x, seconds_total: 2, n_samples: 3}\n")
    probe = _probe(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"), "--check"], small_hub_env)
    assert probe["code"] == 0, probe["stderr"]
    assert probe["heavy"] == ["huggingface_hub"]
    assert not (tmp_path / "out").exists()

    too_long = write(tmp_path, "music:\n  loop: {prompt: x, seconds_total: 60}\n", name="long.yaml")
    probe = _probe(["--cond-yaml-path", str(too_long), "--output-dir", str(tmp_path / "out"), "--check"], small_hub_env)
    assert probe["code"] == 2 and "music/loop: seconds_start + seconds_total" in probe["stderr"]
    assert "torch" not in probe["heavy"]

    dora = tmp_path / "dora.safetensors"  # a LoRA file's header is read without torch
    layer = "model.transformer.layers.0.self_attn.to_qkv.parametrizations.weight.0."
    save_file({f"{layer}lora_A": np.zeros((4, 8), np.float16), f"{layer}lora_B": np.zeros((8, 4), np.float16)}, str(dora),
              metadata={"lora_config": json.dumps({"rank": 4, "alpha": 4, "adapter_type": "dora"})})  # fmt: skip
    probe = _probe(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"), "--check", "--lora", str(dora)],
                   small_hub_env)  # fmt: skip
    assert probe["code"] == 2 and f"LoRA adapter {dora}: adapter_type 'dora' is not supported" in probe["stderr"]
    assert "torch" not in probe["heavy"]


@pytest.mark.parametrize(
    "args, error",
    [(["-h"], ""), (["--tmp-dir", "/etc/passwd"], "error: --tmp-dir /etc/passwd: exists and is not a directory"),
     (["--username", "alice"], "error: --username and --password must be given together")],
    ids=["help", "tmp-dir-refused", "username-without-password"],
)
def test_studio_help_and_refusals_import_nothing_heavy(args, error, small_hub_env) -> None:
    """``run_gradio.py`` checks its flags and tmp dir before torch, stable-audio-tools and Gradio, as generate.py does."""
    probe = _probe(args, small_hub_env, entry="run_gradio")
    assert probe["code"] == (2 if error else 0)
    assert probe["stderr"].strip() == error
    assert "torch" not in probe["heavy"] and "gradio" not in probe["heavy"], probe["heavy"]
