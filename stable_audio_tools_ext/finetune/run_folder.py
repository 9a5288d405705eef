"""One training run's folder, ``SAVE_DIR/NAME/``: what it holds and how a rerun finds where it stopped.

    SAVE_DIR/NAME/
      model_config.json               the config trained (what generate.py --ckpt-path finds)
      checkpoints/epoch=E-step=S.ckpt Lightning checkpoints as stable-audio-tools' train.py writes them
      logs/                           --logger csv / tensorboard files
      demos/step-S/                   --demo-yaml generations at each checkpoint

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

from ..model.spec import CHECKPOINTS_DIR, MODEL_CONFIG_NAME
from ..output.atomic import atomic_write_text

_STEP = re.compile(r"(?:^|-)step=(\d+)(?:-|\.ckpt$)")
CHECKPOINT_SUFFIX = ".ckpt"
LOGS_DIR = "logs"
DEMOS_DIR = "demos"


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
        present = [p for p in (self.checkpoints_dir, self.logs_dir, self.folder / DEMOS_DIR, self.config_path) if p.exists()]
        if not present:
            return None
        aside = self.folder / f"restarted-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
        return aside
