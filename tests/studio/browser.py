"""Helpers for the studio's end-to-end tests: run ``run_gradio.py`` as a server, drive a real Chromium.

The browser comes from the session fixture ``chromium`` (``tests/chromium.py``: Debian's Chromium,
installed with apt-get when missing and the tests run as root).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.chromium import CHROMIUM_ARGS
from tests.conftest import REPO_ROOT

SERVER_START_TIMEOUT = 180  # seconds: imports, model load and Gradio start-up on 2 slow cores
READY_LINE = "* Running on local URL:"  # what run_gradio.py prints once the server answers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def studio_server(env: dict[str, str], tmp_dir: Path, *args: str) -> Iterator[str]:
    """Run ``run_gradio.py`` on 127.0.0.1 until the block ends; yields its URL once it says it is up.

    Output goes to ``<tmp_dir>.log`` (``server_log``), shown if the server does not come up.
    """
    with studio_process(env, tmp_dir, *args) as (url, _):
        yield url


@contextmanager
def studio_process(
    env: dict[str, str], tmp_dir: Path, *args: str, launcher: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``studio_server`` that also yields the process; ``launcher`` goes before the script (e.g. torchrun).

    The process leads a session of its own, so that stopping it reaches every process it started.
    """
    port = free_port()
    log_path = server_log(tmp_dir)
    command = [*(launcher or [sys.executable]), str(REPO_ROOT / "run_gradio.py"), "--port", str(port),
               "--tmp-dir", str(tmp_dir), *args]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        _wait_until_up(process, log_path)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_log(tmp_dir: Path) -> Path:
    """Where ``studio_server`` writes the output of the studio it runs on ``tmp_dir``."""
    return tmp_dir.with_suffix(".log")


def _wait_until_up(process: subprocess.Popen, log_path: Path) -> None:
    """Until the studio prints ``READY_LINE`` (after Gradio's own check that the server answers)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"run_gradio.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if READY_LINE in log_path.read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"run_gradio.py did not start within {SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")


@contextmanager
def chromium_page(
    executable: Path, user_data_dir: Path, allowed_origin: str, outside_requests: list[str], extra_args: Sequence[str] = ()
):
    """A page in a fresh headless Chromium profile; URLs it requests off ``allowed_origin`` are recorded."""
    from playwright.sync_api import sync_playwright

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
