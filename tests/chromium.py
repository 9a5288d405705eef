"""Where the tests' browser comes from: a Chromium already on the machine, or Debian's, installed on first use.

Every test that needs a browser (the report's screenshot, the studio in Playwright) takes the
session fixture ``chromium`` from ``tests/conftest.py``, which calls ``ensure_chromium`` once: so on
a fresh machine the first of them installs it and none is skipped. Playwright's own browser
download needs a host this project does not reach, hence the distribution's package.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.apt import install

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")  # what `apt-get install chromium` provides
# Headless, and quiet: no sync, updates, first-run pages or QUIC - nothing that reaches off the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def find_chromium() -> Path | None:
    """Debian's Chromium, else the first of ``CHROMIUM_NAMES`` on PATH."""
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    found = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    return Path(found) if found else None


def ensure_chromium() -> Path:
    """A Chromium to run, installed with apt-get when missing (as root); otherwise skip, saying why.

    A failed installation fails the test instead: the machine could have had the browser.
    """
    found = find_chromium()
    if found:
        return found
    missing = f"no Chromium on this machine (looked for {DEBIAN_CHROMIUM} and {', '.join(CHROMIUM_NAMES)} on PATH)"
    if os.geteuid() != 0:
        pytest.skip(f"{missing}, and installing it needs root: run 'apt-get install chromium' as root, then rerun")
    if shutil.which("apt-get") is None:
        pytest.skip(f"{missing}, and there is no apt-get to install it with: install Chromium, then rerun")
    result = install(("chromium",), DEBIAN_CHROMIUM.exists)  # another test worker may have installed it meanwhile
    assert DEBIAN_CHROMIUM.exists(), f"apt-get install chromium failed:\n{result.stderr[-3000:] if result else ''}"
    return DEBIAN_CHROMIUM
