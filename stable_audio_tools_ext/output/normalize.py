"""Optional level normalization of each generated clip before it is written (``--normalize``).

Datasets for training or evaluation often want a common level: ``peak`` scales each clip so its
peak sits at a target in dBFS, ``lufs`` so its integrated loudness (ITU-R BS.1770, pyloudnorm) sits
at a target in LUFS. The gain is applied to the float samples; a loudness gain can push peaks past
full scale, and those samples are clipped to [-1, 1] and counted (``normalize_clipped``), so the
manifest says exactly what was done to every file. Clips that are flagged silent, or whose loudness
cannot be measured, are left unchanged (amplifying a failed, near-silent generation only amplifies
its noise) and the record says why.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from .stats import SILENCE_PEAK, dbfs, integrated_loudness

NORMALIZE_MODES = ("none", "peak", "lufs")
DEFAULT_TARGETS = {"peak": -1.0, "lufs": -23.0}  # dBFS; LUFS (EBU R 128)
# Targets that can be reached without clipping every file (peak) or that BS.1770 can measure (lufs).
TARGET_RANGES = {"peak": (-60.0, 0.0), "lufs": (-70.0, 0.0)}
UNITS = {"peak": "dBFS", "lufs": "LUFS"}


@dataclass(frozen=True)
class Normalization:
    """How clips are levelled before writing; part of ``OutputSettings``, so changing it regenerates."""

    mode: str = "none"
    target: float | None = None  # dBFS for "peak", LUFS for "lufs", None for "none"


def normalization_from_args(args: argparse.Namespace) -> Normalization:
    """The ``--normalize``/``--normalize-target`` pair as a ``Normalization``; ``ValueError`` if they do not fit."""
    mode, target = args.normalize, args.normalize_target
    if mode == "none":
        if target is not None:
            raise ValueError(f"--normalize-target {target} needs --normalize peak or --normalize lufs")
        return Normalization()
    if target is None:
        target = DEFAULT_TARGETS[mode]
    low, high = TARGET_RANGES[mode]
    if not low <= target <= high:
        raise ValueError(f"--normalize-target {target}: with --normalize {mode} it must be a level "
                         f"in {UNITS[mode]} between {low:g} and {high:g}")  # fmt: skip
    return Normalization(mode, float(target))


def normalize(samples: np.ndarray, sample_rate: int, norm: Normalization) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply ``norm`` to ``(frames, channels)`` float samples; returns the samples and manifest fields.

    Fields: ``normalize`` (mode), ``normalize_target``, ``normalize_gain_db`` (applied gain),
    ``normalize_clipped`` (sample values clipped to full scale by that gain) and
    ``normalize_note`` (why no gain was applied, else null).
    """
    fields: dict[str, Any] = {"normalize": norm.mode, "normalize_target": norm.target, "normalize_gain_db": 0.0,
                              "normalize_clipped": 0, "normalize_note": None}  # fmt: skip
    if norm.mode == "none":
        return samples, fields
    peak = float(np.abs(samples).max(initial=0.0))
    if peak < SILENCE_PEAK:
        fields["normalize_note"] = "left unchanged: silent"
        return samples, fields
    if norm.mode == "peak":
        level = dbfs(peak)
    else:
        level, why = integrated_loudness(samples, sample_rate)
        if level is None:
            fields["normalize_note"] = f"left unchanged: no loudness ({why})"
            return samples, fields
    assert norm.target is not None
    gain_db = norm.target - level
    scaled = samples.astype(np.float64) * 10.0 ** (gain_db / 20.0)
    fields["normalize_gain_db"] = round(gain_db, 4)
    fields["normalize_clipped"] = int(np.count_nonzero(np.abs(scaled) > 1.0 + 1e-9))  # not float round-off
    return np.clip(scaled, -1.0, 1.0).astype(samples.dtype), fields
