"""CLAP prompt adherence: how well a clip matches its prompt, as the cosine of their CLAP embeddings.

The default checkpoint is ``laion/clap-htsat-fused``: LAION-CLAP's HTSAT audio encoder with feature
fusion, trained on LAION-Audio-630K + AudioSet, converted for ``transformers``. It is the
checkpoint (``630k-audioset-fusion-best``) behind the CLAP score of Stability AI's
stable-audio-metrics and the Stable Audio Open paper, so our numbers are on the scale people
compare against; and fusion lets it see the whole of a clip longer than its 10 s window (Stable
Audio Open makes up to 47 s), where an unfused model sees one random 10 s crop.
``laion/larger_clap_music_and_speech`` knows music better, but its scores are not the published ones.

How a clip is read (``ClapFeatureExtractor``, 48 kHz, 10 s window):

* longer than 10 s, fused model: a downsampled mel spectrogram of the whole clip plus three 10 s
  crops (from its first, middle and last third) are fused; unfused model: one 10 s crop;
* 10 s or shorter: the clip is repeated to fill 10 s, then zero-padded.

The crops are drawn from NumPy's global generator; each clip is read with it seeded (and restored
after), so a clip gets the same crops, and the same score, in every batch and run. The extractor
also marks one random clip of an all-short batch as "longer" (a training trick that makes the
fusion layers see gradients); here a clip is marked longer exactly when it is, so a clip's
embedding does not depend on which clips share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

import numpy as np
import torch

from .options import DEFAULT_CLAP_MODEL

BATCH_SIZE = 16  # clips or prompts per forward pass
_CROP_SEED = 0

Clip = tuple[np.ndarray, int]  # samples (frames, channels) float32, sample rate


class ClapLoadError(RuntimeError):
    """The CLAP model or its processor could not be loaded; the message says which and why."""


class ClapScorer:
    """A CLAP model and its processor on one device: embeddings of prompts and clips, and their scores."""

    def __init__(self, model, processor, device: torch.device) -> None:
        self.model, self.processor, self.device = model.eval().to(device), processor, device

    @classmethod
    def load(cls, model_id: str = DEFAULT_CLAP_MODEL, revision: str | None = None,
             device: torch.device | None = None) -> ClapScorer:  # fmt: skip
        """Load ``model_id`` (a hub id or a local folder) onto ``device`` (default: the GPU if there is one)."""
        from transformers import ClapModel, ClapProcessor
        from transformers.utils import logging

        logging.disable_progress_bar()  # "Loading weights" bars would break the run's progress display
        try:
            model = ClapModel.from_pretrained(model_id, revision=revision)
            processor = ClapProcessor.from_pretrained(model_id, revision=revision)
        except (OSError, ValueError) as exc:  # not in the cache offline, no such repo, not a CLAP checkpoint
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClapLoadError(f"cannot load the CLAP model {model_id!r}: {first_line}") from exc
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, processor, device)

    @property
    def sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``texts``, (len(texts), dim) float32."""
        chunks = []
        for start in range(0, len(texts), BATCH_SIZE):
            tokens = self.processor.tokenizer(list(texts[start:start + BATCH_SIZE]), padding=True, truncation=True,
                                              return_tensors="pt").to(self.device)  # fmt: skip
            with torch.inference_mode():
                chunks.append(self.model.get_text_features(**tokens).pooler_output)
        return _unit(chunks, self.model.config.projection_dim)

    def audio_embeddings(self, clips: Sequence[Clip]) -> np.ndarray:
        """L2-normalised embeddings of ``clips`` (mixed down to mono, resampled), (len(clips), dim) float32."""
        chunks = []
        for start in range(0, len(clips), BATCH_SIZE):
            features = [self._features(samples, rate) for samples, rate in clips[start:start + BATCH_SIZE]]
            mels = torch.from_numpy(np.stack([mel for mel, _ in features])).to(self.device, torch.float32)
            longer = torch.tensor([[is_longer] for _, is_longer in features], device=self.device)
            with torch.inference_mode():
                chunks.append(self.model.get_audio_features(input_features=mels, is_longer=longer).pooler_output)
        return _unit(chunks, self.model.config.projection_dim)

    def scores(self, texts: Sequence[str], clips: Sequence[Clip]) -> np.ndarray:
        """The cosine similarity of each prompt and its clip, in [-1, 1], float64."""
        if len(texts) != len(clips):
            raise ValueError(f"one prompt per clip is needed, got {len(texts)} prompts and {len(clips)} clips")
        cosines = np.sum(self.text_embeddings(texts).astype(np.float64) * self.audio_embeddings(clips), axis=1)
        return np.clip(cosines, -1.0, 1.0)

    def _features(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, bool]:
        """One clip's model input (the mel stack) and whether it is longer than the window."""
        extractor = self.processor.feature_extractor
        mono = _resample(np.asarray(samples, dtype=np.float64).reshape(len(samples), -1).mean(axis=1),
                         sample_rate, self.sample_rate)  # fmt: skip
        state = np.random.get_state()
        np.random.seed(_CROP_SEED)
        try:
            features = extractor(mono, sampling_rate=self.sample_rate, return_tensors="np")
        finally:
            np.random.set_state(state)
        longer = bool(features["is_longer"][0][0]) and len(mono) > extractor.nb_max_samples
        return features["input_features"][0], longer


def _resample(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``mono`` from ``rate`` to ``target`` Hz (polyphase, anti-aliased)."""
    if rate == target:
        return mono
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(mono, target // common, rate // common)


def _unit(chunks: list[torch.Tensor], dim: int) -> np.ndarray:
    """Concatenated embeddings, each scaled to length 1; (0, dim) when there were none."""
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1).cpu().numpy()
