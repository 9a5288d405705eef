"""What a run's flags mean for its output folder: the settings in each item's fingerprint, what is
already done there, and how long each file will be.

Shared by the dry run (which must stay light: no torch) and the real run (``launch``).
"""

from __future__ import annotations

import argparse

from ..model.spec import ModelSpec
from ..output.manifest import load_records
from ..output.normalize import normalization_from_args
from ..output.resume import OutputSettings, ResumeState, resume_state
from ..request import LatentGeometry
from ..tree.plan import WorkItem


def written_seconds(item: WorkItem, geometry: LatentGeometry, clip_length: bool) -> float:
    """Duration of the file ``item`` produces: its seconds_total when clipped, else its latent length."""
    if clip_length:
        return item.request.seconds_total
    frames = item.request.latent_frames or geometry.window_frames
    return frames * geometry.downsampling_ratio / geometry.sample_rate


def output_settings(args: argparse.Namespace, spec: ModelSpec) -> OutputSettings:
    return OutputSettings(
        model=spec.source, model_revision=spec.revision, precision=args.precision,
        audio_format=args.format, clip_length=args.clip_length, normalization=normalization_from_args(args),
    )  # fmt: skip


def current_state(args: argparse.Namespace, items: list[WorkItem], spec: ModelSpec) -> ResumeState:
    """Which items are done and which pending; with ``--overwrite`` every item is pending."""
    records = {} if args.overwrite else load_records(args.output_dir)
    return resume_state(items, records, args.output_dir, output_settings(args, spec))


def seconds_of(args: argparse.Namespace, items: list[WorkItem], spec: ModelSpec) -> dict[str, float]:
    return {i.relpath: written_seconds(i, spec.geometry, args.clip_length) for i in items}
