"""A generated output dir as a stable-audio-tools training dataset: configs, metadata module, splits.

stable-audio-tools' ``train.py --dataset-config`` reads an ``audio_dir`` dataset config: directories
scanned recursively for audio, plus a ``custom_metadata_module`` whose ``get_custom_metadata(info,
audio)`` supplies each file's prompt. This module writes, next to the audio:

- ``dataset_metadata.py``: a standalone module (standard library only - training usually runs in
  another environment, without this package) that looks each file up in ``manifest.jsonl`` beside it;
- ``dataset_config.json``: every generated file exactly once;
- with ``--split``, ``dataset_config.<split>.json`` per split, each scanning ``splits/<split>/``;
  ``--min-clap-score X`` leaves items whose ``clap_score`` (``generate.py --score clap``) is below X
  out of the split folders.

Upstream's ``SampleDataset`` has no file filter, so each split is a folder of relative symlinks to
its files (valid after moving the output dir; why links: ``audio_dir``, which holds the config, link
and metadata-module pieces this module shares with ``finetune.py prepare``), and when splits exist
``dataset_config.json`` lists the split folders instead of the root, which would see every file
twice. Leaves, not items, are assigned to splits, so no prompt is in two splits.

Run as ``python -m stable_audio_tools_ext.datasets.training OUTPUT_DIR [--split SPEC] [--min-clap-score X]``
over an existing output dir, or pass ``--dataset-config``/``--split`` to ``generate.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ..output.atomic import atomic_write_text
from ..output.manifest import ManifestWriter, Record, fold_parts, load_records
from ..output.normalize import NORMALIZE_MODES, normalization_from_args
from ..output.resume import VALID_STATUSES
from ..output.shards import is_sharded
from ..tree.reserved import DATASET_CONFIG_NAME as CONFIG_NAME
from ..tree.reserved import DATASET_METADATA_NAME as METADATA_MODULE_NAME
from ..tree.reserved import HF_METADATA_NAME, MANIFEST_NAME, SHARDS_DIRNAME, SPLITS_DIRNAME, split_config_name
from . import wds
from .audio_dir import DatasetError, audio_dir_config, link_file, metadata_module_source, remove_link_tree

SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Statuses of files a model should train on; "silent" files are written but flagged as failures.
TRAINABLE_STATUSES = ("ok",)

# Written next to the audio (see audio_dir.metadata_module_source for the lookup it shares with
# finetune.py's module). info["path"] is the file as scanned: under a split folder it is the symlink,
# whose target (realpath) is the generated file the manifest names.
METADATA_MODULE_SOURCE = metadata_module_source(
    docstring="""Prompts for stable-audio-tools' audio_dir dataset, from the manifest.jsonl next to this file.

