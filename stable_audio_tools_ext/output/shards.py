"""WebDataset tar shards: ``generate.py --output-format wds`` writes items into tars instead of one file each.

Clusters' shared filesystems (Lustre, GPFS) meet inode quotas and metadata-server limits long before a
dataset of millions of clips fills their disks, and training at that scale reads tar shards
(stable-audio-tools' ``dataset_type: "wds"``, Hugging Face's ``webdataset`` loader). Layout:

- ``shards/<run>-r<rank>-<seq>.tar`` (``<run>`` = start time and a random token of the rank's writer,
  ``<rank>`` 5 digits, ``<seq>`` 6 digits): names never collide between ranks, reruns or world sizes;
- each sample is ``<key>.<ext>`` (the ``--format`` bytes, exactly the file the file-per-item layout
  writes) and ``<key>.json`` (its manifest record, including ``shard``, without its null fields:
  ``_without_nulls``); the key is the item's path
  without its extension, with ``%`` and ``.`` percent-escaped, because WebDataset readers (upstream's
  and Hugging Face's ``base_plus_ext``) cut key from field at the first dot of the member's basename.

Atomicity: each rank appends to its open shard under a temporary ``.<name>.<random>.partial`` name
(``atomic.open_partial``: every run deletes such leftovers at its start, and upstream's scan skips
hidden files) and renames it when it holds ``--shard-size`` items, at the end of the rank's work, or
on a graceful stop. Its items' manifest records are written only after the rename, so the manifest
never names a torn shard, and a killed run loses exactly its open shards' items, which the rerun
regenerates (same seeds, same audio). With ``--split`` at generation time a rank keeps one open shard
per split, so every shard holds one split's leaves and a split is a set of whole shards.

A shard is never modified once renamed: an item in one is intact when its shard exists with the size
recorded at the rename (``shard_bytes``); ``shard_offset`` and ``bytes`` locate its audio member, so
reading one item is one seek. Records of nonfinite items (no audio) carry ``shard: null``: the
manifest of a sharded output says so in every record.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..tree.reserved import SHARDS_DIRNAME
from .atomic import atomic_open, commit_partial, open_partial
from .manifest import Record, iter_records

OUTPUT_FORMATS = ("files", "wds")
SHARD_FIELDS = ("shard", "shard_offset", "shard_bytes")  # what a sharded item's record has beyond a file's
DEFAULT_SHARD_SIZE = 100  # items per shard: about 180 MB of 10 s stereo 16-bit WAVs, 840 MB at 47.55 s
SHARD_EXTENSION = ".tar"


def sample_key(relpath: str) -> str:
    """The WebDataset key of the item at ``relpath``: its path without extension, ``%`` and ``.`` escaped."""
    stem = relpath.rsplit(".", 1)[0]
    return stem.replace("%", "%25").replace(".", "%2E")


def relpath_of_key(key: str, extension: str) -> str:
    """The inverse of ``sample_key``: the item's path for its key and its audio member's extension."""
    return f"{key.replace('%2E', '.').replace('%25', '%')}.{extension}"


def is_sharded(record: Mapping[str, object]) -> bool:
    """Whether ``record`` was written by ``--output-format wds`` (its audio, if any, is in a shard)."""
    return "shard" in record


def output_layout(output_dir: Path) -> str | None:
    """``"files"`` or ``"wds"``: the layout of an output folder's items, from its first manifest record.

    One record decides, because a folder never holds both (``layout_problem``); ``None`` when the
    folder has no record yet. Reads one line, so every rank can afford it before the job starts.
    """
    first = next(iter_records(output_dir), None)
    return None if first is None else "wds" if is_sharded(first) else "files"


def layout_problem(output_dir: Path, output_format: str) -> str | None:
    """Why ``--output-format output_format`` cannot write into ``output_dir``, or ``None``.

    Both layouts in one folder would make every consumer (resume, datasets, report) guess which copy
    of an item counts; a folder holds one, and the converter turns one into the other.
    """
    existing = output_layout(output_dir)
    if existing is None or existing == output_format:
        return None
    described = {"files": "one file per item", "wds": "WebDataset shards"}
    return (
        f"--output-dir {output_dir} holds {described[existing]} (--output-format {existing}); writing "
        f"--output-format {output_format} there would mix both layouts in one folder: use another --output-dir, or "
        f"convert it first (python -m stable_audio_tools_ext.datasets.shards {'to-wds' if existing == 'files' else 'to-files'})"
    )


def shard_intact(output_dir: Path, record: Record, sizes: dict[str, int | None]) -> bool:
    """Whether ``record``'s shard exists with the size recorded at its rename; ``sizes`` caches one stat per shard."""
    name = record.get("shard")
    if not isinstance(name, str):
        return False
    if name not in sizes:
        try:
            sizes[name] = (output_dir / name).stat().st_size
        except OSError:
            sizes[name] = None
    return sizes[name] is not None and sizes[name] == record.get("shard_bytes")


