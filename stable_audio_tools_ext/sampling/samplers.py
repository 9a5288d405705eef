"""Diffusion sampling with one noise stream per batch item, for both Stable Audio model families.

Why not call stable-audio-tools' ``sample_k``/``sample_rf`` as they are: their stochastic samplers
draw noise for the whole batch from one random stream (k-diffusion's default noise sampler, or
``torch.randn_like`` in the ping-pong loop), so an item's audio changes with whatever else is in its
batch. Here every item owns its randomness - its initial noise and every step's fresh noise come
from its own ``torch.Generator`` - so the audio for a seed is the same at any batch size, world
size, rank or order. The solvers, schedules and denoiser wrappers are stable-audio-tools' and k-diffusion's own.

Which samplers suit which model (by its ``diffusion_objective``) is ``model.families``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import k_diffusion as K
import torch
from stable_audio_tools.inference.sampling import sample_rf

from ..model.families import RF_SCHEDULE_END_LOGSNR, family_of


class ItemNoise:
    """One random stream per batch item; row ``i`` of every draw comes only from ``seeds[i]``.

    Drawn on the CPU so that a seed means the same noise on every device; the tensors are small
    (latent channels x frames), so the copy costs nothing next to one denoiser step.

    Always float32, whatever the DiT's precision: the noise sets the dtype of the latents, and
    k-diffusion derives the sigmas from them (``x.new_ones(...) * sigma``). In float16,
    ``sigma ** 2`` overflows above 256 and VDenoiser's scalings become 0 (9 of the 100 default
    steps fed the DiT an all-zero input); in bfloat16 the step sizes and the multistep history
    lose precision. The DiT casts its own inputs to its dtype, and its output promotes back to
    float32 in the solver's arithmetic.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self._generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        self._device = device

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        rows = [torch.randn(shape, generator=generator, dtype=torch.float32) for generator in self._generators]
        return torch.stack(rows).to(self._device)


@dataclass(frozen=True)
class _KSolver:
    function: Callable[..., torch.Tensor]
    stochastic: bool  # draws fresh noise every step, so it needs a per-item noise sampler


# One solver per name in ``families.K_DIFFUSION_SAMPLERS``.
_K_SOLVERS: dict[str, _KSolver] = {
    "dpmpp-3m-sde": _KSolver(K.sampling.sample_dpmpp_3m_sde, stochastic=True),
    "dpmpp-2m-sde": _KSolver(K.sampling.sample_dpmpp_2m_sde, stochastic=True),
    "dpmpp-2m": _KSolver(K.sampling.sample_dpmpp_2m, stochastic=False),
    "k-dpmpp-2s-ancestral": _KSolver(K.sampling.sample_dpmpp_2s_ancestral, stochastic=True),
    "k-heun": _KSolver(K.sampling.sample_heun, stochastic=False),
    "k-lms": _KSolver(K.sampling.sample_lms, stochastic=False),
    "k-dpm-2": _KSolver(K.sampling.sample_dpm_2, stochastic=False),
    "k-dpm-fast": _KSolver(K.sampling.sample_dpm_fast, stochastic=False),
}


