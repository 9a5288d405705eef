"""Captioned audio -> a checked stable-audio-tools dataset: check everything, then write it.

``check`` reads every caption source and every audio file's header (soundfile reads headers only,
so thousands of files take seconds) and returns every problem at once; ``write_prepared`` runs
only after a clean check, so bad input leaves nothing written. What is written (``--output-dir``):

- ``splits/<split>/<relpath>``: a relative symlink per audio file, to the file in its audio folder
  (audio is referenced, not copied). stable-audio-tools' ``audio_dir`` dataset takes every audio
  file under a folder and cannot filter, so a split is a folder of links to exactly its files
  (``datasets.audio_dir``);
- ``dataset_config.<split>.json``: an ``audio_dir`` dataset over that split's folder, for
  ``create_dataloader_from_config`` (``train.py --dataset-config``/``--val-dataset-config``);
- ``dataset_metadata.py`` and ``dataset_captions.jsonl``: the metadata module and its records
  (``finetune.metadata``: prompts, timing, the padding-mask workaround).

Splits: ``--val-captions``/``--val-audio-dir`` name the validation set; otherwise each file goes to
the split that a hash of its path in the audio folder picks (``datasets.training.split_of``, which
also splits generated leaves): a file's split never depends on the other files, and widening a
split (0.9/0.1 -> 0.8/0.2) only moves files into it.

The model matters only for the summary: an ``audio_dir`` config holds no rate or length, since
``train.py`` passes the model's ``sample_rate`` and ``sample_size`` to the dataloader, which
resamples every file to that rate, converts it to the model's channel count and crops or pads it
to that window on every read.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets.audio_dir import AUDIO_EXTENSIONS, audio_dir_config, link_file, link_tree_problem, remove_link_tree, scan_audio
from ..datasets.training import split_of
from ..output.atomic import atomic_write_text
from ..output.audio_io import audio_header
from ..tree.reserved import DATASET_METADATA_NAME, MANIFEST_NAME, SPLITS_DIRNAME, split_config_name
from .captions import CaptionRow, Problem, counted, few, read_captions_file, read_sidecar_captions
from .metadata import CAPTIONS_NAME, metadata_module_text


@dataclass(frozen=True)
class CaptionSet:
    """Captioned audio: a folder with a captions file, or with sidecar ``.txt`` captions."""

    audio_dir: Path
    captions: Path | None  # None: sidecar .txt captions
    split: str | None  # every file's split; None: each file's by the hash of its path
    flag: str = "--audio-dir"  # the flag that named the folder, for messages


@dataclass(frozen=True)
class PrepareRequest:
    """What ``finetune.py prepare`` was asked to do."""

    sets: tuple[CaptionSet, ...]
    splits: dict[str, float]  # for the sets without a split of their own
    output_dir: Path
    caption_policy: str = "random"
    file_column: str | None = None
    caption_columns: tuple[str, ...] | None = None

    def split_names(self) -> list[str]:
        """Every split a config is written for, in order."""
        names = [s.split for s in self.sets if s.split is not None]
        if any(s.split is None for s in self.sets):
            names += [name for name in self.splits if name not in names]
        return names


@dataclass(frozen=True)
class AudioFile:
    """A checked audio file with its captions, its split and what its header says."""

    row: CaptionRow
    path: Path  # in its (resolved) audio folder: what the split link points to
    split: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class ModelWindow:
    """What the summary needs of the model: the rate and channels files are converted to, and its window."""

    name: str
    sample_rate: int
    channels: int
    sample_size: int

    @property
    def seconds(self) -> float:
        return self.sample_size / self.sample_rate


# Stable Audio Open 1.0's model_config.json values: what the summary assumes without a model flag,
# so that prepare needs neither network nor a token for the model it is almost always used for.
SAO_1_0 = ModelWindow("Stable Audio Open 1.0 (default)", sample_rate=44100, channels=2, sample_size=2097152)


def window_from_config(config: dict[str, Any], name: str) -> ModelWindow:
    """The window of a stable-audio-tools model config (already checked by ``model.spec``)."""
    return ModelWindow(name, int(config["sample_rate"]), int(config.get("audio_channels", 2)), int(config["sample_size"]))


def _key(path: Path) -> str:
    """One spelling per file (absolute, normalised, links not followed): what duplicates are found by."""
    return os.path.normpath(os.path.abspath(path))


def output_problems(output_dir: Path, sets: Sequence[CaptionSet]) -> list[Problem]:
    """Why ``--output-dir`` cannot take the dataset: checked before anything is written."""
    flag = f"--output-dir {output_dir}"
    if output_dir.exists() and not output_dir.is_dir():
        return [Problem(flag, "exists and is not a folder")]
    problems = []
    for caption_set in sets:
        audio_dir = caption_set.audio_dir.resolve()
        if output_dir.resolve().is_relative_to(audio_dir):
            problems.append(Problem(flag, f"is inside {caption_set.flag} {caption_set.audio_dir}, whose audio scan "
                                          "would then find the split links; choose a folder outside it"))  # fmt: skip
    if (output_dir / MANIFEST_NAME).exists():
        problems.append(Problem(flag, f"holds a generate.py output ({MANIFEST_NAME}), whose dataset files prepare "
                                      "would replace; choose another folder"))  # fmt: skip
    why = link_tree_problem(output_dir / SPLITS_DIRNAME)
    if why is not None:
        problems.append(Problem(flag, why))
    return problems


def _read_rows(caption_set: CaptionSet, request: PrepareRequest) -> tuple[list[CaptionRow], list[Problem]]:
    if not caption_set.audio_dir.is_dir():
        return [], [Problem(f"{caption_set.flag} {caption_set.audio_dir}", "not a folder")]
    if caption_set.captions is None:
        return read_sidecar_captions(caption_set.audio_dir)
    return read_captions_file(caption_set.captions, caption_set.audio_dir, request.file_column, request.caption_columns)


def _uncaptioned(sets: Sequence[CaptionSet], captioned: set[str]) -> list[Problem]:
    """Per audio folder: the audio files it holds that no caption source names (a count, the first few)."""
    problems = []
    for audio_dir in dict.fromkeys(s.audio_dir for s in sets if s.audio_dir.is_dir()):
        sources = [str(s.captions) if s.captions else "no .txt beside them" for s in sets if s.audio_dir == audio_dir]
        missing = [rel for rel in scan_audio(audio_dir) if _key(audio_dir / rel) not in captioned]
        if missing:
            problems.append(Problem(str(audio_dir), f"no caption for {counted(len(missing), 'audio file')} "
                                                    f"({'; '.join(sources)}): {few([repr(rel) for rel in missing])}"))  # fmt: skip
    return problems


def _check_rows(
    caption_set: CaptionSet, rows: Sequence[CaptionRow], request: PrepareRequest, first_seen: dict[str, CaptionRow]
) -> tuple[list[AudioFile], list[Problem]]:
    """The rows' audio files, checked: not listed before (``first_seen``, updated), present, readable."""
    files, problems = [], []
    missing: dict[str, list[CaptionRow]] = defaultdict(list)  # by captions file: one message each
    for row in rows:
        key = _key(caption_set.audio_dir / row.relpath)
        if key in first_seen:
            problems.append(Problem(row.source, f"{row.relpath!r} is already listed at {first_seen[key].where}", row.line))
            continue
        first_seen[key] = row
        if not os.path.isfile(key):
            missing[row.source].append(row)
            continue
        path = caption_set.audio_dir.resolve() / row.relpath
        header = audio_header(path)
        if isinstance(header, str):
            problems.append(Problem(row.source, f"{row.relpath!r}: {header}", row.line))
            continue
        files.append(AudioFile(row, path, caption_set.split or split_of(row.relpath, request.splits), *header))
    for source, without_audio in missing.items():
        problems.append(Problem(source, f"no audio in {caption_set.flag} {caption_set.audio_dir} for "
                                        f"{counted(len(without_audio), 'row')}: "
                                        f"{few([f'line {r.line} {r.relpath!r}' for r in without_audio])}"))  # fmt: skip
    return files, problems


