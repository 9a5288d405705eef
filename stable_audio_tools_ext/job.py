"""One rank's share of a generation job: batches -> engine -> audio files, with progress published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .audio_io import AudioFormat, to_samples, write_audio_atomic
from .engine import generate_audio
from .models import LoadedModel
from .plan import WorkItem, make_batches
from .progress import RankProgress


@dataclass(frozen=True)
class OutputOptions:
    """How generated audio becomes files."""

    output_dir: Path
    audio_format: AudioFormat
    clip_length: bool  # trim each file to its seconds_total instead of the model's whole window


def written_seconds(item: WorkItem, window_seconds: float, clip_length: bool) -> float:
    """Duration of the file ``item`` produces."""
    return item.request.seconds_total if clip_length else window_seconds


def run_rank(
    loaded: LoadedModel,
    items: Sequence[WorkItem],
    batch_size: int,
    output: OutputOptions,
    progress: RankProgress,
) -> None:
    """Generate and write every item of this rank, one batch at a time."""
    sample_rate = loaded.spec.sample_rate
    for batch in make_batches(items, batch_size):
        audio = generate_audio(loaded, [item.request for item in batch])
        seconds = 0.0
        for item, clip in zip(batch, audio):
            clip_seconds = item.request.seconds_total if output.clip_length else None
            samples = to_samples(clip, sample_rate, clip_seconds)
            write_audio_atomic(output.output_dir / item.relpath, samples, sample_rate, output.audio_format)
            seconds += len(samples) / sample_rate
        progress.advance(len(batch), seconds)
