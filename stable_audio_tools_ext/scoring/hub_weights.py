"""Weights files read through torch hub's cache: where a file lies, fetching it once, and what it is.

torchopenl3 and hear21passt fetch their weights from GitHub into ``$TORCH_HOME/hub/checkpoints``
(``torch.hub.get_dir()``) on first use and read them from there afterwards. ``weights_file`` does
the same for both scorers, so a file placed there by hand (a machine without network access, or the
tiny stand-ins of ``standins`` in the test and demo caches) is what the real loading code reads.
``file_digest`` names a file by its content, so statistics made with one weights file are refused
for another (``stats_file``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

DIGEST_CHARS = 16  # of the sha256: enough to tell weights files apart


def cached_path(name: str) -> Path:
    """Where torch hub's cache keeps the file ``name`` (``$TORCH_HOME/hub/checkpoints/name``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def weights_file(weights: Path | None, name: str, url: str) -> Path:
    """The file to read: ``weights`` when given, else the hub cache's ``name``, downloaded from ``url`` if missing.

    Raises ``OSError`` (no such file; offline, ``URLError`` is one) for the caller to name the file and the URL.
    """
    path = weights if weights is not None else cached_path(name)
    if not path.is_file():
        if weights is not None:
            raise FileNotFoundError(f"no such file: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)  # writes a temporary file, then renames
    return path


def file_digest(path: Path) -> str:
    """``sha256:<first 16 hex digits>`` of the file's bytes."""
    with open(path, "rb") as handle:
        return f"sha256:{hashlib.file_digest(handle, 'sha256').hexdigest()[:DIGEST_CHARS]}"
