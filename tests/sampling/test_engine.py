"""The shared engine on the tiny model: shapes, reproducibility, and per-item seed invariance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.sampling.engine import decode, generate_audio

TOLERANCE = 1e-4  # float reductions may differ slightly with batch size; PCM_16 resolution is 3e-5

# Different prompts, seeds, starts and lengths that all fit the same 48-frame latent bucket.
REQUESTS = [
    GenerationRequest(prompt="rain on a tin roof", seed=11, seconds_start=0, seconds_total=2, steps=8),
    GenerationRequest(prompt="a punchy drum loop", seed=12, seconds_start=0.5, seconds_total=1.5, steps=8),
    GenerationRequest(prompt="birds at dawn", seed=2**40 + 3, seconds_start=0, seconds_total=1.8, steps=8),
]
FULL_WINDOW = [dataclasses.replace(r, latent_frames=64) for r in REQUESTS]  # --latent-length full


def one_by_one(model, requests):
    return torch.cat([generate_audio(model, [r]) for r in requests])


def test_output_is_float32_stereo_as_long_as_the_latent(small_model) -> None:
    auto = generate_audio(small_model, REQUESTS[:2])
    assert auto.shape == (2, 2, 48 * 2048)  # 2 s needs 43.07 frames: the 48-frame bucket
    assert auto.dtype == torch.float32 and torch.isfinite(auto).all() and auto.abs().max() > 0
    full = generate_audio(small_model, FULL_WINDOW[:1])
    assert full.shape == (1, 2, small_model.spec.window_samples)


@pytest.mark.parametrize("latent_mode", ["auto", "full"])
@pytest.mark.parametrize("sampler_type", ["dpmpp-3m-sde", "dpmpp-2m", "k-dpmpp-2s-ancestral"])
def test_audio_does_not_depend_on_batch_composition_or_order(small_model, sampler_type: str, latent_mode: str) -> None:
    base = REQUESTS if latent_mode == "auto" else FULL_WINDOW
    requests = [dataclasses.replace(r, sampler_type=sampler_type) for r in base]
    alone = one_by_one(small_model, requests)
    batched = generate_audio(small_model, requests)
    reordered = generate_audio(small_model, requests[::-1]).flip(0)
    assert (batched - alone).abs().max() <= TOLERANCE
    assert (reordered - alone).abs().max() <= TOLERANCE


def test_same_request_same_audio_and_seed_and_prompt_both_matter(small_model) -> None:
    first = generate_audio(small_model, REQUESTS[:1])
    again = generate_audio(small_model, REQUESTS[:1])
    other_seed = generate_audio(small_model, [dataclasses.replace(REQUESTS[0], seed=99)])
    other_prompt = generate_audio(small_model, [dataclasses.replace(REQUESTS[0], prompt="a punchy drum loop")])
    assert torch.equal(first, again)
    # Both differ far beyond the invariance tolerance, so the invariance tests would catch items
    # in a batch receiving each other's noise or conditioning.
    assert (first - other_seed).abs().max() > 100 * TOLERANCE
    assert (first - other_prompt).abs().max() > 100 * TOLERANCE


def test_negative_prompts_can_share_a_batch_with_plain_items(small_model) -> None:
    requests = [dataclasses.replace(REQUESTS[0], negative_prompt="muddy, distorted"), REQUESTS[1]]
    alone = one_by_one(small_model, requests)
    batched = generate_audio(small_model, requests)
    assert (batched - alone).abs().max() <= TOLERANCE
    without_negative = generate_audio(small_model, REQUESTS[:1])
    assert (alone[:1] - without_negative).abs().max() > 100 * TOLERANCE  # the negative prompt is used


def test_requests_with_different_schedules_cannot_share_a_batch(small_model) -> None:
    with pytest.raises(ValueError, match="must share steps/cfg/sampler/sigmas and latent length"):
        generate_audio(small_model, [REQUESTS[0], dataclasses.replace(REQUESTS[1], steps=9)])
    with pytest.raises(ValueError, match="must share steps/cfg/sampler/sigmas and latent length"):
        generate_audio(small_model, [REQUESTS[0], dataclasses.replace(REQUESTS[1], seconds_total=2.5)])


def test_chunked_decode_matches_whole_decode(small_model) -> None:
    latents = torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(0))
    whole = decode(small_model, latents)
    small_model.decode_chunk = 40  # 2 chunks, overlapping by 16 frames per side
    try:
        chunked = decode(small_model, latents)
    finally:
        small_model.decode_chunk = None
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() <= 1e-4
