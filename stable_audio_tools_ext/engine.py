"""The one generation function shared by the batch CLI and the Gradio app.

It wraps stable-audio-tools' pieces - the model's conditioner, its conditioning-input assembly, the
DiT with batched classifier-free guidance, and the VAE decode - and adds the one thing upstream's
``generate_diffusion_cond`` lacks: every item is seeded on its own (see ``samplers``), so the audio of
a request depends only on the request, never on the batch it happens to share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .models import LoadedModel
from .request import GenerationRequest
from .samplers import initial_noise, sample_v_objective


def _conditioning(requests: Sequence[GenerationRequest], negative: bool) -> list[dict[str, Any]]:
    return [
        {
            "prompt": (r.negative_prompt or "") if negative else r.prompt,
            "seconds_start": r.seconds_start,
            "seconds_total": r.seconds_total,
        }
        for r in requests
    ]


def _conditioning_inputs(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
    """Model inputs for the conditional branch and, when any request has one, the negative branch.

    A batch may mix requests with and without a negative prompt. For those without, the negative
    tokens are fully masked, which makes the DiT substitute its null embedding - exactly what it does
    when no negative conditioning is given at all - so mixing does not change anyone's audio.
    """
    model, device = loaded.model, loaded.device
    inputs = model.get_conditioning_inputs(model.conditioner(_conditioning(requests, negative=False), device))
    if any(r.negative_prompt for r in requests):
        negative = model.get_conditioning_inputs(
            model.conditioner(_conditioning(requests, negative=True), device), negative=True
        )
        has_negative = torch.tensor([bool(r.negative_prompt) for r in requests], device=device)
        mask = negative["negative_cross_attn_mask"].to(torch.bool)
        negative["negative_cross_attn_mask"] = mask & has_negative[:, None]
        inputs.update(negative)
    dtype = loaded.dit_dtype
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}


@torch.inference_mode()
def generate_audio(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> torch.Tensor:
    """Generate one clip per request; returns float32 audio ``(batch, channels, window samples)``.

    All requests must share a ``batch_key``. The result is on the model's device and covers the
    model's whole window; trimming to ``seconds_total`` is the caller's choice.
    """
    if not requests:
        raise ValueError("generate_audio needs at least one request")
    keys = {r.batch_key() for r in requests}
    if len(keys) > 1:
        raise ValueError(f"requests in one batch must share steps/cfg/sampler/sigmas, got {sorted(keys)}")
    first = requests[0]
    seeds = [r.seed for r in requests]
    model = loaded.model
    noise = initial_noise(seeds, (model.io_channels, loaded.latent_frames), loaded.device, loaded.dit_dtype)
    extra_args = {
        **_conditioning_inputs(loaded, requests),
        "cfg_scale": first.cfg_scale,
        "batch_cfg": True,
        "rescale_cfg": True,
    }
    latents = sample_v_objective(
        model.model,
        noise,
        seeds,
        sampler_type=first.sampler_type,
        steps=first.steps,
        sigma_min=first.sigma_min,
        sigma_max=first.sigma_max,
        extra_args=extra_args,
    )
    pretransform = model.pretransform
    latents = latents.to(next(pretransform.parameters()).dtype)
    return pretransform.decode(latents).float()
