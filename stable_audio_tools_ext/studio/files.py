"""The Gradio app's own temporary directory: the only place it writes to and serves files from.

Everything the app produces (auditioned clips, spectrograms, batch runs, exported trees, zips) and
everything Gradio itself caches (uploads, copies of outputs) lives below one directory, so that the
set of files a browser can download is exactly that directory, and cleaning it is one walk.
"""

from __future__ import annotations

import os
import secrets
import time
import zipfile
from pathlib import Path

GRADIO_CACHE_DIRNAME = "gradio"  # GRADIO_TEMP_DIR: Gradio's uploads and copies of outputs
MARKER_NAME = ".stable-audio-studio"  # says a folder is a studio tmp dir, whose old files may be deleted


class OutsideTmpDirError(ValueError):
    """A path the app was asked to read or serve lies outside its tmp dir."""


def prepare_tmp_dir(tmp_dir: Path, max_age_seconds: float) -> int:
    """Create ``tmp_dir`` (private to this user) or clean an earlier studio's; returns files removed.

    Cleaning deletes files, so it only touches a folder that is new, empty, or marked as a studio
    tmp dir: a mistyped ``--tmp-dir $HOME`` is refused instead of losing a day's old files.
    """
    if tmp_dir.exists() and not tmp_dir.is_dir():
        raise ValueError(f"--tmp-dir {tmp_dir}: exists and is not a directory")
    marker = tmp_dir / MARKER_NAME
    if tmp_dir.is_dir() and any(tmp_dir.iterdir()) and not marker.is_file():
        raise ValueError(
            f"--tmp-dir {tmp_dir}: not empty and not a studio tmp dir (no {MARKER_NAME} file); "
            "old files in it would be deleted, so give a new or empty directory"
        )
    tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker.touch()
    return clean_tmp_dir(tmp_dir, max_age_seconds)


def clean_tmp_dir(tmp_dir: Path, max_age_seconds: float, now: float | None = None) -> int:
    """Delete files older than ``max_age_seconds`` below ``tmp_dir``, then empty folders; returns files removed.

    Run at start-up: results of earlier sessions stay downloadable for a while (a user may come
    back to them), but a long-lived workstation or cluster account does not fill up with clips.
    Symbolic links are removed as links, never followed.
    """
    now = time.time() if now is None else now
    removed = 0
    for root, dirs, files in os.walk(tmp_dir, topdown=False):
        for name in files:
            path = Path(root) / name
            if path == tmp_dir / MARKER_NAME:
                continue
            try:
                if now - path.lstat().st_mtime > max_age_seconds:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # removed by someone else meanwhile
                continue
        for name in dirs:
            folder = Path(root) / name
            if folder.is_symlink():
                continue
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                pass
    return removed


def new_run_dir(tmp_dir: Path, kind: str) -> Path:
    """A fresh folder ``<tmp_dir>/<kind>/<time>-<random>`` for one request's files.

    The random part keeps concurrent sessions apart and makes paths unguessable.
    """
    path = tmp_dir / kind / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    return path


def confined(path: Path | str, tmp_dir: Path) -> Path:
    """``path`` resolved (symlinks followed), if it lies inside ``tmp_dir``; else ``OutsideTmpDirError``."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(tmp_dir.resolve()):
        raise OutsideTmpDirError(f"{path} is outside the app's tmp dir {tmp_dir}")
    return resolved


def zip_folder(folder: Path, tmp_dir: Path, zip_path: Path) -> Path:
    """Zip the regular files below ``folder`` (paths relative to it) into ``zip_path``.

    Both must lie inside ``tmp_dir``; links and files that resolve outside ``folder`` are skipped,
    so a zip can never carry anything the app did not write itself.
    """
    root = confined(folder, tmp_dir)
    target = confined(zip_path, tmp_dir)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path == target or path.is_symlink() or not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                continue
            archive.write(path, path.relative_to(root).as_posix())
    return target
