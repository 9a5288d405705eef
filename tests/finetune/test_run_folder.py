"""The run folder's bookkeeping and the atomic checkpoint writer, in-process (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stable_audio_tools_ext.finetune.callbacks import AtomicCheckpointIO
from stable_audio_tools_ext.finetune.run_folder import LoraRunInfo, TrainingRun, adapter_file, step_of


def test_step_of_reads_lightning_checkpoint_names() -> None:
    names = {"epoch=3-step=1200.ckpt": 1200, "step=7.ckpt": 7, "epoch=1-step=10-v1.ckpt": 10, "last.ckpt": None,
             "hpc_ckpt_1.ckpt": None, "epoch=2-stepper=5.ckpt": None}  # fmt: skip
    assert {name: step_of(Path("runs/a/checkpoints") / name) for name in names} == names


def test_last_checkpoint_is_the_highest_step_not_the_newest_file(tmp_path) -> None:
    run = TrainingRun(tmp_path / "run")
    run.checkpoints_dir.mkdir(parents=True)
    for name in ("epoch=0-step=20.ckpt", "epoch=0-step=100.ckpt", "epoch=0-step=3.ckpt", "notes.ckpt"):
        (run.checkpoints_dir / name).write_bytes(b"x")
    assert [step for step, _ in run.checkpoints()] == [3, 20, 100]
    assert run.last_checkpoint()[0] == 100


def test_restart_moves_everything_aside_and_deletes_nothing(tmp_path) -> None:
    run = TrainingRun(tmp_path / "run")
    assert run.set_aside() is None  # a new run: nothing to move
    run.checkpoints_dir.mkdir(parents=True)
    (run.checkpoints_dir / "epoch=0-step=1.ckpt").write_bytes(b"weights")
    run.save_config({"model_type": "diffusion_cond"})
    run.save_lora_info(LoraRunInfo({"rank": 4}, ("--pretrained-name", "x"), "x"))
    aside = run.set_aside()
    assert aside is not None and aside.parent == run.folder
    assert (aside / "checkpoints" / "epoch=0-step=1.ckpt").read_bytes() == b"weights"
    assert (aside / "model_config.json").is_file() and (aside / "lora_base.json").is_file()
    assert run.saved_config() is None and run.last_checkpoint() is None and run.lora_info() is None


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("the job was killed while writing")


def test_a_checkpoint_write_that_fails_leaves_the_previous_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "checkpoints" / "epoch=0-step=4.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    with pytest.raises(RuntimeError, match="killed while writing"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "broken": _Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_keep_latest_deletes_all_but_the_highest_steps(tmp_path) -> None:
    run = TrainingRun(tmp_path / "run")
    run.checkpoints_dir.mkdir(parents=True)
    for step in (2, 10, 4, 8, 6):
        (run.checkpoints_dir / f"epoch=0-step={step}.ckpt").write_bytes(b"x")
        adapter_file(run.checkpoints_dir / f"epoch=0-step={step}.ckpt").write_bytes(b"a LoRA run's adapter")
    (run.checkpoints_dir / "notes.txt").write_text("not a checkpoint")
    assert sorted(p.name for p in run.keep_latest(2)) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "epoch=0-step=6.ckpt"]
    assert [step for step, _ in run.checkpoints()] == [8, 10]
    assert sorted(p.name for p in run.checkpoints_dir.glob("*.safetensors")) == ["epoch=0-step=10.safetensors", "epoch=0-step=8.safetensors"]
    assert (run.checkpoints_dir / "notes.txt").is_file()
    assert run.keep_latest(0) == [] and len(run.checkpoints()) == 2  # 0: keep all
