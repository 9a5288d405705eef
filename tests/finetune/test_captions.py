"""Caption sources: which columns are read, which file names are usable, which files upstream's scan finds."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from stable_audio_tools_ext.datasets.audio_dir import AUDIO_EXTENSIONS, scan_audio
from stable_audio_tools_ext.finetune.captions import audio_relpath, resolve_columns

CLOTHO_HEADER = ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]


@pytest.mark.parametrize(
    ("header", "file_column", "caption_columns", "expected"),
    [
        (CLOTHO_HEADER, None, None, ("file_name", CLOTHO_HEADER[1:])),
        (["caption_10", "file_name", "caption_2", "caption_1"], None, None, ("file_name", ["caption_1", "caption_2", "caption_10"])),
        (["path", "text", "duration"], None, None, ("path", ["text"])),
        (["Audio", "Prompt"], None, None, ("Audio", ["Prompt"])),  # any case
        (["file", "caption", "text"], None, None, ("file", ["caption"])),  # the first of the caption names
        (["wav", "desc", "tags"], "wav", ["desc", "tags"], ("wav", ["desc", "tags"])),
        (CLOTHO_HEADER, None, ["caption_3"], ("file_name", ["caption_3"])),
    ],
)
def test_columns_by_default_and_by_flag(header, file_column, caption_columns, expected) -> None:
    assert resolve_columns(header, file_column, caption_columns) == expected


@pytest.mark.parametrize(
    ("header", "file_column", "caption_columns", "message"),
    [
        (["wav", "caption"], None, None, "no file column (looked for file_name, file, filename, path, audio; the header has 'wav', 'caption'): pass --file-column"),
        (["file", "desc"], None, None, "no caption column (looked for caption_1, caption_2, ... and caption, captions, text, prompt; the header has 'file', 'desc'): pass --caption-column"),
        (["file", "text"], "File", None, "--file-column 'File': no such column (the header has 'file', 'text')"),
        (["file", "text"], None, ["text", "tags"], "--caption-column 'tags': no such column (the header has 'file', 'text')"),
    ],
)
def test_column_errors_say_what_was_looked_for(header, file_column, caption_columns, message) -> None:
    assert resolve_columns(header, file_column, caption_columns) == message


def test_file_names_are_relative_to_the_audio_folder(tmp_path) -> None:
    audio = tmp_path / "audio"
    assert audio_relpath("sub/./a b.WAV", audio) == ("sub/a b.WAV", None)
    assert audio_relpath(str(audio / "x" / "y.flac"), audio) == ("x/y.flac", None)  # absolute, inside
    assert audio_relpath("../elsewhere.wav", audio) == (None, f"'../elsewhere.wav' is not inside --audio-dir {audio}")
    assert audio_relpath(str(tmp_path / "a.wav"), audio)[1] == f"{str(tmp_path / 'a.wav')!r} is not inside --audio-dir {audio}"
    assert audio_relpath(" ", audio) == (None, "the file name is empty")
    assert audio_relpath("a.m4a", audio)[1].startswith("'a.m4a': unsupported format '.m4a': stable-audio-tools' audio_dir")
    assert audio_relpath("noext", audio)[1].startswith("'noext': unsupported format '(no extension)'")
    assert "hidden file" in audio_relpath("sub/.a.wav", audio)[1]


def test_extensions_and_scan_match_stable_audio_tools(tmp_path) -> None:
    """Our scan finds exactly the files upstream's audio_dir scan finds: links, case, hidden files, formats."""
    from stable_audio_tools.data.dataset import get_audio_filenames

    assert tuple(inspect.signature(get_audio_filenames).parameters["exts"].default) == AUDIO_EXTENSIONS
    audio, elsewhere = tmp_path / "audio", tmp_path / "elsewhere"
    names = ["a.wav", "B.FLAC", ".hidden.wav", "c.m4a", "notes.txt", "sub/d.ogg", ".dot/e.mp3", "f.aif", "g.opus"]
    for name in names + ["linked.wav"]:
        (audio if name != "linked.wav" else elsewhere).joinpath(name).parent.mkdir(parents=True, exist_ok=True)
        (audio if name != "linked.wav" else elsewhere).joinpath(name).write_bytes(b"")
    os.symlink(elsewhere, audio / "link-dir")
    upstream = sorted(Path(p).relative_to(audio).as_posix() for p in get_audio_filenames(str(audio)))
    assert scan_audio(audio) == upstream == [".dot/e.mp3", "B.FLAC", "a.wav", "f.aif", "g.opus", "link-dir/linked.wav", "sub/d.ogg"]