Written by stable-audio-tools-ext (generate.py --dataset-config). stable-audio-tools imports this
file by path (the dataset config's custom_metadata_module) and calls get_custom_metadata(info, audio)
for every audio file it loads. Standard library only.
""",
    records_name=MANIFEST_NAME,
    body='''def get_custom_metadata(info, audio):
    """The file's prompt and timing conditions, as it was generated.

    seconds_start is the item's seconds_start plus the offset of the crop stable-audio-tools took
    (0 unless the file is longer than the training sample size; also for pre-encoded latent crops);
    seconds_total is the item's seconds_total; padding_mask is wrapped as 0.0.19's training step
    needs it. Files flagged in the manifest (e.g. silent) are rejected; a file the manifest does not know raises, and stable-audio-tools reports and skips it.
    """
    record = _record_of(info["path"], os.path.realpath(info["path"]))
    if record.get("status") != "ok":
        return {"__reject__": True}
    return {
        "prompt": record["prompt"],
        "seconds_start": record["seconds_start"] + crop_seconds_start(info),
        "seconds_total": record["seconds_total"],
        "padding_mask": _wrapped_padding_mask(info),
    }
''',
)


def parse_split_spec(text: str) -> dict[str, float]:
    """``train=0.9,val=0.1`` -> ``{"train": 0.9, "val": 0.1}`` (order kept); argparse type for ``--split``."""
    splits: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not SPLIT_NAME.fullmatch(name):
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: expected NAME=FRACTION, e.g. train=0.9,val=0.1 (names: letters, digits, _ and -)"
            )
        if name in splits:
            raise argparse.ArgumentTypeError(f"split {name!r} is given twice")
        try:
            fraction = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={value.strip()}: the fraction must be a number") from None
        if not 0 < fraction <= 1:
            raise argparse.ArgumentTypeError(f"{name}={value.strip()}: the fraction must be in (0, 1]")
        splits[name] = fraction
    total = sum(splits.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise argparse.ArgumentTypeError(f"the fractions add up to {total:g}; they must add up to 1")
    return splits


def split_position(leaf: str) -> float:
    """Where ``leaf`` falls in [0, 1): a hash of its path alone (see ``plan.derive_seed`` for why sha256).

    Adding or removing leaves never moves another leaf, and moving a boundary (0.9/0.1 -> 0.8/0.2)
    only moves the leaves between the old and the new boundary.
    """
    digest = hashlib.sha256(json.dumps(["split", leaf]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(leaf: str, splits: dict[str, float]) -> str:
    """The split ``leaf`` belongs to: the first whose cumulative fraction exceeds its position."""
    position, cumulative = split_position(leaf), 0.0
    for name, fraction in splits.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return name  # position within float round-off of 1.0: the last split


def clap_score_threshold(text: str) -> float:
    """argparse type for ``--min-clap-score``: a cosine similarity, in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in [-1, 1]") from None
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: CLAP scores are cosine similarities, so it must be in [-1, 1]")
    return value


MIN_CLAP_SCORE_NEEDS_SPLIT = "--min-clap-score needs --split: without splits the dataset config scans the whole folder"
MIN_CLAP_SCORE_HELP = (
    "leave items whose clap_score (generate.py --score clap) is below this out of the split folders; "
    "needs --split (without splits the dataset config scans the whole folder)"
)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset flags of ``generate.py`` (documented in docs/datasets.md)."""
    group = parser.add_argument_group("datasets (docs/datasets.md)")
    group.add_argument(
        "--dataset-config",
        action="store_true",
        help=f"after the run, write {CONFIG_NAME} and {METADATA_MODULE_NAME} for stable-audio-tools' train.py",
    )
    group.add_argument(
        "--split",
        type=parse_split_spec,
        metavar="NAME=FRACTION,...",
        help="assign leaves (not items) to splits, e.g. train=0.9,val=0.1; writes one dataset config per split "
        "(implies --dataset-config)",
    )
    group.add_argument("--min-clap-score", type=clap_score_threshold, metavar="X", help=MIN_CLAP_SCORE_HELP)
    group.add_argument(
        "--normalize",
        choices=NORMALIZE_MODES,
        default="none",
        help="level each clip before writing: peak (dBFS) or lufs (integrated loudness) (default: %(default)s)",
    )
    group.add_argument(
        "--normalize-target",
        type=float,
        metavar="LEVEL",
        help="target of --normalize: dBFS for peak (default -1), LUFS for lufs (default -23)",
    )
    group.add_argument("--report", action="store_true", help="after the run, write report.html (see docs/datasets.md)")


def dataset_argument_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the dataset flags, checked with the other inputs before anything runs.

    A tree cannot put files under ``splits/``: the tree check refuses a top-level branch of that
    name (``tree.reserved``).
    """
    problems = []
    try:
        normalization_from_args(args)
    except ValueError as exc:
        problems.append(str(exc))
    if args.min_clap_score is not None and args.split is None:
        problems.append(MIN_CLAP_SCORE_NEEDS_SPLIT)
    if args.min_clap_score is not None and args.score != "clap":
        problems.append("--min-clap-score needs --score clap, which gives every item its clap_score")
    return problems


@dataclass
class DatasetFiles:
    """What ``write_dataset`` wrote: config paths, and per split its leaves and linked files."""

    configs: list[Path] = field(default_factory=list)
    leaves: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)
    untrainable: int = 0  # files left out of the splits because their status is not "ok"
    low_score: int = 0  # trainable files left out because their clap_score is below --min-clap-score


