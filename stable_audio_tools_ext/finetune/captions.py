"""Caption sources -> rows of (audio file, captions), each located by file and line for messages.

Three sources give, for every audio file, its path relative to an audio folder and its captions:

- a CSV file with a header row: Clotho's ``file_name,caption_1,...,caption_5`` or any other layout;
- a JSON Lines file (``.jsonl``/``.ndjson``): one object per line; a caption value may be a string
  or a list of strings;
- no captions file: every audio file ``a.wav`` has a sidecar ``a.txt`` beside it, each non-empty
  line of which is one caption.

Which columns hold what, unless ``--file-column``/``--caption-column`` say so: the file is the first
header name (any case) in ``FILE_COLUMNS``; the captions are every ``caption_<n>`` column in order
of ``n`` (Clotho's five), else the first name in ``CAPTION_COLUMNS``. A JSON Lines file's "header"
is the keys of its first object.

Nothing here opens audio: names are checked (inside the audio folder, a format stable-audio-tools
reads, not hidden); ``prepare`` checks the files themselves.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..datasets.audio_dir import AUDIO_EXTENSIONS, scan_audio

FILE_COLUMNS = ("file_name", "file", "filename", "path", "audio")
CAPTION_COLUMNS = ("caption", "captions", "text", "prompt")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SIDECAR_SUFFIX = ".txt"
NUMBERED_CAPTION = re.compile(r"caption_(\d+)", re.IGNORECASE)
FEW = 5  # names listed in a message about many files


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs, located by file (and line, when there is one)."""

    source: str
    message: str
    line: int | None = None

    def render(self) -> str:
        return f"{self.source}:{self.line}: {self.message}" if self.line is not None else f"{self.source}: {self.message}"


@dataclass(frozen=True)
class CaptionRow:
    """One audio file with its captions, and where they were read."""

    relpath: str  # POSIX path relative to the audio folder
    captions: tuple[str, ...]
    source: str  # the captions file (or sidecar .txt)
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source


def counted(count: int, noun: str) -> str:
    """``1 file``, ``3 files``."""
    return f"{count} {noun}{'s' * (count != 1)}"


def few(items: Sequence[str]) -> str:
    """``a, b, c and 7 more``: the first few of many items, for one message line."""
    return ", ".join(items[:FEW]) + (f" and {len(items) - FEW} more" if len(items) > FEW else "")


def audio_relpath(name: str, audio_dir: Path) -> tuple[str | None, str | None]:
    """``(relpath, None)`` for a usable audio file name in a captions file, else ``(None, why not)``.

    Names are relative to the audio folder; an absolute name is accepted when it lies inside it.
    """
    if not name.strip():
        return None, "the file name is empty"
    path = os.path.normpath(name)
    if os.path.isabs(path):
        folder = os.path.normpath(os.path.abspath(audio_dir))
        if os.path.commonpath([path, folder]) != folder:
            return None, f"{name!r} is not inside --audio-dir {audio_dir}"
        path = os.path.relpath(path, folder)
    if path == ".." or path.startswith(".." + os.sep):
        return None, f"{name!r} is not inside --audio-dir {audio_dir}"
    relpath = Path(path).as_posix()
    suffix = os.path.splitext(relpath)[1].lower()
    if suffix not in AUDIO_EXTENSIONS:
        return None, (f"{name!r}: unsupported format {suffix or '(no extension)'!r}: stable-audio-tools' "
                      f"audio_dir datasets read {', '.join(AUDIO_EXTENSIONS)}")  # fmt: skip
    if Path(relpath).name.startswith("."):
        return None, f"{name!r}: a hidden file (name starting with '.'), which stable-audio-tools' audio_dir scan skips"
    return relpath, None


def resolve_columns(
    header: Sequence[str], file_column: str | None, caption_columns: Sequence[str] | None
) -> tuple[str, list[str]] | str:
    """``(file column, caption columns)`` for a header, by the flags or the defaults; else why not."""
    by_folded = {name.casefold(): name for name in reversed(header)}  # first of names equal but for case
    listing = ", ".join(repr(name) for name in header)
    if file_column is None:
        file_column = next((by_folded[n] for n in FILE_COLUMNS if n in by_folded), None)
        if file_column is None:
            return f"no file column (looked for {', '.join(FILE_COLUMNS)}; the header has {listing}): pass --file-column"
    elif file_column not in header:
        return f"--file-column {file_column!r}: no such column (the header has {listing})"
    if caption_columns:
        missing = [name for name in caption_columns if name not in header]
        if missing:
            return f"--caption-column {missing[0]!r}: no such column (the header has {listing})"
        return file_column, list(caption_columns)
    numbered = sorted((int(m[1]), name) for name in header if (m := NUMBERED_CAPTION.fullmatch(name)))
    if numbered:
        return file_column, [name for _, name in numbered]
    caption = next((by_folded[n] for n in CAPTION_COLUMNS if n in by_folded), None)
    if caption is None:
        return (f"no caption column (looked for caption_1, caption_2, ... and {', '.join(CAPTION_COLUMNS)}; "
                f"the header has {listing}): pass --caption-column")  # fmt: skip
    return file_column, [caption]


