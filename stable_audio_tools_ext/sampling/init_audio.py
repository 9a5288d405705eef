"""Init audio (audio-to-audio variations): the file an item starts from -> the latents it starts from.

As upstream's ``generate_diffusion_cond`` does with ``init_audio``: the file is resampled to the
model's rate, padded with silence or cropped (from its start) to the item's latent length, given the
VAE's channel count (upstream's own ``prepare_audio``) and VAE-encoded. The sampler then starts from
these latents noised to ``init_noise_level`` instead of from pure noise (``samplers.sample_latents``).

Only the part of the file that the crop keeps is read: its first frames, up to the reach of the
resampling filter past the crop's end (``span_frames``), so the prepared audio is the same as from
the whole file, bit for bit. ``prepare_audio`` runs on that span on the CPU, and only the
window-long result goes to the device (upstream resamples the whole file on the device: an hour-long
file would take GBs of GPU memory). Each file is read once per process: the prepared audio is kept by
the file's identity (path and SHA-256) and the length, rate and channels it was prepared for
(``_PREPARED``, least recently used dropped past ``PREPARED_CACHE_BYTES``), and its hash is checked
once, then by size and modification time (``_check_identity``).

Seed invariance: the VAE's bottleneck draws its latent sample from torch's global generator, which
upstream seeds once per batch. Here every item is encoded on its own, batch 1, with the global
generator seeded from the item's seed, so its starting latents are the same in any batch, rank or
order. The seed is derived from the item's (not the item's seed itself): the item's initial noise
is drawn from a CPU generator seeded with its seed, and on the CPU the VAE's sample would then be
that same noise.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Sequence

import soundfile as sf
import torch
from stable_audio_tools.inference.utils import prepare_audio
from torchaudio import transforms as T

from ..model.loading import LoadedModel
from ..model.vae import seeded_global_rng
from ..request import GenerationRequest, InitAudio
from ..tree.plan import derive_seed

VAE_SAMPLE_SEED_KEY = "init_audio"  # derive_seed(item seed, this, 0): the seed of the VAE's latent sample
# Prepared init audio kept per process: 16 full-window clips of Stable Audio Open 1.0 (47.55 s stereo
# float32, 16.8 MB each). A file dropped from it is read again, its span only.
PREPARED_CACHE_BYTES = 256 * 2**20


class InitAudioError(OSError):
    """An item's init audio file cannot be used any more: it is gone, unreadable, or changed since the tree was read."""


# (identity, sample rate, length, channels) of what was prepared
_Key = tuple[InitAudio, int, int, int]


