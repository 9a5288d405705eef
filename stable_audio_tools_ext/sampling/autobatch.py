"""``--batch-size auto``: the largest batch that fits the GPU's free memory, probed once per latent length.

Memory grows with batch x latent length, so one fixed batch size is either wasteful for short items
or too large for long ones. The probe doubles the batch until a real generation step (conditioner,
two DiT evaluations, VAE decode) runs out of memory, keeps the last size that fitted minus a safety
margin, and remembers it for that latent length. On the CPU there is nothing to probe: memory is
rarely the limit there, and a small fixed batch keeps latency per item low.
"""

from __future__ import annotations

import dataclasses

import torch

from ..model.loading import LoadedModel
from ..tree.plan import WorkItem
from .engine import generate_audio, resolved_latent_frames

CPU_BATCH_SIZE = 4
MAX_BATCH_SIZE = 64
SAFETY_FACTOR = 0.75  # activations vary a little with content; leave a quarter spare


class AutoBatchSize:
    """Callable ``item -> batch size`` for ``make_batches``, probing on first use of each length."""

    def __init__(self, loaded: LoadedModel, limit: int = MAX_BATCH_SIZE) -> None:
        self.loaded, self.limit = loaded, limit
        self.sizes: dict[int, int] = {}

    def __call__(self, item: WorkItem) -> int:
        if self.loaded.device.type != "cuda":
            return CPU_BATCH_SIZE
        frames = resolved_latent_frames(self.loaded, item.request)
        if frames not in self.sizes:
            self.sizes[frames] = self._probe(item)
        return self.sizes[frames]

    def _fits(self, item: WorkItem, size: int) -> bool:
        probe = dataclasses.replace(item.request, steps=2)
        try:
            generate_audio(self.loaded, [dataclasses.replace(probe, seed=seed) for seed in range(size)])
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    def _probe(self, item: WorkItem) -> int:
        size = 1
        while size * 2 <= self.limit and self._fits(item, size * 2):
            size *= 2
        return max(1, int(size * SAFETY_FACTOR)) if size > 1 else 1