def _csv_records(text: str, source: str) -> Iterator[tuple[int, list[str] | Problem]]:
    """``(line where the record starts, its fields)``; quoted fields may hold commas, quotes and newlines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, Problem(source, f"not readable as CSV: {exc}", start)
            return
        line, start = start, reader.line_num + 1
        if fields:
            yield line, fields


def _jsonl_records(text: str, source: str) -> Iterator[tuple[int, dict | Problem]]:
    """``(line, object)`` for every non-blank line."""
    for line, raw in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            yield line, Problem(source, f"not valid JSON ({exc})", line)
            continue
        if not isinstance(record, dict):
            yield line, Problem(source, f"expected a JSON object, got {type(record).__name__}", line)
            continue
        yield line, record


def _records(path: Path, source: str) -> tuple[list[str], list[tuple[int, dict]], list[Problem]]:
    """A captions file as ``(header, [(line, {column: value})], problems)``, CSV or JSON Lines by suffix."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return [], [], [Problem(source, "file not found")]
    except UnicodeDecodeError as exc:
        return [], [], [Problem(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except OSError as exc:
        return [], [], [Problem(source, f"cannot read it ({exc.strerror})")]
    problems: list[Problem] = []
    records: list[tuple[int, dict]] = []
    if path.suffix.lower() in JSONL_SUFFIXES:
        for line, record in _jsonl_records(text, source):
            problems.append(record) if isinstance(record, Problem) else records.append((line, record))
        return (list(records[0][1]) if records else []), records, problems
    header: list[str] = []
    for line, fields in _csv_records(text, source):
        if isinstance(fields, Problem):
            problems.append(fields)
        elif not header:
            header = [name.strip() for name in fields]
        elif len(fields) != len(header):
            problems.append(Problem(source, f"{len(fields)} fields; the header (line 1) has {len(header)}", line))
        else:
            records.append((line, dict(zip(header, fields))))
    return header, records, problems


def _captions_of(value: object) -> list[str] | None:
    """The captions in one cell: a string, or (JSON) a list of strings; ``None`` if it is neither."""
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value]
    return None


def read_captions_file(
    path: Path, audio_dir: Path, file_column: str | None, caption_columns: Sequence[str] | None
) -> tuple[list[CaptionRow], list[Problem]]:
    """Every row of a captions file naming an audio file under ``audio_dir``, and every problem found."""
    source = str(path)
    header, records, problems = _records(path, source)
    if not records:
        if not problems:
            problems.append(Problem(source, "no rows: expected a header line and one row per audio file"))
        return [], problems
    columns = resolve_columns(header, file_column, caption_columns)
    if isinstance(columns, str):
        return [], problems + [Problem(source, columns, 1)]
    file_key, caption_keys = columns
    rows = []
    for line, record in records:
        missing = [key for key in (file_key, *caption_keys) if key not in record]
        if missing:
            problems.append(Problem(source, f"no {missing[0]!r} field", line))
            continue
        name = record[file_key]
        relpath, why = audio_relpath(name, audio_dir) if isinstance(name, str) else (None, f"{file_key} must be a string")
        if why is not None:
            problems.append(Problem(source, why, line))
        captions = []
        for key in caption_keys:
            cell = _captions_of(record[key])
            if cell is None:
                problems.append(Problem(source, f"{key}: expected a string or a list of strings", line))
            elif not cell or not all(cell):
                problems.append(Problem(source, f"{key} is empty", line))
            else:
                captions.extend(cell)
        if relpath is not None:
            rows.append(CaptionRow(relpath, tuple(captions), source, line))
    return rows, problems


def read_sidecar_captions(audio_dir: Path) -> tuple[list[CaptionRow], list[Problem]]:
    """Every audio file under ``audio_dir`` with a ``.txt`` beside it, and every problem with the ``.txt`` files.

    An audio file without one is left to ``prepare``'s check for audio without a caption. A ``.txt``
    without an audio file beside it is a problem: listed as unsupported when a file of the same stem
    in another format is there, else counted among the captions without audio.
    """
    audio = scan_audio(audio_dir)
    stems = {os.path.splitext(relpath)[0] for relpath in audio}
    rows, problems, orphans = [], [], []
    for relpath in audio:
        sidecar = audio_dir / (os.path.splitext(relpath)[0] + SIDECAR_SUFFIX)
        if not sidecar.is_file():
            continue
        try:
            text = sidecar.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            text = ""
            problems.append(Problem(str(sidecar), f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        else:
            if not text.strip():
                problems.append(Problem(str(sidecar), "the caption is empty"))
        captions = tuple(line.strip() for line in text.split("\n") if line.strip())  # not splitlines: U+2028 is text
        rows.append(CaptionRow(relpath, captions, str(sidecar)))  # also when empty: the audio has its (bad) caption
    for directory, _, files in os.walk(audio_dir, followlinks=True):
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            relstem = Path(directory, stem).relative_to(audio_dir).as_posix()
            if suffix != SIDECAR_SUFFIX or name.startswith(".") or relstem in stems:
                continue
            others = sorted(other for other in files if os.path.splitext(other)[0] == stem and other != name)
            if others:
                _, why = audio_relpath(Path(directory, others[0]).relative_to(audio_dir).as_posix(), audio_dir)
                problems.append(Problem(str(Path(directory, name)), f"its audio file {why}"))
            else:
                orphans.append(relstem + SIDECAR_SUFFIX)
    if orphans:
        problems.append(Problem(str(audio_dir), f"no audio file beside {counted(len(orphans), 'caption file')} (same name, "
                                                f"{', '.join(AUDIO_EXTENSIONS)}): {few([repr(o) for o in sorted(orphans)])}"))  # fmt: skip
    return rows, problems