def _record_splits(output_dir: Path, records: dict[str, Record], splits: dict[str, float] | None) -> None:
    """Set (or, without splits, remove) each record's ``split`` through the manifest's own append + fold."""
    changed = []
    for record in records.values():
        wanted = split_of(record["leaf"], splits) if splits else None
        if record.get("split") != wanted:
            updated = {key: value for key, value in record.items() if key != "split"}
            if wanted is not None:
                updated["split"] = wanted
            changed.append(updated)
    if changed:
        writer = ManifestWriter(output_dir, rank=0)
        writer.append(changed)
        writer.close()
    fold_parts(output_dir)


def _unscored_problem(records: dict[str, Record]) -> str | None:
    """Why ``--min-clap-score`` cannot apply: trainable items without a ``clap_score``; ``None`` if all have one."""
    unscored = sorted(path for path, r in records.items() if r.get("status") in TRAINABLE_STATUSES and "clap_score" not in r)
    if not unscored:
        return None
    return (f"--min-clap-score: {len(unscored)} of the {len(records)} items have no clap_score (e.g. {unscored[0]}); "
            "score them with generate.py --score clap (same flags as the run: it scores the written files "
            "without regenerating them)")  # fmt: skip


def write_dataset(
    output_dir: Path, splits: dict[str, float] | None = None, min_clap_score: float | None = None
) -> DatasetFiles:
    """Write the metadata module and dataset config(s) for ``output_dir``; replaces earlier ones.

    ``min_clap_score`` (with ``splits`` only) leaves items scoring below it out of the split folders.
    Not while generate.py runs on the same dir (it folds the manifest, like a run's start and end).
    """
    output_dir = output_dir.resolve()
    records = load_records(output_dir)
    if not records:
        raise DatasetError(f"{output_dir}: no manifest records (is this a generate.py output dir?)")
    clash = next((path for path in records if path.startswith(f"{SPLITS_DIRNAME}/")), None)
    if splits and clash is not None:
        raise DatasetError(f"{output_dir / clash}: generated files under {SPLITS_DIRNAME}/ clash with the split folders")
    if min_clap_score is not None:
        if not splits:
            raise DatasetError(MIN_CLAP_SCORE_NEEDS_SPLIT)
        if (problem := _unscored_problem(records)) is not None:
            raise DatasetError(problem)
    sharded = any(is_sharded(record) for record in records.values())
    if splits and sharded:  # refused before anything changes
        shards_of_split = wds.shards_by_split(records, lambda leaf: split_of(leaf, splits))
    _record_splits(output_dir, records, splits)
    records = load_records(output_dir)
    metadata_module = output_dir / METADATA_MODULE_NAME
    atomic_write_text(metadata_module, wds.metadata_module(min_clap_score) if sharded else METADATA_MODULE_SOURCE)
    for stale in output_dir.glob(split_config_name("*")):
        stale.unlink()
    (output_dir / HF_METADATA_NAME).unlink(missing_ok=True)
    if clash is None:  # else splits/ is a branch of a tree from before the name was reserved, and no split was asked for
        remove_link_tree(output_dir / SPLITS_DIRNAME)
    config_of = wds.wds_config if sharded else audio_dir_config
    result = DatasetFiles()
    if not splits:
        if not sharded:
            written = [(path, r) for path, r in sorted(records.items()) if r.get("status") in VALID_STATUSES]
            _write_hf_metadata(output_dir, written)
        root = output_dir / SHARDS_DIRNAME if sharded else output_dir
        atomic_write_text(output_dir / CONFIG_NAME, config_of([(output_dir.name, root)], metadata_module))
        result.configs.append(output_dir / CONFIG_NAME)
        return result
    split_dirs = {name: output_dir / SPLITS_DIRNAME / name for name in splits}
    for split_dir in split_dirs.values():
        split_dir.mkdir(parents=True)
    linked: dict[str, list[tuple[str, Record]]] = {name: [] for name in splits}
    for relpath, record in sorted(records.items()):
        if record["k"] == 1:
            result.leaves[record["split"]] += 1
        stored = output_dir / (record["shard"] or "") if sharded else output_dir / relpath
        if record.get("status") not in TRAINABLE_STATUSES or not stored.is_file():
            result.untrainable += 1
        elif min_clap_score is not None and record["clap_score"] < min_clap_score:
            result.low_score += 1  # a shard keeps it: the metadata module rejects it
        else:
            if not sharded:
                link_file(output_dir / SPLITS_DIRNAME / record["split"] / relpath, output_dir / relpath)
            linked[record["split"]].append((relpath, record))
            result.files[record["split"]] += 1
    for name, split_dir in split_dirs.items():
        if sharded:
            wds.link_split_shards(output_dir, split_dir, shards_of_split.get(name, set()))
        else:
            _write_hf_metadata(split_dir, linked[name])
    datasets = {name: (f"{output_dir.name}-{name}", split_dir) for name, split_dir in split_dirs.items()}
    atomic_write_text(output_dir / CONFIG_NAME, config_of(list(datasets.values()), metadata_module))
    result.configs.append(output_dir / CONFIG_NAME)
    for name, dataset in datasets.items():
        path = output_dir / split_config_name(name)
        atomic_write_text(path, config_of([dataset], metadata_module))
        result.configs.append(path)
    return result


