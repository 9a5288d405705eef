"""The description of one clip to generate, shared by the planner, the engine and the UI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

LatentMode = Literal["auto", "full"]
# Latent lengths are rounded up to a multiple of this many frames (16 x 2048 samples = 0.74 s at
# 44.1 kHz): little wasted compute, and few distinct lengths, so items still batch together.
LATENT_BUCKET_FRAMES = 16


@dataclass(frozen=True)
class LatentGeometry:
    """How audio seconds map to the DiT's latent frames for one model."""

    sample_rate: int
    downsampling_ratio: int
    window_frames: int  # the model's whole window


def latent_frames_for(seconds_end: float, geometry: LatentGeometry, mode: LatentMode = "auto") -> int:
    """Latent frames to generate for audio that must reach ``seconds_end`` (start + total).

    ``full`` is the reference behaviour: always the whole window, trimmed afterwards. ``auto`` (the
    default) generates just enough frames, rounded up to ``LATENT_BUCKET_FRAMES`` and capped at the
    window: DiT and VAE compute grow with the length, so a 10 s effect costs about a fifth of a
    47 s window. It changes the sampled audio relative to ``full`` (the model sees a shorter
    sequence), which is why it is a mode and part of each item's identity, never a silent switch.
    """
    if mode == "full":
        return geometry.window_frames
    needed = math.ceil(seconds_end * geometry.sample_rate / geometry.downsampling_ratio - 1e-9)
    bucketed = math.ceil(max(needed, 1) / LATENT_BUCKET_FRAMES) * LATENT_BUCKET_FRAMES
    return min(bucketed, geometry.window_frames)


@dataclass(frozen=True)
class InitAudio:
    """Audio that a request starts from (audio-to-audio variation) instead of pure noise.

    ``sha256`` of the file's bytes, not its path, is what identifies the audio (``identity``): the
    same file moved to another folder or mount point gives the same items, an edited file new ones.
    """

    path: str  # absolute, as resolved against the YAML file's folder
    sha256: str


@dataclass(frozen=True)
class LeafAdapter:
    """A LoRA adapter a leaf applies (YAML ``lora``/``lora_strength``), identified like init audio by
    its content hash: the same file moved elsewhere gives the same items, an edited one new ones."""

    path: str  # absolute, as resolved against the YAML file's folder
    sha256: str
    strength: float

    def identity(self) -> str:
        return f"{self.sha256}@{self.strength!r}"

    def record(self) -> dict[str, Any]:
        """What the manifest records of it: the file's name, not where it was, with its hash and strength."""
        return {"file": Path(self.path).name, "sha256": self.sha256, "strength": self.strength}


# Fields added after the first datasets were written: left out of ``identity`` while unset, so that
# the fingerprints (and so the resume decisions) of every earlier item stay what they were.
_LATER_OPTIONAL_FIELDS = ("init_audio", "init_noise_level", "cfg_interval", "lora")


@dataclass(frozen=True)
class GenerationRequest:
    """Everything that determines one generated clip: same request, same audio."""

    prompt: str
    seed: int
    seconds_start: float
    seconds_total: float
    negative_prompt: str | None = None
    steps: int = 100
    cfg_scale: float = 7.0
    sampler_type: str = "dpmpp-3m-sde"
    sigma_min: float = 0.3
    sigma_max: float = 500.0
    latent_frames: int | None = None  # None: ``latent_frames_for`` in "auto" mode, decided by the engine
    init_audio: InitAudio | None = None
    init_noise_level: float | None = None  # set exactly when init_audio is: the sampler starts at this sigma
    cfg_interval: tuple[float, float] | None = None  # guidance only while the DiT's sigma is inside; None: always
    # The leaf's adapters, replacing --lora's for this item (``()``: none, the base model); None: --lora's.
    lora: tuple[LeafAdapter, ...] | None = None

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batch: one schedule and one latent length per batch.

        Init audio itself may differ within a batch (each item starts from its own latents); its noise
        level may not, since it is where the shared schedule starts. Neither may the adapter set and
        strengths: they are merged into the model's weights, which every item of a batch shares.
        The latent length comes last (the engine compares the rest).
        """
        return (self.steps, self.cfg_scale, self.sampler_type, self.sigma_min, self.sigma_max, self.init_noise_level,
                self.cfg_interval, self.adapter_key(), self.latent_frames)  # fmt: skip

    def adapter_key(self) -> tuple[str, ...] | None:
        """The item's adapter set and strengths by content (``None``: --lora's, whatever they are)."""
        return None if self.lora is None else tuple(adapter.identity() for adapter in self.lora)

    def identity(self) -> dict[str, Any]:
        """What decides the audio, as JSON-able data: the request's fingerprint is a hash of it."""
        fields = asdict(self)
        for name in _LATER_OPTIONAL_FIELDS:
            if fields[name] is None:
                del fields[name]
        if self.init_audio is not None:
            fields["init_audio"] = self.init_audio.sha256
        if self.lora is not None:
            fields["lora"] = list(self.adapter_key() or ())
        return fields
