"""GPU memory: ``--batch-size auto`` and batches that run out of memory anyway.

Memory grows with batch x latent length, so one fixed batch size is either wasteful for short items
or too large for long ones. The probe doubles the batch until a real generation step (conditioner,
two DiT evaluations, VAE decode) runs out of memory, keeps the last size that fitted minus a safety
margin, and remembers it per ``memory_key``. On the CPU there is nothing to probe: memory is rarely
the limit there, and a small fixed batch keeps latency per item low.

A probed size can still fail later (fragmentation, another process on the same GPU), and a fixed
``--batch-size`` can be too large from the start; ``generate_audio_splitting`` then retries the
batch in halves. Items are seeded one by one, so a split never changes anyone's audio.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import torch

from ..model.loading import LoadedModel
from ..request import GenerationRequest
from ..tree.plan import WorkItem
from .engine import generate_audio, resolved_latent_frames

CPU_BATCH_SIZE = 4
MAX_BATCH_SIZE = 64
SAFETY_FACTOR = 0.75  # activations vary a little with content; leave a quarter spare
# Allocation failures that cuBLAS and cuDNN report as plain RuntimeErrors (their workspaces are not
# allocated through PyTorch's caching allocator, so no OutOfMemoryError is raised for them).
_OUT_OF_MEMORY_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
_PROBE_NEGATIVE_PROMPT = "memory probe"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the device ran out of memory, whichever library ran out."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(marker.lower() in str(error).lower() for marker in _OUT_OF_MEMORY_MARKERS)


def memory_key(loaded: LoadedModel, request: GenerationRequest) -> tuple[int, bool]:
    """What in a request changes peak memory: its latent length, and whether CFG doubles the DiT batch.

    Nothing else does: prompts are padded to the conditioner's fixed token length, the sampler's
    history is a few latents, and steps repeat the same work. A negative prompt adds a second
    conditioning pass and its tokens, which batches may mix freely; the probe always includes one.
    """
    return resolved_latent_frames(loaded, request), request.cfg_scale != 1.0


def _release_cached_memory(loaded: LoadedModel) -> None:
    if loaded.device.type == "cuda":
        torch.cuda.empty_cache()


def fits(loaded: LoadedModel, request: GenerationRequest, size: int) -> bool:
    """Whether a batch of ``size`` copies of ``request`` (with a negative prompt: the worst case) fits."""
    probe = dataclasses.replace(request, steps=2, negative_prompt=request.negative_prompt or _PROBE_NEGATIVE_PROMPT)
    try:
        generate_audio(loaded, [dataclasses.replace(probe, seed=seed) for seed in range(size)])
        return True
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        return False
    finally:
        _release_cached_memory(loaded)


def probe_batch_size(loaded: LoadedModel, request: GenerationRequest, limit: int = MAX_BATCH_SIZE) -> int:
    """The largest power of two up to ``limit`` that fits, less ``SAFETY_FACTOR``; at least 1."""
    size = 1
    while size * 2 <= limit and fits(loaded, request, size * 2):
        size *= 2
    return max(1, int(size * SAFETY_FACTOR)) if size > 1 else 1


class AutoBatchSize:
    """Callable ``item -> batch size`` for ``make_batches``, probing on first use of each ``memory_key``."""

    def __init__(self, loaded: LoadedModel, limit: int = MAX_BATCH_SIZE) -> None:
        self.loaded, self.limit = loaded, limit
        self.sizes: dict[tuple[int, bool], int] = {}

    def __call__(self, item: WorkItem) -> int:
        if self.loaded.device.type != "cuda":
            return CPU_BATCH_SIZE
        key = memory_key(self.loaded, item.request)
        if key not in self.sizes:
            self.sizes[key] = probe_batch_size(self.loaded, item.request, self.limit)
        return self.sizes[key]


def generate_audio_splitting(loaded: LoadedModel, requests: Sequence[GenerationRequest]) -> torch.Tensor:
    """``generate_audio``, retrying a batch that runs out of memory as two halves (recursively).

    A single request that does not fit raises the error: there is nothing left to split.
    """
    try:
        return generate_audio(loaded, requests)
    except RuntimeError as error:
        if len(requests) == 1 or not is_out_of_memory(error):
            raise
    # Outside the except block, so that the failed attempt's tensors (held by the traceback) are freed.
    _release_cached_memory(loaded)
    half = len(requests) // 2
    print(f"warning: a batch of {len(requests)} ran out of memory on {loaded.device}; retrying it as {half} + {len(requests) - half}",
          file=sys.stderr, flush=True)  # fmt: skip
    return torch.cat([generate_audio_splitting(loaded, requests[:half]), generate_audio_splitting(loaded, requests[half:])])
