"""The one generation function shared by the batch CLI and the Gradio app.

It wraps stable-audio-tools' pieces - the model's conditioner, its conditioning-input assembly, the
DiT with batched classifier-free guidance, and the VAE decode - and adds what upstream's
``generate_diffusion_cond`` lacks: every item is seeded on its own (see ``samplers``), so the audio
of a request depends only on the request, never on the batch it happens to share; latents are only
as long as the request needs; and repeated prompts are encoded once. Init audio (each item its own
file, encoded per item: ``init_audio``) and the DiT's guidance interval (``cfg_interval``) are
upstream's options, passed through per batch. A leaf's LoRA adapters (``lora``) are merged into the
weights for the batch (``AdaptedWeights.use``): a batch shares one adapter set and strengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..model.families import lowest_start
from ..model.loading import LoadedModel
from ..request import GenerationRequest, latent_frames_for
from .chunking import DECODE_OVERLAP_PER_SIDE
from .init_audio import init_latents
from .samplers import ItemNoise, sample_latents


def resolved_latent_frames(loaded: LoadedModel, request: GenerationRequest) -> int:
    """The request's latent length; requests without one get the default ("auto") policy."""
    if request.latent_frames is not None:
        return request.latent_frames
    return latent_frames_for(request.seconds_start + request.seconds_total, loaded.spec.geometry)


def _encode(loaded: LoadedModel, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the conditioner once per distinct row and fan the result out to every row.

    A leaf with n items repeats the same prompt and timing n times; T5 then runs once, not n times.
    """
    distinct = list(dict.fromkeys(tuple(sorted(row.items())) for row in rows))
    encoded = loaded.model.conditioner([dict(key) for key in distinct], loaded.device)
    index = torch.tensor([distinct.index(tuple(sorted(row.items()))) for row in rows], device=loaded.device)
    return {name: [t.index_select(0, index) if torch.is_tensor(t) else t for t in value] for name, value in encoded.items()}


def _conditioning_inputs(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
    """Model inputs for the conditional branch and, when any request has one, the negative branch.

    A batch may mix requests with and without a negative prompt. For those without, the negative
    tokens are fully masked, which makes the DiT substitute its null embedding - exactly what it does
    when no negative conditioning is given at all - so mixing does not change anyone's audio.
    """
    model, device = loaded.model, loaded.device
    timing = [{"seconds_start": r.seconds_start, "seconds_total": r.seconds_total} for r in requests]
    inputs = model.get_conditioning_inputs(_encode(loaded, [{"prompt": r.prompt, **t} for r, t in zip(requests, timing)]))
    if any(r.negative_prompt for r in requests):
        rows = [{"prompt": r.negative_prompt or "", **t} for r, t in zip(requests, timing)]
        negative = model.get_conditioning_inputs(_encode(loaded, rows), negative=True)
        has_negative = torch.tensor([bool(r.negative_prompt) for r in requests], device=device)
        mask = negative["negative_cross_attn_mask"].to(torch.bool)
        negative["negative_cross_attn_mask"] = mask & has_negative[:, None]
        inputs.update(negative)
    dtype = loaded.dit_dtype
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}


def decode(loaded: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode latents; with ``loaded.decode_chunk`` set, in overlapping chunks of that many frames.

    Whole-sequence decoding needs memory for batch x window at once; chunking bounds it by the chunk
    size. Upstream's ``decode_audio`` does the chunking; its pretransform only exposes the switch as
    an attribute, so it is flipped for the call (the engine runs one batch at a time per process).
    """
    pretransform = loaded.model.pretransform
    latents = latents.to(next(pretransform.parameters()).dtype)
    chunk = loaded.decode_chunk
    if chunk is None or latents.shape[-1] <= chunk:
        return pretransform.decode(latents).float()
    pretransform.chunked = True
    try:
        return pretransform.decode(latents, chunk_size=chunk, overlap=2 * DECODE_OVERLAP_PER_SIDE).float()
    finally:
        pretransform.chunked = False


@torch.inference_mode()
def generate_audio(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> torch.Tensor:
    """Generate one clip per request; returns float32 audio ``(batch, channels, latent frames x ratio)``.

    All requests must share a ``batch_key`` and a latent length. The result is on the model's device
    and covers the generated latent length; trimming to ``seconds_total`` is the caller's choice.
    """
    return decode(loaded, generate_latents(loaded, requests))


@torch.inference_mode()
def generate_latents(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> torch.Tensor:
    """The sampled float32 latents ``(batch, latent channels, frames)`` that ``generate_audio`` decodes.

    Separate so that measurements (``bench/batch_invariance.py``) can compare latents as well as audio.
    """
    if not requests:
        raise ValueError("generate_audio needs at least one request")
    frames = {resolved_latent_frames(loaded, r) for r in requests}
    keys = {r.batch_key()[:-1] for r in requests}
    if len(keys) > 1 or len(frames) > 1:
        raise ValueError(f"requests in one batch must share steps/cfg/sampler/sigmas and latent length (their batch_key), "
                         f"got {sorted(keys, key=repr)}, {sorted(frames)}")  # repr: None and numbers do not compare
    if any((r.init_audio is None) != (r.init_noise_level is None) for r in requests):
        raise ValueError("init_audio and init_noise_level must be set together")
    first, frame_count = requests[0], frames.pop()
    model = loaded.model
    if loaded.adapters is not None:  # the batch's adapter set (one per batch: its batch_key), merged without a reload
        loaded.adapters.use(first.lora, loaded.device)
    elif first.lora:
        raise ValueError("these requests name LoRA adapters, but the model was not loaded by load_model (no adapter support)")
    start = _schedule_start(model.diffusion_objective, first)  # before any init file is read
    init = init_latents(loaded, requests, frame_count)
    extra_args = {
        **_conditioning_inputs(loaded, requests),
        "cfg_scale": first.cfg_scale,
        "batch_cfg": True,
        "rescale_cfg": True,
    }
    if first.cfg_interval is not None:  # else the DiT's own default (0, 1): guidance at every step
        extra_args["cfg_interval"] = first.cfg_interval
    return sample_latents(
        model,
        ItemNoise([r.seed for r in requests], loaded.device),
        (model.io_channels, frame_count),
        sampler_type=first.sampler_type,
        steps=first.steps,
        sigma_min=first.sigma_min,
        sigma_max=start,
        extra_args=extra_args,
        init=init,
    )


def _schedule_start(objective: str, request: GenerationRequest) -> float:
    """The noise level sampling starts at: ``sigma_max``, or with init audio its noise level (as upstream does)."""
    level = request.init_noise_level
    if level is None:
        return request.sigma_max
    floor = lowest_start(objective, request.sigma_min)
    if level <= floor:
        what = f"sigma_min {request.sigma_min}" if objective == "v" else f"{floor:.4f}, where the flow schedule ends"
        raise ValueError(f"init_noise_level {level} must be above {what}: below it the schedule would add noise")
    return level
