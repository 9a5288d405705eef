"""OpenL3 frame embeddings as stable-audio-metrics computes them for FD_openl3.

FD_openl3, as the Stable Audio Open paper reports it, is ``openl3_fd`` in stable-audio-metrics'
``src/openl3_fd.py`` (commit fd55536): the Fréchet distance between the OpenL3 frame embeddings of
a generated set and of a reference set. Every step it takes is reproduced here:

* audio: read at its own rate with all channels, peak-normalised to -1 dBFS over the whole clip
  (``pyloudnorm.normalize.peak``), resampled to the *evaluation rate* (``soxr.resample``, its
  default "HQ" quality; 44.1 kHz in its examples and here) — the bandwidth at which a model is judged;
* stereo: the left and the right channel are embedded apart and each frame's two 512-d
  embeddings are concatenated (1024-d); a mono clip is copied to both (its two halves are equal);
* OpenL3 (``mel256``, 512-d, content type ``music`` or ``env``): resampled to its 48 kHz with
  resampy's ``kaiser_best``, centred (half a window of zeros in front), zero-padded to whole hops,
  cut into 1 s windows every 0.5 s; one embedding per window. A 3 s clip gives 6 frames;
* the distance: ``frechet.frechet_distance`` of the two sets of frames.

stable-audio-metrics runs TensorFlow ``openl3`` 0.4.2; this runs ``torchopenl3`` 1.0.1, its PyTorch
port (same layers; its authors check it against openl3 0.3.1, whose spectrogram is kapre 0.1.4's),
so values agree to the port's precision, not bit for bit. The framing above is openl3's and
torchopenl3's alike.

API (what ``finetune.py score`` calls)::

    embedder = Openl3Embedder.load("music", device, weights=None)   # or weights=Path(".../file.pth.tar")
    frames = embedder.frames([(samples, rate), ...])                 # (total frames, 1024) float32
    fd = frechet_distance(frames_eval, frames_ref)

Weights: torchopenl3's files are fetched once into torch hub's cache (``$TORCH_HOME/hub/checkpoints``,
by default ``~/.cache/torch/hub/checkpoints``) and read from there afterwards, so a machine without
network access works once the file (``weights_file_name``) is placed there, or when ``weights`` names it.
A weights file may hold narrower layers than OpenL3's (the tiny random stand-in the tests build,
``standins``): the model is built at the widths its tensors have.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .clap import Clip
from .clap_recipe import peak_normalize
from .hub_weights import cached_path, weights_file

CONTENT_TYPES = ("music", "env")
INPUT_REPR = "mel256"
EMBEDDING_SIZE = 512  # per channel; a frame is 2 x 512 (left, right)
EVAL_RATE = 44100  # openl3_fd's samplingrate in stable-audio-metrics' examples (the SAO paper's setting)
HOP_SECONDS = 0.5  # openl3_fd's openl3_hop_size in its examples; OpenL3's window is 1 s
MODEL_RATE = 48000  # OpenL3's own rate (torchopenl3.core.TARGET_SR)
BATCH_SIZE = 64  # 1 s windows per forward pass
WEIGHTS_URL = "https://github.com/torchopenl3/torchopenl3-models/raw/master/{name}"

# PytorchOpenl3's layers in the order the widths chain through them: (conv, the batch norm after it).
LAYERS = tuple(zip(
    ("conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_5", "conv2d_6", "conv2d_7", "audio_embedding_layer"),
    ("batch_normalization_2", "batch_normalization_3", "batch_normalization_4", "batch_normalization_5",
     "batch_normalization_6", "batch_normalization_7", "batch_normalization_8", None)))  # fmt: skip


class Openl3LoadError(RuntimeError):
    """The OpenL3 weights could not be found or read; the message says which file and where to put it."""


def weights_file_name(content_type: str) -> str:
    """torchopenl3's file name for the mel256 512-d model of ``content_type`` (its name in the hub cache)."""
    return f"torchopenl3_{INPUT_REPR}_{content_type}_{EMBEDDING_SIZE}.pth.tar"


def recipe_channels(samples: np.ndarray, sample_rate: int, eval_rate: int = EVAL_RATE) -> tuple[np.ndarray, np.ndarray]:
    """The left and right signals openl3_fd embeds: peak -1 dBFS, at ``eval_rate``; a mono clip is both.

    ``samples`` is (frames, channels) or (frames,); beyond two channels only the first two are used,
    as stable-audio-metrics does (``audio[:, 0]``, ``audio[:, 1]``). For a mono clip both are the
    same array (``frames`` embeds it once).
    """
    import soxr

    audio = np.asarray(samples, dtype=np.float32).reshape(len(samples), -1)
    audio = soxr.resample(peak_normalize(audio), sample_rate, eval_rate)
    left = audio[:, 0]
    return left, (audio[:, 1] if audio.shape[1] > 1 else left)


def model_windows(wave: np.ndarray, rate: int, hop_seconds: float = HOP_SECONDS) -> torch.Tensor:
    """One channel at ``rate`` as OpenL3's input: (windows, 1, 48000) float32, resampled, centred, padded, framed."""
    import resampy
    from torchopenl3.utils import preprocess_audio_batch

    wave = np.asarray(wave, dtype=np.float64)
    if rate != MODEL_RATE:  # what preprocess_audio_batch(sampler="resampy") does, without its warning per call
        wave = resampy.resample(wave, sr_orig=rate, sr_new=MODEL_RATE, filter="kaiser_best")
    return preprocess_audio_batch(torch.from_numpy(wave)[None], MODEL_RATE, center=True, hop_size=hop_seconds,
                                  sampler="resampy").to(torch.float32)  # fmt: skip


