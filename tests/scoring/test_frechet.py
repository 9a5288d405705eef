"""The Fréchet distance on embedding sets: 0 for a set against itself, growing as a set changes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.scoring.clap import ClapScorer
from stable_audio_tools_ext.scoring.frechet import frechet_distance, set_size


def gaussian_set(count: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return shift + scale * np.random.default_rng(seed).standard_normal((count, dim))


def test_a_set_against_itself_is_zero_and_distances_grow_with_the_change() -> None:
    a = gaussian_set(400, 16, seed=0)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    same_distribution = frechet_distance(a, gaussian_set(400, 16, seed=1))
    shifted = frechet_distance(a, gaussian_set(400, 16, seed=1, shift=0.5))
    wider = frechet_distance(a, gaussian_set(400, 16, seed=1, shift=0.5, scale=2.0))
    assert same_distribution < shifted < wider
    # The closed form for two isotropic Gaussians: |mu|^2 + dim * (1 - 2)^2 for a shift of 0.5 and scale 2.
    assert wider == pytest.approx(16 * 0.25 + 16 * 1.0, rel=0.15)


def test_rank_deficient_sets_give_a_finite_real_distance() -> None:
    few = gaussian_set(5, 64, seed=2)  # far fewer embeddings than dimensions
    distance = frechet_distance(few, gaussian_set(5, 64, seed=3))
    assert np.isfinite(distance) and distance > 0
    assert frechet_distance(few, few) == pytest.approx(0, abs=1e-4)


def test_set_size_warns_when_there_are_fewer_files_than_dimensions() -> None:
    small = set_size(gaussian_set(10, 32, seed=0), "reference")
    assert small.count == 10 and "reference: 10 files, fewer than the 32 dimensions" in small.warning
    large = set_size(gaussian_set(40, 32, seed=0), "reference")
    assert large.count == 40 and large.warning is None


def test_bad_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="same dim"):
        frechet_distance(gaussian_set(5, 4, seed=0), gaussian_set(5, 3, seed=0))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(gaussian_set(1, 4, seed=0), gaussian_set(5, 4, seed=0))


def test_replacing_generated_clips_with_noise_moves_the_clap_distance(small_hub, scored_output) -> None:
    scorer = ClapScorer.load(device=torch.device("cpu"))
    clips = [sf.read(str(scored_output / path), dtype="float32", always_2d=True) for path in sorted(load_records(scored_output))]
    rng = np.random.default_rng(0)
    noisy = clips[:3] + [(rng.uniform(-0.5, 0.5, samples.shape).astype(np.float32), rate) for samples, rate in clips[3:]]
    generated, changed = scorer.audio_embeddings(clips), scorer.audio_embeddings(noisy)
    assert frechet_distance(generated, generated) == pytest.approx(0, abs=1e-4)
    assert frechet_distance(generated, changed) > 1e-3
