"""Upstream warnings and prints a user cannot act on, hidden in one place for every entry point.

stable-audio-tools 0.0.19 and the libraries it pulls in warn about their own deprecated calls on
every run, and print a notice about flash-attn at import; none of it says anything about the
user's input or output. Each filter names the
warning's category, the start of its message and the module it is attributed to, so the same text
from anywhere else, and every other warning, still shows. This module imports nothing from the
package, so every stage and entry script may call it (``tests/test_layout.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

# (category, message regex, module regex): matched against the start of the message, and the whole module name.
KNOWN_LIBRARY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # clip, imported by k-diffusion; Lightning (fine-tuning) declares its namespace packages with it; resampy (OpenL3's resampling)
    (UserWarning, r"pkg_resources is deprecated as an API", r"clip\.clip|lightning_fabric|pytorch_lightning|resampy\.filters"),
    # torchopenl3's mel256 filter bank at 48 kHz has empty bands by design (stable-audio-metrics' recipe, the real weights too)
    (UserWarning, r"Empty filters detected in mel frequency basis", r"torchopenl3\.models"),
    # the Oobleck VAE
    (FutureWarning, r"`torch\.nn\.utils\.weight_norm` is deprecated", r"torch\.nn\.utils\.weight_norm"),
    # the T5 conditioner; the training wrapper (fine-tuning)
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
     r"stable_audio_tools\.models\.conditioners|stable_audio_tools\.training\.diffusion"),
    # fine-tuning: Lightning 2.1 under current torch; upstream's dataset passes torchaudio a format it ignores;
    # the dataloader's pin_memory on a machine without a GPU
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"pytorch_lightning\.utilities\._pytree"),
    (UserWarning, r"The 'format' parameter is not supported by TorchCodec", r"torchaudio"),
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found", r"torch\.utils\.data\.dataloader"),
    # the T5 conditioner's autocast on a machine without CUDA
    (UserWarning, r"CUDA is not available or torch_xla is imported\. Disabling autocast", r"torch\.cuda\.amp\.autocast_mode"),
)


def hide_library_warnings() -> None:
    """Install the filters; call before importing the libraries, as some of them warn at import."""
    for category, message, module in KNOWN_LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=rf"(?:{module})\Z")


# Loggers whose INFO lines Lightning prints on every `finetune.py train` run: its device banner ("GPU
# available: False, used: False", TPU, IPU, HPU), "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES", "Seed set to N",
# "Initializing distributed: ...", "Restoring states from the checkpoint path ..."; the run's own start
# and closing lines say what matters (devices, precision, the step it continues from). Warnings stay.
LIGHTNING_INFO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
    "lightning_fabric.utilities.seed", "lightning_fabric.utilities.distributed",
)  # fmt: skip


def hide_library_banners() -> None:
    """Raise Lightning's informational loggers to WARNING; works before or after Lightning is imported
    (it sets INFO on its package loggers, and a child's own level wins)."""
    for name in LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# Lines stable-audio-tools prints (with print(), not as warnings) when its transformer module is
# imported on a machine without flash-attn: the DiT then uses PyTorch's own attention, which is what
# Stable Audio's models are run with on most GPUs anyway.
KNOWN_LIBRARY_PRINTS = frozenset({"No module named 'flash_attn'", "flash_attn not installed, disabling Flash Attention"})


class _LineFilter(io.TextIOBase):
    """A stdout stand-in that passes on every line except ``KNOWN_LIBRARY_PRINTS``."""

    def __init__(self, target: TextIO) -> None:
        self._target, self._pending = target, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line not in KNOWN_LIBRARY_PRINTS:
                self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(self._pending)
            self._pending = ""
        self._target.flush()


@contextlib.contextmanager
def hide_library_prints() -> Iterator[None]:
    """Around the first import of stable-audio-tools: drop exactly its known lines from stdout."""
    line_filter = _LineFilter(sys.stdout)
    with contextlib.redirect_stdout(line_filter):
        yield
    line_filter.flush()