def _split_problems(files: Sequence[AudioFile], request: PrepareRequest) -> list[Problem]:
    """No audio at all, or a split that gets none (checked once everything else is right)."""
    if not files:
        return [Problem(str(request.sets[0].audio_dir), f"no captioned audio ({', '.join(AUDIO_EXTENSIONS)}) found")]
    counts = Counter(f.split for f in files)
    return [Problem("--split", f"split {name!r} gets no file of the {len(files)} found: use more files, a larger "
                               "fraction for it, or --val-captions")
            for name in request.split_names() if not counts[name]]  # fmt: skip


def check(request: PrepareRequest) -> tuple[list[AudioFile], list[Problem]]:
    """Every captioned audio file with its split and header, and every problem with the inputs, in file order."""
    problems = output_problems(request.output_dir, request.sets)
    files: list[AudioFile] = []
    first_seen: dict[str, CaptionRow] = {}
    for caption_set in request.sets:
        rows, found = _read_rows(caption_set, request)
        checked, found_in_audio = _check_rows(caption_set, rows, request, first_seen)
        files += checked
        problems += found + found_in_audio
    problems += _uncaptioned(request.sets, set(first_seen))
    if not problems:
        problems = _split_problems(files, request)
    return files, sorted(problems, key=lambda p: (p.source, p.line is None, p.line or 0))