class Openl3Embedder:
    """OpenL3 (mel256, 512-d) on one device: stereo frame embeddings of clips, as openl3_fd takes them."""

    def __init__(self, model: torch.nn.Module, device: torch.device, eval_rate: int = EVAL_RATE,
                 hop_seconds: float = HOP_SECONDS) -> None:  # fmt: skip
        self.model, self.device = model.eval().to(device), device
        self.eval_rate, self.hop_seconds = eval_rate, hop_seconds

    @classmethod
    def load(cls, content_type: str = "music", device: torch.device | None = None, weights: Path | None = None,
             eval_rate: int = EVAL_RATE) -> Openl3Embedder:  # fmt: skip
        """OpenL3 for ``content_type`` from ``weights`` (a file) or torch hub's cache (downloading it once if online)."""
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"OpenL3 content type must be one of {', '.join(CONTENT_TYPES)}, got {content_type!r}")
        from torchopenl3.models import PytorchOpenl3

        state = _read_weights(content_type, weights)
        model = PytorchOpenl3(content_type=content_type, input_repr=INPUT_REPR, embedding_size=EMBEDDING_SIZE)
        _match_widths(model, state)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise Openl3LoadError(f"{weights or weights_file_name(content_type)} is not a mel256 512-d OpenL3 "
                                  f"model: {str(exc).splitlines()[0]}") from exc  # fmt: skip
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, device, eval_rate)

    def frames(self, clips: Sequence[Clip]) -> np.ndarray:
        """The frame embeddings of all ``clips``, clip after clip: (total frames, 1024) float32, left then right."""
        parts, spans = [], []  # spans: each clip's (left, right) rows in the stacked windows
        offset = 0
        for samples, rate in clips:
            left, right = recipe_channels(samples, rate, self.eval_rate)
            span = []
            for wave in (left,) if right is left else (left, right):  # a mono clip's two halves are one embedding
                parts.append(model_windows(wave, self.eval_rate, self.hop_seconds))
                span.append(slice(offset, offset + len(parts[-1])))
                offset += len(parts[-1])
            spans.append((span[0], span[-1]))
        if not parts:
            return np.zeros((0, 2 * EMBEDDING_SIZE), dtype=np.float32)
        embedded = self._embed(torch.cat(parts))
        return np.concatenate([np.concatenate([embedded[left], embedded[right]], axis=1) for left, right in spans])

    def _embed(self, windows: torch.Tensor) -> np.ndarray:
        """(windows, 512) embeddings, ``BATCH_SIZE`` windows per forward pass on the device."""
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(windows), BATCH_SIZE):
                chunks.append(self.model(windows[start:start + BATCH_SIZE].to(self.device)).float().cpu())
        return torch.cat(chunks).numpy()


def weights_path(content_type: str, weights: Path | None = None) -> Path:
    """The OpenL3 weights file ``load`` reads: ``weights``, or torch hub's cached copy (downloaded once if missing)."""
    name = weights_file_name(content_type)
    try:
        return weights_file(weights, name, WEIGHTS_URL.format(name=name))
    except OSError as exc:  # missing file, offline (URLError is an OSError)
        raise Openl3LoadError(f"cannot read the OpenL3 weights {weights or cached_path(name)}: {exc}; download "
                              f"{WEIGHTS_URL.format(name=name)} there (docs/evaluation.md)") from exc  # fmt: skip


def _read_weights(content_type: str, weights: Path | None) -> dict[str, torch.Tensor]:
    """The state dict in ``weights``, or torchopenl3's file through torch hub's cache."""
    path = weights_path(content_type, weights)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable, not torch's
        raise Openl3LoadError(f"cannot read the OpenL3 weights {path}: {exc}; download "
                              f"{WEIGHTS_URL.format(name=weights_file_name(content_type))} there "
                              "(docs/evaluation.md)") from exc  # fmt: skip


def _match_widths(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Rebuild ``model`` at the widths of ``state``'s convolutions when they are not OpenL3's own."""
    shapes = [tuple(state.get(f"{conv}.weight", torch.empty(0)).shape) for conv, _ in LAYERS]
    if all(len(shape) == 4 for shape in shapes) and shapes != [tuple(getattr(model, c).weight.shape) for c, _ in LAYERS]:
        set_widths(model, [shape[0] for shape in shapes[:-1]])  # else load_state_dict names what is wrong


def set_widths(model: torch.nn.Module, widths: Sequence[int]) -> None:
    """Replace ``model``'s layers by random ones with ``widths`` channels out of conv2d_1..conv2d_7.

    The layers, their order, kernels, pooling and the 512-d embedding layer stay OpenL3's; this is
    how ``standins`` makes a small OpenL3 and how ``load`` reads one.
    """
    channels = (1, *widths, EMBEDDING_SIZE)
    for index, (conv, norm) in enumerate(LAYERS):
        setattr(model, conv, torch.nn.Conv2d(channels[index], channels[index + 1], kernel_size=3))
        if norm is not None:
            setattr(model, norm, torch.nn.BatchNorm2d(channels[index + 1], eps=0.001, momentum=0.99))  # OpenL3's
