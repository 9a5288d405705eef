"""What a LoRA run trains and on which base, torch-free: checked against the run folder before the training stack loads.

``LoraSettings`` holds ``--lora-rank``/``--lora-alpha``/``--lora-include``/``--lora-exclude``;
``run_info`` names the base as ``generate.py`` flags (a hub model at the commit trained on, or a
checkpoint by path), the record ``lora_base.json`` keeps so that evaluation and the printed
commands reproduce the base; ``check_lora_run`` refuses to continue a run with other settings or
another base, or to mix full fine-tuning and LoRA in one run folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product

from ..model.lora_files import LoraConfig
from .run_folder import LoraRunInfo, TrainingRun
from .weights import FinetuneInputError, ModelChoice

_RANGE = re.compile(r"\[(\d+)-(\d+)\]")


@dataclass(frozen=True)
class LoraSettings:
    """``--lora-rank``, ``--lora-alpha`` (default: the rank, as upstream), ``--lora-include``, ``--lora-exclude``."""

    rank: int
    alpha: float
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    def config(self) -> LoraConfig:
        """The adapter files' ``lora_config``."""
        return LoraConfig(self.rank, self.alpha, "lora", self.include, self.exclude)

    def selects(self, name: str) -> bool:
        """Whether the layer at ``name`` (relative to the DiT wrapper or the conditioner) gets an adapter."""
        matches = lambda patterns: any(text in name for p in patterns for text in expand_ranges(p.strip()))  # noqa: E731
        return (self.include is None or matches(self.include)) and not (self.exclude is not None and matches(self.exclude))


def expand_ranges(pattern: str) -> list[str]:
    """``layers.[0-2].`` -> ``layers.0.``, ``layers.1.``, ``layers.2.``: the ranges stable-audio-tools' filters take."""
    pieces = _RANGE.split(pattern)
    numbers = [_inclusive(int(a), int(b)) for a, b in zip(pieces[1::3], pieces[2::3])]
    return ["".join(text + n for text, n in zip(pieces[0::3], (*combo, ""))) for combo in product(*numbers)]


def _inclusive(first: int, last: int) -> list[str]:
    step = 1 if last >= first else -1
    return [str(n) for n in range(first, last + step, step)]


def base_flags(choice: ModelChoice) -> tuple[str, ...]:
    """The ``generate.py`` flags that load the starting weights of ``choice``, exactly (the hub commit, absolute paths)."""
    spec = choice.spec
    if spec is None:
        raise FinetuneInputError("--lora-rank adapts starting weights: give --pretrained-name or --pretrained-ckpt-path")
    request = spec.request
    if request.pretrained_name:
        flags: list[str] = ["--pretrained-name", spec.source, "--revision", spec.revision.split(";")[0]]
    else:
        assert request.ckpt_path is not None and request.model_config is not None
        flags = ["--ckpt-path", str(request.ckpt_path.resolve()), "--model-config", str(request.model_config.resolve())]
    if request.pretransform_ckpt_path is not None:
        flags += ["--pretransform-ckpt-path", str(request.pretransform_ckpt_path.resolve())]
    if request.trust_checkpoint:
        flags.append("--trust-checkpoint")
    return tuple(flags)


def run_info(settings: LoraSettings, choice: ModelChoice) -> LoraRunInfo:
    return LoraRunInfo(settings.config().to_dict(), base_flags(choice), choice.description)


def check_lora_run(run: TrainingRun, settings: LoraSettings | None, choice: ModelChoice) -> None:
    """Refuse to continue ``run`` as something it was not (checked when it has a config, so has started)."""
    if run.saved_config() is None:
        return
    recorded = run.lora_info()
    again = "give the same flags to continue, --restart to start over (the old run is kept aside), or another --name"
    if recorded is None and settings is not None:
        raise FinetuneInputError(f"{run.folder} is a full fine-tuning run, not a LoRA one (--lora-rank); {again}")
    if recorded is not None and settings is None:
        raise FinetuneInputError(f"{run.folder} is a LoRA run (rank {recorded.lora_config['rank']}): continue it with "
                                 f"--lora-rank and its other LoRA flags; {again}")  # fmt: skip
    if recorded is None or settings is None:
        return
    wanted = run_info(settings, choice)
    if wanted.lora_config != recorded.lora_config:
        differ = [f"{key} {recorded.lora_config.get(key)}, not {value}" for key, value in sorted(wanted.lora_config.items())
                  if value != recorded.lora_config.get(key)]  # fmt: skip
        raise FinetuneInputError(f"{run.folder} trained adapters with other settings ({'; '.join(differ)}); {again}")
    if wanted.base_flags != recorded.base_flags:
        raise FinetuneInputError(f"{run.folder} trained adapters on another base ({' '.join(recorded.base_flags)}); the "
                                 f"adapters only fit that one; {again}")  # fmt: skip
