"""``finetune.py train`` end to end on the CPU: captioned audio -> prepare -> train -> generate.py.

Every training run is a real ``finetune.py`` subprocess on the tiny model of the real architecture
(small window, 64 latent frames) from the offline hub, through stable-audio-tools' own training
wrapper, dataloader and Lightning. The model config used is the hub's own, so SAO 1.0's optimizer
settings (AdamW, the ``InverseLR`` scheduler that 0.0.19 cannot build under current torch) and EMA
are what trains. Checkpoints are read back with ``torch.load(weights_only=True)``, as ``generate.py``
reads them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.finetune.run_folder import TrainingRun
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.run.exits import EXIT_INTERRUPTED
from tests.conftest import REPO_ROOT
from tests.finetune.captioned import AUDIO, prepared

DEMO_TREE = """\
rain:
  prompt: rain on a tin roof, then wind
  seconds_total: 1
  seed: 7
  steps: 8
dog:
  prompt: a dog barks — café
  seconds_total: 1.5
  seed: 11
  steps: 8
"""
BASE = ["--pretrained-name", DEMO_REPO_ID]
SMALL = ["--batch-size", "2", "--num-workers", "1"]


def train(*args: str | Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "finetune.py"), "train", *map(str, args)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def generate(tree: Path, output_dir: Path, *model: str | Path, env: dict[str, str]) -> Path:
    command = [sys.executable, str(REPO_ROOT / "generate.py"), "--cond-yaml-path", str(tree), "--output-dir", str(output_dir),
               "--clip-length", "--precision", "fp32", *map(str, model)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return output_dir


def wavs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): sf.read(p)[0] for p in sorted(folder.rglob("*.wav"))}


def read_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def training_state(path: Path) -> tuple[int, int, int, int]:
    """(global step, scheduler steps, EMA steps, optimizer steps) stored in a checkpoint."""
    checkpoint = read_checkpoint(path)
    optimizer_steps = {int(state["step"]) for state in checkpoint["optimizer_states"][0]["state"].values()}
    assert len(optimizer_steps) == 1
    return (checkpoint["global_step"], checkpoint["lr_schedulers"][0]["last_epoch"],
            int(checkpoint["state_dict"]["diffusion_ema.step"]), optimizer_steps.pop())  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Clotho-format captions for audio of every rate, channel count and length, prepared into train and val splits."""
    tmp = prepared(tmp_path_factory.mktemp("captioned"), AUDIO, "train=0.6,val=0.4")
    (tmp / "demo.yaml").write_text(DEMO_TREE, encoding="utf-8")
    return tmp


def dataset_flags(data: Path, val: bool = True) -> list[str | Path]:
    flags: list[str | Path] = ["--dataset-config", data / "data" / "dataset_config.train.json"]
    return flags + (["--val-dataset-config", data / "data" / "dataset_config.val.json"] if val else [])


@pytest.fixture(scope="module")
def run_a(data, small_hub_env, tmp_path_factory) -> tuple[Path, list[str | Path], subprocess.CompletedProcess]:
    """Three steps from the hub model in bf16-mixed, with validation, a checkpoint every two steps, and demos."""
    save_dir = tmp_path_factory.mktemp("runs")
    args = [*dataset_flags(data), *BASE, *SMALL, "--precision", "bf16-mixed", "--save-dir", save_dir, "--name", "clotho",
            "--checkpoint-every", "2", "--val-every", "2", "--demo-yaml", data / "demo.yaml", "--demo-batch-size", "2"]  # fmt: skip
    result = train(*args, "--max-steps", "3", env=small_hub_env)
    assert result.returncode == 0, result.stderr
    return save_dir / "clotho", args, result


