"""Guidance interval and init audio in the engine, on the tiny models of both families."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import k_diffusion as K
from stable_audio_tools.inference.utils import prepare_audio
import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.model.loading import load_model
from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import SMALL_REPO_ID, build_tiny_hub_cache
from stable_audio_tools_ext.model.vae import seeded_global_rng
from stable_audio_tools_ext.request import GenerationRequest, InitAudio
from stable_audio_tools_ext.tree.plan import derive_seed
from stable_audio_tools_ext.sampling.engine import decode, generate_audio, generate_latents
from stable_audio_tools_ext.sampling.init_audio import (
    VAE_SAMPLE_SEED_KEY,
    InitAudioError,
    _PreparedCache,
    init_latents,
    span_frames,
)
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


# --- reading init audio: only the span the crop keeps, once per file ------------------------------


def whole_file_latents(loaded, request: GenerationRequest, frames: int) -> torch.Tensor:
    """What init_latents gave before it read spans: the whole file, prepared by upstream on the model's device."""
    audio, rate = sf.read(request.init_audio.path, dtype="float32", always_2d=True)
    pretransform = loaded.model.pretransform
    prepared = prepare_audio(torch.from_numpy(audio.T.copy()), in_sr=rate, target_sr=44100, target_length=frames * 2048,
                             target_channels=pretransform.io_channels, device=loaded.device)  # fmt: skip
    with seeded_global_rng(derive_seed(request.seed, VAE_SAMPLE_SEED_KEY, 0), loaded.device):
        return pretransform.encode(prepared).float()


@contextmanager
def frames_read() -> Iterator[list[int]]:
    """The frames every soundfile read returns (the decoding an init file costs), one entry per read."""
    counts: list[int] = []
    real = sf.SoundFile.read

    def counting(self, *args, **kwargs):
        audio = real(self, *args, **kwargs)
        counts.append(len(audio))
        return audio

    sf.SoundFile.read = counting
    try:
        yield counts
    finally:
        sf.SoundFile.read = real


@pytest.mark.parametrize("rate", [8000, 22050, 32000, 44100, 48000, 96000])
def test_the_span_read_prepares_to_the_same_samples_as_the_whole_file(rate: int) -> None:
    """Resampled from its first span_frames only, a long signal's crop equals the crop of the whole, bit for bit."""
    whole = torch.randn(2, rate * 7, generator=torch.Generator().manual_seed(rate)) * 0.3
    for length in (64 * 2048, 3 * 2048 + 5):
        span = span_frames(rate, 44100, length)
        assert span < whole.shape[-1]
        expected = prepare_audio(whole, in_sr=rate, target_sr=44100, target_length=length, target_channels=2, device="cpu")
        got = prepare_audio(whole[:, :span], in_sr=rate, target_sr=44100, target_length=length, target_channels=2, device="cpu")
        assert torch.equal(got, expected), (rate, length)


@pytest.mark.parametrize(("rate", "channels", "seconds", "frames"), [(48000, 2, 9.0, 64), (22050, 1, 1.2, 48), (44100, 3, 5.0, 48)])
def test_init_latents_equal_those_of_the_whole_file(small_model, tmp_path, rate: int, channels: int, seconds: float,
                                                    frames: int) -> None:  # fmt: skip
    """Longer than the window (cropped) and shorter (padded); resampled or not; mono, stereo, 3 channels."""
    init = write_init(tmp_path / "init.wav", 150.0, seconds=seconds, sample_rate=rate, channels=channels)
    [request] = with_init((FULL_WINDOW if frames == 64 else REQUESTS)[1:2], [init])
    assert torch.equal(init_latents(small_model, [request], frames), whole_file_latents(small_model, request, frames))


def test_a_long_init_file_is_read_only_as_far_as_the_crop_and_once(small_model, tmp_path) -> None:
    """A 60 s file for a 2.97 s window: the frames decoded are the span, and the next batch decodes none."""
    init = write_init(tmp_path / "long.wav", 220.0, seconds=60.0, sample_rate=48000)
    first, second = with_init(FULL_WINDOW[:2], [init, init])
    with frames_read() as counts:
        init_latents(small_model, [first], 64)
        init_latents(small_model, [second], 64)  # the next batch: the same file, another item
    assert counts == [span_frames(48000, 44100, 64 * 2048)]
    assert counts[0] < 48000 * 60 / 15


def test_the_kept_audio_is_bounded_and_drops_the_least_recently_used() -> None:
    cache = _PreparedCache(limit_bytes=3 * 4000)
    keys = [(InitAudio(f"/{n}.wav", str(n)), 44100, 1000, 1) for n in range(4)]
    for key in keys[:3]:
        cache.put(key, torch.zeros(1, 1, 1000))  # 4000 bytes each
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], torch.zeros(1, 1, 1000))
    assert [cache.get(key) is not None for key in keys] == [True, False, True, True]


def test_a_file_edited_after_its_first_batch_is_refused_and_its_new_content_is_read(small_model, tmp_path) -> None:
    """Kept audio is used only while the file is unchanged: an edit is an error for items planned before it,
    and items planned with the new content (a new hash) get the new audio, not the kept one."""
    path = tmp_path / "edited.wav"
    [request] = with_init(REQUESTS[:1], [write_init(path, 220.0)])
    planned = init_latents(small_model, [request], 48)
    [edited] = with_init(REQUESTS[:1], [write_init(path, 440.0, seconds=3.0)])  # another size: seen without a hash
    with pytest.raises(InitAudioError, match="the file changed since the tree was read"):
        init_latents(small_model, [request], 48)
    latents = init_latents(small_model, [edited], 48)
    assert torch.equal(latents, whole_file_latents(small_model, edited, 48)) and not torch.equal(latents, planned)


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
