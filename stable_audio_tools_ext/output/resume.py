"""Which work items still need generating: resume is the default, decided per item.

An item counts as done only when all of these hold: the manifest has a record for its path with a
valid status; the record was made with the same generation parameters (its fingerprint matches);
and the file on disk still has the size and frame count recorded for it. A file merely existing
proves nothing - it may be a copy from another sweep, or truncated by a full disk. An item in a
WebDataset shard (``shards``) is intact when its shard has the size recorded when it was renamed
complete: shards are written once under a temporary name and never changed, so one stat per shard
is as strong a check as the header read per file.

When an item's parameters changed since it was written (new prompt, seed, steps, model...), the old
file is regenerated rather than kept: keeping it would silently mix two sweeps in one dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..tree.plan import WorkItem
from .manifest import Record
from .normalize import Normalization
from .shards import is_sharded, shard_intact

VALID_STATUSES = ("ok", "silent")


@dataclass(frozen=True)
class OutputSettings:
    """Everything besides the request that decides an item's file."""

    model: str
    model_revision: str | None
    precision: str
    audio_format: str
    clip_length: bool
    normalization: Normalization = Normalization()  # --normalize: the gain changes the file


def fingerprint(item: WorkItem, settings: OutputSettings) -> str:
    """A short hash of every parameter that determines the item's file."""
    payload = {"request": item.request.identity(), "output": dataclasses.asdict(settings)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ResumeState:
    """The split of a plan into finished and pending items, with why items are pending."""

    pending: list[WorkItem]
    done: int
    changed: int  # written before with other parameters
    damaged: int  # recorded as written, but the file is missing, truncated or unreadable
    failed: int  # recorded with a non-finite result in an earlier run

    def summary(self) -> str:
        parts = [f"{self.done} of {self.done + len(self.pending)} items already complete"]
        for count, why in ((self.changed, "parameters changed"), (self.damaged, "missing or damaged files"),
                           (self.failed, "failed before")):  # fmt: skip
            if count:
                parts.append(f"{count} regenerated ({why})")
        return ", ".join(parts)


def _file_intact(path: Path, record: Record) -> bool:
    try:
        if path.stat().st_size != record.get("bytes"):
            return False
        info = sf.info(str(path))
    except (OSError, RuntimeError):  # missing, or not audio libsndfile can parse
        return False
    return info.frames == record.get("frames") and info.samplerate == record.get("sample_rate")


def item_intact(output_dir: Path, record: Record, shard_sizes: dict[str, int | None]) -> bool:
    """Whether a written item is still as recorded, in either layout (``shard_sizes`` caches one stat per shard)."""
    if is_sharded(record):
        return shard_intact(output_dir, record, shard_sizes)
    return _file_intact(output_dir / record["path"], record)


def resume_state(
    items: Sequence[WorkItem], records: Mapping[str, Record], output_dir: Path, settings: OutputSettings
) -> ResumeState:
    pending: list[WorkItem] = []
    done = changed = damaged = failed = 0
    shard_sizes: dict[str, int | None] = {}
    for item in items:
        record = records.get(item.relpath)
        if record is None:
            pending.append(item)
        elif record.get("fingerprint") != fingerprint(item, settings):
            changed += 1
            pending.append(item)
        elif record.get("status") not in VALID_STATUSES:
            failed += 1
            pending.append(item)
        elif not item_intact(output_dir, record, shard_sizes):
            damaged += 1
            pending.append(item)
        else:
            done += 1
    return ResumeState(pending=pending, done=done, changed=changed, damaged=damaged, failed=failed)
