"""CLAP prompt adherence: how well a clip matches its prompt, as the cosine of their CLAP embeddings.

The default checkpoint is ``laion/clap-htsat-fused``: LAION-CLAP's HTSAT audio encoder with feature
fusion, trained on LAION-Audio-630K + AudioSet, converted for ``transformers``. It is the
checkpoint (``630k-audioset-fusion-best``) behind the CLAP score of Stability AI's
stable-audio-metrics and the Stable Audio Open paper, so our numbers are on the scale people
compare against; and fusion lets it see the whole of a clip longer than its 10 s window (Stable
Audio Open makes up to 47 s), where an unfused model sees one random 10 s crop.
``laion/larger_clap_music_and_speech`` knows music better, but its scores are not the published ones.

What is scored is what stable-audio-metrics scores (``clap_recipe``: 48 kHz mono, peak at -1 dB,
the int16 round trip, laion_clap's fused mels and its ``longer`` rule, prompts cut at 77 tokens),
so a score here is the one its ``clap_score.py`` gives the same file with the same checkpoint.
Callers hand each item's own clip (``read_clip``: its first ``seconds_total`` seconds), not the
whole generated window, whose silent tail would otherwise fill two of the three fusion crops.

A clip longer than 10 s is fused from three crops; they are drawn from a seeded generator (see
``clap_recipe``), and each clip is read apart from the others (the extractor marks a random clip
of an all-short batch "longer", a training trick), so a clip's embedding never depends on which
clips share its batch, and NumPy's global generator is left as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..output.audio_io import clip_frames
from .clap_recipe import CROP_SEED, TEXT_TOKENS, fused_mel, recipe_waveform
from .options import DEFAULT_CLAP_MODEL

BATCH_SIZE = 16  # clips or prompts per forward pass
FILE_CHUNK = 64  # files read into memory at a time for their embeddings (a reference set may be large)

Clip = tuple[np.ndarray, int]  # samples (frames, channels) float32, sample rate


def read_clip(path: Path, seconds: float | None = None) -> Clip:
    """An audio file as a ``Clip``; ``seconds`` keeps its first ``seconds`` (a generated item's ``seconds_total``).

    A file written without ``--clip-length`` holds the whole model window; its item is the first
    ``seconds_total`` of it, cut as ``--clip-length`` cuts, so an item scores the same either way.
    """
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return (samples if seconds is None else samples[:clip_frames(seconds, rate)]), rate


class ClapLoadError(RuntimeError):
    """The CLAP model or its processor could not be loaded; the message says which and why."""


class ClapScorer:
    """A CLAP model and its processor on one device: embeddings of prompts and clips, and their scores.

    ``model_id`` and ``revision`` (the hub commit its files came from; ``None`` for a local folder)
    name the checkpoint, so stored embedding statistics can be matched to the model that made them.
    """

    def __init__(self, model, processor, device: torch.device, model_id: str = DEFAULT_CLAP_MODEL,
                 revision: str | None = None) -> None:  # fmt: skip
        self.model, self.processor, self.device = model.eval().to(device), processor, device
        self.model_id, self.revision = model_id, revision

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
        return cls(model, processor, device, *checkpoint_identity(model_id, revision))

    @property
    def sample_rate(self) -> int:
        return int(self.processor.feature_extractor.sampling_rate)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (cut at laion_clap's 77 tokens), (len(texts), dim) float32."""
        chunks = []
        for start in range(0, len(texts), BATCH_SIZE):
            tokens = self.processor.tokenizer(list(texts[start:start + BATCH_SIZE]), padding="max_length", truncation=True,
                                              max_length=TEXT_TOKENS, return_tensors="pt").to(self.device)  # fmt: skip
            with torch.inference_mode():
                chunks.append(self.model.get_text_features(**tokens).pooler_output)
        return _unit(chunks, self.model.config.projection_dim)

    def audio_embeddings(self, clips: Sequence[Clip]) -> np.ndarray:
        """L2-normalised embeddings of ``clips`` (read as ``clap_recipe`` says), (len(clips), dim) float32."""
        chunks = []
        for start in range(0, len(clips), BATCH_SIZE):
            features = [self._features(samples, rate) for samples, rate in clips[start:start + BATCH_SIZE]]
            mels = torch.from_numpy(np.stack([mel for mel, _ in features])).to(self.device, torch.float32)
            longer = torch.tensor([[is_longer] for _, is_longer in features], device=self.device)
            with torch.inference_mode():
                chunks.append(self.model.get_audio_features(input_features=mels, is_longer=longer).pooler_output)
        return _unit(chunks, self.model.config.projection_dim)

    def file_embeddings(self, files: Sequence[tuple[Path, float | None]]) -> np.ndarray:
        """Audio embeddings of ``files`` (each cut to its seconds by ``read_clip``; ``None``: whole), ``FILE_CHUNK``
        files in memory at a time."""
        chunks = [self.audio_embeddings([read_clip(path, seconds) for path, seconds in files[start:start + FILE_CHUNK]])
                  for start in range(0, len(files), FILE_CHUNK)]  # fmt: skip
        return np.concatenate(chunks) if chunks else np.zeros((0, self.model.config.projection_dim), dtype=np.float32)

    def scores(self, texts: Sequence[str], clips: Sequence[Clip]) -> np.ndarray:
        """The cosine similarity of each prompt and its clip, in [-1, 1], float64."""
        if len(texts) != len(clips):
            raise ValueError(f"one prompt per clip is needed, got {len(texts)} prompts and {len(clips)} clips")
        return cosine_scores(self.text_embeddings(texts), self.audio_embeddings(clips))

    def _features(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, bool]:
        """One clip's model input (the mel stack) and whether the model fuses it as longer than its window."""
        extractor = self.processor.feature_extractor
        wave = recipe_waveform(samples, sample_rate)
        state = np.random.get_state()
        np.random.seed(CROP_SEED)  # an unfused checkpoint's extractor crops a long clip at random
        try:
            if extractor.truncation == "fusion":
                return fused_mel(extractor, wave)
            features = extractor(wave, sampling_rate=self.sample_rate, return_tensors="np")
            return features["input_features"][0], False  # is_longer is read by fused models only
        finally:
            np.random.set_state(state)


def cosine_scores(text: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """The CLAP score of each row pair of unit embeddings: their cosine in [-1, 1], float64."""
    return np.clip(np.sum(text.astype(np.float64) * audio, axis=1), -1.0, 1.0)


def checkpoint_identity(model_id: str, revision: str | None) -> tuple[str, str | None]:
    """``(model id, commit)`` of a checkpoint: the hub commit its files come from (the snapshot folder), or the
    absolute path of a local folder and ``None``. Reads the cache only (no weights): an ``OSError`` when the
    hub id is not there."""
    if Path(model_id).is_dir():
        return str(Path(model_id).resolve()), None
    from transformers.utils import cached_file

    return model_id, Path(cached_file(model_id, "config.json", revision=revision)).parent.name


def _unit(chunks: list[torch.Tensor], dim: int) -> np.ndarray:
    """Concatenated embeddings, each scaled to length 1; (0, dim) when there were none."""
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1).cpu().numpy()
