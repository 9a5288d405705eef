"""The names the tool keeps for itself in an output folder, which no branch of a tree may take.

Items are written to ``<branches>/<leaf>_item-<k>.<ext>`` (``plan.output_relpath``), so a leaf's own
files never take one of these names; a *branch* becomes a folder, and a folder under one of these
names would be deleted (``.progress``, ``splits``), or would break the run or the dataset step (a
folder where ``manifest.jsonl`` or ``report.html`` must be written). The modules that write these
paths (``output.manifest``, ``output.atomic``, ``run.progress``, ``datasets``) import their names
from here - the import rule lets them import ``tree``, never the reverse - so this module is the one
place where a new name written into the output folder must be added, and the tree check follows.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_PARTS_DIRNAME = ".manifest-parts"
PROGRESS_DIRNAME = ".progress"
REPORT_NAME = "report.html"
DATASET_CONFIG_NAME = "dataset_config.json"
DATASET_METADATA_NAME = "dataset_metadata.py"
SPLITS_DIRNAME = "splits"
# --output-format wds: the tar shards. Not reserved for branches: a sharded output has no branch
# folders (its items are samples inside the tars), and a file-per-item output has no shards.
SHARDS_DIRNAME = "shards"
HF_METADATA_NAME = "metadata.jsonl"  # Hugging Face audiofolder's metadata, beside the audio it describes
PARTIAL_SUFFIX = ".partial"  # atomic writes go to ``.<name>.<random>.partial`` beside their target


def split_config_name(split: str) -> str:
    """The dataset config of one ``--split`` (``dataset_config.train.json``); ``"*"`` gives the glob."""
    return f"dataset_config.{split}.json"


# Name or glob at the top of the output folder -> what the tool keeps there (for the message).
TOP_LEVEL_NAMES: dict[str, str] = {
    MANIFEST_NAME: "the manifest",
    MANIFEST_PARTS_DIRNAME: "each rank's manifest records during a run",
    PROGRESS_DIRNAME: "each rank's progress counters during a run (deleted at its end)",
    REPORT_NAME: "the HTML report (--report)",
    SPLITS_DIRNAME: "the split folders of --split (replaced on every dataset step)",
    HF_METADATA_NAME: "Hugging Face audiofolder metadata (--dataset-config)",
    DATASET_CONFIG_NAME: "the training dataset config (--dataset-config)",
    split_config_name("*"): "the dataset config of each --split",
    DATASET_METADATA_NAME: "the training dataset's metadata module (--dataset-config)",
}
# Glob at any depth -> what it is: every run deletes these under the output folder before it starts.
ANY_LEVEL_NAMES: dict[str, str] = {
    f".*{PARTIAL_SUFFIX}": "the temporary files of unfinished writes, which every run deletes at its start",
}


def reserved_branch_problem(name: str, top_level: bool) -> str | None:
    """Why a branch (a folder of the output) cannot be called ``name``, or ``None`` if it can.

    Compared case-insensitively, like output collisions in ``plan``: on a case-insensitive
    filesystem ``Splits/`` is the same folder as ``splits/``.
    """
    reserved = {**TOP_LEVEL_NAMES, **ANY_LEVEL_NAMES} if top_level else ANY_LEVEL_NAMES
    for pattern, purpose in reserved.items():
        if fnmatchcase(name.casefold(), pattern.casefold()):
            where = "the top of the output folder" if top_level else "the output folder"
            return (
                f"{name!r} is reserved: generate.py keeps {purpose} under {pattern!r} in {where}, "
                "so a branch of that name would collide with it; rename the branch"
            )
    return None
