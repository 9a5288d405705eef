"""Models: hub revisions, Stable Audio Open Small, local and training checkpoints, export, precision."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from stable_audio_tools_ext.model.export import main as export_main
from stable_audio_tools_ext.model.loading import load_model
from stable_audio_tools_ext.model.spec import ModelLoadError, ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID, SMALL_REPO_ID, build_tiny_hub_cache, offline_hub_env
from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.request import GenerationRequest, InitAudio
from stable_audio_tools_ext.run import cli, exits
from stable_audio_tools_ext.run.leaf_checks import model_problems
from stable_audio_tools_ext.sampling.engine import generate_audio
from stable_audio_tools_ext.tree.conditions import Condition
from tests.conftest import CACHE, REPO_ROOT, SMALL_WINDOW_SAMPLES
from tests.support import GENERATE, audio_files, write

FAST = ["--sample-steps", "6"]
TREE = "kit:\n  kick: {prompt: kick drum, seconds_total: 1.5, n_samples: 2}\n  hat: {prompt: closed hat, seconds_total: 1}\n"
CPU = torch.device("cpu")


def snapshot(hub: Path, repo_id: str) -> Path:
    return next((hub / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots").iterdir())


def generate(tmp_path: Path, out: Path, *extra: str) -> int:
    return cli.main(["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), "--clip-length", *FAST, *extra])


def test_hub_revision_is_pinned_and_recorded(small_hub, tmp_path, capsys) -> None:
    commit = (small_hub / "hub" / "models--stabilityai--stable-audio-open-1.0" / "refs" / "main").read_text()
    out = tmp_path / "out"
    assert generate(tmp_path, out, "--revision", commit) == exits.EXIT_OK, capsys.readouterr().err
    assert {r["model_revision"] for r in load_records(out).values()} == {commit}
    assert f"stabilityai/stable-audio-open-1.0 @ {commit[:12]} (safetensors)" in capsys.readouterr().out


# --- Stable Audio Open Small (rectified flow, pingpong) ---------------------------------------

SAO_SMALL_HUB = CACHE / "hf-tests-sao-small-window64"


@pytest.fixture(scope="module")
def sao_small_hub() -> Path:
    return build_tiny_hub_cache(SAO_SMALL_HUB, sample_size=SMALL_WINDOW_SAMPLES, repo_id=SMALL_REPO_ID)


@pytest.fixture(scope="module")
def sao_small_model(sao_small_hub):
    """Loaded in-process as a local model (the in-process hub holds the 1.0 model; T5 is the same)."""
    folder = snapshot(sao_small_hub, SMALL_REPO_ID)
    request = ModelRequest(model_config=folder / "model_config.json", ckpt_path=folder / "model.ckpt")
    return load_model(read_model_spec(request), CPU)


def test_small_defaults_come_from_the_model_family(sao_small_model) -> None:
    family = sao_small_model.spec.family
    assert (family.sampler_type, family.steps, family.cfg_scale) == ("pingpong", 8, 1.0)
    assert sao_small_model.weights_read == "checkpoint"  # upstream's {"state_dict": ...} model.ckpt


def test_small_pingpong_is_batch_invariant(sao_small_model) -> None:
    requests = [
        GenerationRequest(prompt=p, seed=s, seconds_start=0, seconds_total=t, steps=8, cfg_scale=1.0,
                          sampler_type="pingpong", sigma_min=0.0, sigma_max=1.0)
        for p, s, t in (("rain", 1, 2.0), ("a kick drum", 2, 1.5), ("birds", 3, 1.8))  # one 48-frame bucket
    ]  # fmt: skip
    alone = torch.cat([generate_audio(sao_small_model, [r]) for r in requests])
    batched = generate_audio(sao_small_model, requests)
    assert torch.isfinite(batched).all()
    assert (batched - alone).abs().max() <= 1e-4
    assert (alone[0] - alone[1]).abs().max() > 1e-2


def test_small_through_the_hub_path_end_to_end(sao_small_hub, tmp_path) -> None:
    env = offline_hub_env(sao_small_hub)
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = tmp_path / "out"
    command = [sys.executable, GENERATE, "--pretrained-name", SMALL_REPO_ID, "--cond-yaml-path", str(write(tmp_path, TREE)),
               "--output-dir", str(out), "--clip-length", "--batch-size", "2"]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pingpong, 8 steps, cfg 1.0" in result.stdout
    records = load_records(out)
    assert {(r["sampler_type"], r["steps"], r["cfg_scale"]) for r in records.values()} == {("pingpong", 8, 1.0)}
    assert sorted(audio_files(out)) == ["kit/hat_item-1.wav", "kit/kick_item-1.wav", "kit/kick_item-2.wav"]
    assert sf.info(str(out / "kit/kick_item-1.wav")).frames == int(1.5 * 44100)


def test_small_rejects_v_samplers_and_large_sigma(sao_small_hub, tmp_path, capsys) -> None:
    folder = snapshot(sao_small_hub, SMALL_REPO_ID)
    model = ["--model-config", str(folder / "model_config.json"), "--ckpt-path", str(folder / "model.ckpt")]
    assert generate(tmp_path, tmp_path / "o", *model, "--sampler-type", "dpmpp-3m-sde", "--sigma-max", "80") == 2
    err = capsys.readouterr().err
    assert "--sampler-type dpmpp-3m-sde does not work with this model (rf_denoiser); use one of pingpong" in err
    assert "--sigma-max 80.0: flow models (rf_denoiser) need a value <= 1" in err


# --- training checkpoints ----------------------------------------------------------------------


def training_checkpoint(small_hub: Path, path: Path, with_ema: bool, extra: dict | None = None) -> dict[str, torch.Tensor]:
    """Write a checkpoint shaped like stable-audio-tools' train.py output; returns the EMA DiT weights."""
    folder = snapshot(small_hub, DEMO_REPO_ID)
    online = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(0)
    ema = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in online.items() if k.startswith("model.")}
    state = {f"diffusion.{k}": v for k, v in online.items()}
    state["losses.mse_loss.weight"] = torch.tensor(1.0)
    if with_ema:
        state.update({f"diffusion_ema.ema_model.{k[len('model.'):]}": v for k, v in ema.items()})
        state.update({"diffusion_ema.initted": torch.tensor(True), "diffusion_ema.step": torch.tensor(1000)})
    checkpoint = {
        "state_dict": state, "epoch": 4, "global_step": 1000,
        "model_config": json.loads((folder / "model_config.json").read_text()),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}],
        "lr_schedulers": [], **(extra or {}),
    }  # fmt: skip
    torch.save(checkpoint, path)
    return ema


