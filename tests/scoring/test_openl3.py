"""FD_openl3's frames as stable-audio-metrics takes them, on a tiny random OpenL3 of the real architecture."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from stable_audio_tools_ext.scoring.frechet import frechet_distance
from stable_audio_tools_ext.scoring.openl3 import Openl3Embedder, Openl3LoadError, model_windows, recipe_channels

RATE = 44100


def tone(seconds: float, hz: float, channels: int = 1, gain: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = gain * np.sin(2 * np.pi * hz * t)
    return np.stack([wave * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def embedder(tiny_openl3) -> Openl3Embedder:
    return Openl3Embedder.load("music", torch.device("cpu"), weights=tiny_openl3)


@pytest.mark.parametrize(("seconds", "frames"), [(0.5, 1), (1.0, 2), (3.0, 6), (3.2, 7)])
def test_one_second_windows_every_half_second_centred_and_padded(seconds: float, frames: int) -> None:
    # At 48 kHz with half a window of zeros in front: 3 s is 168,000 samples = 1 + (168,000 - 48,000) / 24,000
    # windows; 3.2 s needs a seventh, zero-padded one; a clip shorter than the window still gets one.
    left, _ = recipe_channels(tone(seconds, 440), RATE)
    windows = model_windows(left, RATE)
    assert windows.shape == (frames, 1, 48000)
    assert torch.all(windows[0, 0, :24000] == 0)  # centred: the first window starts half a window early


def test_frames_are_left_and_right_embeddings_side_by_side_and_mono_is_copied(embedder) -> None:
    stereo = tone(3.0, 440, channels=2)
    frames = embedder.frames([(stereo, RATE)])
    assert frames.shape == (6, 1024) and frames.dtype == np.float32
    assert not np.allclose(frames[:, :512], frames[:, 512:])  # the right channel is quieter: its own embedding
    mono = embedder.frames([(stereo[:, :1], RATE)])
    np.testing.assert_array_equal(mono[:, :512], mono[:, 512:])
    as_stereo = embedder.frames([(np.repeat(stereo[:, :1], 2, axis=1), RATE)])
    np.testing.assert_allclose(mono, as_stereo, atol=1e-6)
    np.testing.assert_allclose(frames[:, :512], mono[:, :512], atol=1e-6)  # a batch's clips do not mix


def test_peak_normalisation_makes_the_frames_gain_invariant(embedder) -> None:
    clip = tone(1.5, 330, channels=2)
    loud, quiet = embedder.frames([(clip, RATE)]), embedder.frames([(clip * 0.05, RATE)])
    # The same input up to float32 rounding of the normalised samples, which the spectrogram's dB of
    # near-silent bins magnifies to about 2e-5 (frames of about 0.06 spread); without normalisation
    # the two differ by far more (the dB spectrogram is relative to each window's peak, the rest is not).
    np.testing.assert_allclose(loud, quiet, atol=1e-4)


def test_fd_openl3_is_zero_for_a_set_against_itself_and_grows_for_another(embedder) -> None:
    rng = np.random.default_rng(0)
    tones = [(tone(1.5, hz), RATE) for hz in (220, 440, 880)]
    noise = [(rng.uniform(-0.5, 0.5, (int(1.5 * RATE), 1)).astype(np.float32), RATE) for _ in range(3)]
    a, b = embedder.frames(tones), embedder.frames(noise)
    assert len(a) == len(b) == 9  # three frames per 1.5 s clip
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-4)  # round-off of 9 frames in 1024 dimensions
    assert frechet_distance(a, b) > 1e-3


def test_weights_come_from_the_torch_hub_cache_offline_or_a_clear_error(tiny_openl3, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(Openl3LoadError, match="download https://github.com/torchopenl3/.*torchopenl3_mel256_music_512"):
        Openl3Embedder.load("music", torch.device("cpu"), weights=tmp_path / "missing.pth.tar")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(tiny_openl3, cache / tiny_openl3.name)
    embedder = Openl3Embedder.load("music", torch.device("cpu"))  # found in the cache: no download
    assert embedder.model.conv2d_1.out_channels == 4  # the stand-in's width, read from its tensors
    with pytest.raises(ValueError, match="music, env"):
        Openl3Embedder.load("speech", torch.device("cpu"))
