"""k-diffusion sampling for v-objective models with one noise stream per batch item.

Why not call stable-audio-tools' ``sample_k`` directly: it gives the SDE/ancestral samplers no
``noise_sampler``, so k-diffusion falls back to a single random stream for the whole batch and an
item's audio changes with whatever else is in its batch. Here every item owns its randomness — its
initial noise comes from its own ``torch.Generator`` and its SDE noise from its own Brownian tree
(k-diffusion's ``BrownianTreeNoiseSampler`` accepts one seed per batch item) — so the audio for a
seed is the same at any batch size, world size, rank or order. Everything else (the noise schedule,
the v-denoiser wrapper, the solvers) is k-diffusion's own, called exactly as ``sample_k`` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import k_diffusion as K
import torch


@dataclass(frozen=True)
class _Solver:
    function: Callable[..., torch.Tensor]
    stochastic: bool  # draws fresh noise every step, so it needs a per-item noise sampler


# The names stable-audio-tools' ``sample_k`` accepts, minus ``k-dpm-adaptive`` (its step-size control
# measures the error over the whole batch, so an item's steps - and audio - depend on its batch
# neighbours) and ``v-ddim``/``v-ddim-cfgpp`` (stable-audio-tools' own loop, which always prints a
# progress bar per batch and cannot be silenced).
_SOLVERS: dict[str, _Solver] = {
    "dpmpp-3m-sde": _Solver(K.sampling.sample_dpmpp_3m_sde, stochastic=True),
    "dpmpp-2m-sde": _Solver(K.sampling.sample_dpmpp_2m_sde, stochastic=True),
    "dpmpp-2m": _Solver(K.sampling.sample_dpmpp_2m, stochastic=False),
    "k-dpmpp-2s-ancestral": _Solver(K.sampling.sample_dpmpp_2s_ancestral, stochastic=True),
    "k-heun": _Solver(K.sampling.sample_heun, stochastic=False),
    "k-lms": _Solver(K.sampling.sample_lms, stochastic=False),
    "k-dpm-2": _Solver(K.sampling.sample_dpm_2, stochastic=False),
    "k-dpm-fast": _Solver(K.sampling.sample_dpm_fast, stochastic=False),
}

SAMPLER_NAMES: tuple[str, ...] = tuple(_SOLVERS)
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(name for name, s in _SOLVERS.items() if s.stochastic)


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Unit Gaussian noise of ``(len(seeds), *shape)``, row ``i`` drawn only from ``seeds[i]``.

    Drawn on the CPU so that a seed means the same starting point on every device; the tensor is
    small (channels x latent frames), so the copy costs nothing next to one denoiser step.
    """
    rows = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) for seed in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def sample_v_objective(
    model_fn: torch.nn.Module,
    noise: torch.Tensor,
    seeds: Sequence[int],
    *,
    sampler_type: str,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    extra_args: dict[str, Any],
) -> torch.Tensor:
    """Denoise ``noise`` (unit variance, one row per seed) with a k-diffusion solver; returns latents."""
    solver = _SOLVERS.get(sampler_type)
    if solver is None:
        raise ValueError(f"unknown sampler {sampler_type!r}; known: {', '.join(SAMPLER_NAMES)}")
    denoiser = K.external.VDenoiser(model_fn)
    if sampler_type == "k-dpm-fast":
        return solver.function(
            denoiser, noise * sigma_max, sigma_min, sigma_max, steps, extra_args=extra_args, disable=True
        )
    sigmas = K.sampling.get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho=1.0, device=noise.device)
    x = noise * sigmas[0]
    kwargs: dict[str, Any] = {"extra_args": extra_args, "disable": True}
    if solver.stochastic:
        # The same interval k-diffusion's SDE solvers use for their default tree, one tree per item.
        kwargs["noise_sampler"] = K.sampling.BrownianTreeNoiseSampler(
            x, sigmas[sigmas > 0].min(), sigmas.max(), seed=list(seeds)
        )
    return solver.function(denoiser, x, sigmas, **kwargs)
