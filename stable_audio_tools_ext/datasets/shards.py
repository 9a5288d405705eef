"""Convert a finished output folder between the layouts: one file per item <-> WebDataset shards.

``python -m stable_audio_tools_ext.datasets.shards SRC DST --to wds|files [--shard-size N] [--split SPEC]``

A folder generated one file per item becomes shards for a cluster's filesystem or for training (and
back, e.g. to listen to or edit single files). ``wds`` -> ``wds`` writes fresh shards: grouped by
``--split`` (so a split is whole shards, as ``--split`` over shards needs) and without the stale copies
that regenerated items leave in old shards. ``SRC`` is only read; ``DST`` must not exist. Items are
written through the same writers as ``generate.py`` (``output.shards``), their manifest records
carried over with the layout's fields changed, and before the command reports success every item's
audio in ``DST`` is read back and compared, byte for byte, with ``SRC``'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..output.manifest import ManifestWriter, Record, fold_parts, load_records
from ..output.resume import VALID_STATUSES, item_intact
from ..output.shards import (
    DEFAULT_SHARD_SIZE,
    OUTPUT_FORMATS,
    SHARD_FIELDS,
    FileWriter,
    ShardWriter,
    read_item,
)
from .audio_dir import DatasetError
from .training import parse_split_spec, split_of


def _source_problem(src: Path, records: dict[str, Record]) -> str | None:
    """Why ``src``'s written items cannot all be read as recorded, or ``None``."""
    sizes: dict[str, int | None] = {}
    for path, record in sorted(records.items()):
        if record.get("status") not in VALID_STATUSES:
            continue
        if not item_intact(src, record, sizes):
            return f"{src}: {path} is missing or not as recorded; finish or repair the folder with generate.py first"
    return None


def convert(src: Path, dst: Path, to: str, shard_size: int = DEFAULT_SHARD_SIZE,
            splits: dict[str, float] | None = None) -> int:  # fmt: skip
    """Write ``src``'s items into the new folder ``dst`` in layout ``to``; returns how many items were verified.

    Raises ``DatasetError`` (nothing written) for a missing or unfinished ``src`` or an existing ``dst``,
    and (``dst`` left for inspection) when an item read back differs.
    """
    records = load_records(src)
    if not records:
        raise DatasetError(f"{src}: no manifest records (is this a generate.py output dir?)")
    if dst.exists():
        raise DatasetError(f"{dst}: exists; the converter writes a new folder")
    if (problem := _source_problem(src, records)) is not None:
        raise DatasetError(problem)
    dst.mkdir(parents=True)
    group_of = (lambda leaf: split_of(leaf, splits)) if splits else (lambda leaf: "")
    writer = ShardWriter(dst, 0, shard_size, group_of) if to == "wds" else FileWriter(dst)
    manifest = ManifestWriter(dst, rank=0)
    try:
        for path, record in sorted(records.items()):
            plain = {key: value for key, value in record.items() if key not in SHARD_FIELDS}
            if record.get("status") in VALID_STATUSES:
                manifest.append(writer.add(path, record["leaf"], read_item(src, record), plain))
            else:  # no audio (NaN/Inf): the record alone, in the new layout's form
                manifest.append([{**plain, "shard": None} if to == "wds" else plain])
        manifest.append(writer.close())
    finally:
        manifest.close()
    converted = fold_parts(dst)
    verified = 0
    for path, record in sorted(records.items()):
        if record.get("status") in VALID_STATUSES:
            if read_item(dst, converted[path]) != read_item(src, record):
                raise DatasetError(f"{dst}: {path} differs from {src}'s after conversion; {dst} is left for inspection")
            verified += 1
    return verified


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stable_audio_tools_ext.datasets.shards",
        description="Copy a finished generate.py output folder into a new one in the other layout (one file per "
        "item, or WebDataset shards), verifying every item byte for byte.",
    )
    parser.add_argument("src", type=Path, help="a generate.py output dir (holding manifest.jsonl); only read")
    parser.add_argument("dst", type=Path, help="the new output dir (must not exist)")
    parser.add_argument("--to", choices=OUTPUT_FORMATS, required=True, help="the layout of DST")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N",
                        help="with --to wds: items per shard (default: %(default)s)")  # fmt: skip
    parser.add_argument("--split", type=parse_split_spec, metavar="NAME=FRACTION,...",
                        help="with --to wds: one shard group per split, so each split is whole shards "
                        "(then write its configs with python -m stable_audio_tools_ext.datasets.training DST --split ...)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.to != "wds" and args.split is not None:
        parser.error("--split only applies with --to wds")
    if args.shard_size < 1:
        parser.error(f"argument --shard-size: expected an integer >= 1, got {args.shard_size}")
    try:
        verified = convert(args.src, args.dst, args.to, args.shard_size, args.split)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"converted {args.src} -> {args.dst} ({args.to}): {verified} items, every one byte-identical to the source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
