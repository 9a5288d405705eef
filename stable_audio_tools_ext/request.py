"""The description of one clip to generate, shared by the planner, the engine and the UI."""

from __future__ import annotations

import math
from dataclasses import dataclass
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

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batch: one schedule and one latent length per batch."""
        return (self.steps, self.cfg_scale, self.sampler_type, self.sigma_min, self.sigma_max, self.latent_frames)