def config_of(small_hub: Path) -> Path:
    return snapshot(small_hub, DEMO_REPO_ID) / "model_config.json"


@pytest.mark.parametrize("weights", [None, "ema", "online"])
def test_training_checkpoint_gives_ema_or_online_weights(small_hub, tmp_path, weights) -> None:
    ckpt = tmp_path / "epoch=4-step=1000.ckpt"
    ema = training_checkpoint(small_hub, ckpt, with_ema=True)
    online = load_file(snapshot(small_hub, DEMO_REPO_ID) / "model.safetensors")
    loaded = load_model(read_model_spec(ModelRequest(model_config=config_of(small_hub), ckpt_path=ckpt, weights=weights)), CPU)
    state = loaded.model.state_dict()
    expected = online if weights == "online" else ema  # EMA is the default when present
    key = "model.model.transformer.layers.0.self_attn.to_qkv.weight"
    assert torch.equal(state[key], expected[key])
    assert torch.equal(state["pretransform.model.decoder.layers.0.weight_v"], online["pretransform.model.decoder.layers.0.weight_v"])
    assert loaded.weights_read == f"training checkpoint, {weights or 'ema'} weights"


def test_training_checkpoint_without_ema(small_hub, tmp_path) -> None:
    ckpt = tmp_path / "last.ckpt"
    training_checkpoint(small_hub, ckpt, with_ema=False)
    loaded = load_model(read_model_spec(ModelRequest(model_config=config_of(small_hub), ckpt_path=ckpt)), CPU)
    assert loaded.weights_read == "training checkpoint, online weights"
    with pytest.raises(ModelLoadError, match="has no EMA weights"):
        load_model(read_model_spec(ModelRequest(model_config=config_of(small_hub), ckpt_path=ckpt, weights="ema")), CPU)


def test_checkpoints_needing_unpickling_are_refused_unless_trusted(small_hub, tmp_path, capsys) -> None:
    ckpt = tmp_path / "pickled.ckpt"
    training_checkpoint(small_hub, ckpt, with_ema=True, extra={"hyper_parameters": argparse.Namespace(lr=1e-5)})
    model = ["--model-config", str(config_of(small_hub)), "--ckpt-path", str(ckpt)]
    assert generate(tmp_path, tmp_path / "refused", *model) == exits.EXIT_USAGE
    assert "pass --trust-checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert generate(tmp_path, tmp_path / "trusted", *model, "--trust-checkpoint") == exits.EXIT_OK


