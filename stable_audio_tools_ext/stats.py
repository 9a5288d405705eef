"""Per-file audio measurements recorded in the manifest, and the status they imply."""

from __future__ import annotations

import numpy as np

# Below this peak a file is flagged "silent": almost certainly a failed generation, not a quiet sound
# (16-bit PCM's smallest step is 3e-5).
SILENCE_PEAK = 1e-4


def audio_stats(samples: np.ndarray) -> dict[str, float]:
    """Peak and RMS of ``(frames, channels)`` float samples."""
    return {
        "peak": float(np.abs(samples).max(initial=0.0)),
        "rms": float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0,
    }


def status_of(peak: float) -> str:
    """'silent' for near-silent output, else 'ok' (non-finite output never reaches this point)."""
    return "silent" if peak < SILENCE_PEAK else "ok"
