"""The Lightning pieces ``finetune.py train`` adds around stable-audio-tools' training wrapper.

Upstream's ``train.py`` saves checkpoints every N steps and embeds the model config in them; these
callbacks keep that and add what a run on a shared, preemptible cluster needs: checkpoint files that
are never torn (written to a temporary name, then renamed), a checkpoint at the last step whatever
ends the run (``--max-steps`` reached, or SIGTERM/SIGINT/SIGUSR1 handled at the next step boundary on
every rank at once), validation losses in every logger (upstream only sends them to wandb), and a
hook that runs after each checkpoint is on disk (the demos).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from ..output.atomic import atomic_open
from ..run.signals import GracefulStop

AfterSave = Callable[[pl.Trainer, pl.LightningModule, int, Path], None]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written to a temporary file and renamed into place.

    Lightning's own writer streams into the final name, so a job killed while writing a multi-GiB
    checkpoint leaves a truncated ``.ckpt`` that the next run would try to resume from.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_open(Path(path)) as handle:
            torch.save(checkpoint, handle)


class EmbedModelConfig(pl.Callback):
    """Store the model config in every checkpoint under ``model_config``, as upstream's ``train.py`` does."""

    def __init__(self, model_config: dict[str, Any]) -> None:
        self.model_config = model_config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["model_config"] = self.model_config


class StopOnSignal(pl.Callback):
    """End training at the next step boundary once any rank has been asked to stop.

    The decision is reduced over all ranks after every batch (one boolean all-reduce), so every rank
    stops after the same step even when the signal reached them at different times. Lightning's own
    SIGTERM handler, installed when ``fit`` starts, would instead end training between steps without
    a checkpoint (during validation, too), so the stop handlers are reinstalled over it. Lightning
    also runs a whole validation pass when a callback stops training early (its early-stopping
    rule); a stop signal usually means a time limit is running out, so validation is switched off
    for what remains of the run, as the stop checkpoint's demos are (``demos``).
    """

    def __init__(self, stop: GracefulStop) -> None:
        self.stop = stop

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop.reclaim()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.strategy.reduce_boolean_decision(self.stop.requested, all=False):
            trainer.should_stop = True
            trainer.limit_val_batches = 0  # Lightning's ``enable_validation`` is then false


class StepCheckpoints(ModelCheckpoint):
    """Upstream's ``ModelCheckpoint(every_n_train_steps=N, save_top_k=-1)``, plus a checkpoint at the step training ends on.

    Lightning saves nothing when ``max_steps`` is reached between two multiples of N, nor when a
    callback stops training; both are saved here, once, with the same file name pattern. After each
    checkpoint is on disk the ``after_save`` hooks run (on every rank, in step).
    """

    def __init__(self, dirpath: Path, every_n_steps: int, after_save: list[AfterSave]) -> None:
        # a str: checkpoints keep the callback state, and generate.py reads them with weights_only (no pathlib objects)
        super().__init__(dirpath=str(dirpath), every_n_train_steps=every_n_steps, save_top_k=-1)
        self.after_save = after_save

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        ending = trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step
        if ending and not self._should_skip_saving_checkpoint(trainer):
            self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Record the batch in flight as done: every checkpoint here is written at the end of the batch that made its step.

        Lightning 2.1 counts a batch as completed only after ``on_train_batch_end``, so a checkpoint
        written there says one batch fewer; on resume the loop replays that batch's count, and
        with ``--accum-batches N`` the first resumed optimizer step took a single micro-batch and
        skipped the zero-grad hook where upstream's wrapper updates its EMA (a run resumed from
        step 5 to 6 had 5 EMA updates). Lightning issues #14579 and #19815; later releases compensate on loading.
        """
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
        for counts in (progress["current"], progress["total"]):
            counts["completed"] = counts["processed"]

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        for hook in self.after_save:
            hook(trainer, trainer.lightning_module, trainer.global_step, Path(filepath))


class ValidationLosses(pl.Callback):
    """Log the validation losses of stable-audio-tools' wrapper through Lightning, so CSV and TensorBoard get them.

    The wrapper collects one loss list per noise level and sends the means to wandb or comet only.
    This runs just before the wrapper's own epoch-end hook (Lightning calls callbacks first), which
    then clears the lists.
    """

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        losses = {key: sum(values) / len(values) for key, values in pl_module.validation_step_outputs.items() if values}
        if not losses:
            return
        for key, value in losses.items():
            pl_module.log(key, value, sync_dist=True)
        pl_module.log("val/avg_loss", sum(losses.values()) / len(losses), sync_dist=True)


class LinePerSteps(pl.Callback):
    """Without a terminal (a SLURM log), one plain line of progress every ``every`` steps instead of a progress bar."""

    def __init__(self, every: int, max_steps: int) -> None:
        self.every, self.max_steps = every, max_steps
        self._since: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self._since is None:
            self._since = (time.perf_counter(), step)
        if not trainer.is_global_zero or step % self.every or step == self._since[1]:
            return
        elapsed, steps = time.perf_counter() - self._since[0], step - self._since[1]
        metrics = trainer.callback_metrics
        loss = metrics.get("train/loss")
        total = f"/{self.max_steps}" if self.max_steps > 0 else ""
        text = f"step {step}{total}" + (f"  loss {float(loss):.4f}" if loss is not None else "") + f"  {elapsed / steps:.2f} s/step"
        print(text, file=sys.stderr, flush=True)
        self._since = (time.perf_counter(), step)
