"""``--demo-yaml``: generate a condition tree with each checkpoint, through ``generate.py``'s engine.

Upstream's demo callback renders a few prompts and sends them to wandb. Here the demos are files:
the tree is generated into ``SAVE_DIR/NAME/demos/step-N/`` exactly as ``generate.py --clip-length
--precision fp32 --ckpt-path <that checkpoint>`` would write it (same items, per-item seeds, WAVs and
manifest), so the demos of successive checkpoints differ only by the weights and can be compared
file by file. The tree is checked before training starts.

What is generated is what the checkpoint holds for generation: the EMA DiT (when the run keeps one)
with the online conditioner and VAE, in float32 (the trained weights' own precision), and the text
encoder as loaded, in upstream's float16 (training runs it that way too, ``upstream``). A LoRA
run's demos are those of ``generate.py <its base flags> --lora <the adapter file beside the
checkpoint>``: the file just written is applied to the frozen base as generation applies it (its
float16 factors merged into the weights), with the training-time adapters switched off. Only
rank 0 generates; the other ranks wait at their next collective, so keep demo trees small on
multi-GPU runs (docs/finetuning.md).

The checkpoint a stop signal asks for gets no demos: the signal usually means a time limit is
running out (SLURM's SIGTERM before the kill, a preemption), and demos started then would hold the
job past it, to be killed mid-demo with a partial ``demos/step-N/``. The line that says so names the
``generate.py`` command that makes them later.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
import torch

from ..model.loading import LoadedModel
from ..model.lora import apply_adapters
from ..model.spec import ModelRequest, ModelSpec, read_model_spec
from ..run.inprocess import generate_items, plan_tree, sampling_defaults
from ..tree.conditions import ConditionTreeError, Problem
from ..tree.plan import DEFAULT_MAX_ITEMS, WorkItem
from .lora_training import trainable_adapters_off
from .run_folder import TrainingRun, adapter_file

DEMO_PRECISION = "fp32"


def plan_demos(tree_file: Path, model_config: dict) -> list[WorkItem]:
    """The demo tree's items for this model (``ConditionTreeError`` listing every problem, as ``generate.py``)."""
    spec = ModelSpec(model_config, source="", revision="", request=ModelRequest())
    items, _ = plan_tree(tree_file, spec, sampling_defaults(spec), DEFAULT_MAX_ITEMS, source=str(tree_file))
    adapted = {item.leaf: item for item in items if item.request.lora is not None}
    if adapted:  # demos show the checkpoint itself: refused now, not at the first checkpoint hours later
        problems = [Problem(leaf, "lora: demos generate with the checkpoint alone; generate.py --ckpt-path with the tree "
                            "applies adapters", item.line) for leaf, item in adapted.items()]  # fmt: skip
        raise ConditionTreeError(problems, str(tree_file))
    return items


@contextmanager
def generation_view(pl_module: pl.LightningModule) -> Iterator[torch.nn.Module]:
    """The training wrapper's model as a checkpoint of it generates: EMA DiT, eval mode.

    Everything is put back afterwards (submodule, train/eval flags, the global RNG state), so a run
    with demos trains exactly as one without.
    """
    diffusion = pl_module.diffusion
    online = diffusion.model
    modes = {module: module.training for module in diffusion.modules()}
    devices = [pl_module.device] if pl_module.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            if pl_module.diffusion_ema is not None:
                diffusion.model = pl_module.diffusion_ema.ema_model
            yield diffusion.eval()
        finally:
            diffusion.model = online
            for module, training in modes.items():
                module.train(training)


class CheckpointDemos:
    """An ``after_save`` hook of ``StepCheckpoints``: rank 0 generates the demo tree with the checkpoint just written."""

    def __init__(self, tree_file: Path, items: list[WorkItem], run: TrainingRun, model_config: dict, batch_size: int,
                 lora_base: ModelSpec | None = None) -> None:  # fmt: skip
        """``lora_base``: a LoRA run's base model (its demos apply the adapter file to it)."""
        self.tree_file, self.items, self.run, self.model_config, self.batch_size = tree_file, items, run, model_config, batch_size
        self.lora_base = lora_base

    def __call__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, checkpoint: Path) -> None:
        if not trainer.is_global_zero:
            return
        if trainer.should_stop:  # set by StopOnSignal, on every rank at once: this is the stop checkpoint
            info = self.run.lora_info()
            model = f"{' '.join(info.base_flags)} --lora {adapter_file(checkpoint)}" if info else f"--ckpt-path {checkpoint}"
            print(f"demos: none for step {step}, which stopped on a signal; to make them: python generate.py {model} "
                  f"--cond-yaml-path {self.tree_file} --output-dir {self.run.demos_dir(step)} --clip-length "
                  f"--precision {DEMO_PRECISION}", flush=True)  # fmt: skip
            return
        if self.lora_base is not None:
            self._adapter_demos(pl_module, step, checkpoint)
            return
        weights = "ema" if pl_module.diffusion_ema is not None else "online"
        request = ModelRequest(model_config=self.run.config_path, ckpt_path=checkpoint, weights=weights)
        spec = ModelSpec(self.model_config, source=str(checkpoint), revision=f"step-{step};weights={weights}", request=request)
        output_dir = self.run.demos_dir(step)
        with generation_view(pl_module) as model:
            loaded = LoadedModel(spec, model, pl_module.device, DEMO_PRECISION, f"training step {step}, {weights} weights")
            records = generate_items(loaded, self.items, output_dir, self.batch_size)
        self._report(records, step, output_dir)

    def _adapter_demos(self, pl_module: pl.LightningModule, step: int, checkpoint: Path) -> None:
        """A LoRA run's demos: the base with the checkpoint's adapter file, as ``generate.py --lora`` loads it."""
        assert self.lora_base is not None
        base = self.lora_base
        spec = read_model_spec(replace(base.request, lora=(adapter_file(checkpoint),)))
        output_dir = self.run.demos_dir(step)
        with generation_view(pl_module) as model, trainable_adapters_off(model):
            adapted = apply_adapters(model, spec.adapters, pl_module.device)
            try:
                loaded = LoadedModel(spec, model, pl_module.device, DEMO_PRECISION, f"training step {step}, adapter "
                                     f"{adapter_file(checkpoint).name}", adapters=adapted)  # fmt: skip
                records = generate_items(loaded, self.items, output_dir, self.batch_size)
            finally:
                adapted.set([])  # the base weights back, bit for bit, for training to go on
        self._report(records, step, output_dir)

    @staticmethod
    def _report(records: dict, step: int, output_dir: Path) -> None:
        written = sum(record.get("status") != "nonfinite" for record in records.values())
        print(f"demos: {written} files of step {step} in {output_dir}", flush=True)
