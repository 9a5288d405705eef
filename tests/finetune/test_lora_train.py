"""``finetune.py train --lora-rank``: adapters on a frozen base, end to end on the CPU.

A real ``finetune.py`` subprocess trains rank-4 adapters on the tiny model of the real architecture
through stable-audio-tools' own training wrapper and Lightning, bf16-mixed, with demos; the adapter
files it writes are read back by ``generate.py --lora`` and by ``export-lora``, and the checkpoints
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.finetune.lora_settings import LoraSettings, expand_ranges
from stable_audio_tools_ext.finetune.run_folder import TrainingRun, adapter_file
from stable_audio_tools_ext.model.lora_files import read_lora_file
from stable_audio_tools_ext.finetune.lora_training import add_trainable_adapters
from stable_audio_tools_ext.model.lora import PARTS, apply_adapters
from stable_audio_tools_ext.model.lora_files import PARAMETRIZATION
from stable_audio_tools_ext.run import cli as generate_cli
from stable_audio_tools_ext.sampling.engine import generate_audio
from tests.finetune.captioned import AUDIO, prepared
from tests.model.test_lora import (  # noqa: F401 - upstream and sat020_wheel are fixtures
    CPU,
    REQUEST,
    _upstream_config,
    assert_same_weights,
    fresh_model,
    sat020_wheel,
    upstream,
    use_of,
    weights_of,
)
from tests.finetune.test_train import BASE, DEMO_TREE, SMALL, dataset_flags, generate, read_checkpoint, run_in_process, train, wavs

LORA = ["--lora-rank", "4", "--lora-alpha", "8"]


def full_checkpoint_lower_bound(weights: Path) -> int:
    """Bytes a full fine-tuning checkpoint of this model holds at least: every weight, plus the DiT three times more
    (its EMA copy and AdamW's two moments). Measured: 11.6 MB for the tiny model after 2 steps; the bound is 8.2 MB."""
    from safetensors import safe_open

    with safe_open(weights, "pt") as handle:
        dit = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys() if key.startswith("model.model."))
    return weights.stat().st_size + 3 * 4 * dit


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    tmp = prepared(tmp_path_factory.mktemp("captioned"), AUDIO, "train=0.6,val=0.4")
    (tmp / "demo.yaml").write_text(DEMO_TREE, encoding="utf-8")
    return tmp


@pytest.fixture(scope="module")
def lora_run(data, small_hub_env, tmp_path_factory) -> tuple[Path, list[str | Path], subprocess.CompletedProcess]:
    """Three LoRA steps from the hub model in bf16-mixed, a checkpoint every two steps, and demos (validation is
    the same code as full fine-tuning's: test_train.py)."""
    save_dir = tmp_path_factory.mktemp("runs")
    args = [*dataset_flags(data, val=False), *BASE, *SMALL, *LORA, "--precision", "bf16-mixed", "--save-dir", save_dir,
            "--name", "lora", "--checkpoint-every", "2"]  # fmt: skip
    result = train(*args, "--demo-yaml", data / "demo.yaml", "--demo-batch-size", "2", "--max-steps", "3", env=small_hub_env)
    assert result.returncode == 0, result.stderr
    return save_dir / "lora", args, result


def test_a_lora_run_trains_only_adapters_and_checkpoints_them_small(lora_run, small_hub) -> None:
    folder, _, result = lora_run
    run = TrainingRun(folder)
    assert [step for step, _ in run.checkpoints()] == [2, 3]
    info = run.lora_info()
    assert info is not None and info.lora_config == {"rank": 4, "alpha": 8.0, "adapter_type": "lora", "include": None, "exclude": None}
    assert info.base_flags[:2] == ("--pretrained-name", BASE[1]) and info.base_flags[2] == "--revision"
    full = full_checkpoint_lower_bound(next(small_hub.rglob("model_config.json")).parent / "model.safetensors")
    for _, path in run.checkpoints():
        checkpoint = read_checkpoint(path)
        assert checkpoint["lora_config"] == info.lora_config and checkpoint["global_step"] in (2, 3)
        keys = set(checkpoint["state_dict"])
        assert keys and all(key.endswith((".lora.lora_A", ".lora.lora_B")) for key in keys)
        assert any(k.startswith("diffusion.conditioner.") for k in keys) and any(k.startswith("diffusion.model.") for k in keys)
        # Adam state for the adapters and nothing else: the frozen base never had a gradient
        assert len(checkpoint["optimizer_states"][0]["state"]) == len(keys)
        assert path.stat().st_size * 5 <= full, (path.stat().st_size, full)
        adapter = read_lora_file(adapter_file(path))
        assert adapter.config.rank == 4 and adapter.config.alpha == 8.0
        assert len(adapter.layers) == len(keys) // 2
    last = read_checkpoint(run.last_checkpoint()[1])["state_dict"]
    assert any(key.endswith("lora_B") and last[key].abs().max() > 0 for key in last)  # B left zero: training moved it
    assert "parameters to train in rank-4 adapters" in result.stderr and "the rest frozen" in result.stderr
    assert f"--lora {adapter_file(run.last_checkpoint()[1])}" in result.stderr


