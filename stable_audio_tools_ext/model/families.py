"""Which samplers suit a model, by its config's ``diffusion_objective``, and their default settings.

A fact about the model (what its denoiser was trained to predict), so it lives with the model: the
loader rejects unsupported objectives, and the CLI, the studio and the samplers read the defaults
from here. ``sampling.samplers`` implements every name listed (a test holds the two together).

- ``v`` (Stable Audio Open 1.0): the k-diffusion samplers, CFG 7, 100 steps;
- ``rf_denoiser`` (Stable Audio Open Small, distilled): ``pingpong``, 8 steps, no CFG;
- ``rectified_flow`` (undistilled flow models): ``euler`` or ``dpmpp``, 50 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplerFamily:
    """The samplers and default sampling settings of one diffusion objective."""

    samplers: tuple[str, ...]
    sampler_type: str
    steps: int
    cfg_scale: float
    sigma_min: float
    sigma_max: float


# The names stable-audio-tools' ``sample_k`` accepts, minus ``k-dpm-adaptive`` (its step-size control
# measures the error over the whole batch, so an item's steps - and audio - depend on its batch
# neighbours) and ``v-ddim``/``v-ddim-cfgpp``/``rk4`` (stable-audio-tools' own loops, which always
# print a progress bar per batch and cannot be silenced; ``rk4`` also costs four model calls a step).
K_DIFFUSION_SAMPLERS = (
    "dpmpp-3m-sde", "dpmpp-2m-sde", "dpmpp-2m", "k-dpmpp-2s-ancestral", "k-heun", "k-lms", "k-dpm-2", "k-dpm-fast",
)  # fmt: skip

FAMILIES: dict[str, SamplerFamily] = {
    "v": SamplerFamily(K_DIFFUSION_SAMPLERS, "dpmpp-3m-sde", 100, 7.0, 0.3, 500.0),
    "rf_denoiser": SamplerFamily(("pingpong",), "pingpong", 8, 1.0, 0.0, 1.0),
    "rectified_flow": SamplerFamily(("euler", "dpmpp"), "euler", 50, 7.0, 0.0, 1.0),
}

SAMPLER_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for f in FAMILIES.values() for name in f.samplers))


def family_of(objective: str) -> SamplerFamily:
    try:
        return FAMILIES[objective]
    except KeyError:
        raise ValueError(f"diffusion_objective {objective!r} is not supported; known: {', '.join(FAMILIES)}") from None


# ``sample_rf``'s schedule is uniform in log-SNR from its start to this, then steps to t = 0.
RF_SCHEDULE_END_LOGSNR = 2.0


def lowest_start(objective: str, sigma_min: float) -> float:
    """The noise level a schedule reaches before its last step: sampling must start above it.

    A start at or below it (init audio's noise level can be anywhere) makes the schedule climb in
    noise instead of removing it: the v schedule runs from its start to ``sigma_min``, the flow
    schedule to log-SNR ``RF_SCHEDULE_END_LOGSNR`` (t = 0.119), then both step to 0. The tree's
    checks (``run.leaf_checks``) and the engine both hold init noise levels to it.
    """
    return sigma_min if objective == "v" else 1 / (1 + math.exp(RF_SCHEDULE_END_LOGSNR))
