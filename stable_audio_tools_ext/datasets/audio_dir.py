"""What every stable-audio-tools ``audio_dir`` dataset this tool writes has in common.

Two commands write such datasets: ``generate.py --split`` over a generated folder
(``datasets.training``) and ``finetune.py prepare`` over captioned audio (``finetune.prepare``).
Both write the same three kinds of thing, built here once (and the scan rule: which files an
``audio_dir`` dataset takes, ``scan_audio``, which every command reading a folder of audio uses):

- the dataset config JSON that ``create_dataloader_from_config`` (and so ``train.py``) reads;
- folders of symlinks that select a subset of files: upstream's ``SampleDataset`` takes every audio
  file under a path and has no filter (a metadata module can only ``__reject__`` a file after it was
  loaded, whereupon a random other index is drawn, and ``len()`` still counts it), so a split is a
  folder that holds links to exactly its files;
- the standalone metadata module: stable-audio-tools imports it by file path and calls
  ``get_custom_metadata(info, audio)`` for every file it loads. Training often runs in another
  environment, without this package, so the module needs only the standard library: it reads a
  JSON-lines file of records (one per audio file, by ``"path"`` relative to the module's folder)
  that the writer put beside it. ``metadata_module_source`` writes that lookup; each writer adds
  its own ``get_custom_metadata``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..output.audio_io import audio_header
from ..tree.reserved import HF_METADATA_NAME

# stable_audio_tools.data.dataset.get_audio_filenames' default extensions (0.0.19): the files an
# audio_dir dataset scans (case-insensitively). A test checks that they agree.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".aif", ".opus")


def is_audio_name(name: str) -> bool:
    """Whether stable-audio-tools' audio_dir scan takes a file of this name (format, not hidden)."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS and not name.startswith(".")


def scan_audio(audio_dir: Path) -> list[str]:
    """The audio files an ``audio_dir`` dataset over ``audio_dir`` would find, as sorted POSIX relpaths.

    Upstream's scan (``fast_scandir``) follows linked folders, skips hidden files (not hidden
    folders) and matches extensions in any case; so does this.
    """
    found = []
    for directory, _, files in os.walk(audio_dir, followlinks=True):
        for name in files:
            if is_audio_name(name):
                found.append(Path(directory, name).relative_to(audio_dir).as_posix())
    return sorted(found)


def audio_files(folder: Path, flag: str) -> tuple[list[str], list[str]]:
    """The audio files under ``folder`` (``scan_audio``) and every problem, named by ``flag``: not a folder, no audio
    file, a file whose header cannot be read. What ``finetune.py score``, ``evaluate`` and the report check a folder
    of audio they embed with."""
    if not folder.is_dir():
        return [], [f"{flag} {folder}: not a folder"]
    files = scan_audio(folder)
    if not files:
        return [], [f"{flag} {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)} at any depth)"]
    problems = []
    for relpath in files:
        header = audio_header(folder / relpath)
        if isinstance(header, str):
            problems.append(f"{flag} {folder}: {relpath!r}: {header}")
    return files, problems


class DatasetError(ValueError):
    """A folder that cannot be turned into a dataset (no manifest, a name clash, a foreign file)."""


def audio_dir_config(datasets: Sequence[tuple[str, Path]], metadata_module: Path) -> str:
    """An ``audio_dir`` dataset config scanning each ``(id, directory)``, all with the metadata module."""
    # Directory paths end with "/": upstream matches files to their dataset by substring, and
    # ".../splits/train" would otherwise also match ".../splits/train_extra/...".
    entries = [{"id": dataset_id, "path": f"{path}/", "custom_metadata_module": str(metadata_module)}
               for dataset_id, path in datasets]  # fmt: skip
    return json.dumps({"dataset_type": "audio_dir", "datasets": entries, "random_crop": True}, indent=2) + "\n"


def link_tree_problem(links_dir: Path) -> str | None:
    """Why ``links_dir`` is not a folder of links this tool made (and may delete), or ``None``.

    Besides links it may hold the Hugging Face ``metadata.jsonl`` files ``--split`` writes.

    Checked before anything is deleted, so a refused folder is left exactly as it was.
    """
    if not links_dir.exists() and not links_dir.is_symlink():
        return None
    if links_dir.is_symlink() or not links_dir.is_dir():
        return f"{links_dir} is not a folder of split links made by this tool; move it away"
    for directory, subdirs, files in os.walk(links_dir):
        for name in files + subdirs:
            path = Path(directory, name)
            if not path.is_symlink() and not path.is_dir() and name != HF_METADATA_NAME:
                return f"{path} is not a split link made by this tool; move it away from {links_dir}"
    return None


