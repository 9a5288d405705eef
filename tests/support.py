"""Helpers shared by the end-to-end tests: running generate.py and reading what it wrote."""

from __future__ import annotations

import socket
import subprocess
from html.parser import HTMLParser
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


class TablesPage(HTMLParser):
    """A page's tables by section id (comparison.html, report.html): rows of cells, each cell's text, audio sources
    and images; and the warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[dict]]] = {}
        self.warnings: list[str] = []
        self.section, self.cell, self.in_warning = "", None, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.section = attributes["id"]
            self.tables[self.section] = []
        elif tag == "tr":
            self.tables[self.section].append([])
        elif tag in ("td", "th"):
            self.cell = {"text": "", "audio": [], "img": []}
            self.tables[self.section][-1].append(self.cell)
        elif tag in ("audio", "img") and self.cell is not None:
            self.cell[tag].append(attributes["src"])
        elif tag == "p" and attributes.get("class") == "warning":
            self.in_warning = True
            self.warnings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.cell = None
        elif tag == "p":
            self.in_warning = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell["text"] += data
        if self.in_warning:
            self.warnings[-1] += data


def parse_tables(page: Path) -> TablesPage:
    parser = TablesPage()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser
