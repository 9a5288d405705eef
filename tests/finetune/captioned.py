"""Captioned audio as fine-tuning tests need it: files of every rate, channel count and length, Clotho's CSV, ``prepare``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import REPO_ROOT

# relpath in the audio folder -> (sample rate, channels, seconds): short files of every kind SAT converts
AUDIO = {
    "dog bark.wav": (44100, 1, 0.7),
    "rain/roof.wav": (48000, 2, 1.3),
    "rain/street.flac": (16000, 1, 1.6),
    "café.wav": (44100, 2, 1.9),
    "door.wav": (48000, 1, 1.1),
    "wind.flac": (16000, 2, 0.9),
}


def captions_of(relpath: str) -> list[str]:
    """The five captions the Clotho CSV gives a file: commas, quotes and non-ASCII, distinct per file."""
    stem = Path(relpath).stem
    return [f"{stem}: rain, then wind", f'{stem} says "hello"', f"{stem} — café naïve", f"{stem} four", f"{stem} five"]


def clotho_row(relpath: str) -> str:
    """One line as Clotho writes it: fields with commas or quotes quoted, quotes doubled."""
    stem = Path(relpath).stem
    return f'{relpath},"{stem}: rain, then wind","{stem} says ""hello""",{stem} — café naïve,{stem} four,{stem} five'


def write_audio(folder: Path, files: dict[str, tuple[int, int, float]]) -> None:
    rng = np.random.default_rng(0)
    for relpath, (rate, channels, seconds) in files.items():
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / relpath, (0.1 * rng.standard_normal((round(rate * seconds), channels))).astype("float32"), rate)


def write_clotho(path: Path, relpaths: list[str], extra: str = "") -> Path:
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    path.write_text(header + "".join(clotho_row(r) + "\n" for r in relpaths) + extra, encoding="utf-8")
    return path


def prepare(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "finetune.py"), "prepare", *map(str, args)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)




def prepared(folder: Path, files: dict[str, tuple[int, int, float]], split: str) -> Path:
    """``files`` written under ``folder/audio`` with a Clotho CSV, prepared into ``folder/data``; returns ``folder``."""
    write_audio(folder / "audio", files)
    write_clotho(folder / "captions.csv", list(files))
    result = prepare("--audio-dir", folder / "audio", "--captions", folder / "captions.csv", "--output-dir", folder / "data",
                     "--split", split)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return folder
