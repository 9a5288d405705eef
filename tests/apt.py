"""Debian packages the tests install on first use (Chromium, SLURM and munge), one installation at a time.

``make test`` runs the suite in two pytest-xdist workers, and tests of both may want a package on
the same fresh machine. apt-get's own lock makes a second apt-get fail (``apt-get update``) or wait
only for dpkg, so every call goes through one file lock shared by the workers, and the caller checks
again under the lock whether what it wanted has appeared meanwhile.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

LOCK = Path("/tmp/stable-audio-tools-ext-tests-apt.lock")
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]


@contextmanager
def apt_lock() -> Iterator[None]:
    """Held while one test process checks for a package and installs it."""
    with FileLock(LOCK, timeout=1800):
        yield


def apt_get(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([*APT, *args], env=env, capture_output=True, text=True, timeout=timeout)


def install(packages: tuple[str, ...], installed: Callable[[], bool]) -> subprocess.CompletedProcess | None:
    """``apt-get install`` the packages unless ``installed()`` (asked under the lock); updates the lists once when needed.

    Returns the last apt-get result, or None when nothing had to be installed.
    """
    with apt_lock():
        if installed():
            return None
        command = ("install", "-y", "-q", "--no-install-recommends", *packages)
        result = apt_get(*command)
        if result.returncode != 0:  # package lists may be missing on a fresh machine
            apt_get("update", "-q")
            result = apt_get(*command)
        return result
