"""One training run's folder, ``SAVE_DIR/NAME/``: what it holds and how a rerun finds where it stopped.

    SAVE_DIR/NAME/
      model_config.json               the config trained (what generate.py --ckpt-path finds)
      checkpoints/epoch=E-step=S.ckpt Lightning checkpoints as stable-audio-tools' train.py writes them
      logs/                           --logger csv / tensorboard files
      demos/step-S/                   --demo-yaml generations at each checkpoint

A LoRA run (``--lora-rank``) also holds:

      lora_base.json                  the adapters' settings and the base model they adapt, as generate.py flags
      checkpoints/epoch=E-step=S.safetensors
                                      each checkpoint's adapter in stable-audio-tools' LoRA format, beside it
                                      (its .ckpt holds the adapter and its training state only, no base weights)

Rerunning the same command continues from the checkpoint with the highest step, as ``generate.py``
resumes its output folder; ``--restart`` moves the run's checkpoints, logs and demos aside first.
Torch-free: the command reads this before deciding whether to import the training stack at all.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.lora_files import adapter_file
from ..model.spec import CHECKPOINTS_DIR, MODEL_CONFIG_NAME
from ..output.atomic import atomic_write_text

_STEP = re.compile(r"(?:^|-)step=(\d+)(?:-|\.ckpt$)")
CHECKPOINT_SUFFIX = ".ckpt"
LOGS_DIR = "logs"
DEMOS_DIR = "demos"
LORA_BASE_NAME = "lora_base.json"


@dataclass(frozen=True)
class LoraRunInfo:
    """What ``lora_base.json`` records: the adapter settings and the base model, as ``generate.py`` flags.

    The base is named by what generation needs to find the very weights trained on (a hub model at
    its resolved commit, or a checkpoint path), so ``evaluate`` and the printed ``generate.py``
    commands need nothing else from the user.
    """

    lora_config: dict[str, Any]  # rank, alpha, adapter_type, include, exclude (stable-audio-tools' lora_config)
    base_flags: tuple[str, ...]  # e.g. ("--pretrained-name", "stabilityai/stable-audio-open-1.0", "--revision", "<commit>")
    base_description: str

    def to_json(self) -> str:
        return json.dumps({"lora_config": self.lora_config, "base_flags": list(self.base_flags),
                           "base_description": self.base_description}, indent=2) + "\n"  # fmt: skip


def step_of(checkpoint: Path) -> int | None:
    """The optimiser step in a Lightning checkpoint's name (``epoch=3-step=1200.ckpt`` -> 1200)."""
    match = _STEP.search(checkpoint.name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class TrainingRun:
    """``SAVE_DIR/NAME`` and the files in it."""

    folder: Path

    @property
    def config_path(self) -> Path:
        return self.folder / MODEL_CONFIG_NAME

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / CHECKPOINTS_DIR

    @property
    def logs_dir(self) -> Path:
        return self.folder / LOGS_DIR

    def demos_dir(self, step: int) -> Path:
        return self.folder / DEMOS_DIR / f"step-{step}"

    @property
    def lora_base_path(self) -> Path:
        return self.folder / LORA_BASE_NAME

    def lora_info(self) -> LoraRunInfo | None:
        """The run's LoRA settings and base model, or ``None`` for a full fine-tuning run (or a new one);
        a record that is not one raises ``ValueError``, ``KeyError`` or ``TypeError``."""
        if not self.lora_base_path.is_file():
            return None
        raw = json.loads(self.lora_base_path.read_text(encoding="utf-8"))
        flags = raw["base_flags"]
        if not isinstance(raw["lora_config"], dict) or not flags or not all(isinstance(f, str) for f in flags):
            raise ValueError("lora_config must be an object and base_flags a non-empty list of generate.py flags")
        return LoraRunInfo(raw["lora_config"], tuple(flags), str(raw["base_description"]))

    def save_lora_info(self, info: LoraRunInfo) -> None:
        """Record a LoRA run's settings and base (atomically; before the first checkpoint is written)."""
        atomic_write_text(self.lora_base_path, info.to_json())

    def checkpoints(self) -> list[tuple[int, Path]]:
        """The run's checkpoints with their steps, oldest first (files whose name has no step are not the run's)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [(step_of(path), path) for path in self.checkpoints_dir.glob(f"*{CHECKPOINT_SUFFIX}")]
        return sorted((step, path) for step, path in found if step is not None)

    def last_checkpoint(self) -> tuple[int, Path] | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    def keep_latest(self, count: int) -> list[Path]:
        """``--keep-checkpoints``: delete all but the ``count`` highest-step checkpoints; returns what was deleted.

        Called after a checkpoint is complete on disk, so the newest is always among those kept.
        """
        older = [path for _, path in self.checkpoints()[:-count]] if count > 0 else []
        for path in older:
            path.unlink(missing_ok=True)
            adapter_file(path).unlink(missing_ok=True)  # a LoRA run's adapter of that checkpoint
        return older

    def saved_config(self) -> dict[str, Any] | None:
        """The model config the run trained, or ``None`` for a new run."""
        if not self.config_path.is_file():
            return None
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    def save_config(self, config: dict[str, Any]) -> None:
        """Record the model config beside the checkpoints (atomically; before the first checkpoint is written)."""
        atomic_write_text(self.config_path, json.dumps(config, indent=2) + "\n")

    def set_aside(self) -> Path | None:
        """``--restart``: rename what a previous attempt left (checkpoints, logs, demos, config) into a dated folder.

        Moved, never deleted: a restart by mistake must not cost days of training. Returns the folder,
        or ``None`` when there was nothing to move.
        """
        parts = (self.checkpoints_dir, self.logs_dir, self.folder / DEMOS_DIR, self.config_path, self.lora_base_path)
        present = [p for p in parts if p.exists()]
        if not present:
            return None
        aside = self.folder / f"restarted-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
        return aside
