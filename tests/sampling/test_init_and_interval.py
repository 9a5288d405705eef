"""Guidance interval and init audio in the engine, on the tiny models of both families."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import k_diffusion as K
import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.model.loading import load_model
from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import SMALL_REPO_ID, build_tiny_hub_cache
from stable_audio_tools_ext.request import GenerationRequest, InitAudio
from stable_audio_tools_ext.sampling.engine import decode, generate_audio, generate_latents
from stable_audio_tools_ext.sampling.init_audio import InitAudioError, init_latents
from tests.conftest import SMALL_WINDOW_SAMPLES
from tests.model.test_loading import SAO_SMALL_HUB, snapshot
from tests.sampling.test_engine import FULL_WINDOW, REQUESTS, TOLERANCE, one_by_one

CPU = torch.device("cpu")
STEPS = REQUESTS[0].steps  # 8: SAO 1.0's schedule, sigma 500 -> 0.3


@contextmanager
def dit_rows(loaded) -> Iterator[list[int]]:
    """Batch rows through the DiT's transformer, one entry per evaluation: 2x the batch where CFG runs."""
    rows: list[int] = []
    handle = loaded.model.model.model.transformer.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        yield rows
    finally:
        handle.remove()


def guided_steps(request: GenerationRequest, interval: tuple[float, float]) -> int:
    """Steps whose DiT sigma (sin of the timestep VDenoiser gives it: sigma / sqrt(1 + sigma^2)) lies in ``interval``."""
    sigmas = K.sampling.get_sigmas_polyexponential(request.steps, request.sigma_min, request.sigma_max, rho=1.0)[:-1]
    dit_sigmas = torch.sin(torch.atan(sigmas))
    return int(((dit_sigmas >= interval[0]) & (dit_sigmas <= interval[1])).sum())


# --- cfg_interval --------------------------------------------------------------------------------


def test_no_interval_passes_nothing_and_is_guidance_at_every_step(small_model) -> None:
    seen: list[dict] = []
    handle = small_model.model.model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        with dit_rows(small_model) as rows:
            today = generate_audio(small_model, REQUESTS[:2])
    finally:
        handle.remove()
    assert len(seen) == STEPS and not any("cfg_interval" in kwargs for kwargs in seen)
    assert rows == [4] * STEPS  # batch 2, doubled for classifier-free guidance at every step
    whole = generate_audio(small_model, [dataclasses.replace(r, cfg_interval=(0.0, 1.0)) for r in REQUESTS[:2]])
    assert torch.equal(whole, today)  # the DiT's sigma is always in [0, 1]: same audio, bit for bit


def test_an_interval_outside_every_step_is_no_guidance_at_half_the_rows(small_model) -> None:
    outside = [dataclasses.replace(r, cfg_interval=(0.0, 0.1)) for r in REQUESTS[:2]]
    assert guided_steps(outside[0], (0.0, 0.1)) == 0  # the schedule's lowest DiT sigma is 0.29
    with dit_rows(small_model) as rows:
        unguided = generate_audio(small_model, outside)
    assert rows == [2] * STEPS
    no_cfg = generate_audio(small_model, [dataclasses.replace(r, cfg_scale=1.0) for r in REQUESTS[:2]])
    assert torch.equal(unguided, no_cfg)


def test_a_partial_interval_guides_only_the_steps_inside_it(small_model) -> None:
    interval = (0.0, 0.95)
    partial = [dataclasses.replace(r, cfg_interval=interval) for r in REQUESTS[:2]]
    guided = guided_steps(partial[0], interval)
    assert 0 < guided < STEPS
    with dit_rows(small_model) as rows:
        audio = generate_audio(small_model, partial)
    assert sum(rows) == 2 * STEPS + 2 * guided
    assert rows[-guided:] == [4] * guided  # guidance at the low-noise end of the schedule
    everywhere = generate_audio(small_model, REQUESTS[:2])
    nowhere = generate_audio(small_model, [dataclasses.replace(r, cfg_scale=1.0) for r in REQUESTS[:2]])
    assert (audio - everywhere).abs().max() > 100 * TOLERANCE
    assert (audio - nowhere).abs().max() > 100 * TOLERANCE


def test_interval_batches_are_batch_invariant(small_model) -> None:
    requests = [dataclasses.replace(r, cfg_interval=(0.0, 0.95)) for r in REQUESTS]
    assert (generate_audio(small_model, requests) - one_by_one(small_model, requests)).abs().max() <= TOLERANCE