def test_a_run_folder_holds_checkpoints_config_logs_and_demos(run_a, small_hub) -> None:
    folder, _, result = run_a
    run = TrainingRun(folder)
    assert [step for step, _ in run.checkpoints()] == [2, 3]  # every 2 steps, and the step training ended on
    hub_config = json.loads(next(small_hub.rglob("model_config.json")).read_text())
    assert run.saved_config() == hub_config
    checkpoint = read_checkpoint(run.last_checkpoint()[1])  # generate.py's safe loading reads it
    assert checkpoint["model_config"] == hub_config  # embedded, as upstream's train.py does
    assert training_state(run.last_checkpoint()[1]) == (3, 3, 3, 3)
    assert not list(folder.rglob("*.partial"))
    metrics = (folder / "logs" / "csv" / "from-step-0" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert {"train/loss", "train/lr", "val/avg_loss", "val/loss_0.5"} <= set(header)
    assert sum(bool(row.split(",")[header.index("val/avg_loss")]) for row in metrics[1:]) == 1  # once, after step 2
    assert "done at step 3" in result.stderr and "python generate.py --ckpt-path" in result.stderr
    for step in (2, 3):
        demos = wavs(folder / "demos" / f"step-{step}")
        assert set(demos) == {"rain_item-1.wav", "dog_item-1.wav"}
        assert demos["dog_item-1.wav"].shape == (66150, 2)


def test_the_checkpoint_generates_without_model_config_and_differs_from_the_base_model(run_a, small_hub_env, tmp_path) -> None:
    """The demo of a checkpoint is exactly what generate.py makes of it, bf16-mixed training included; the fine-tune changed the audio."""
    folder, _, _ = run_a
    _, checkpoint = TrainingRun(folder).last_checkpoint()
    tree = folder.parent / "tree.yaml"
    tree.write_text(DEMO_TREE, encoding="utf-8")
    tuned = wavs(generate(tree, tmp_path / "tuned", "--ckpt-path", checkpoint, env=small_hub_env))
    base = wavs(generate(tree, tmp_path / "base", *BASE, env=small_hub_env))
    demos = wavs(folder / "demos" / "step-3")
    assert set(tuned) == set(base) == set(demos)
    for name in tuned:
        assert np.array_equal(tuned[name], demos[name]), name
        assert not np.array_equal(tuned[name], base[name]), name
    record = json.loads((tmp_path / "tuned" / "manifest.jsonl").read_text().splitlines()[0])
    assert record["model"] == str(checkpoint)


def test_rerun_says_complete_then_continues_to_a_larger_max_steps(run_a, small_hub_env, capsys) -> None:
    """The "complete" answer comes before any model loads, so it is checked in this process."""
    folder, args, _ = run_a
    before = sorted(p.name for p in folder.rglob("*"))
    assert finetune_main.main(["train", *map(str, args), "--max-steps", "3"]) == 0
    assert "is complete: its last checkpoint is at step 3" in capsys.readouterr().err
    assert sorted(p.name for p in folder.rglob("*")) == before
    more = train(*args, "--max-steps", "4", env=small_hub_env)
    assert more.returncode == 0, more.stderr
    assert "continuing" in more.stderr and "from step 3" in more.stderr
    step, last = TrainingRun(folder).last_checkpoint()
    assert step == 4 and training_state(last) == (4, 4, 4, 4)  # step count, scheduler, EMA, optimizer carried on
    assert (folder / "logs" / "csv" / "from-step-3" / "metrics.csv").is_file()
    assert (folder / "logs" / "csv" / "from-step-0" / "metrics.csv").is_file()  # the first stretch's log is kept


def test_a_training_checkpoint_starts_a_new_run_strictly_and_restart_keeps_the_old_files(run_a, data, small_hub_env, tmp_path) -> None:
    """--pretrained-ckpt-path takes a wrapped Lightning checkpoint (upstream's copy_state_dict would copy nothing)."""
    folder, _, _ = run_a
    _, source = TrainingRun(folder).checkpoints()[0]
    # The same architecture with a learning rate too small to move the weights: the new run's first
    # checkpoint then shows which weights it started from.
    config = json.loads((folder / "model_config.json").read_text())
    config["training"]["optimizer_configs"]["diffusion"] = {"optimizer": {"type": "AdamW", "config": {"lr": 1e-20}}}
    (tmp_path / "still.json").write_text(json.dumps(config))
    args = [*dataset_flags(data, val=False), *SMALL, "--pretrained-ckpt-path", source, "--model-config", tmp_path / "still.json",
            "--save-dir", tmp_path / "runs", "--name", "continued", "--max-steps", "1"]  # fmt: skip
    result = train(*args, env=small_hub_env)
    assert result.returncode == 0, result.stderr
    assert "training checkpoint, ema weights" in result.stderr
    started = read_checkpoint(TrainingRun(tmp_path / "runs" / "continued").last_checkpoint()[1])["state_dict"]
    source_state = read_checkpoint(source)["state_dict"]
    online_dit = {k: v for k, v in source_state.items() if k.startswith("diffusion.model.")}
    assert any(not torch.equal(v, source_state[k.replace("diffusion.", "diffusion_ema.ema_", 1)]) for k, v in online_dit.items())
    for key, value in started.items():
        if key.startswith("diffusion.model."):  # the DiT starts from the source run's EMA weights ...
            assert torch.allclose(value, source_state[key.replace("diffusion.", "diffusion_ema.ema_", 1)], atol=1e-12), key
        elif key.startswith("diffusion."):  # ... with its conditioner and VAE, as unwrap_model.py exports them
            assert torch.equal(value, source_state[key]), key

    restarted = train(*args, "--restart", env=small_hub_env)
    assert restarted.returncode == 0, restarted.stderr
    run = TrainingRun(tmp_path / "runs" / "continued")
    aside = list(run.folder.glob("restarted-*"))
    assert len(aside) == 1 and "kept in" in restarted.stderr
    assert [p.name for p in (aside[0] / "checkpoints").iterdir()] == ["epoch=0-step=1.ckpt"]
    assert [step for step, _ in run.checkpoints()] == [1]


def test_sigterm_saves_a_checkpoint_at_the_step_it_stops_on_and_the_run_continues(data, small_hub_env, tmp_path) -> None:
    """Without --max-steps training runs until stopped; a SIGTERM ends it after the current step, with a checkpoint,
    no demos and no validation (Lightning validates when a callback stops training early)."""
    args = [*dataset_flags(data), *BASE, *SMALL, "--save-dir", tmp_path, "--name", "open", "--checkpoint-every", "2",
            "--val-every", "1000", "--demo-yaml", data / "demo.yaml", "--demo-batch-size", "2"]  # fmt: skip
    command = [sys.executable, str(REPO_ROOT / "finetune.py"), "train", *map(str, args)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=small_hub_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # the first progress line: a step of training is done
        lines.append(line)
        if line.startswith("step 2"):
            break
    process.send_signal(signal.SIGTERM)
    lines += process.stderr.read().splitlines(keepends=True)
    assert process.wait(timeout=120) == EXIT_INTERRUPTED, "".join(lines)  # as generate.py: stopped, rerun to continue
    stopped = next(line for line in lines if line.startswith("stopped by SIGTERM at step "))
    step = int(stopped.split()[5].rstrip(";"))
    run = TrainingRun(tmp_path / "open")
    assert step >= 3 and run.last_checkpoint()[0] == step  # the signal came after step 2's line: step 2 ran on
    assert training_state(run.last_checkpoint()[1])[0] == step
    # step 2's checkpoint had its demos; the stop checkpoint none (a time limit may be running out), and says how to make them
    assert (run.demos_dir(2) / "rain_item-1.wav").is_file() and not run.demos_dir(step).exists()
    assert f"demos: none for step {step}, which stopped on a signal" in process.stdout.read()
    metrics = (tmp_path / "open" / "logs" / "csv" / "from-step-0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/" not in metrics  # --val-every 1000: nothing to validate before the stop
    more = train(*args, "--max-steps", str(step + 1), env=small_hub_env)
    assert more.returncode == 0 and run.last_checkpoint()[0] == step + 1, more.stderr
    assert (run.demos_dir(step + 1) / "rain_item-1.wav").is_file()  # --max-steps reached: demos as usual


def test_keep_checkpoints_keeps_the_latest_only_and_val_every_counts_optimizer_steps(data, small_hub_env, tmp_path) -> None:
    """Five steps, each of two accumulated batches of 1 (the 2 training files: one epoch, as Lightning ends a step with each epoch),
    then continued to a sixth."""
    args = [*dataset_flags(data), *BASE, *SMALL, "--batch-size", "1", "--accum-batches", "2", "--val-every", "2",
            "--save-dir", tmp_path, "--name", "kept", "--checkpoint-every", "1", "--keep-checkpoints", "2"]  # fmt: skip
    result = train(*args, "--max-steps", "5", env=small_hub_env)
    assert result.returncode == 0, result.stderr
    assert [step for step, _ in TrainingRun(tmp_path / "kept").checkpoints()] == [4, 5]
    metrics = (tmp_path / "kept" / "logs" / "csv" / "from-step-0" / "metrics.csv").read_text().splitlines()
    column = metrics[0].split(",").index("val/avg_loss")
    assert sum(bool(row.split(",")[column]) for row in metrics[1:]) == 2  # after steps 2 and 4, not after every 2 batches
    # continued from step 5: its next step takes two micro-batches as well, the EMA and scheduler count it
    more = train(*args, "--max-steps", "6", env=small_hub_env)
    assert more.returncode == 0, more.stderr
    step, last = TrainingRun(tmp_path / "kept").last_checkpoint()
    assert step == 6 and training_state(last) == (6, 6, 6, 6)


def run_in_process(capsys, args: list[str | Path]) -> str:
    """``finetune.py train`` in this process; it must refuse with exit code 2. Returns stderr."""
    code = finetune_main.main(["train", *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2, err
    return err


def test_bad_input_is_one_line_and_exit_2_before_anything_is_written(data, small_hub, tmp_path, capsys) -> None:
    snapshot = next(small_hub.rglob("model_config.json")).parent  # SAO (the CLAP has a model.safetensors too)
    runs = tmp_path / "runs"
    common = [*SMALL, "--save-dir", runs, "--name", "bad", "--max-steps", "1"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "empty.json").write_text(json.dumps({"dataset_type": "audio_dir", "datasets": [{"id": "x", "path": str(empty)}]}))
    no_training = json.loads((snapshot / "model_config.json").read_text())
    del no_training["training"]
    (tmp_path / "no_training.json").write_text(json.dumps(no_training))
    from safetensors.torch import load_file, save_file

    state = load_file(snapshot / "model.safetensors")
    state.pop("model.model.to_cond_embed.0.weight")
    save_file(state, tmp_path / "broken.safetensors")
    (tmp_path / "bad.yaml").write_text("rain: {prompt: rain, seconds_total: 999}\n")
    train_files = sum(1 for link in (data / "data" / "splits" / "train").rglob("*") if link.is_symlink())
    assert 2 <= train_files < 5
    cases = [
        ([*dataset_flags(data), "--model-config", snapshot / "model_config.json", "--pretrained-ckpt-path", tmp_path / "broken.safetensors"],
         "--pretrained-ckpt-path " + str(tmp_path / "broken.safetensors") + " does not match its model config: 1 missing keys"),
        (["--dataset-config", tmp_path / "empty.json", *BASE], f"--dataset-config {tmp_path / 'empty.json'}: no audio files in {empty}"),
        ([*dataset_flags(data), *BASE, "--batch-size", "5"], f"--batch-size 5 is more than its {train_files} files"),
        ([*dataset_flags(data), "--model-config", tmp_path / "no_training.json"], "the model config has no 'training' section"),
        ([*dataset_flags(data)], "no model: give --pretrained-name"),
        (["--dataset-config", tmp_path / "nope.json", *BASE], "nope.json: file not found"),
        ([*dataset_flags(data), *BASE, "--demo-yaml", tmp_path / "bad.yaml"], "--demo-yaml"),
        ([*dataset_flags(data), *BASE, "--pretrained-ckpt-path", tmp_path / "broken.safetensors"], "give one"),
    ]  # fmt: skip
    for args, message in cases:
        err = run_in_process(capsys, [*common, *args])
        assert message in err, err
        assert len(err.strip().splitlines()) == 1 or "--demo-yaml" in err, err
        assert not runs.exists(), f"{message}: something was written"


def test_a_run_refuses_another_model_config(run_a, small_hub, tmp_path, capsys) -> None:
    folder, args, _ = run_a
    config = json.loads((folder / "model_config.json").read_text())
    config["training"]["optimizer_configs"]["diffusion"]["optimizer"]["config"]["lr"] = 1e-3
    (tmp_path / "other.json").write_text(json.dumps(config))
    before = sorted(p.name for p in folder.rglob("*"))
    err = run_in_process(capsys, [*args, "--model-config", tmp_path / "other.json", "--max-steps", "9"])
    assert "trained another model config (first difference: training.optimizer_configs.diffusion.optimizer.config.lr)" in err
    assert sorted(p.name for p in folder.rglob("*")) == before



def test_the_example_demo_tree_plans_for_stable_audio_open() -> None:
    """example/finetune/demos.yaml, as --demo-yaml reads it, against SAO 1.0's 47.55 s window."""
    from stable_audio_tools_ext.finetune.demos import plan_demos
    from stable_audio_tools_ext.model.tiny import tiny_model_config

    items = plan_demos(REPO_ROOT / "example" / "finetune" / "demos.yaml", tiny_model_config())
    assert [item.relpath for item in items] == ["ambience/forest-birds_item-1.wav", "ambience/rain-street_item-1.wav",
                                               "foley/footsteps-gravel_item-1.wav", "foley/door-creak_item-1.wav"]  # fmt: skip
    assert {item.request.seconds_total for item in items} == {15}
