"""Atomic file replacement: a path is always absent, its previous content, or its complete new content.

A preempted or killed job must never leave a file that looks finished but is not. Writing goes to a
temporary name in the same directory (same filesystem, so the rename is atomic), is flushed to disk,
and only then is renamed over the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..tree.reserved import PARTIAL_SUFFIX


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished files get the usual umask-based mode so
# that collaborators on a shared cluster filesystem can read the results.
_FILE_MODE = 0o666 & ~_current_umask()


def open_partial(path: Path) -> tuple[BinaryIO, Path]:
    """A new temporary file beside ``path`` (``.<name>.<random>.partial``), open for binary writing.

    Its name is one ``remove_partial_files`` deletes, so a writer killed before ``commit_partial``
    leaves nothing a later run or reader mistakes for a finished file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        os.fchmod(fd, _FILE_MODE)
        return os.fdopen(fd, "wb"), Path(tmp_name)
    except BaseException:
        os.close(fd)
        Path(tmp_name).unlink(missing_ok=True)
        raise


def commit_partial(handle: BinaryIO, tmp_path: Path, path: Path) -> None:
    """Flush ``handle`` to disk, close it and rename its temporary file to ``path``."""
    with handle:
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp_path, path)


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file for binary writing that replaces ``path`` when the block succeeds."""
    handle, tmp_path = open_partial(path)
    try:
        with handle:
            yield handle
            commit_partial(handle, tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def remove_partial_files(root: Path) -> int:
    """Delete temporaries left under ``root`` by writers that were killed; returns how many.

    Only safe while nothing is writing below ``root`` - i.e. at the start of a run, before any rank
    generates (one job per output directory).
    """
    stale = list(root.rglob(f".*{PARTIAL_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
