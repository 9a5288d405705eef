"""Our CLAP embeddings against laion_clap's own code on the same tiny weights: the gold standard for the recipe.

laion_clap 1.1.4 (what stable-audio-metrics scores with) is installed beside our pins as a
dependency of stable-audio-tools. Its ``CLAP`` is built here offline at the tiny CLAP's widths
(its HTSAT class takes them as arguments; its RoBERTa text branch is ``transformers``'
``RobertaModel``) and loaded with the tiny transformers checkpoint's weights, renamed as
``transformers``' CLAP conversion renames them, in reverse. Audio then goes through
stable-audio-metrics' ``clap_score.py`` steps (``librosa.load(sr=48000, mono=True)``,
``pyloudnorm.normalize.peak(-1)``, laion_clap's int16 round trip, ``CLAP_Module.get_audio_embedding_from_data``)
and text through ``CLAP_Module.tokenizer``'s 77-token rule, with laion_clap's code throughout.

Importing laion_clap builds three tokenizers from the hub at module level
(``training/data.py``: bert-base-uncased, roberta-base, facebook/bart-base), which are offline
here and which nothing below uses: that import runs with their ``from_pretrained`` returning None.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.scoring.clap import ClapScorer, read_clip
from stable_audio_tools_ext.scoring.clap_recipe import CROP_SEED, fused_mel, int16_round_trip, recipe_waveform, resample

PROMPTS = ["kick drum", "rain on a tin roof, " * 8]  # the second is beyond 77 tokens (one byte, one token)
MAX_SAMPLES = 480_000


@pytest.fixture(scope="module")
def laion():
    """laion_clap's modules (``CLAP_Module``, ``CLAP``, the HTSAT class, ``training.data``), imported offline."""
    import transformers

    tokenizers = (transformers.BertTokenizer, transformers.RobertaTokenizer, transformers.BartTokenizer)
    with mock.patch.object(tokenizers[0], "from_pretrained"), mock.patch.object(tokenizers[1], "from_pretrained"), \
            mock.patch.object(tokenizers[2], "from_pretrained"):  # fmt: skip
        import laion_clap  # puts its folder on sys.path: its own modules import each other as clap_module, training
    from clap_module import htsat, model
    from training import data

    return SimpleNamespace(module=laion_clap.CLAP_Module, htsat=htsat, model=model, data=data)


@pytest.fixture(scope="module")
def scorer(small_hub) -> ClapScorer:
    return ClapScorer.load(device=torch.device("cpu"))


def _audio_cfg(laion, scorer: ClapScorer):
    extractor, config = scorer.processor.feature_extractor, scorer.model.config.audio_config
    return laion.model.CLAPAudioCfp(
        model_type="HTSAT", model_name="tiny", sample_rate=extractor.sampling_rate, window_size=extractor.fft_window_size,
        hop_size=extractor.hop_length, fmin=extractor.frequency_min, fmax=extractor.frequency_max,
        mel_bins=extractor.feature_size, clip_samples=extractor.nb_max_samples, class_num=config.num_classes,
    )  # fmt: skip


def _laion_key(key: str) -> str | None:
    """A transformers ClapModel key as laion_clap's CLAP names it (q, k, v are merged separately); None: no counterpart.

    The text branch is a RobertaModel in both, under another prefix; the audio branch's Swin blocks are renamed.
    """
    if key.startswith(("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")):
        return None  # buffers RobertaModel builds itself
    key = key.replace("_projection.linear1.", "_projection.0.").replace("_projection.linear2.", "_projection.2.")
    if key.startswith("text_model."):
        return "text_branch." + key.removeprefix("text_model.")
    for hf, laion in (("audio_model.audio_encoder.", "audio_branch."), ("batch_norm.", "bn0."),
                      ("layernorm_before.", "norm1."), ("layernorm_after.", "norm2."),
                      ("attention.self.relative_position", "attn.relative_position"),
                      ("attention.output.dense.", "attn.proj."), ("intermediate.dense.", "mlp.fc1."),
                      (".output.dense.", ".mlp.fc2.")):  # fmt: skip
        key = key.replace(hf, laion)
    return key


