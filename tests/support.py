"""Helpers shared by the end-to-end tests: running generate.py and reading what it wrote."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT

GENERATE = str(REPO_ROOT / "generate.py")


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def all_files(root: Path) -> dict[str, Path]:
    """Every file below ``root`` (hidden ones included), by POSIX path relative to it."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def audio_files(root: Path) -> dict[str, Path]:
    return {name: path for name, path in all_files(root).items() if name.endswith((".wav", ".flac"))}


def write(directory: Path, text: str, name: str = "tree.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