def read_member(output_dir: Path, record: Record) -> bytes:
    """The audio bytes of a sharded item: one seek into its shard."""
    with open(output_dir / record["shard"], "rb") as handle:
        handle.seek(record["shard_offset"])
        data = handle.read(record["bytes"])
    if len(data) != record["bytes"]:
        raise OSError(f"{output_dir / record['shard']}: shorter than the record of {record['path']} says")
    return data


def read_item(output_dir: Path, record: Record) -> bytes:
    """The audio bytes of a written item, from its file or its shard."""
    return read_member(output_dir, record) if is_sharded(record) else (output_dir / record["path"]).read_bytes()


def shard_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` for every sample of a shard, in order (members of a key are adjacent)."""
    key, fields = None, {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            slash = member.name.rfind("/")
            dot = member.name.find(".", slash + 1)
            name_key, extension = member.name[:dot], member.name[dot + 1:]
            if name_key != key and key is not None:
                yield key, fields
                fields = {}
            key = name_key
            fields[extension] = tar.extractfile(member).read()
    if key is not None:
        yield key, fields


def shard_paths(output_dir: Path) -> list[Path]:
    """The finished shards of an output folder (temporaries are hidden and do not count)."""
    return sorted(p for p in (output_dir / SHARDS_DIRNAME).glob(f"*{SHARD_EXTENSION}") if not p.name.startswith("."))


def unreferenced_shards(output_dir: Path, records: Mapping[str, Record]) -> list[Path]:
    """Finished shards no current record names: every item in them was regenerated into a newer shard."""
    named = {r["shard"] for r in records.values() if isinstance(r.get("shard"), str)}
    return [path for path in shard_paths(output_dir) if f"{SHARDS_DIRNAME}/{path.name}" not in named]


def _without_nulls(value: object) -> object:
    """``value`` with every ``None`` entry of its mappings left out, at any depth.

    The sample JSON goes through torch's default collate (upstream's ``WebLoader`` is a ``DataLoader``
    over whole batches), which cannot take ``None``; the manifest keeps the nulls.
    """
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


@dataclass
class _OpenShard:
    name: str  # relative to the output folder: what records store
    handle: BinaryIO
    tmp_path: Path
    tar: tarfile.TarFile
    records: list[Record] = field(default_factory=list)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> int:
    """Append one member; returns where its data starts in the tar (for ``read_member``)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))
    padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return tar.offset - padded


class ShardWriter:
    """One rank's open shards (one per group: the item's split with ``--split``, else one) for this run."""

    def __init__(self, output_dir: Path, rank: int, shard_size: int, group_of: Callable[[str], str] = lambda leaf: "") -> None:
        self.output_dir, self.rank, self.shard_size, self.group_of = output_dir, rank, shard_size, group_of
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self._open: dict[str, _OpenShard] = {}
        self._seq = 0

    def add(self, relpath: str, leaf: str, audio: bytes, record: Record) -> list[Record]:
        """Append an item's audio and JSON record to its group's shard; the records of a shard this completed."""
        group = self.group_of(leaf)
        shard = self._open.get(group) or self._start(group)
        record = {**record, "shard": shard.name, "bytes": len(audio)}
        key, extension = sample_key(relpath), relpath.rsplit(".", 1)[1]
        now = time.time()
        offset = _add_member(shard.tar, f"{key}.{extension}", audio, now)
        _add_member(shard.tar, f"{key}.json", json.dumps(_without_nulls(record), sort_keys=True).encode("utf-8"), now)
        shard.records.append({**record, "shard_offset": offset})
        return self._finish(group) if len(shard.records) >= self.shard_size else []

    def close(self) -> list[Record]:
        """Rename every open shard (end of the rank's work, or a graceful stop); their records."""
        return [record for group in list(self._open) for record in self._finish(group)]

    def _start(self, group: str) -> _OpenShard:
        self._seq += 1
        name = f"{SHARDS_DIRNAME}/{self.run}-r{self.rank:05d}-{self._seq:06d}{SHARD_EXTENSION}"
        handle, tmp_path = open_partial(self.output_dir / name)
        shard = _OpenShard(name, handle, tmp_path, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT))
        self._open[group] = shard
        return shard

    def _finish(self, group: str) -> list[Record]:
        shard = self._open.pop(group)
        shard.tar.close()  # the end-of-archive blocks; the file itself stays open for commit_partial
        final = self.output_dir / shard.name
        commit_partial(shard.handle, shard.tmp_path, final)
        size = final.stat().st_size
        return [{**record, "shard_bytes": size} for record in shard.records]


class FileWriter:
    """The default layout, with ``ShardWriter``'s interface: each item's audio in its own file at its path."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def add(self, relpath: str, leaf: str, audio: bytes, record: Record) -> list[Record]:
        """Write the file atomically; its record is final at once."""
        with atomic_open(self.output_dir / relpath) as handle:
            handle.write(audio)
        return [record]

    def close(self) -> list[Record]:
        return []
