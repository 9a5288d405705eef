"""The description of one clip to generate, shared by the planner, the engine and the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    def batch_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one batch: the sampler runs one schedule per batch."""
        return (self.steps, self.cfg_scale, self.sampler_type, self.sigma_min, self.sigma_max)
