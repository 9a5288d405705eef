"""The shared engine on the tiny model: shapes, reproducibility, and per-item seed invariance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stable_audio_tools_ext.engine import generate_audio
from stable_audio_tools_ext.request import GenerationRequest

TOLERANCE = 1e-4  # float reductions may differ slightly with batch size; PCM_16 resolution is 3e-5

REQUESTS = [
    GenerationRequest(prompt="rain on a tin roof", seed=11, seconds_start=0, seconds_total=2, steps=8),
    GenerationRequest(prompt="a punchy drum loop", seed=12, seconds_start=0.5, seconds_total=1.5, steps=8),
    GenerationRequest(prompt="birds at dawn", seed=2**40 + 3, seconds_start=0, seconds_total=2.5, steps=8),
]


def one_by_one(model, requests):
    return torch.cat([generate_audio(model, [r]) for r in requests])


def test_output_is_float32_stereo_over_the_whole_window(small_model) -> None:
    audio = generate_audio(small_model, REQUESTS[:2])
    assert audio.shape == (2, 2, small_model.spec.window_samples)
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    assert audio.abs().max() > 0


@pytest.mark.parametrize("sampler_type", ["dpmpp-3m-sde", "dpmpp-2m", "k-dpmpp-2s-ancestral"])
def test_audio_does_not_depend_on_batch_composition_or_order(small_model, sampler_type: str) -> None:
    requests = [dataclasses.replace(r, sampler_type=sampler_type) for r in REQUESTS]
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
    with pytest.raises(ValueError, match="must share steps/cfg/sampler/sigmas"):
        generate_audio(small_model, [REQUESTS[0], dataclasses.replace(REQUESTS[1], steps=9)])
