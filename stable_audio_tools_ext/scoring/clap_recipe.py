"""The CLAP score's inputs exactly as Stability AI's stable-audio-metrics computes them.

The CLAP score the Stable Audio Open paper reports is ``clap_score`` in stable-audio-metrics'
``src/clap_score.py`` (commit fd55536), on LAION-CLAP 1.1.4 (``laion_clap``). Its numbers depend on
every step below, so each one is reproduced here rather than approximated:

* audio: ``librosa.load(path, sr=48000, mono=True)`` (channels averaged, then resampled with
  librosa's default ``soxr_hq`` and its length rule), ``pyloudnorm.normalize.peak(audio, -1.0)``,
  the int16 round trip ``(clip(x, -1, 1) * 32767).astype(int16) / 32767``. CLAP is not
  gain-invariant; the peak normalisation is what makes a clip and the same clip at x0.05 score alike;
* fused mels (``laion_clap.training.data.get_audio_features``, ``data_truncating="fusion"``,
  ``data_filling="repeatpad"``): a clip of at most 10 s (480,000 samples) is repeated to fill 10 s
  and zero-padded; a longer one gets the mel spectrogram of the whole clip, shrunk to 1001 frames
  with ``torchvision.transforms.Resize`` (bilinear *with* antialiasing; transformers'
  ``ClapFeatureExtractor`` shrinks without it), plus three 1001-frame crops drawn from its first,
  middle and last third. A clip of 480,001 to 480,479 samples has exactly 1001 frames: laion_clap
  stacks its whole mel four times and does *not* mark it "longer" (transformers' extractor marks it);
* text: ``RobertaTokenizer`` with ``padding="max_length", truncation=True, max_length=77``.

The mel spectrogram itself (HTK mel bank, power to dB) is ``ClapFeatureExtractor``'s, which
matches laion_clap's torchaudio one to float round-off. stable-audio-metrics draws the three crops
from NumPy's unseeded global generator, so its score of a clip longer than 10 s varies from run to
run; ours draws them from a generator seeded with ``CROP_SEED`` (the same crops laion_clap takes
after ``np.random.seed(CROP_SEED)``), so a clip scores the same every time.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 48000  # librosa.load(..., sr=48000) in clap_score.py; the checkpoint's rate
TEXT_TOKENS = 77  # laion_clap's CLAP_Module.tokenizer: max_length=77, special tokens included
PEAK_DBFS = -1.0  # pyloudnorm.normalize.peak(audio, -1.0) in clap_score.py
INT16_SCALE = 32767.0  # clap_score.py's float32_to_int16 / int16_to_float32
CROP_SEED = 0
# Which version of the steps above made an embedding: stored with saved embedding statistics
# (``finetune.py score --save-stats``), which are refused under another. Bump it whenever a change
# here or in ``ClapScorer`` moves any clip's embedding.
RECIPE_VERSION = "stable-audio-metrics-fd55536/1"


def recipe_waveform(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``samples`` ((frames, channels) or (frames,), any rate) as clap_score.py hands them to CLAP: float32 at 48 kHz."""
    mono = np.asarray(samples, dtype=np.float32).reshape(len(samples), -1).mean(axis=1)
    return int16_round_trip(peak_normalize(resample(mono, sample_rate, SAMPLE_RATE)))


def resample(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``librosa.resample(mono, orig_sr=rate, target_sr=target)`` (librosa 0.11's defaults), without importing librosa.

    librosa resamples with soxr's ``soxr_hq`` and then pads or trims the result to
    ``ceil(len * target / rate)`` samples (its ``fix=True``), computed in floating point: 1 s at
    44.1 kHz becomes 48,001 samples, the last one zero. Importing librosa takes seconds (numba);
    ``tests/scoring/test_clap_recipe.py`` checks this against it.
    """
    if rate == target:
        return mono
    import soxr

    size = int(np.ceil(mono.shape[-1] * (float(target) / rate)))
    resampled = soxr.resample(mono, rate, target, quality="soxr_hq")[:size]
    return np.pad(resampled, (0, size - len(resampled))).astype(mono.dtype, copy=False)


def peak_normalize(wave: np.ndarray) -> np.ndarray:
    """``pyloudnorm.normalize.peak(wave, -1.0)``: the loudest sample at -1 dBFS. Silence stays silence.

    pyloudnorm divides by the peak, so an all-zero clip would become NaN (and then an undefined int16);
    it is left at zero here, the only input where we do not compute what clap_score.py does.
    """
    if not np.any(wave):
        return wave
    import pyloudnorm

    return pyloudnorm.normalize.peak(wave, PEAK_DBFS)


def int16_round_trip(wave: np.ndarray) -> np.ndarray:
    """clap_score.py's ``int16_to_float32(float32_to_int16(wave))``: clipped, scaled, truncated toward zero."""
    quantized = (np.clip(wave, a_min=-1.0, a_max=1.0) * INT16_SCALE).astype(np.int16)
    return (quantized / INT16_SCALE).astype(np.float32)


def fused_mel(extractor, wave: np.ndarray) -> tuple[np.ndarray, bool]:
    """laion_clap's fusion input for one 48 kHz clip: the (4, frames, mels) mel stack and whether it is "longer".

    ``extractor`` is the checkpoint's ``ClapFeatureExtractor`` (fusion). It computes the mel
    spectrograms (of the repeat-padded 10 s for a short clip, of the whole clip for a long one); the
    shrink, the crops and the ``longer`` flag follow laion_clap. The extractor draws from NumPy's
    global generator (it marks a random clip of an all-short batch "longer"): callers keep that
    generator's state.
    """
    max_samples, hop = extractor.nb_max_samples, extractor.hop_length
    if len(wave) <= max_samples:
        padded = extractor(wave, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_features"][0]
        return padded, False
    whole = extractor(wave, sampling_rate=extractor.sampling_rate, max_length=len(wave),
                      return_tensors="np")["input_features"][0][0]  # fmt: skip
    chunk = max_samples // hop + 1  # frames of 10 s (centred STFT: one more than samples / hop)
    if len(whole) == chunk:  # 480,001..480,479 samples: laion_clap's corner case, not "longer"
        return np.stack([whole] * 4), False
    ranges = np.array_split(list(range(0, len(whole) - chunk + 1)), 3)
    ranges = [part if len(part) else [0] for part in ranges]
    generator = np.random.RandomState(CROP_SEED)  # the legacy generator np.random.choice uses
    starts = [generator.choice(part) for part in ranges]
    import torch

    shrunk = torch.nn.functional.interpolate(torch.from_numpy(whole.astype(np.float32))[None, None],
                                             size=[chunk, whole.shape[1]], mode="bilinear", align_corners=False,
                                             antialias=True)[0, 0].numpy()  # fmt: skip
    return np.stack([shrunk, *(whole[start:start + chunk] for start in starts)]).astype(np.float32), True
