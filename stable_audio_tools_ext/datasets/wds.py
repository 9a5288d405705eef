"""A sharded output (``generate.py --output-format wds``) as a stable-audio-tools ``wds`` dataset.

stable-audio-tools 0.0.19 reads local tar shards with ``dataset_type: "wds"`` (``LocalWebDatasetConfig``:
every ``.tar`` under a folder, hidden files skipped). Its loader decodes each sample's audio, crops it
and then *overwrites* the sample JSON's ``seconds_start``/``seconds_total`` with the crop's, so the
metadata module written here (standard library only, like the ``audio_dir`` one) looks the item's
own values up in ``manifest.jsonl`` by the JSON's ``path``, as the ``audio_dir`` module does by file.
It also rejects (``__reject__``, which upstream's ``wds.select`` drops without drawing a substitute)
items whose status is not ``ok``, items below ``--min-clap-score``, and stale samples: a sample whose
record now names another shard was regenerated there (its parameters changed), and the old copy is
still in its shard until every item of that shard is superseded and the run deletes it.

Splits are sets of whole shards: ``generate.py --split`` keeps one open shard per split, so each
shard holds one split's leaves, and ``splits/<split>/`` holds relative links to its shards (as the
``audio_dir`` splits link files). A shard holding leaves of several splits (written without that
``--split``) is refused with the command that regroups it (``datasets.shards``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from ..output.manifest import MANIFEST_NAME, Record
from .audio_dir import DatasetError, link_file, metadata_module_source


def metadata_module(min_clap_score: float | None) -> str:
    """The ``custom_metadata_module`` of a sharded output's configs."""
    return metadata_module_source(
        docstring="""Prompts and timing for stable-audio-tools' wds dataset, from the manifest.jsonl next to this file.

Written by stable-audio-tools-ext (generate.py --output-format wds --dataset-config). stable-audio-tools
imports this file by path (the dataset config's custom_metadata_module) and calls
get_custom_metadata(info, audio) for every sample it reads; info is the sample's JSON (its manifest
record as generated) with the crop's seconds_start/seconds_total written over the item's. Standard library only.
""",
        records_name=MANIFEST_NAME,
        body=f'''MIN_CLAP_SCORE = {min_clap_score!r}  # --min-clap-score, or None


def get_custom_metadata(info, audio):
    """The sample's prompt and timing conditions, as it was generated.

    seconds_start is the item's seconds_start plus the crop's offset; seconds_total is the item's;
    padding_mask is wrapped as 0.0.19's training step needs it. Rejected: items the manifest flags
    (status not ok), items scoring below MIN_CLAP_SCORE, and stale copies (the manifest's record
    names another shard: the item was regenerated there).
    """
    record = _record_of(info["path"], os.path.join(ROOT, info["path"]))
    if record.get("status") != "ok" or record.get("shard") != info.get("shard"):
        return {{"__reject__": True}}
    if MIN_CLAP_SCORE is not None and record.get("clap_score", -2.0) < MIN_CLAP_SCORE:
        return {{"__reject__": True}}
    return {{
        "prompt": record["prompt"],
        "seconds_start": record["seconds_start"] + crop_seconds_start(info),
        "seconds_total": record["seconds_total"],
        "padding_mask": _wrapped_padding_mask(info),
    }}
''',
    )


def wds_config(datasets: list[tuple[str, Path]], module: Path) -> str:
    """A ``wds`` dataset config reading every shard under each ``(id, folder)``, all with ``module``."""
    entries = [{"id": dataset_id, "path": f"{path}/", "custom_metadata_module": str(module)} for dataset_id, path in datasets]
    return json.dumps({"dataset_type": "wds", "datasets": entries, "random_crop": True}, indent=2) + "\n"


def shards_by_split(records: Mapping[str, Record], split_of_leaf: Callable[[str], str]) -> dict[str, set[str]]:
    """Each split's shards; raises ``DatasetError`` naming a shard that holds leaves of several splits."""
    splits_of_shard: dict[str, set[str]] = defaultdict(set)
    for record in records.values():
        if isinstance(record.get("shard"), str):
            splits_of_shard[record["shard"]].add(split_of_leaf(record["leaf"]))
    mixed = sorted(shard for shard, names in splits_of_shard.items() if len(names) > 1)
    if mixed:
        raise DatasetError(
            f"{len(mixed)} shards hold leaves of several splits (e.g. {mixed[0]}: {', '.join(sorted(splits_of_shard[mixed[0]]))}): "
            "they were written without this --split, and a split must be whole shards. Give generate.py the --split "
            "when it writes shards, or regroup these: python -m stable_audio_tools_ext.datasets.shards OUT NEW_OUT "
            "--to wds --split SPEC"
        )
    by_split: dict[str, set[str]] = defaultdict(set)
    for shard, names in splits_of_shard.items():
        by_split[next(iter(names))].add(shard)
    return by_split


def link_split_shards(output_dir: Path, split_dir: Path, shards: set[str]) -> None:
    """``split_dir`` holding a relative link to each of ``shards`` (names relative to ``output_dir``)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for shard in sorted(shards):
        link_file(split_dir / Path(shard).name, output_dir / shard)
