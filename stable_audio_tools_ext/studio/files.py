"""The Gradio app's own temporary directory: the only place it writes to and serves files from.

Everything the app produces (auditioned clips, spectrograms, batch runs, exported trees, zips) and
everything Gradio itself caches (uploads, copies of outputs) lives below one directory, so that the
set of files a browser can download is exactly that directory, and cleaning it is one walk.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import stat
import time
import zipfile
from pathlib import Path

GRADIO_CACHE_DIRNAME = "gradio"  # GRADIO_TEMP_DIR: Gradio's uploads and copies of outputs
MARKER_NAME = ".stable-audio-studio"  # says a folder is a studio tmp dir, whose old files may be deleted


class OutsideTmpDirError(ValueError):
    """A path the app was asked to read or serve lies outside its tmp dir."""


def prepare_tmp_dir(tmp_dir: Path) -> Path:
    """Create ``tmp_dir`` private to this user, or check an earlier one; returns its real path.

    The default lies in a shared ``/tmp`` under a predictable name, so another user may have made it
    first (and would read every generated file) or left a link there: the folder must be a
    directory of ours with mode 0700, or the studio refuses to start. A folder of ours with a wider
    mode is refused with the ``chmod`` to run rather than changed behind the user's back. Symbolic
    links are resolved once, here: the app then works on the real path only. Cleaning deletes
    files, so only a folder that is new, empty, or marked as a studio tmp dir is accepted: a
    mistyped ``--tmp-dir $HOME`` is refused instead of losing a day's old files.
    """
    if tmp_dir.is_symlink():
        _check_owner(tmp_dir, os.lstat(tmp_dir), "is a symbolic link owned")
    real = tmp_dir.resolve()
    if not real.exists():
        real.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(real, 0o700)
        except FileExistsError:  # made by another process meanwhile: checked below like any existing folder
            pass
    status = os.lstat(real)
    if not stat.S_ISDIR(status.st_mode):
        raise ValueError(f"--tmp-dir {tmp_dir}: exists and is not a directory")
    _check_owner(tmp_dir, status, "is owned")
    mode = stat.S_IMODE(status.st_mode) & 0o777
    if mode != 0o700:
        raise ValueError(
            f"--tmp-dir {tmp_dir}: mode {mode:04o}, but the studio's files must be private to you (mode 0700): "
            f"run 'chmod 700 {shlex.quote(str(real))}' or choose another --tmp-dir"
        )
    marker = real / MARKER_NAME
    if any(real.iterdir()) and not marker.is_file():
        raise ValueError(
            f"--tmp-dir {tmp_dir}: not empty and not a studio tmp dir (no {MARKER_NAME} file); "
            "old files in it would be deleted, so give a new or empty directory"
        )
    marker.touch()
    return real


def _check_owner(tmp_dir: Path, status: os.stat_result, what: str) -> None:
    """Refuse ``tmp_dir`` unless this user owns it (``what``: the start of the message, e.g. "is owned")."""
    if status.st_uid != os.geteuid():
        raise ValueError(
            f"--tmp-dir {tmp_dir}: {what} by {_user_name(status.st_uid)}, not by you, {_user_name(os.geteuid())}: "
            "its owner could read or replace the studio's files; choose another --tmp-dir"
        )


def _user_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` for an id without a passwd entry."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


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
    """A fresh folder ``<tmp_dir>/<kind>/<time>-<random>`` for one request's files, made by this call.

    The random part keeps concurrent sessions apart and makes paths unguessable. Both folders are
    made with ``mkdir`` (mode 0700), which never follows a link: a link in place of ``<kind>`` is
    refused, and the run folder is new (creation fails if anything, a link included, has its name).
    """
    kind_dir = tmp_dir / kind
    try:
        os.mkdir(kind_dir, 0o700)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(kind_dir).st_mode):
            raise OutsideTmpDirError(f"{kind_dir} is not a directory of the app's tmp dir {tmp_dir}") from None
    path = kind_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
    os.mkdir(path, 0o700)
    return path


def confined(path: Path | str, tmp_dir: Path) -> Path:
    """``path`` resolved (symlinks followed), if it lies inside ``tmp_dir``; else ``OutsideTmpDirError``.

    ``tmp_dir`` is the real path ``prepare_tmp_dir`` returned and is not resolved again, so a
    folder swapped for a link later cannot move the boundary along with it.
    """
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(tmp_dir):
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