def write_prepared(files: Sequence[AudioFile], request: PrepareRequest) -> dict[str, Path]:
    """Write the dataset for checked ``files``, replacing an earlier one; returns each split's config.

    Every file is written atomically; the split links are rebuilt from scratch, so a rerun with
    other inputs leaves no link, split or config of the earlier run behind.
    """
    request.output_dir.mkdir(parents=True, exist_ok=True)
    output_dir = request.output_dir.resolve()
    links = {f: f"{SPLITS_DIRNAME}/{f.split}/{f.row.relpath}" for f in files}
    records = [{"path": links[f], "captions": list(f.row.captions), "audio": str(f.path), "source": f.row.where}
               for f in sorted(files, key=links.get)]  # fmt: skip
    atomic_write_text(output_dir / CAPTIONS_NAME, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    module = output_dir / DATASET_METADATA_NAME
    atomic_write_text(module, metadata_module_text(request.caption_policy))
    for stale in output_dir.glob(split_config_name("*")):
        stale.unlink()
    remove_link_tree(output_dir / SPLITS_DIRNAME)
    for audio_file, link in links.items():
        link_file(output_dir / link, audio_file.path)
    configs = {name: output_dir / split_config_name(name) for name in request.split_names()}
    for name, path in configs.items():
        atomic_write_text(path, audio_dir_config([(f"{output_dir.name}-{name}", output_dir / SPLITS_DIRNAME / name)], module))
    return configs


def _counted(counter: Counter, label: Callable[[int], str]) -> str:
    """``44100 Hz (3 files), 48000 Hz (1 file)``."""
    return ", ".join(f"{label(value)} ({counted(count, 'file')})" for value, count in sorted(counter.items()))


def _channels(count: int) -> str:
    return {1: "mono", 2: "stereo"}.get(count, f"{count} channels")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds:.1f} s)"


def _on_load(window: ModelWindow) -> str:
    """What stable-audio-tools does to every file it reads for this model (its SampleDataset)."""
    conversion = ("mixes it down to mono" if window.channels == 1
                  else "makes it stereo (a mono file is copied to both channels, channels past two are dropped)")  # fmt: skip
    return f"stable-audio-tools resamples every file to {window.sample_rate} Hz and {conversion} as it reads it"


def summary_rows(files: Sequence[AudioFile], request: PrepareRequest, window: ModelWindow) -> list[tuple[str, str]]:
    """The summary of a prepared dataset, as (name, value) rows for the terminal."""
    seconds = [f.seconds for f in files]
    rows = [("files", f"{len(files)}, {_duration(sum(seconds))}")]
    for name in request.split_names():
        split = [f.seconds for f in files if f.split == name]
        rows.append((f"  {name}", f"{counted(len(split), 'file')}, {_duration(sum(split))}"))
    rows.append(("durations", f"{min(seconds):.2f} s to {max(seconds):.2f} s (mean {sum(seconds) / len(seconds):.2f} s)"))
    rates, channels = Counter(f.sample_rate for f in files), Counter(f.channels for f in files)
    rows.append(("sample rates", _counted(rates, lambda rate: f"{rate} Hz")))
    rows.append(("channels", _counted(channels, _channels)))
    rows.append(("captions per file", _counted(Counter(len(f.row.captions) for f in files), str)
                 + f"; prompt: {request.caption_policy}"))  # fmt: skip
    rows.append(("model", f"{window.name}: {window.sample_rate} Hz, {_channels(window.channels)}, "
                          f"window {window.seconds:.2f} s"))  # fmt: skip
    if set(rates) != {window.sample_rate} or set(channels) != {window.channels}:
        rows.append(("on load", _on_load(window)))
    longer = sum(s > window.seconds for s in seconds)
    if longer:
        rows.append(("crops", f"{counted(longer, 'file')} longer than the window: each read trains on a random "
                              f"{window.seconds:.2f} s crop"))  # fmt: skip
    return rows
