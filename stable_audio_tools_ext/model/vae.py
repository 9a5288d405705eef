"""The VAE's randomness: its encoder samples latents from torch's global random generator.

stable-audio-tools' VAE bottleneck returns ``mean + stdev * torch.randn_like(mean)``, drawn from the
global generator of the device it runs on, and takes no generator argument. Code that must encode
reproducibly - the same audio and seed giving the same latents whatever was encoded before, in any
batch, on any rank - seeds that generator per encoded item. Shared by ``finetune.py encode`` (one
seed per file) and init audio in generation (one seed per item).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's global generators seeded with ``seed``; the caller's state comes back after.

    Restoring matters in a process that keeps using the global generator afterwards (a training
    loop, the studio); ``fork_rng`` saves the CPU generator and, on CUDA, ``device``'s.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