def test_demos_equal_generate_with_the_adapter_and_differ_from_the_base(lora_run, small_hub_env, tmp_path) -> None:
    """The run's demos are generate.py with its base and the adapter file, and differ from the base (strength 0 giving
    the base bit for bit is tested in tests/model/test_lora.py)."""
    folder, _, _ = lora_run
    run = TrainingRun(folder)
    adapter = adapter_file(run.last_checkpoint()[1])
    tree = tmp_path / "tree.yaml"
    tree.write_text(DEMO_TREE, encoding="utf-8")
    base_flags = run.lora_info().base_flags
    tuned = wavs(generate(tree, tmp_path / "tuned", *base_flags, "--lora", adapter, env=small_hub_env))
    base = wavs(generate(tree, tmp_path / "base", *BASE, env=small_hub_env))
    demos = wavs(folder / "demos" / "step-3")
    assert set(tuned) == set(base) == set(demos) == {"rain_item-1.wav", "dog_item-1.wav"}
    for name in tuned:
        assert np.array_equal(tuned[name], demos[name]), name
        assert not np.array_equal(tuned[name], base[name]), name
    record = json.loads((tmp_path / "tuned" / "manifest.jsonl").read_text().splitlines()[0])
    assert [(entry["file"], entry["strength"]) for entry in record["lora"]] == [(adapter.name, 1.0)]


def test_rerun_continues_the_adapters_and_their_optimizer(lora_run, small_hub_env) -> None:
    folder, args, _ = lora_run
    run = TrainingRun(folder)
    before = read_checkpoint(run.last_checkpoint()[1])
    more = train(*args, "--max-steps", "4", env=small_hub_env)
    assert more.returncode == 0, more.stderr
    assert "continuing" in more.stderr and "from step 3" in more.stderr
    step, last = run.last_checkpoint()
    after = read_checkpoint(last)
    assert step == 4 and after["global_step"] == 4 and after["lr_schedulers"][0]["last_epoch"] == 4
    assert {int(s["step"]) for s in after["optimizer_states"][0]["state"].values()} == {4}  # Adam's moments carried on
    assert set(after["state_dict"]) == set(before["state_dict"])
    assert any(not torch.equal(after["state_dict"][k], before["state_dict"][k]) for k in before["state_dict"])
    assert adapter_file(last).is_file()


