"""Per-file audio measurements recorded in the manifest, and the status they imply.

The measurements are what a dataset user checks before training on generated audio: level (peak,
RMS, integrated loudness), how much of a file is near-silent, whether it clips, and DC offset. They
are taken on the float samples exactly as written (after any ``--normalize`` gain).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Below this peak a file is flagged "silent": almost certainly a failed generation, not a quiet sound
# (16-bit PCM's smallest step is 3e-5).
SILENCE_PEAK = 1e-4
# A sample at or beyond the largest 16-bit PCM value counts as clipped: the generator clamps to
# [-1, 1], so clipped model output shows up as runs of samples at full scale.
CLIP_LEVEL = 32767 / 32768
# ``silent_fraction`` is the share of 50 ms frames whose RMS (all channels) is below -60 dBFS.
FRAME_SECONDS = 0.05
SILENT_FRAME_DBFS = -60.0
# ITU-R BS.1770 measures loudness over 400 ms gating blocks; shorter clips have no integrated loudness.
LOUDNESS_BLOCK_SECONDS = 0.4
# pyloudnorm's channel weights stop at five channels (L, R, C, Ls, Rs).
LOUDNESS_MAX_CHANNELS = 5


def dbfs(amplitude: float) -> float:
    """Amplitude relative to full scale in dB (-inf for 0)."""
    return 20.0 * float(np.log10(amplitude)) if amplitude > 0 else float("-inf")


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> tuple[float | None, str | None]:
    """ITU-R BS.1770-4 integrated loudness in LUFS (pyloudnorm), or ``None`` and why it has none.

    A clip shorter than one gating block, or entirely below the -70 LUFS absolute gate, has no
    integrated loudness; JSON has no -inf, and a null with a reason is clearer than a sentinel.
    """
    if samples.ndim != 2 or samples.shape[1] > LOUDNESS_MAX_CHANNELS:
        return None, f"loudness is defined for 1 to {LOUDNESS_MAX_CHANNELS} channels"
    if len(samples) < LOUDNESS_BLOCK_SECONDS * sample_rate:
        return None, f"shorter than the {LOUDNESS_BLOCK_SECONDS} s loudness gating block"
    import pyloudnorm  # 1 s to import (scipy): only when a file is measured, not for `generate.py -h`

    lufs = pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64))
    if not np.isfinite(lufs):
        return None, "below the -70 LUFS absolute gate (silent)"
    return float(lufs), None


def silent_fraction(samples: np.ndarray, sample_rate: int) -> float:
    """Share of ``FRAME_SECONDS`` frames (the last, partial one included) below ``SILENT_FRAME_DBFS``."""
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    if not len(samples):
        return 1.0
    padded = len(samples) + (-len(samples)) % frame
    squares = np.zeros((padded, samples.shape[1]), dtype=np.float64)
    squares[: len(samples)] = np.square(samples, dtype=np.float64)
    counts = np.full(padded // frame, frame, dtype=np.float64)
    counts[-1] -= padded - len(samples)  # the padding of the last frame is not audio
    mean_square = squares.reshape(-1, frame, samples.shape[1]).sum(axis=(1, 2)) / (counts * samples.shape[1])
    threshold = 10.0 ** (SILENT_FRAME_DBFS / 10.0)  # on the mean square, i.e. (10 ** (dB / 20)) ** 2
    return float(np.mean(mean_square < threshold))


def audio_stats(samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Measurements of ``(frames, channels)`` float samples, as recorded in the manifest.

    ``peak``/``rms`` are linear amplitudes; ``lufs`` (null with ``lufs_note`` saying why when it
    cannot be measured); ``silent_fraction`` in [0, 1]; ``clipped_samples`` counts sample values at
    full scale over all channels; ``dc_offset`` is the channel mean of largest magnitude (signed).
    """
    lufs, note = integrated_loudness(samples, sample_rate)
    channel_means = samples.mean(axis=0, dtype=np.float64) if samples.size else np.zeros(1)
    return {
        "peak": float(np.abs(samples).max(initial=0.0)),
        "rms": float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0,
        "lufs": lufs,
        "lufs_note": note,
        "silent_fraction": silent_fraction(samples, sample_rate),
        "clipped_samples": int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL)),
        "dc_offset": float(channel_means[np.argmax(np.abs(channel_means))]),
    }


def status_of(peak: float) -> str:
    """'silent' for near-silent output, else 'ok' (non-finite output never reaches this point)."""
    return "silent" if peak < SILENCE_PEAK else "ok"
