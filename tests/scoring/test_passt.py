"""KL_passt as stable-audio-metrics computes it, on a tiny random PaSST of the real architecture."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from stable_audio_tools_ext.scoring.passt import (
    PasstClassifier,
    PasstLoadError,
    kl_divergence,
    paired_kl,
    recipe_waveform,
    windows,
)

RATE = 32000


@pytest.fixture(scope="module")
def classifier(tiny_passt) -> PasstClassifier:
    return PasstClassifier.load(torch.device("cpu"), weights=tiny_passt)


@pytest.mark.parametrize(
    ("seconds", "starts", "lengths", "padded"),
    [
        (1.0, [0], [1.0], False),  # at most 1.5 s (15% of a window): fed as it is, not padded
        (4.0, [0], [10.0], True),  # padded to one 10 s window
        (10.0, [0], [10.0], False),
        (12.0, [0, 5], [10.0, 10.0], True),  # 0-10 s, and 5-12 s padded
        (17.0, [0, 5, 10], [10.0, 10.0, 10.0], True),  # 0-10, 5-15, 10-17 padded
        (20.0, [0, 5, 10], [10.0, 10.0, 10.0], False),
    ],
)
def test_ten_second_windows_overlapping_by_five_with_the_last_window_rule(seconds, starts, lengths, padded) -> None:
    wave = np.arange(int(seconds * RATE), dtype=np.float32) + 1  # sample k holds k + 1: each window's start shows
    cut = windows(wave)
    assert [float(window[0] - 1) / RATE for window in cut] == starts
    assert [len(window) / RATE for window in cut] == lengths
    assert cut[-1][-1] == (0 if padded else wave[-1])  # zero padding at the end of a short last window


def test_audio_is_read_as_32_khz_mono_peaking_at_minus_one_dbfs() -> None:
    stereo = np.stack([np.full(44100, 0.1), np.full(44100, 0.3)], axis=1).astype(np.float32)
    wave = recipe_waveform(stereo, 44100)
    assert len(wave) == RATE and np.max(np.abs(wave)) == pytest.approx(10 ** (-1 / 20), rel=1e-6)


def test_probabilities_are_a_softmax_over_527_classes_and_gain_invariant(classifier) -> None:
    rng = np.random.default_rng(0)
    clip = rng.uniform(-0.5, 0.5, (12 * 44100, 2)).astype(np.float32)  # two windows
    loud = classifier.class_probabilities((clip, 44100))
    assert loud.shape == (527,) and loud.sum() == pytest.approx(1, abs=1e-5) and np.all(loud > 0)
    np.testing.assert_allclose(classifier.class_probabilities((clip * 0.05, 44100)), loud, atol=1e-6)
    batched = classifier.probabilities([(clip[: 3 * 44100], 44100), (clip, 44100)])  # windows of both in one batch
    np.testing.assert_allclose(batched[1], loud, atol=1e-6)


def test_kl_passt_is_zero_for_a_set_against_itself_and_positive_for_another(classifier) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(3 * RATE) / RATE
    tones = {f"tone-{hz}": np.sin(2 * np.pi * hz * t)[:, None].astype(np.float32) for hz in (110, 440, 1760)}
    noise = {key: rng.uniform(-1, 1, (3 * RATE, 1)).astype(np.float32) for key in tones}
    ids = sorted(tones)
    probs = dict(zip(ids, classifier.probabilities([(tones[key], RATE) for key in ids])))
    others = dict(zip(ids, classifier.probabilities([(noise[key], RATE) for key in ids])))
    # passt_kld adds 1e-6 to the reference before the log: a clip against itself scores in [-527e-6, 0]
    assert -527e-6 <= paired_kl(probs, probs) <= 0
    assert paired_kl(others, probs) > 1e-3
    assert paired_kl(others, probs) == pytest.approx(np.mean([kl_divergence(others[k], probs[k]) for k in ids]))


def test_kl_divergence_is_kl_of_eval_against_reference() -> None:
    eval_probs, ref_probs = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert kl_divergence(eval_probs, ref_probs) == pytest.approx(np.log(2), abs=1e-5)  # 0 * log 0 counts 0
    with pytest.raises(ValueError, match=r"ids without a reference \['b'\], references without an evaluated clip \['c'\]"):
        paired_kl({"a": eval_probs, "b": eval_probs}, {"a": ref_probs, "c": ref_probs})


def test_weights_come_from_the_torch_hub_cache_offline_or_a_clear_error(tiny_passt, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(PasstLoadError, match="download https://github.com/kkoutini/PaSST/.*ap.476-swa.pt"):
        PasstClassifier.load(torch.device("cpu"), weights=tmp_path / "missing.pt")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(tiny_passt, cache / tiny_passt.name)
    classifier = PasstClassifier.load(torch.device("cpu"))  # found in the cache: no download
    assert classifier.model.net.embed_dim == 64 and len(classifier.model.net.blocks) == 1