def _laion_state(scorer: ClapScorer) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, tensor in scorer.model.state_dict().items():
        if key.startswith("audio_model.") and key.rsplit(".", 2)[-2] in ("query", "key", "value"):
            continue
        laion_key = _laion_key(key)
        if laion_key is not None:
            state[laion_key] = tensor
        if ".attention.self.relative_position_index" in key:  # one per block: merge its q, k, v into qkv
            block = key.rsplit(".attention.self.", 1)[0]
            for kind in ("weight", "bias"):
                parts = [scorer.model.state_dict()[f"{block}.attention.self.{name}.{kind}"] for name in ("query", "key", "value")]
                state[_laion_key(f"{block}.attn.qkv.{kind}")] = torch.cat(parts)
    return state


@pytest.fixture(scope="module")
def laion_clap_module(laion, scorer):
    """laion_clap's ``CLAP_Module`` state (model, fusion, audio config) holding the tiny CLAP's weights."""
    from transformers import RobertaConfig, RobertaModel

    audio, text = scorer.model.config.audio_config, scorer.model.config.text_config
    cfg = _audio_cfg(laion, scorer)
    text_cfg = laion.model.CLAPTextCfg(context_length=77, vocab_size=text.vocab_size, width=text.hidden_size,
                                       heads=text.num_attention_heads, layers=1, model_type="transformer")  # fmt: skip
    clap = laion.model.CLAP(embed_dim=audio.hidden_size, audio_cfg=cfg, text_cfg=text_cfg, enable_fusion=True,
                            fusion_type="aff_2d", joint_embed_shape=scorer.model.config.projection_dim)  # fmt: skip
    # laion_clap fixes HTSAT's widths by name ("tiny": 96 wide) and loads RoBERTa by hub id: the tiny ones go in their place
    clap.audio_branch = laion.htsat.HTSAT_Swin_Transformer(
        spec_size=audio.spec_size, patch_size=audio.patch_size, patch_stride=audio.patch_stride, num_classes=audio.num_classes,
        embed_dim=audio.patch_embeds_hidden_size, depths=audio.depths, num_heads=audio.num_attention_heads,
        window_size=audio.window_size, config=cfg, enable_fusion=True, fusion_type="aff_2d",
    )  # fmt: skip
    clap.text_branch = RobertaModel(RobertaConfig(**{k: getattr(text, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id")}))  # fmt: skip
    clap.text_branch_type = "roberta"
    missing, unexpected = clap.load_state_dict(_laion_state(scorer), strict=False)
    assert unexpected == []
    unused = ("audio_branch.spectrogram_extractor.", "audio_branch.logmel_extractor.", "audio_branch.tscam_conv.",
              "audio_branch.head.", "text_transform.", "audio_transform.", "token_embedding.", "positional_embedding",
              "ln_final.")  # the classifier head, the unfused mel front end, training-only heads, the CLIP text branch
    assert [key for key in missing if not key.startswith(unused)] == []
    return SimpleNamespace(model=clap.eval(), enable_fusion=True, model_cfg={"audio_cfg": asdict(cfg)},
                           tokenize=scorer.processor.tokenizer)  # fmt: skip


def _stable_audio_metrics_audio(laion, path: Path) -> torch.Tensor:
    """clap_score.py's audio steps for one file, with the libraries and laion_clap functions it uses."""
    import librosa
    import pyloudnorm

    audio, _ = librosa.load(path, sr=48000, mono=True)
    audio = pyloudnorm.normalize.peak(audio, -1.0).reshape(1, -1)
    return torch.from_numpy(laion.data.int16_to_float32(laion.data.float32_to_int16(audio))).float()


def _write(path: Path, frames: int, rate: int, channels: int, seed: int) -> Path:
    t = np.arange(frames) / rate
    rng = np.random.default_rng(seed)
    tone = 0.3 * np.sin(2 * np.pi * (220 + 60 * seed) * t * (1 + t / 20))  # a rising tone, so crops differ
    samples = (tone[:, None] + 0.05 * rng.standard_normal((frames, channels))) * np.linspace(0.2, 1, frames)[:, None]
    sf.write(path, samples.astype(np.float32), rate, subtype="FLOAT")
    return path


# 3 s stereo at 44.1 kHz (repeat-padded), 12 s (fused from crops), 480,479 and 480,480 samples at 48 kHz (either
# side of laion_clap's "longer" boundary), 10 s exactly
CLIPS = [(3 * 44100, 44100, 2), (12 * 44100, 44100, 2), (480_479, 48000, 1), (480_480, 48000, 1), (MAX_SAMPLES, 48000, 2)]


def test_audio_embeddings_equal_laion_claps_on_the_same_weights(laion, laion_clap_module, scorer, tmp_path) -> None:
    paths = [_write(tmp_path / f"{i}.wav", *clip, seed=i) for i, clip in enumerate(CLIPS)]
    theirs = []
    for path in paths:
        np.random.seed(CROP_SEED)  # stable-audio-metrics leaves the crops to NumPy's unseeded generator
        with torch.no_grad():
            audio = _stable_audio_metrics_audio(laion, path)
            theirs.append(laion.module.get_audio_embedding_from_data(laion_clap_module, x=audio, use_tensor=True)[0].numpy())
    ours = scorer.audio_embeddings([read_clip(path) for path in paths])
    np.testing.assert_allclose(ours, np.stack(theirs), atol=2e-5)
    assert np.min(1 - np.abs(ours @ ours.T)[~np.eye(len(ours), dtype=bool)]) > 1e-3  # the clips are told apart


def test_text_embeddings_equal_laion_claps_with_its_77_token_rule(laion, laion_clap_module, scorer) -> None:
    with torch.no_grad():
        theirs = laion_clap_module.model.get_text_embedding(laion.module.tokenizer(laion_clap_module, PROMPTS)).numpy()
    np.testing.assert_allclose(scorer.text_embeddings(PROMPTS), theirs, atol=1e-5)


@pytest.mark.parametrize("frames", [3 * 48000, MAX_SAMPLES, MAX_SAMPLES + 1, 480_479, 480_480, 12 * 48000])
def test_fused_mels_and_the_longer_flag_equal_get_audio_features(laion, scorer, frames) -> None:
    wave = int16_round_trip(0.5 * np.sin(np.arange(frames) * 0.01 * (1 + np.arange(frames) / 1e6)).astype(np.float32))
    np.random.seed(CROP_SEED)
    theirs = laion.data.get_audio_features({}, torch.from_numpy(wave), MAX_SAMPLES, data_truncating="fusion",
                                           data_filling="repeatpad", audio_cfg=asdict(_audio_cfg(laion, scorer)))  # fmt: skip
    mel, longer = fused_mel(scorer.processor.feature_extractor, wave)
    assert longer == bool(theirs["longer"][0]) == (frames >= 480_480)  # 480,001..480,479 samples are not "longer"
    difference = np.abs(mel - theirs["mel_fusion"].numpy())  # dB; float64 against torchaudio's float32 STFT
    assert difference.max() < 0.2 and difference.mean() < 1e-2  # float32 round-off: 1e-5 in loud bins, more in quiet ones


def test_the_waveform_steps_equal_stable_audio_metrics(laion, tmp_path) -> None:
    import librosa

    path = _write(tmp_path / "a.wav", 44100 * 2 + 7, 44100, 2, seed=3)
    theirs = _stable_audio_metrics_audio(laion, path)[0].numpy()
    assert np.array_equal(recipe_waveform(*read_clip(path)), theirs)
    for frames, rate in ((44100, 44100), (1000, 22050), (16001, 16000), (777, 32000)):
        mono = np.random.default_rng(frames).standard_normal(frames).astype(np.float32)
        assert np.array_equal(resample(mono, rate, 48000), librosa.resample(mono, orig_sr=rate, target_sr=48000))
