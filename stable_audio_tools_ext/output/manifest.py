"""The manifest: one JSON record per generated item, safe with many ranks and readable after a crash.

Each rank appends whole lines to its own part file under ``<output-dir>/.manifest-parts/`` (named by
run and rank, so reruns with another world size never share a file) and fsyncs after every batch.
Rank 0 folds the parts into ``<output-dir>/manifest.jsonl`` at the start and end of a run,
replacing it atomically. Appending to one shared file instead would rely on ``O_APPEND`` being
atomic, which network filesystems (NFS, Lustre) used on clusters do not guarantee across nodes.

Readers take the manifest, then every part, in order; the last record for a path wins. A line that
is not valid JSON - the torn last line of a killed process - is skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..tree.reserved import MANIFEST_NAME
from ..tree.reserved import MANIFEST_PARTS_DIRNAME as PARTS_DIRNAME
from .atomic import atomic_write_text

Record = dict[str, Any]


def manifest_path(output_dir: Path) -> Path:
    return output_dir / MANIFEST_NAME


def _parts(output_dir: Path) -> list[Path]:
    return sorted((output_dir / PARTS_DIRNAME).glob("*.jsonl"))


def _read_lines(path: Path) -> Iterator[Record]:
    """The records of one manifest file, read line by line (a reader may stop after the first)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn line from a process killed mid-write
                if isinstance(record, dict) and isinstance(record.get("path"), str):
                    yield record
    except FileNotFoundError:
        return


def iter_records(output_dir: Path) -> Iterator[Record]:
    """Every record in write order: the manifest's, then those of the parts not yet folded into it."""
    for source in [manifest_path(output_dir), *_parts(output_dir)]:
        yield from _read_lines(source)


def load_records(output_dir: Path) -> dict[str, Record]:
    """The latest record for every path, from the manifest and any parts not yet folded into it."""
    return {record["path"]: record for record in iter_records(output_dir)}


def fold_parts(output_dir: Path) -> dict[str, Record]:
    """Rewrite ``manifest.jsonl`` with the latest record per path and delete the folded parts.

    Only rank 0 calls this, while no other rank is writing (before generation starts, or after
    every rank has finished). Records are sorted by path so the file diffs cleanly between runs.
    """
    parts = _parts(output_dir)
    records = load_records(output_dir)
    if parts or manifest_path(output_dir).exists():
        lines = [json.dumps(records[path], sort_keys=True) + "\n" for path in sorted(records)]
        atomic_write_text(manifest_path(output_dir), "".join(lines))
    for part in parts:
        part.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # gone, or a rank started a new part meanwhile: keep it
        (output_dir / PARTS_DIRNAME).rmdir()
    return records


class ManifestWriter:
    """One rank's append-only part file for this run."""

    def __init__(self, output_dir: Path, rank: int) -> None:
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.path = output_dir / PARTS_DIRNAME / f"{run_id}-rank{rank:05d}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def append(self, records: Iterable[Record]) -> None:
        """Append whole lines and force them to disk, so a crash loses at most the batch in flight."""
        self._handle.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()
