"""Limits, locations and server options of one running studio: the safety-relevant choices in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StudioSettings:
    """Limits and locations of one running studio."""

    tmp_dir: Path
    max_age_seconds: float = 24 * 3600  # Gradio's copies of outputs are deleted after this, while it runs
    max_variations: int = 8
    max_batch_items: int = 64
    batch_size: int = 4  # items per forward pass in the batch tab
    max_upload_bytes: int = 1_000_000


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    """``user:password`` lines (blank lines and ``#`` comments ignored) -> Gradio's ``auth`` list.

    A file keeps passwords out of the process list and shell history, unlike ``--password``.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{path}:{number}: expected 'username:password'")
        pairs.append((user.strip(), password))
    if not pairs:
        raise ValueError(f"{path}: no 'username:password' line")
    return pairs


def launch_options(
    settings: StudioSettings, host: str, port: int | None, share: bool, auth: list[tuple[str, str]] | None
) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``."""
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "auth": auth or None,
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": [str(settings.tmp_dir.resolve())],
        "enable_monitoring": False,
        "ssr_mode": False,  # client-side rendering: no Node.js server beside Python
        "show_error": True,
        "footer_links": ["api", "settings"],
    }
