"""The CLAP scorer on the tiny CLAP of the real architecture (offline hub cache) and real generated WAVs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.scoring.clap import ClapLoadError, ClapScorer
from stable_audio_tools_ext.scoring.clap_recipe import PEAK_DBFS, peak_normalize
from stable_audio_tools_ext.scoring.options import DEFAULT_CLAP_MODEL


@pytest.fixture(scope="module")
def scorer(small_hub) -> ClapScorer:
    return ClapScorer.load(device=torch.device("cpu"))


@pytest.fixture(scope="module")
def clips_and_prompts(scored_output) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    records = [record for _, record in sorted(load_records(scored_output).items())]
    clips = [sf.read(str(scored_output / r["path"]), dtype="float32", always_2d=True) for r in records]
    return clips, [r["prompt"] for r in records]


def test_the_default_is_the_fused_checkpoint_and_the_tiny_one_is_fused(scorer) -> None:
    assert DEFAULT_CLAP_MODEL == "laion/clap-htsat-fused"
    assert scorer.model.config.audio_config.enable_fusion and scorer.sample_rate == 48000


def test_scores_of_generated_wavs_are_cosines_matching_the_manifest(scorer, clips_and_prompts, scored_output) -> None:
    clips, prompts = clips_and_prompts
    scores = scorer.scores(prompts, clips)
    assert scores.shape == (6,) and np.all((scores >= -1) & (scores <= 1))
    assert len(set(np.round(scores, 6))) == 6  # each pair has its own score: prompts and audio both count
    # The run scored each file as written, as it is read back here (records keep 6 decimals).
    recorded = [r["clap_score"] for _, r in sorted(load_records(scored_output).items())]
    np.testing.assert_allclose(scores, recorded, atol=1e-6)


def test_embeddings_are_unit_length_and_do_not_depend_on_the_batch(scorer, clips_and_prompts) -> None:
    clips, prompts = clips_and_prompts
    audio = scorer.audio_embeddings(clips)
    text = scorer.text_embeddings(prompts)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    one_by_one = np.concatenate([scorer.audio_embeddings([clip]) for clip in clips])
    np.testing.assert_allclose(audio, one_by_one, atol=1e-5)
    np.testing.assert_allclose(text, np.concatenate([scorer.text_embeddings([p]) for p in prompts]), atol=1e-5)
    reversed_batch = scorer.audio_embeddings(clips[::-1])[::-1]
    np.testing.assert_allclose(audio, reversed_batch, atol=1e-5)


def test_long_clips_are_fused_the_same_way_every_time_without_touching_numpy_state(scorer) -> None:
    rng = np.random.default_rng(1)
    long_clip = (0.1 * rng.standard_normal((44100 * 12, 2))).astype(np.float32)  # beyond CLAP's 10 s window
    short_clip = long_clip[: 44100 * 3]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = scorer.audio_embeddings([(long_clip, 44100), (short_clip, 44100)])
    assert np.array_equal(np.random.get_state()[1], before)
    second = scorer.audio_embeddings([(long_clip, 44100)])
    np.testing.assert_allclose(first[:1], second, atol=1e-6)
    assert not np.allclose(first[0], first[1], atol=1e-3)  # the fused whole clip is not its first 3 s


def test_a_clip_and_the_same_clip_at_a_twentieth_of_its_level_score_the_same(scorer, clips_and_prompts) -> None:
    clips, prompts = clips_and_prompts
    quiet = [(samples * np.float32(0.05), rate) for samples, rate in clips]
    np.testing.assert_allclose(scorer.scores(prompts, quiet), scorer.scores(prompts, clips), atol=1e-5)


def test_peak_normalisation_puts_the_peak_at_minus_1_dbfs_and_leaves_silence_alone() -> None:
    wave = np.random.default_rng(0).uniform(-0.02, 0.01, 1000).astype(np.float32)
    normalized = peak_normalize(wave)
    assert np.max(np.abs(normalized)) == pytest.approx(10 ** (PEAK_DBFS / 20), rel=1e-6)  # pyloudnorm's formula
    np.testing.assert_allclose(normalized / wave, normalized[0] / wave[0], rtol=1e-6)  # one gain for every sample
    silence = np.zeros(1000, dtype=np.float32)
    assert np.array_equal(peak_normalize(silence), silence)  # pyloudnorm would divide by zero


def test_prompts_are_cut_at_77_tokens_as_laion_clap_cuts_them(scorer) -> None:
    # The tiny tokenizer gives one token per byte; 77 tokens are <s>, 75 bytes, </s>.
    prompt = "".join(chr(ord("a") + i % 26) for i in range(120))
    assert len(scorer.processor.tokenizer(prompt)["input_ids"]) == 122  # the tokenizer itself would keep 512
    cut, longer, shorter = scorer.text_embeddings([prompt[:75], prompt, prompt[:74]])
    np.testing.assert_allclose(cut, longer, atol=1e-6)
    assert not np.allclose(cut, shorter, atol=1e-4)


def test_scores_need_one_prompt_per_clip(scorer, clips_and_prompts) -> None:
    clips, prompts = clips_and_prompts
    with pytest.raises(ValueError, match="one prompt per clip"):
        scorer.scores(prompts[:2], clips[:3])


def test_a_checkpoint_that_is_not_there_is_a_clear_error(small_hub) -> None:
    with pytest.raises(ClapLoadError, match="cannot load the CLAP model 'laion/no-such-clap'"):
        ClapScorer.load("laion/no-such-clap", device=torch.device("cpu"))
