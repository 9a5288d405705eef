"""Checks of valid leaves that need more than the YAML: the model's sampler family, the init audio and LoRA files.

``tree`` reads a tree without knowing the model or opening audio (it may not import either); these
checks run after it, before anything is loaded, and report in the same ``Problem`` form - YAML path
and line - so ``generate.py`` and the studio show them beside the tree's own problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import soundfile as sf

from ..model.families import lowest_start
from ..model.lora_files import LoraFileError, read_lora_file
from ..model.spec import ModelSpec
from ..tree.conditions import Condition, Problem


def model_problems(leaves: Iterable[Condition], spec: ModelSpec, sigma_min: float) -> list[Problem]:
    """Leaves asking for what this model cannot do: another family's sampler, an init noise level
    outside its schedule, or a rectified-flow init left at the default level (pure noise, init unused).

    ``sigma_min`` is the run's (``--sigma-min`` or the family's): a v-model schedule ends there, so an
    init noise level at or below it would make the sampler add noise rather than remove it.
    """
    family, problems = spec.family, []
    flow = spec.objective != "v"
    floor = lowest_start(spec.objective, sigma_min)
    for leaf in leaves:
        if leaf.sampler_type is not None and leaf.sampler_type not in family.samplers:
            problems.append(Problem(f"{leaf.name}/sampler_type", f"sampler {leaf.sampler_type!r} does not work with "
                                    f"this model ({spec.objective}); use one of {', '.join(family.samplers)}", leaf.line))  # fmt: skip
        level = leaf.init_noise_level
        if level is not None and not floor < level <= family.sigma_max:
            low = f"sigma_min {floor:g}" if not flow else f"{floor:.4f} (where the flow schedule ends)"
            problems.append(Problem(f"{leaf.name}/init_noise_level", f"expected a level above {low} and at most "
                                    f"{family.sigma_max:g} for this model ({spec.objective}), got {level:g}", leaf.line))  # fmt: skip
        if flow and leaf.init_audio is not None and leaf.init_noise_level is None:
            problems.append(Problem(f"{leaf.name}/init_noise_level", f"set init_noise_level in (0, 1): this model "
                                    f"({spec.objective}) would start from the default 1.0, which is pure noise, and "
                                    "ignore the init audio", leaf.line))  # fmt: skip
    return problems


def init_audio_problems(leaves: Iterable[Condition]) -> list[Problem]:
    """Leaves whose ``init_audio`` file is not audio that libsndfile reads (checked once per file)."""
    verdicts: dict[str, str | None] = {}
    problems = []
    for leaf in leaves:
        if leaf.init_audio is None:
            continue
        path = leaf.init_audio.path
        if path not in verdicts:
            verdicts[path] = _unreadable(path)
        if verdicts[path] is not None:
            problems.append(Problem(f"{leaf.name}/init_audio", f"{path}: {verdicts[path]}", leaf.line))
    return problems


def lora_problems(leaves: Iterable[Condition]) -> list[Problem]:
    """Leaves whose ``lora`` files are not LoRA adapters of a supported type (each header read once).

    Whether an adapter's shapes fit the model is known only once the model is loaded
    (``LoadedModel.read_adapters``, still before anything is sampled)."""
    verdicts: dict[str, str | None] = {}
    problems = []
    for leaf in leaves:
        for adapter in leaf.lora or ():
            if adapter.path not in verdicts:
                try:
                    read_lora_file(Path(adapter.path))
                    verdicts[adapter.path] = None
                except LoraFileError as exc:
                    verdicts[adapter.path] = str(exc)
            if verdicts[adapter.path] is not None:
                problems.append(Problem(f"{leaf.name}/lora", str(verdicts[adapter.path]), leaf.line))
    return problems


def _unreadable(path: str) -> str | None:
    try:
        info = sf.info(path)
    except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError) for non-audio
        return f"not an audio file soundfile can read ({exc})"
    return None if info.frames > 0 else "the audio file holds no samples"