def test_export_round_trip_gives_the_same_audio(small_hub, tmp_path, capsys) -> None:
    ckpt = tmp_path / "epoch=4-step=1000.ckpt"
    training_checkpoint(small_hub, ckpt, with_ema=True)
    exported = tmp_path / "exported"
    assert export_main([str(ckpt), "--output-dir", str(exported)]) == 0  # config read from the checkpoint itself
    assert capsys.readouterr().out == f"exported {ckpt} -> {exported}/model.safetensors + model_config.json\n"
    assert sorted(p.name for p in exported.iterdir()) == ["model.safetensors", "model_config.json"]
    from_ckpt = load_model(read_model_spec(ModelRequest(model_config=config_of(small_hub), ckpt_path=ckpt)), CPU)
    from_export = load_model(read_model_spec(ModelRequest(
        model_config=exported / "model_config.json", ckpt_path=exported / "model.safetensors")), CPU)  # fmt: skip
    request = [GenerationRequest(prompt="a snare roll", seed=7, seconds_start=0, seconds_total=2, steps=6)]
    assert torch.equal(generate_audio(from_ckpt, request), generate_audio(from_export, request))


def test_export_cli_reports_bad_input(small_hub, tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stable_audio_tools_ext.model.export", str(tmp_path / "missing.ckpt"), "--output-dir", str(tmp_path / "o")],
        env=offline_hub_env(small_hub), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "missing.ckpt" in result.stderr


def test_pretransform_override_replaces_the_vae(small_hub, tmp_path) -> None:
    folder = snapshot(small_hub, DEMO_REPO_ID)
    state = load_file(folder / "model.safetensors")
    vae = {k[len("pretransform.model."):]: v * 0.5 for k, v in state.items() if k.startswith("pretransform.model.")}
    from safetensors.torch import save_file

    save_file(vae, tmp_path / "vae.safetensors")
    request = ModelRequest(pretrained_name=DEMO_REPO_ID, pretransform_ckpt_path=tmp_path / "vae.safetensors")
    spec = read_model_spec(request)
    assert ";vae=" in spec.revision  # the override is part of the model's identity (and so of resume)
    loaded = load_model(spec, CPU)
    key = "decoder.layers.0.weight_v"
    assert torch.equal(loaded.model.pretransform.model.state_dict()[key], vae[key])
    broken = {k: v for k, v in vae.items() if not k.startswith("decoder.layers.0.")}
    save_file(broken, tmp_path / "broken_vae.safetensors")
    with pytest.raises(ModelLoadError, match="does not fit the model's VAE: .* missing keys: decoder.layers.0"):
        load_model(read_model_spec(dataclasses.replace(request, pretransform_ckpt_path=tmp_path / "broken_vae.safetensors")), CPU)


def test_bf16_on_cpu_runs_and_gives_finite_float32_audio(small_hub, tmp_path) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out, "--precision", "bf16") == exits.EXIT_OK
    records = load_records(out)
    assert {r["precision"] for r in records.values()} == {"bf16"}
    for path in audio_files(out).values():
        data, _ = sf.read(path, dtype="float32")
        assert np.isfinite(data).all() and np.abs(data).max() > 0


def test_init_noise_levels_are_checked_against_the_models_family(sao_small_model, small_model) -> None:
    init = InitAudio("/data/groove.wav", "0" * 64)
    leaves = [Condition(("a",), "x", init_audio=init, line=1), Condition(("b",), "x", init_audio=init, init_noise_level=2.0, line=2),
              Condition(("c",), "x", init_audio=init, init_noise_level=0.4, line=3)]  # fmt: skip
    flow = [(p.yaml_path, p.message.split(":")[0]) for p in model_problems(leaves, sao_small_model.spec, 0.0)]
    assert flow == [("a/init_noise_level", "set init_noise_level in (0, 1)"),
                    ("b/init_noise_level", "expected a level above 0.1192 (where the flow schedule ends) and at most 1 "
                     "for this model (rf_denoiser), got 2")]  # fmt: skip
    assert model_problems(leaves, small_model.spec, 0.3) == []  # v models: the default 1.0 and 2.0 are both fine
    low = [Condition(("d",), "x", init_audio=init, init_noise_level=0.3, line=4)]
    assert [p.message for p in model_problems(low, small_model.spec, 0.3)] == [
        "expected a level above sigma_min 0.3 and at most 500 for this model (v), got 0.3"]