def remove_link_tree(links_dir: Path) -> None:
    """Delete an earlier folder of split links; raises ``DatasetError`` (deleting nothing) if it holds anything else."""
    problem = link_tree_problem(links_dir)
    if problem is not None:
        raise DatasetError(problem)
    if not links_dir.exists() and not links_dir.is_symlink():
        return
    for directory, subdirs, files in os.walk(links_dir, topdown=False):
        for name in files + subdirs:
            path = Path(directory, name)
            if path.is_symlink() or path.is_file():  # a link, or the split's Hugging Face metadata
                path.unlink()
            else:
                path.rmdir()
    links_dir.rmdir()


def link_file(link: Path, target: Path) -> None:
    """Create ``link`` (and its folders) pointing at ``target`` by a relative path.

    Relative, so the links stay valid when the folders holding link and target move together.
    """
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def metadata_module_source(docstring: str, records_name: str, body: str, imports: Sequence[str] = ()) -> str:
    """The text of a standalone metadata module: ``docstring``, the record lookup, then ``body``.

    The lookup: ``RECORDS`` is ``records_name`` beside the module; ``_record_of(scanned, path)``
    returns the record of ``path`` (the file stable-audio-tools read, or where its link points),
    loading the records once per process, and raises ``KeyError`` naming ``scanned`` when there is
    none (stable-audio-tools then reports the file and draws another); ``_wrapped_padding_mask(info)``
    is the padding mask as 0.0.19's training step needs it; ``crop_seconds_start(info)`` is where
    the read starts in the file, for audio and for pre-encoded reads alike. ``body`` defines
    ``get_custom_metadata(info, audio)``; ``imports`` are further standard-library modules it uses.
    """
    import_lines = "".join(f"import {name}\n" for name in sorted({"json", "os", *imports}))
    lookup = _RECORD_LOOKUP.replace("RECORDS_NAME", repr(records_name))
    return f'"""{docstring}"""\n\n{import_lines}{lookup}{inspect.getsource(crop_seconds_start)}\n\n' + body


# Copied into every standalone module as it is (inspect.getsource); finetune.py train's loaders call it too.
def crop_seconds_start(info: dict) -> int:
    """Where the read starts in the file, in whole seconds (rounded down, as upstream's crop rounds).

    An audio read: upstream's own seconds_start. A pre-encoded read (finetune.py encode): the
    latent crop's start (latent_crop_start frames of seconds_per_latent each, both in info).
    """
    latent_start = info.get("latent_crop_start", 0) * info.get("seconds_per_latent", 0)
    return int(info.get("seconds_start", 0) + latent_start)


# The part of every metadata module that finds a file's record; a torn last line (a killed writer)
# is skipped, as generate.py skips it in its manifest.
_RECORD_LOOKUP = '''
ROOT = os.path.dirname(os.path.realpath(__file__))
RECORDS = os.path.join(ROOT, RECORDS_NAME)
_records = None


def _load_records():
    """The last record per path; a torn line (killed writer) is skipped."""
    records = {}
    with open(RECORDS, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                records[record["path"]] = record
    return records



def _wrapped_padding_mask(info):
    """info["padding_mask"] in a list. stable-audio-tools 0.0.19's diffusion training step stacks
    md["padding_mask"][0] per item; SampleDataset gives a flat mask, whose [0] is a scalar, and
    training fails in F.interpolate. Pre-encoded datasets already give a list, kept as it is."""
    mask = info["padding_mask"]
    return mask if isinstance(mask, list) else [mask]


def _record_of(scanned, path):
    """The record of ``path`` (relative to this folder: its key); KeyError naming ``scanned`` if none."""
    global _records
    if _records is None:
        _records = _load_records()
    relpath = os.path.relpath(path, ROOT).replace(os.sep, "/")
    record = _records.get(relpath)
    if record is None:
        raise KeyError(f"{scanned}: no record for {relpath!r} in {RECORDS}")
    return record


'''
