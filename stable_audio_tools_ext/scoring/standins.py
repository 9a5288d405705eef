"""Tiny random stand-ins for OpenL3 and PaSST: weights files of the same architectures, small and fast.

The real weights (torchopenl3's 4.7 M-parameter OpenL3, hear21passt's 86 M-parameter PaSST-S) are
downloads from GitHub that tests and offline demos cannot make. These files hold the same layers
with random values: OpenL3 with every convolution narrower (its 512-d embedding layer kept), PaSST
``TINY_PASST_WIDTH`` wide and ``TINY_PASST_DEPTH`` blocks deep (its patch grid and 527-class heads
kept). ``Openl3Embedder.load`` and ``PasstClassifier.load`` read them like the real files, so the
whole recipe (resampling, framing, batching, pooling) runs on them; only the numbers are meaningless.

``write_standin_cache`` puts them where torch hub's cache keeps the real downloads, under the
``TORCH_HOME`` that ``model.tiny.offline_hub_env`` sets beside the tiny CLAP's hub cache: the tests'
caches and ``make demo``'s (``python -m stable_audio_tools_ext.scoring.standins --hf-home DIR``),
so ``finetune.py score --metrics fd_openl3,kl_passt`` runs offline through the real loading code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..model.tiny import torch_home
from ..output.atomic import atomic_open
from .openl3 import CONTENT_TYPES, EMBEDDING_SIZE, INPUT_REPR, set_widths, weights_file_name
from .passt import WEIGHTS_FILE, build_net

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


def write_standin_cache(hf_home: Path) -> Path:
    """The stand-ins in torch hub's cache of ``torch_home(hf_home)`` under the real files' names; returns that folder.

    OpenL3 once per content type (music seed 0, env seed 1), PaSST once. Files already there are kept
    (each is written atomically, so one that exists is whole), so every caller after the first pays nothing.
    """
    checkpoints = torch_home(hf_home) / "hub" / "checkpoints"
    for seed, content_type in enumerate(CONTENT_TYPES):
        if not (checkpoints / weights_file_name(content_type)).is_file():
            write_tiny_openl3(checkpoints / weights_file_name(content_type), seed)
    if not (checkpoints / WEIGHTS_FILE).is_file():
        write_tiny_passt(checkpoints / WEIGHTS_FILE)
    return checkpoints


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the tiny OpenL3 and PaSST stand-ins into a tiny hub cache's TORCH_HOME.")
    parser.add_argument("--hf-home", type=Path, required=True, help="the cache's HF_HOME (model.tiny --hf-home)")
    print(write_standin_cache(parser.parse_args(argv).hf_home))


if __name__ == "__main__":
    main()