class _PreparedCache:
    """Prepared init audio by what it was prepared from and for; the least recently used go past ``limit_bytes``.

    Not locked: a process generates from one thread (the job loop, or the studio's one request at a time).
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[_Key, torch.Tensor] = OrderedDict()

    def get(self, key: _Key) -> torch.Tensor | None:
        if key in self._entries:
            self._entries.move_to_end(key)
        return self._entries.get(key)

    def put(self, key: _Key, audio: torch.Tensor) -> None:
        self._entries[key] = audio
        while sum(a.nbytes for a in self._entries.values()) > self.limit_bytes and len(self._entries) > 1:
            self._entries.popitem(last=False)


_PREPARED = _PreparedCache(PREPARED_CACHE_BYTES)
# Files whose content this process checked against their SHA-256, with their (size, mtime) then.
_VERIFIED: dict[InitAudio, tuple[int, int]] = {}


def span_frames(in_rate: int, out_rate: int, length: int) -> int:
    """How many of a file's first frames the first ``length`` samples of its resampling depend on.

    torchaudio's sinc resampler (what ``prepare_audio`` uses) computes output sample
    ``j * new + phase`` (rates divided by their gcd: ``orig``, ``new``) from input samples
    ``j * orig - width`` to ``j * orig + width + orig - 1``; beyond the file's end it pads with zeros,
    so reading this many frames (or the whole file when shorter) gives the same first ``length``.
    """
    if in_rate == out_rate:
        return length
    gcd = math.gcd(in_rate, out_rate)
    orig, new = in_rate // gcd, out_rate // gcd
    return (length - 1) // new * orig + _resampler_width(in_rate, out_rate) + orig


@functools.cache
def _resampler_width(in_rate: int, out_rate: int) -> int:
    """The sinc filter's reach in input samples; torchaudio computes it only with the whole kernel,
    so it is built once per pair of rates in a process, not again for every file read."""
    return T.Resample(in_rate, out_rate).width


def _check_identity(init: InitAudio) -> None:
    """Raise ``InitAudioError`` unless the file still has the content its item was planned with.

    The hash is the item's identity (its fingerprint, so resume decisions): audio from an edited file
    would be recorded as the old file's. The whole file is hashed once per process; after that a
    look at its size and modification time tells whether it may have changed (then it is hashed
    again), so an edit is still an error, but a file used by many batches is not read whole for each.
    """
    try:
        stat = os.stat(init.path)
        signature = (stat.st_size, stat.st_mtime_ns)
        if _VERIFIED.get(init) == signature:
            return
        with open(init.path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise InitAudioError(f"init audio {init.path}: cannot read it ({exc.strerror or exc})") from None
    if digest != init.sha256:
        raise InitAudioError(f"init audio {init.path}: the file changed since the tree was read (its sha256 differs)")
    _VERIFIED[init] = signature


def _read_prepared(init: InitAudio, sample_rate: int, length: int, channels: int) -> torch.Tensor:
    """``(1, channels, length)`` float32 on the CPU: ``prepare_audio`` of the file's first ``span_frames``."""
    try:
        with sf.SoundFile(init.path) as audio_file:
            in_rate = audio_file.samplerate
            audio = audio_file.read(span_frames(in_rate, sample_rate, length), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        reason = getattr(exc, "error_string", exc)  # libsndfile's own words, without soundfile's repr
        raise InitAudioError(f"init audio {init.path}: not readable as audio ({reason})") from None
    except OSError as exc:
        raise InitAudioError(f"init audio {init.path}: cannot read it ({exc.strerror or exc})") from None
    return prepare_audio(torch.from_numpy(audio.T.copy()), in_sr=in_rate, target_sr=sample_rate, target_length=length,
                         target_channels=channels, device="cpu")  # fmt: skip


def _prepared(init: InitAudio, sample_rate: int, length: int, channels: int) -> torch.Tensor:
    """The prepared audio of ``init`` on the CPU: identity checked, read at most once while the cache keeps it."""
    _check_identity(init)
    key = (init, sample_rate, length, channels)
    audio = _PREPARED.get(key)
    if audio is None:
        audio = _read_prepared(*key)
        _PREPARED.put(key, audio)
    return audio


def init_latents(loaded: LoadedModel, requests: Sequence[GenerationRequest], frames: int) -> torch.Tensor | None:
    """Float32 latents ``(batch, latent channels, frames)`` that the requests start from; None without init audio.

    ``requests`` is one batch as ``engine.generate_latents`` checks it: only items with init audio or
    only items without (their ``batch_key`` differs in ``init_noise_level``, which comes with the
    audio). A file shared by several items goes to the device once per call.
    """
    if requests[0].init_audio is None:
        return None
    pretransform = loaded.model.pretransform
    length = frames * int(pretransform.downsampling_ratio)
    on_device: dict[InitAudio, torch.Tensor] = {}
    rows = []
    for request in requests:
        init = request.init_audio
        assert init is not None  # all or none (see above)
        if init not in on_device:
            prepared = _prepared(init, loaded.spec.geometry.sample_rate, length, pretransform.io_channels)
            on_device[init] = prepared.to(loaded.device)
        with seeded_global_rng(derive_seed(request.seed, VAE_SAMPLE_SEED_KEY, 0), loaded.device):
            rows.append(pretransform.encode(on_device[init]).float())
    return torch.cat(rows)
