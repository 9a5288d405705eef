"""GPU memory on the real tiny model: what ``--batch-size auto`` keys on, allocation failures, split retries.

Running out of memory is injected: the DiT's transformer stack (where the activations are, after
CFG has doubled the batch) raises the error a GPU library would raise once it sees more rows than a
pretend memory limit allows. Everything else - conditioning, sampling, decoding - is the real path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.sampling.autobatch import (
    SAFETY_FACTOR,
    generate_audio_splitting,
    is_out_of_memory,
    memory_key,
    probe_batch_size,
)
from stable_audio_tools_ext.sampling.engine import generate_audio

CUBLAS_ALLOC_FAILED = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
# Four different items in one 48-frame latent bucket.
REQUESTS = [
    GenerationRequest(prompt="rain on a tin roof", seed=11, seconds_start=0, seconds_total=2, steps=4),
    GenerationRequest(prompt="a punchy drum loop", seed=12, seconds_start=0.5, seconds_total=1.5, steps=4),
    GenerationRequest(prompt="birds at dawn", seed=13, seconds_start=0, seconds_total=1.8, steps=4, negative_prompt="muddy"),
    GenerationRequest(prompt="a door creaks", seed=14, seconds_start=0, seconds_total=2, steps=4),
]


def fail_transformer(monkeypatch, loaded, should_fail: Callable[[int], bool], message: str = CUBLAS_ALLOC_FAILED) -> list[int]:
    """Make the DiT's transformer raise ``RuntimeError(message)`` when ``should_fail(rows)``; returns the rows of every call."""
    transformer = loaded.model.model.model.transformer
    real_forward = transformer.forward
    rows_seen: list[int] = []

    def forward(x, *args, **kwargs):
        rows_seen.append(x.shape[0])
        if should_fail(x.shape[0]):
            raise RuntimeError(message)
        return real_forward(x, *args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    return rows_seen


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError(CUBLAS_ALLOC_FAILED), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_allocation_failures_of_every_library_count_as_out_of_memory(error: BaseException, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


def test_memory_key_holds_what_changes_peak_memory_and_nothing_else(small_model) -> None:
    base = REQUESTS[0]
    key = memory_key(small_model, base)
    same_memory = [
        dataclasses.replace(base, steps=100), dataclasses.replace(base, sampler_type="dpmpp-2m"),
        dataclasses.replace(base, prompt="another prompt entirely", seed=99), dataclasses.replace(base, negative_prompt="hiss"),
        dataclasses.replace(base, cfg_scale=3.0), dataclasses.replace(base, sigma_max=80.0),
        dataclasses.replace(base, seconds_total=1.5),  # still the 48-frame bucket
    ]  # fmt: skip
    assert {memory_key(small_model, r) for r in same_memory} == {key}
    assert key == (48, True)
    assert memory_key(small_model, dataclasses.replace(base, cfg_scale=1.0)) == (48, False)  # no CFG: half the DiT batch
    assert memory_key(small_model, dataclasses.replace(base, seconds_total=2.5)) == (64, True)
    assert memory_key(small_model, dataclasses.replace(base, latent_frames=64)) == (64, True)  # --latent-length full


@pytest.mark.parametrize(("cfg_scale", "fitting_items"), [(7.0, 4), (1.0, 8)])
def test_probe_finds_the_largest_batch_under_the_limit_counting_cfg(small_model, monkeypatch, cfg_scale: float, fitting_items: int) -> None:
    rows_seen = fail_transformer(monkeypatch, small_model, lambda rows: rows > 8)  # a GPU that holds 8 DiT rows
    size = probe_batch_size(small_model, dataclasses.replace(REQUESTS[0], cfg_scale=cfg_scale), limit=16)
    assert size == int(fitting_items * SAFETY_FACTOR)
    assert max(rows_seen) == 16  # the next size up (twice the items: 16 DiT rows either way) was tried, and failed


def test_a_batch_that_runs_out_of_memory_is_retried_in_halves_with_the_same_audio(small_model, monkeypatch, capsys) -> None:
    whole = generate_audio(small_model, REQUESTS)
    halves = torch.cat([generate_audio(small_model, REQUESTS[:2]), generate_audio(small_model, REQUESTS[2:])])
    failures = []

    def first_multi_item_call_fails(rows: int) -> bool:
        if rows > 2 and not failures:  # more than one item (CFG: 2 rows per item), once
            failures.append(rows)
            return True
        return False

    rows_seen = fail_transformer(monkeypatch, small_model, first_multi_item_call_fails)
    split = generate_audio_splitting(small_model, REQUESTS)
    assert failures == [8]
    assert rows_seen[0] == 8 and set(rows_seen[1:]) == {4}  # then only the two halves ran
    assert torch.equal(split, halves)
    assert (split - whole).abs().max() <= 1e-4  # the batch-invariance tolerance of test_engine
    assert "a batch of 4 ran out of memory on cpu; retrying it as 2 + 2" in capsys.readouterr().err


def test_a_single_item_that_does_not_fit_raises(small_model, monkeypatch) -> None:
    rows_seen = fail_transformer(monkeypatch, small_model, lambda rows: True)
    with pytest.raises(RuntimeError, match="CUBLAS_STATUS_ALLOC_FAILED"):
        generate_audio_splitting(small_model, REQUESTS)
    assert rows_seen == [8, 4, 2]  # 4 items, then 2, then the first single item: nothing left to split


def test_other_errors_are_not_retried(small_model, monkeypatch) -> None:
    rows_seen = fail_transformer(monkeypatch, small_model, lambda rows: True, message="mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        generate_audio_splitting(small_model, REQUESTS)
    assert rows_seen == [8]
