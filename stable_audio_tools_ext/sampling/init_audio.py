"""Init audio (audio-to-audio variations): the file an item starts from -> the latents it starts from.

As upstream's ``generate_diffusion_cond`` does with ``init_audio``: the file is resampled to the
model's rate, padded with silence or cropped (from its start) to the item's latent length, given the
VAE's channel count (upstream's own ``prepare_audio``) and VAE-encoded. The sampler then starts from
these latents noised to ``init_noise_level`` instead of from pure noise (``samplers.sample_latents``).

Seed invariance: the VAE's bottleneck draws its latent sample from torch's global generator, which
upstream seeds once per batch. Here every item is encoded on its own, batch 1, with the global
generator seeded from the item's seed, so its starting latents are the same in any batch, rank or
order. The seed is derived from the item's (not the item's seed itself): the item's initial noise
is drawn from a CPU generator seeded with its seed, and on the CPU the VAE's sample would then be
that same noise.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import soundfile as sf
import torch
from stable_audio_tools.inference.utils import prepare_audio

from ..model.loading import LoadedModel
from ..model.vae import seeded_global_rng
from ..request import GenerationRequest, InitAudio
from ..tree.plan import derive_seed

VAE_SAMPLE_SEED_KEY = "init_audio"  # derive_seed(item seed, this, 0): the seed of the VAE's latent sample


class InitAudioError(OSError):
    """An item's init audio file cannot be used any more: it is gone, unreadable, or changed since the tree was read."""


def _read(init: InitAudio) -> tuple[torch.Tensor, int]:
    """The file's audio ``(channels, samples)`` and sample rate, checked against the hash its item was planned with.

    The hash is the item's identity (its fingerprint, so resume decisions): audio from an edited file
    would be recorded as the old file's.
    """
    try:
        with open(init.path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InitAudioError(f"init audio {init.path}: cannot read it ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != init.sha256:
        raise InitAudioError(f"init audio {init.path}: the file changed since the tree was read (its sha256 differs)")
    try:
        audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        reason = getattr(exc, "error_string", exc)  # libsndfile's own words, without the in-memory file's repr
        raise InitAudioError(f"init audio {init.path}: not readable as audio ({reason})") from None
    return torch.from_numpy(audio.T.copy()), sample_rate


def init_latents(loaded: LoadedModel, requests: Sequence[GenerationRequest], frames: int) -> torch.Tensor | None:
    """Float32 latents ``(batch, latent channels, frames)`` that the requests start from; None without init audio.

    ``requests`` is one batch as ``engine.generate_latents`` checks it: only items with init audio or
    only items without (their ``batch_key`` differs in ``init_noise_level``, which comes with the
    audio). A file shared by several items is read and prepared once per call.
    """
    if requests[0].init_audio is None:
        return None
    pretransform = loaded.model.pretransform
    length = frames * int(pretransform.downsampling_ratio)
    prepared: dict[InitAudio, torch.Tensor] = {}
    rows = []
    for request in requests:
        init = request.init_audio
        assert init is not None  # all or none (see above)
        if init not in prepared:
            audio, sample_rate = _read(init)
            prepared[init] = prepare_audio(audio, in_sr=sample_rate, target_sr=loaded.spec.geometry.sample_rate,
                                           target_length=length, target_channels=pretransform.io_channels, device=loaded.device)  # fmt: skip
        with seeded_global_rng(derive_seed(request.seed, VAE_SAMPLE_SEED_KEY, 0), loaded.device):
            rows.append(pretransform.encode(prepared[init]).float())
    return torch.cat(rows)