# --- init audio ----------------------------------------------------------------------------------


def write_init(path: Path, frequency: float, seconds: float = 3.5, sample_rate: int = 44100, channels: int = 2) -> InitAudio:
    """A real audio file (a tone with a little noise, left and right differing) and its InitAudio."""
    rng = np.random.default_rng(int(frequency))
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.4 * np.sin(2 * np.pi * frequency * t)
    audio = np.stack([tone * (1 - 0.3 * c) + 0.02 * rng.standard_normal(t.size) for c in range(channels)], axis=1)
    sf.write(path, audio.astype(np.float32), sample_rate, subtype="FLOAT")
    return InitAudio(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def with_init(requests: list[GenerationRequest], inits: list[InitAudio], level: float = 1.0) -> list[GenerationRequest]:
    return [dataclasses.replace(r, init_audio=i, init_noise_level=level) for r, i in zip(requests, inits)]


@pytest.fixture()
def inits(tmp_path) -> list[InitAudio]:
    return [write_init(tmp_path / f"init-{n}.wav", f) for n, f in enumerate((220.0, 330.0, 55.0))]


@pytest.mark.parametrize("latent_mode", ["auto", "full"])
@pytest.mark.parametrize("sampler_type", ["dpmpp-3m-sde", "k-dpm-fast"])
def test_init_audio_does_not_depend_on_the_batch(small_model, inits, sampler_type: str, latent_mode: str) -> None:
    base = REQUESTS if latent_mode == "auto" else FULL_WINDOW
    requests = with_init([dataclasses.replace(r, sampler_type=sampler_type) for r in base[:2]], inits[:2], level=2.0)
    alone = one_by_one(small_model, requests)
    batched = generate_audio(small_model, requests)
    assert batched.shape[-1] == (48 if latent_mode == "auto" else 64) * 2048
    assert (batched - alone).abs().max() <= TOLERANCE
    assert (generate_audio(small_model, requests[::-1]).flip(0) - alone).abs().max() <= TOLERANCE
    without = one_by_one(small_model, [dataclasses.replace(r, init_audio=None, init_noise_level=None) for r in requests])
    assert (alone - without).abs().max() > 100 * TOLERANCE  # the init audio is used


def test_items_sharing_a_file_get_their_own_vae_sample(small_model, inits) -> None:
    """Two seeds, one file: the VAE's latent sample differs, and each equals its batch-1 encoding."""
    requests = with_init(REQUESTS[:2], [inits[0], inits[0]])
    together = init_latents(small_model, requests, 48)
    assert torch.equal(together, torch.cat([init_latents(small_model, [r], 48) for r in requests]))
    assert (together[0] - together[1]).abs().max() > 0.1
    assert together.dtype == torch.float32


def test_init_audio_leaves_the_global_random_state_alone(small_model, inits) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    generate_latents(small_model, with_init(REQUESTS[:1], inits[:1]))
    assert torch.equal(torch.rand(4), expected)


def test_a_low_init_noise_level_keeps_the_init_audio(small_model, inits) -> None:
    request = dataclasses.replace(REQUESTS[0], sigma_min=0.01)  # the schedule must reach below the start
    [low] = with_init([request], inits[:1], level=0.03)
    reconstruction = decode(small_model, init_latents(small_model, [low], 48))  # the VAE's round trip of the file
    varied = generate_audio(small_model, [low])
    from_noise = generate_audio(small_model, [request])
    assert (varied - reconstruction).abs().max() < 0.1 * (from_noise - reconstruction).abs().max()


def test_a_mono_22khz_file_is_resampled_and_made_stereo(small_model, tmp_path) -> None:
    # Both mono (the stereo VAE gets the channel twice, as upstream's set_audio_channels does); one at half the rate.
    mono_44k = write_init(tmp_path / "mono44k.wav", 110.0, channels=1)
    mono_22k = write_init(tmp_path / "mono22k.wav", 110.0, channels=1, sample_rate=22050)
    [reference, resampled] = [with_init(REQUESTS[:1], [i])[0] for i in (mono_44k, mono_22k)]
    expected = init_latents(small_model, [reference], 48)
    got = init_latents(small_model, [resampled], 48)
    assert got.shape == expected.shape == (1, 64, 48)
    # The same tone at half the rate: resampled, it encodes (same seed, same VAE sample) to nearly the same latents.
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    audio = generate_audio(small_model, [resampled])
    assert audio.shape == (1, 2, 48 * 2048) and torch.isfinite(audio).all()


def test_a_missing_changed_or_unreadable_file_is_named(small_model, inits, tmp_path) -> None:
    missing = InitAudio(str(tmp_path / "gone.wav"), inits[0].sha256)
    with pytest.raises(InitAudioError, match=f"init audio {missing.path}: cannot read it"):
        generate_audio(small_model, with_init(REQUESTS[:1], [missing]))
    changed = write_init(Path(inits[1].path), 440.0)  # same path, new content: the planned hash no longer holds
    with pytest.raises(InitAudioError, match=f"init audio {changed.path}: the file changed since the tree was read"):
        generate_audio(small_model, with_init(REQUESTS[:1], [inits[1]]))
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(InitAudioError, match=f"init audio {text}: not readable as audio"):
        generate_audio(small_model, with_init(REQUESTS[:1], [InitAudio(str(text), hashlib.sha256(b"not audio").hexdigest())]))


def test_init_noise_level_must_be_above_the_end_of_the_schedule(small_model, tmp_path) -> None:
    """Checked before any file is read: at or below sigma_min the v schedule would climb."""
    gone = InitAudio(str(tmp_path / "gone.wav"), "0" * 64)
    with pytest.raises(ValueError, match="init_noise_level 0.3 must be above sigma_min 0.3"):
        generate_audio(small_model, with_init(REQUESTS[:1], [gone], level=0.3))
    with pytest.raises(ValueError, match="init_audio and init_noise_level must be set together"):
        generate_audio(small_model, [dataclasses.replace(REQUESTS[0], init_audio=gone)])


# --- flow models: Stable Audio Open Small (rf_denoiser, pingpong) and an undistilled one (euler) -------


@pytest.fixture(scope="module", params=["pingpong", "euler"])
def flow_model(request, tmp_path_factory):
    """The tiny Small (``rf_denoiser``); for ``euler``, its weights under a ``rectified_flow`` config (``sample_rf``)."""
    folder = snapshot(build_tiny_hub_cache(SAO_SMALL_HUB, sample_size=SMALL_WINDOW_SAMPLES, repo_id=SMALL_REPO_ID), SMALL_REPO_ID)
    config = folder / "model_config.json"
    if request.param == "euler":
        data = json.loads(config.read_text())
        data["model"]["diffusion"]["diffusion_objective"] = "rectified_flow"
        config = tmp_path_factory.mktemp("rectified-flow") / "model_config.json"
        config.write_text(json.dumps(data))
    return request.param, load_model(read_model_spec(ModelRequest(model_config=config, ckpt_path=folder / "model.ckpt")), CPU)


@pytest.mark.parametrize("latent_mode", ["auto", "full"])
def test_flow_init_audio_does_not_depend_on_the_batch(flow_model, inits, latent_mode: str) -> None:
    sampler_type, loaded = flow_model
    base = REQUESTS if latent_mode == "auto" else FULL_WINDOW
    flow = [dataclasses.replace(r, sampler_type=sampler_type, cfg_scale=1.0, sigma_min=0.0, sigma_max=1.0) for r in base[:2]]
    requests = with_init(flow, inits[:2], level=0.7)
    alone = one_by_one(loaded, requests)
    assert (generate_audio(loaded, requests) - alone).abs().max() <= TOLERANCE
    without = one_by_one(loaded, flow)
    assert (alone - without).abs().max() > 100 * TOLERANCE


def test_flow_init_noise_level_sets_how_far_from_the_init_audio(flow_model, inits) -> None:
    """In latents: the tiny flow models' VAE decoders barely react to them, and a random distilled
    denoiser's predictions move far even from little noise, so only the order is a property here."""
    sampler_type, loaded = flow_model
    request = dataclasses.replace(REQUESTS[0], sampler_type=sampler_type, cfg_scale=1.0, sigma_min=0.0, sigma_max=1.0)
    start = init_latents(loaded, with_init([request], inits[:1]), 48)
    distance = lambda r: (generate_latents(loaded, [r]) - start).norm().item()  # noqa: E731
    low, high = (distance(with_init([request], inits[:1], level=level)[0]) for level in (0.15, 0.7))
    assert low < high < distance(request)
    # Upstream's flow schedule ends at t = 0.119 before its last step: a start below it would climb.
    with pytest.raises(ValueError, match="init_noise_level 0.1 must be above 0.1192, where the flow schedule ends"):
        generate_audio(loaded, with_init([request], inits[:1], level=0.1))
