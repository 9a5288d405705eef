"""Helpers for the studio's end-to-end tests: run ``run_gradio.py`` as a server, drive a real Chromium.

The browser is Debian's ``/usr/bin/chromium`` (Playwright's own browser download needs a host this
project does not reach); it is installed with apt-get when missing and the tests run as root.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
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
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
SERVER_START_TIMEOUT = 180  # seconds: imports, model load and Gradio start-up on 2 slow cores


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([*APT, *args], env=env, capture_output=True, text=True, timeout=1200)


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get if missing (as root); otherwise skip with the reason."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root: apt-get install chromium")
    _apt("update", "-q")
    install = ("install", "-y", "-q", "--no-install-recommends", "chromium")
    result = _apt(*install)
    if result.returncode != 0:  # another apt-get may have held the lock past the timeout: try once more
        result = _apt(*install)
    assert result.returncode == 0 and CHROMIUM.exists(), f"apt-get install chromium failed:\n{result.stderr[-3000:]}"
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def studio_server(env: dict[str, str], tmp_dir: Path, *args: str) -> Iterator[str]:
    """Run ``run_gradio.py`` on 127.0.0.1 until the block ends; yields its URL.

    Output goes to ``<tmp_dir>.log``, shown if the server does not come up.
    """
    port = free_port()
    log_path = tmp_dir.with_suffix(".log")
    command = [sys.executable, str(REPO_ROOT / "run_gradio.py"), "--port", str(port), "--tmp-dir", str(tmp_dir), *args]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"run_gradio.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:  # any HTTP answer (e.g. 401 with auth) means it is serving
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"run_gradio.py did not answer within {SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")


@contextmanager
def chromium_page(user_data_dir: Path, allowed_origin: str, outside_requests: list[str], extra_args: Sequence[str] = ()):
    """A page in a fresh headless Chromium profile; URLs it requests off ``allowed_origin`` are recorded."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(executable), headless=True,
            args=[*CHROMIUM_ARGS, *extra_args], viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            page = context.new_page()
            local = (allowed_origin, "data:", "blob:")
            page.on("request", lambda request: None if request.url.startswith(local) else outside_requests.append(request.url))
            try:
                yield page
            except BaseException:  # what the page showed when a step failed, next to the profile
                page.screenshot(path=str(user_data_dir.parent / "failure.png"), full_page=True)
                raise
        finally:
            context.close()


def copy_if_requested(screenshot: Path, env_var: str = "UI_SCREENSHOT_PATH") -> None:
    """Save a screenshot to ``$UI_SCREENSHOT_PATH`` when set, as a small 256-colour PNG.

    How ``docs/ui.png`` is refreshed: ``UI_SCREENSHOT_PATH=docs/ui.png pytest tests/studio/test_browser.py``.
    """
    target = os.environ.get(env_var)
    if target:
        from PIL import Image

        with Image.open(screenshot) as image:
            image.convert("RGB").quantize(256).save(target, optimize=True)
