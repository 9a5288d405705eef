"""Float audio -> clamped, optionally trimmed samples -> an audio file written atomically.

Files are written with soundfile (libsndfile), not ``torchaudio.save``, whose int16 output changed
behaviour in torchaudio 2.9. A file only ever appears under its final name complete (see ``atomic``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:  # torch is imported by whoever has a tensor; the CLI's input checks stay torch-free
    import torch

from .atomic import atomic_open


@dataclass(frozen=True)
class AudioFormat:
    """An output encoding: file extension plus libsndfile container and sample type."""

    extension: str
    container: str
    subtype: str


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", "WAV", "PCM_16"),
    "wav24": AudioFormat("wav", "WAV", "PCM_24"),
    "wav32f": AudioFormat("wav", "WAV", "FLOAT"),
    "flac": AudioFormat("flac", "FLAC", "PCM_16"),
    "flac24": AudioFormat("flac", "FLAC", "PCM_24"),
}


def to_samples(audio: torch.Tensor, sample_rate: int, clip_seconds: float | None) -> np.ndarray:
    """``(channels, samples)`` float audio -> ``(frames, channels)`` float32 in [-1, 1].

    ``clip_seconds`` keeps the first ``round(clip_seconds * sample_rate)`` frames (``--clip-length``).
    """
    if clip_seconds is not None:
        audio = audio[:, : clip_frames(clip_seconds, sample_rate)]
    return audio.detach().cpu().float().clamp(-1.0, 1.0).T.contiguous().numpy()


def clip_frames(seconds: float, sample_rate: int) -> int:
    """How many frames an item of ``seconds`` keeps: what ``--clip-length`` writes, and what CLAP scores of it."""
    return int(round(seconds * sample_rate))


def audio_header(path: Path) -> tuple[int, int, int] | str:
    """``(sample rate, channels, frames)`` from the file's header, or why it cannot be read: checked for every
    file before a command that reads many of them starts, so a bad one is reported with the others, up front."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:  # soundfile's errors are RuntimeErrors
        return f"unreadable audio ({exc})"
    if info.frames <= 0:
        return "no audio samples in the file (0 frames)"
    return info.samplerate, info.channels, info.frames


def write_audio_atomic(path: Path, samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> None:
    """Write ``samples`` to ``path`` so that ``path`` is either absent, the old file, or complete."""
    with atomic_open(path) as handle:
        sf.write(handle, samples, sample_rate, format=fmt.container, subtype=fmt.subtype)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """``samples`` encoded as ``write_audio_atomic`` writes them, in memory: a member of a shard."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=fmt.container, subtype=fmt.subtype)
    return buffer.getvalue()


def decode_audio(data: bytes, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Encoded audio (a file's bytes, a shard member) -> ``(frames, channels)`` float32 samples and their rate.

    ``seconds`` keeps the first ``seconds`` (an item's ``seconds_total``), cut as ``--clip-length`` cuts.
    """
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return (samples if seconds is None else samples[: clip_frames(seconds, rate)]), rate
