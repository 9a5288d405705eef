"""The solver's state stays float32 whatever precision the DiT computes in (fp16, bf16).

The DiT runs in reduced precision on GPUs; the noise, latents and sigmas must not: in float16,
``sigma ** 2`` overflows above 256 and the denoiser's input scaling becomes 0, so the first steps of
the default schedule would feed the DiT an all-zero input. The tiny model runs in fp16 and bf16 on
the CPU too, so this is tested here. Each test loads its own copy: ``small_model`` is shared.
"""

from __future__ import annotations

import pytest
import torch

from stable_audio_tools_ext.model.loading import PRECISIONS, load_model
from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID, SMALL_REPO_ID, build_tiny_hub_cache
from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.sampling.engine import generate_audio, generate_latents
from tests.conftest import SMALL_WINDOW_SAMPLES
from tests.model.test_loading import SAO_SMALL_HUB, snapshot

CPU = torch.device("cpu")
# SAO 1.0's default schedule (sigma 500 -> 0.3) in 10 steps: the first evaluation is at sigma 500.
REQUEST = GenerationRequest(prompt="rain on a tin roof", seed=11, seconds_start=0, seconds_total=2, steps=10)


def dit_inputs(loaded, requests: list[GenerationRequest]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """What the DiT wrapper receives at every evaluation (x, t), and the sampled latents."""
    seen = []
    handle = loaded.model.model.register_forward_pre_hook(lambda module, args: seen.append((args[0].clone(), args[1].clone())))
    try:
        latents = generate_latents(loaded, requests)
    finally:
        handle.remove()
    return seen, latents


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_dit_gets_finite_nonzero_float32_input_from_sigma_500_on(small_hub, precision: str) -> None:
    loaded = load_model(read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)), CPU, precision)
    assert loaded.dit_dtype == PRECISIONS[precision]  # the DiT itself does run in half precision
    seen, latents = dit_inputs(loaded, [REQUEST])
    assert len(seen) == REQUEST.steps
    first_x, first_t = seen[0]
    assert first_t.item() == pytest.approx(0.99873, abs=1e-5)  # atan(500) * 2 / pi: sigma 500
    for x, t in seen:
        assert x.dtype == torch.float32 and t.dtype == torch.float32
        assert torch.isfinite(x).all() and x.abs().max() > 0
    assert first_x.abs().max() > 1  # unit-variance noise scaled by c_in ~ 1/sigma back to ~N(0, 1)
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
    audio = generate_audio(loaded, [REQUEST])
    assert torch.isfinite(audio).all() and audio.abs().max() > 0


def test_flow_model_pingpong_state_is_float32_in_fp16(small_hub) -> None:
    folder = snapshot(build_tiny_hub_cache(SAO_SMALL_HUB, sample_size=SMALL_WINDOW_SAMPLES, repo_id=SMALL_REPO_ID), SMALL_REPO_ID)
    request = ModelRequest(model_config=folder / "model_config.json", ckpt_path=folder / "model.ckpt")
    loaded = load_model(read_model_spec(request), CPU, "fp16")
    pingpong = GenerationRequest(prompt="rain", seed=1, seconds_start=0, seconds_total=2, steps=8, cfg_scale=1.0,
                                 sampler_type="pingpong", sigma_min=0.0, sigma_max=1.0)  # fmt: skip
    seen, latents = dit_inputs(loaded, [pingpong])
    assert len(seen) == 8
    assert all(x.dtype == torch.float32 and t.dtype == torch.float32 and torch.isfinite(x).all() for x, t in seen)
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