def sample_latents(
    model: torch.nn.Module,
    noise: ItemNoise,
    shape: tuple[int, ...],
    *,
    sampler_type: str,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    extra_args: dict[str, Any],
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Denoise fresh per-item noise of ``(len(seeds), *shape)`` with the model's family of samplers.

    ``model`` is stable-audio-tools' ``ConditionedDiffusionModelWrapper``; ``extra_args`` are the
    DiT's conditioning inputs and CFG settings. ``init``: float32 latents of that shape to start from
    instead of pure noise (audio-to-audio), noised to ``sigma_max`` as upstream's ``sample_k`` and
    ``sample_rf`` do with ``init_data``; the caller then passes the init noise level as ``sigma_max``.
    """
    objective = model.diffusion_objective
    if sampler_type not in family_of(objective).samplers:
        raise ValueError(
            f"sampler {sampler_type!r} does not work with {objective!r} models; use one of "
            f"{', '.join(family_of(objective).samplers)}"
        )
    x = noise.draw(shape)
    if objective == "v":
        return _sample_v(model.model, x, noise, sampler_type, steps, sigma_min, sigma_max, extra_args, init)
    if sampler_type == "pingpong":
        if init is not None:  # as sample_rf starts from init_data
            level = min(sigma_max, 1.0)
            x = init * (1 - level) + x * level
        return _sample_pingpong(model.model, x, noise, _rf_schedule(steps, sigma_max, x.device), extra_args)
    return sample_rf(
        model.model, x, init_data=init, steps=steps, sampler_type=sampler_type, sigma_max=sigma_max, device=x.device,
        dist_shift=model.dist_shift, disable_tqdm=True, **extra_args,
    )  # fmt: skip


def _sample_v(
    model_fn: torch.nn.Module,
    x: torch.Tensor,
    noise: ItemNoise,
    sampler_type: str,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    extra_args: dict[str, Any],
    init: torch.Tensor | None,
) -> torch.Tensor:
    """k-diffusion solvers on the v-objective DiT, called as ``sample_k`` calls them (``init``: its ``init_data``)."""
    solver = _K_SOLVERS[sampler_type]
    denoiser = K.external.VDenoiser(model_fn)
    if sampler_type == "k-dpm-fast":
        start = _v_start(x, sigma_max, init)
        return solver.function(denoiser, start, sigma_min, sigma_max, steps, extra_args=extra_args, disable=True)
    sigmas = K.sampling.get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho=1.0, device=x.device)
    x = _v_start(x, sigmas[0], init)
    kwargs: dict[str, Any] = {"extra_args": extra_args, "disable": True}
    if solver.stochastic:
        # Fresh standard-normal noise per step, drawn per item. k-diffusion's SDE solvers default to
        # a Brownian tree instead (k-diffusion's BrownianTreeNoiseSampler takes one seed per item, so
        # it would be batch-invariant too), which keeps results closer across step counts - but its
        # torchsde bisection took 58% of a 100-step generation on the CPU (15.8 of 27.4 s for one
        # 26 s item), more than the DiT. Any independent unit Gaussians are what the solvers need.
        kwargs["noise_sampler"] = lambda sigma, sigma_next: noise.draw(tuple(x.shape[1:]))
    return solver.function(denoiser, x, sigmas, **kwargs)


def _v_start(noise: torch.Tensor, sigma: float | torch.Tensor, init: torch.Tensor | None) -> torch.Tensor:
    """The first state of a k-diffusion solver: unit noise scaled to ``sigma``, added to ``init`` when there is one."""
    return noise * sigma if init is None else init + noise * sigma


def _rf_schedule(steps: int, sigma_max: float, device: torch.device) -> torch.Tensor:
    """The noise levels ``sample_rf`` uses: uniform in log-SNR from ``sigma_max`` down to 0.

    Rebuilt here because ``sample_rf`` does not expose it and the ping-pong loop below needs it.
    """
    sigma_max = min(sigma_max, 1.0)
    logsnr_max = math.log((1 - sigma_max) / sigma_max + 1e-6) if sigma_max < 1 else -6.0
    t = torch.sigmoid(-torch.linspace(logsnr_max, RF_SCHEDULE_END_LOGSNR, steps + 1))
    t[0], t[-1] = sigma_max, 0.0
    return t.to(device)


@torch.no_grad()
def _sample_pingpong(
    model_fn: torch.nn.Module, x: torch.Tensor, noise: ItemNoise, t: torch.Tensor, extra_args: dict[str, Any]
) -> torch.Tensor:
    """stable-audio-tools' ping-pong sampler for distilled flow models, re-noising from ``noise``.

    Each step predicts the clean latent, then re-noises it to the next level. Upstream draws that
    noise with ``torch.randn_like`` for the whole batch; drawing it per item is the only change.
    """
    ones = x.new_ones([x.shape[0]])
    for i in range(len(t) - 1):
        denoised = x - t[i] * model_fn(x, t[i] * ones, **extra_args)
        x = (1 - t[i + 1]) * denoised + t[i + 1] * noise.draw(tuple(x.shape[1:]))
    return x