def _write_hf_metadata(folder: Path, written: list[tuple[str, Record]]) -> None:
    """``folder/metadata.jsonl`` for Hugging Face's ``audiofolder``: each file's ``file_name`` (relative to
    ``folder``, where the file or its split link lies) and its manifest record's fields."""
    lines = [json.dumps({"file_name": relpath, **record}, sort_keys=True) + "\n" for relpath, record in written]
    atomic_write_text(folder / HF_METADATA_NAME, "".join(lines))


def describe(result: DatasetFiles, splits: dict[str, float] | None, min_clap_score: float | None = None) -> list[str]:
    """Lines for the terminal: what was written, and the ``finetune.py train`` command that trains on it."""
    lines = [f"dataset config: {path}" for path in result.configs]
    for name, fraction in (splits or {}).items():
        lines.append(f"split {name} ({fraction:g}): {result.leaves[name]} leaves, {result.files[name]} files"
                     + ("  [empty: no trainable file fell in this split]" if not result.files[name] else ""))  # fmt: skip
    if result.untrainable:
        lines.append(f"{result.untrainable} items left out of the splits (status not ok, or file missing)")
    if min_clap_score is not None:
        lines.append(f"{result.low_score} items left out of the splits (clap_score below --min-clap-score {min_clap_score:g})")
    split_configs = {path.name.split(".")[1]: path for path in result.configs[1:]}
    train = split_configs.get("train", next(iter(split_configs.values()), result.configs[0]))
    val = split_configs.get("val")
    lines.append(f"fine-tune: python finetune.py train --dataset-config {train}"
                 + (f" --val-dataset-config {val}" if val else "")
                 + " --pretrained-name stabilityai/stable-audio-open-1.0 --save-dir runs --name NAME"
                 " (docs/finetuning.md)")  # fmt: skip
    return lines


def finish_dataset(args: argparse.Namespace, console: Console) -> None:
    """End of a complete ``generate.py`` run (rank 0): write what ``--dataset-config/--split/--report`` ask for."""
    if args.dataset_config or args.split is not None:
        result = write_dataset(args.output_dir, args.split, args.min_clap_score)
        for line in describe(result, args.split, args.min_clap_score):
            console.print(line, soft_wrap=True, markup=False)
    if args.report:
        from .report import write_report  # matplotlib is imported only when a report is wanted

        console.print(f"report: {write_report(args.output_dir)}", soft_wrap=True, markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stable_audio_tools_ext.datasets.training",
        description="Write stable-audio-tools dataset configs (and splits) for an existing generate.py output dir.",
    )
    parser.add_argument("output_dir", type=Path, help="a generate.py output dir (holding manifest.jsonl)")
    parser.add_argument("--split", type=parse_split_spec, metavar="NAME=FRACTION,...",
                        help="assign leaves to splits, e.g. train=0.9,val=0.1 (default: one dataset, no splits)")  # fmt: skip
    parser.add_argument("--min-clap-score", type=clap_score_threshold, metavar="X", help=MIN_CLAP_SCORE_HELP)
    args = parser.parse_args(argv)
    try:
        result = write_dataset(args.output_dir, args.split, args.min_clap_score)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    for line in describe(result, args.split, args.min_clap_score):
        console.print(line, soft_wrap=True, markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
