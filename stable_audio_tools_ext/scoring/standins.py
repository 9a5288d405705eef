"""Tiny random stand-ins for OpenL3 and PaSST: weights files of the same architectures, small and fast.

The real weights (torchopenl3's 4.7 M-parameter OpenL3, hear21passt's 86 M-parameter PaSST-S) are
downloads from GitHub that tests and offline demos cannot make. These files hold the same layers
with random values: OpenL3 with every convolution narrower (its 512-d embedding layer kept), PaSST
``TINY_PASST_WIDTH`` wide and ``TINY_PASST_DEPTH`` blocks deep (its patch grid and 527-class heads
kept). ``Openl3Embedder.load`` and ``PasstClassifier.load`` read them like the real files, so the
whole recipe (resampling, framing, batching, pooling) runs on them; only the numbers are meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..output.atomic import atomic_open
from .openl3 import EMBEDDING_SIZE, INPUT_REPR, set_widths
from .passt import build_net

TINY_OPENL3_WIDTHS = (4, 4, 8, 8, 8, 8, 16)  # conv2d_1..conv2d_7 (OpenL3: 64, 64, 128, 128, 256, 256, 512)
TINY_PASST_WIDTH = 64  # PaSST-S: 768
TINY_PASST_DEPTH = 1  # PaSST-S: 12


def write_tiny_openl3(path: Path, seed: int = 0) -> Path:
    """A random mel256 512-d OpenL3 with ``TINY_OPENL3_WIDTHS`` channels, saved as a state dict at ``path``."""
    from torchopenl3.models import PytorchOpenl3

    torch.manual_seed(seed)
    model = PytorchOpenl3(content_type="music", input_repr=INPUT_REPR, embedding_size=EMBEDDING_SIZE)
    set_widths(model, TINY_OPENL3_WIDTHS)
    return _save(model.state_dict(), path)


def write_tiny_passt(path: Path, seed: int = 0) -> Path:
    """A random PaSST-S-shaped net ``TINY_PASST_WIDTH`` wide and ``TINY_PASST_DEPTH`` deep, saved at ``path``."""
    torch.manual_seed(seed)
    net = build_net(TINY_PASST_WIDTH, TINY_PASST_DEPTH)
    for head in (net.head[1], net.head_dist):  # PaSST zero-initialises its heads: every clip would score alike
        torch.nn.init.normal_(head.weight, std=0.5)
    return _save(net.state_dict(), path)


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``state`` written atomically to ``path`` with ``torch.save``."""
    with atomic_open(path) as handle:
        torch.save(state, handle)
    return path
