"""One rank's share of a generation job: batches -> engine -> checked audio files + manifest records."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.loading import LoadedModel
from ..output.audio_io import FORMATS, decode_audio, encode_audio, to_samples
from ..output.manifest import ManifestWriter, Record
from ..output.normalize import normalize
from ..output.resume import OutputSettings, fingerprint
from ..output.shards import FileWriter, ShardWriter
from ..output.stats import audio_stats, status_of
from ..output.writer import BackgroundWriter
from ..sampling.autobatch import generate_audio_splitting
from ..scoring.clap import ClapScorer
from ..tree.plan import WorkItem, make_batches
from .progress import RankProgress
from .signals import GracefulStop


def _adapters_record(item: WorkItem, loaded: LoadedModel) -> dict[str, Any]:
    """The item's LoRA adapters as --lora records them (file name, sha256, strength): its leaf's, else --lora's.

    Replaces the request's own ``lora`` field, whose absolute paths say where the files were, not what."""
    leaf = item.request.lora
    if leaf is not None:
        return {"lora": [adapter.record() for adapter in leaf]}
    return {"lora": [adapter.record() for adapter in loaded.spec.adapters]} if loaded.spec.adapters else {}


def _record(item: WorkItem, settings: OutputSettings, loaded: LoadedModel, **fields: Any) -> dict[str, Any]:
    return {
        "path": item.relpath,
        "leaf": item.leaf,
        "k": item.k,
        "vars": item.vars,
        **{k: v for k, v in dataclasses.asdict(item.request).items() if k != "lora"},
        "model": settings.model,
        "model_revision": settings.model_revision,
        "precision": loaded.precision,
        "format": settings.audio_format,
        "clip_length": settings.clip_length,
        "sample_rate": loaded.spec.sample_rate,
        **_adapters_record(item, loaded),
        "fingerprint": fingerprint(item, settings),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


def _encode_item(
    item: WorkItem, clip: torch.Tensor, settings: OutputSettings, loaded: LoadedModel
) -> tuple[dict[str, Any], bytes | None]:
    """Check, encode and describe one generated clip; return the fields and the encoded audio (``None``:
    non-finite audio is recorded but not written)."""
    if not torch.isfinite(clip).all():
        return {"status": "nonfinite", "frames": 0, "bytes": 0, "peak": None, "rms": None}, None
    sample_rate = loaded.spec.sample_rate
    samples: np.ndarray = to_samples(clip, sample_rate, item.request.seconds_total if settings.clip_length else None)
    samples, normalized = normalize(samples, sample_rate, settings.normalization)
    data = encode_audio(samples, sample_rate, FORMATS[settings.audio_format])
    stats = audio_stats(samples, sample_rate)
    return {"status": status_of(stats["peak"]), "frames": len(samples), "bytes": len(data),
            "channels": samples.shape[1], **stats, **normalized}, data  # fmt: skip


def _add_scores(batch: Sequence[WorkItem], written: list[tuple[dict[str, Any], bytes | None]], scorer: ClapScorer) -> None:
    """Add ``clap_score`` to the fields of every written item of ``batch``, scored as one batch.

    Each item is scored from its audio as written (the file's or shard member's bytes: 16-bit where
    the format is), cut to its own ``seconds_total`` whatever ``--clip-length`` says: what
    stable-audio-metrics would score of it, and what scoring the file after the run
    (``score.score_unscored``) gives.
    """
    scored = [(item, fields, data) for item, (fields, data) in zip(batch, written) if data is not None]
    if scored:
        clips = [decode_audio(data, item.request.seconds_total) for item, _, data in scored]
        scores = scorer.scores([item.request.prompt for item, _, _ in scored], clips)
        for (_, fields, _), score in zip(scored, scores):
            fields["clap_score"] = round(float(score), 6)


def run_rank(
    loaded: LoadedModel,
    items: Sequence[WorkItem],
    batch_size: int | Callable[[WorkItem], int],
    output_dir: Path,
    settings: OutputSettings,
    progress: RankProgress,
    manifest: ManifestWriter,
    stop: GracefulStop,
    rank: int,
    scorer: ClapScorer | None = None,
    shards: ShardWriter | None = None,
) -> None:
    """Generate this rank's items batch by batch while a background thread writes (and, with a
    ``scorer``, scores) the previous batch: one file per item, or into ``shards``.

    A stop request ends the loop between batches; every batch already generated is still written,
    and open shards are completed. What happened to each item (written, non-finite) is in its
    manifest record, which is where rank 0 reads the job's outcome from; an item in a shard is
    recorded once its shard is complete.
    """
    sink = shards if shards is not None else FileWriter(output_dir)

    def write_batch(job: tuple[list[WorkItem], torch.Tensor, float]) -> None:
        batch, audio, share = job
        written = [_encode_item(item, clip, settings, loaded) for item, clip in zip(batch, audio)]
        if scorer is not None:
            _add_scores(batch, written, scorer)
        finished: list[Record] = []
        for item, (fields, data) in zip(batch, written):
            record = _record(item, settings, loaded, wall_seconds=round(share, 3), rank=rank, **fields)
            if data is not None:
                finished += sink.add(item.relpath, item.leaf, data, record)
            else:  # nothing to write; in a sharded output the record says it is one (shard: null)
                finished.append(record if shards is None else {**record, "shard": None})
        manifest.append(finished)
        progress.advance(len(batch), sum(f["frames"] for f, _ in written) / loaded.spec.sample_rate)

    batches = make_batches(items, batch_size)
    with BackgroundWriter(write_batch) as writer:
        for batch in batches:
            if stop.requested:
                break
            started = time.perf_counter()
            audio = generate_audio_splitting(loaded, [item.request for item in batch]).cpu()
            writer.submit((batch, audio, (time.perf_counter() - started) / len(batch)))
    manifest.append(sink.close())