def test_export_lora_writes_the_file_the_run_writes_and_refuses_other_checkpoints(lora_run, tmp_path, capsys) -> None:
    folder, _, _ = lora_run
    _, checkpoint = TrainingRun(folder).checkpoints()[0]
    assert finetune_main.main(["export-lora", "--ckpt-path", str(checkpoint), "--output", str(tmp_path / "step2.safetensors")]) == 0
    assert (tmp_path / "step2.safetensors").read_bytes() == adapter_file(checkpoint).read_bytes()
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"diffusion.model.x": torch.zeros(1)}}, plain)
    for args, message in (
        ([plain, tmp_path / "x.safetensors"], "not a LoRA checkpoint"),
        ([tmp_path / "missing.ckpt", tmp_path / "x.safetensors"], "file not found"),
        ([checkpoint, tmp_path / "x.pt"], "an adapter file is a .safetensors file"),
    ):
        try:
            code = finetune_main.main(["export-lora", "--ckpt-path", str(args[0]), "--output", str(args[1])])
        except SystemExit as exc:  # a flag problem: argparse's usage line
            code = exc.code
        assert code == 2 and message in capsys.readouterr().err, args
    assert not (tmp_path / "x.safetensors").exists()
    (tmp_path / "tree.yaml").write_text(DEMO_TREE, encoding="utf-8")
    code = generate_cli.main(["--ckpt-path", str(checkpoint), "--cond-yaml-path", str(tmp_path / "tree.yaml"),
                              "--output-dir", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "is a LoRA checkpoint" in err and "--lora" in err, err


def test_lora_flags_and_runs_of_another_kind_are_refused(lora_run, data, small_hub, tmp_path, capsys) -> None:
    folder, _, _ = lora_run
    common = [*dataset_flags(data, val=False), *SMALL, "--max-steps", "9"]
    snapshot = next(small_hub.rglob("model_config.json"))
    here = ["--save-dir", tmp_path, "--name", "new"]
    cases = [
        ([*common, *BASE, "--lora-alpha", "2", *here], "--lora-alpha applies to LoRA training: add --lora-rank"),
        ([*common, "--model-config", snapshot, "--lora-rank", "4", *here], "--lora-rank adapts starting weights"),
        ([*common, *BASE, "--model-config", snapshot, "--lora-rank", "4", *here], "adapts the hub model as published"),
        ([*common, *BASE, "--save-dir", folder.parent, "--name", "lora"], "is a LoRA run (rank 4)"),
        ([*common, *BASE, "--lora-rank", "8", "--save-dir", folder.parent, "--name", "lora"], "other settings (rank 4, not 8)"),
        ([*common, *BASE, "--lora-rank", "4", "--lora-include", "no.such.layer", *here], "leave no Linear or Conv1d layer"),
    ]
    for args, message in cases:
        if message.startswith("--lora-alpha"):  # a flag problem: argparse's usage line and exit 2
            with pytest.raises(SystemExit, match="2"):
                finetune_main.main(["train", *map(str, args)])
            assert message in capsys.readouterr().err
        else:
            assert message in run_in_process(capsys, args), args
    full = tmp_path / "full"
    TrainingRun(full).save_config(json.loads(snapshot.read_text()))
    err = run_in_process(capsys, [*common, *BASE, *LORA, "--save-dir", tmp_path, "--name", "full"])
    assert "is a full fine-tuning run, not a LoRA one" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"] and [p.name for p in full.iterdir()] == ["model_config.json"]


def test_include_and_exclude_select_layers_as_stable_audio_tools_does() -> None:
    assert expand_ranges("layers.[0-2].") == ["layers.0.", "layers.1.", "layers.2."]
    assert expand_ranges("a[2-1]b[0-1]") == ["a2b0", "a2b1", "a1b0", "a1b1"]
    settings = LoraSettings(4, 4.0, include=("transformer.layers.[0-1].",), exclude=("cross_attn",))
    assert settings.selects("model.transformer.layers.1.self_attn.to_qkv")
    assert not settings.selects("model.transformer.layers.1.cross_attn.to_q")
    assert not settings.selects("model.transformer.layers.2.self_attn.to_qkv")
    assert LoraSettings(4, 4.0).selects("anything")


def test_training_adapters_compute_what_upstreams_parametrization_computes(upstream) -> None:
    """The forward hooks give the function stable-audio-tools 0.0.20's LoRA trains (W + alpha/rank B A), to float error."""
    ours, theirs = fresh_model().model.train(), fresh_model().model.train()
    settings = LoraSettings(4, 8.0)
    add_trainable_adapters(ours, settings)
    for part in PARTS:
        upstream.model.add_lora(getattr(theirs, part), _upstream_config(upstream, rank=4, alpha=8))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in ours.named_parameters():
            if name.endswith("lora_B"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        their_params = dict(theirs.named_parameters())
        copied = 0
        for name, param in ours.named_parameters():
            if ".lora." in name:
                their_params[name.replace(".lora.", PARAMETRIZATION)].copy_(param)
                copied += 1
    assert copied == sum(1 for n in their_params if n.endswith(("lora_A", "lora_B")))  # the same layers, every one
    x = torch.randn(2, 64, 16, generator=generator)
    t = torch.rand(2, generator=generator)
    conditioning = [{"prompt": "rain", "seconds_start": 0, "seconds_total": 1.5}] * 2
    outputs = []
    with torch.no_grad():
        for model in (ours, theirs, fresh_model().model.train()):
            outputs.append(model(x, t, cond=model.conditioner(conditioning, "cpu"), cfg_dropout_prob=0.0))
    assert not torch.allclose(outputs[0], outputs[2], rtol=1e-3, atol=1e-3)  # the adapters change the output
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_an_adapter_trained_here_gives_the_same_weights_and_audio_in_stable_audio_tools_0_0_20(lora_run, upstream) -> None:
    run = TrainingRun(lora_run[0])
    adapter = adapter_file(run.checkpoints()[0][1])
    theirs = fresh_model()
    upstream.loader.load_and_apply_loras(theirs.model, [str(adapter)], "diffusion_cond")
    ours = fresh_model()
    adapted = apply_adapters(ours.model, [use_of(adapter)], CPU)
    assert_same_weights(weights_of(ours.model), weights_of(theirs.model))
    assert torch.equal(generate_audio(ours, [REQUEST]), generate_audio(theirs, [REQUEST]))
    adapted.set([])
    assert not torch.equal(generate_audio(ours, [REQUEST]), generate_audio(theirs, [REQUEST]))
