"""``generate.py --score clap``: the rank's CLAP scorer, and scores for items an earlier run wrote without one.

Each rank loads the scorer once, onto its own device, before anything is generated; the job then
scores every written batch as it writes it (``job.run_rank``), from the files (after ``--normalize``),
each cut to its item's ``seconds_total`` whatever ``--clip-length`` says. Items a finished earlier
run wrote without a score are not regenerated: rank 0 reads their files (or shard members) back and
scores them the same way after the run.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..output.audio_io import decode_audio
from ..output.manifest import ManifestWriter, Record, fold_parts
from ..output.shards import is_sharded, read_member
from ..scoring.clap import Clip, ClapLoadError, ClapScorer, read_clip
from ..tree.plan import WorkItem

BACKFILL_CHUNK = 64  # files read into memory at a time when scoring an earlier run's items


def load_scorer(args: argparse.Namespace, device: torch.device) -> ClapScorer | None:
    """The CLAP scorer ``--score clap`` asks for on ``device``, or ``None``; raises ``ClapLoadError`` naming the flag."""
    if args.score != "clap":
        return None
    try:
        return ClapScorer.load(args.clap_model, device=device)
    except ClapLoadError as exc:
        raise ClapLoadError(f"--score clap: {exc} (--clap-model)") from exc


def _clip(output_dir: Path, record: Record, item: WorkItem) -> Clip:
    """An earlier item's audio as written, from its file or its shard, cut to its ``seconds_total``."""
    if is_sharded(record):
        return decode_audio(read_member(output_dir, record), item.request.seconds_total)
    return read_clip(output_dir / item.relpath, item.request.seconds_total)


def score_unscored(output_dir: Path, items: Sequence[WorkItem], records: Mapping[str, Record], scorer: ClapScorer) -> int:
    """Rank 0, after a complete run (every item written): score the items whose record has no ``clap_score``.

    Returns how many. The updated records go through the manifest's own append and fold, like the
    dataset writer's splits.
    """
    todo = [item for item in items if "clap_score" not in records[item.relpath]]
    for start in range(0, len(todo), BACKFILL_CHUNK):
        chunk = todo[start:start + BACKFILL_CHUNK]
        clips = [_clip(output_dir, records[item.relpath], item) for item in chunk]
        scores = scorer.scores([item.request.prompt for item in chunk], clips)
        writer = ManifestWriter(output_dir, rank=0)
        writer.append({**records[item.relpath], "clap_score": round(float(score), 6)} for item, score in zip(chunk, scores))
        writer.close()
    if todo:
        fold_parts(output_dir)
    return len(todo)
