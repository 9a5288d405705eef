"""Shared test setup: an offline Hugging Face hub holding tiny random models of the real architecture.

huggingface_hub reads HF_HOME and the offline switches when it is first imported, so they are set
here, at conftest import, before any test module imports it. In-process tests load the small-window
model; subprocess tests (torchrun, the CLI) get an environment for the full 47.55 s window model.
"""

from __future__ import annotations

import os
from pathlib import Path


def _limit_threads_per_xdist_worker() -> None:
    """Share the cores among pytest-xdist's workers: each worker, and what it starts, gets cores / workers threads.

    Left at torch's default, every worker and every subprocess it starts spins up one OpenMP thread
    per core; with two workers on two cores, OpenMP's busy-waiting threads then preempt each other
    and an in-process generation runs 10-20x slower (measured: one engine test 1.7 s with one thread,
    22-32 s with two, beside a second busy worker). Set before torch is first imported, and inherited
    by every subprocess (generate.py, finetune.py, torchrun ranks, SLURM jobs). A serial run keeps
    torch's default.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))


_limit_threads_per_xdist_worker()

import pytest  # noqa: E402 - after the thread count, in case a plugin imports torch

from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID, build_tiny_hub_cache, offline_hub_env
from tests.chromium import ensure_chromium

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / ".cache"
SMALL_WINDOW_SAMPLES = 64 * 2048  # 64 latent frames, about 2.97 s: fast for in-process engine tests
SMALL_HUB = CACHE / "hf-tests-window64"
FULL_HUB = CACHE / "hf-demo"  # same build as `make demo` (full 47.55 s window)

os.environ.update(offline_hub_env(SMALL_HUB))
for _key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN"):
    os.environ.pop(_key, None)


@pytest.fixture(scope="session")
def small_hub() -> Path:
    return build_tiny_hub_cache(SMALL_HUB, sample_size=SMALL_WINDOW_SAMPLES)


def _subprocess_env(hf_home: Path) -> dict[str, str]:
    env = offline_hub_env(hf_home)
    env.pop("HF_TOKEN", None)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@pytest.fixture(scope="session")
def full_hub_env() -> dict[str, str]:
    """Environment for subprocesses that load the full-window tiny model offline."""
    return _subprocess_env(build_tiny_hub_cache(FULL_HUB))


@pytest.fixture(scope="session")
def standins(small_hub: Path) -> Path:
    """The tiny OpenL3 and PaSST stand-ins in torch hub's cache under ``small_hub`` (the TORCH_HOME set above)."""
    from stable_audio_tools_ext.scoring.standins import write_standin_cache

    return write_standin_cache(small_hub)


@pytest.fixture(scope="session")
def small_hub_env(small_hub: Path) -> dict[str, str]:
    """Environment for subprocesses that load the small-window (about 2.97 s) tiny model offline."""
    return _subprocess_env(small_hub)


@pytest.fixture(scope="session")
def small_model(small_hub: Path):
    """The small-window tiny model, loaded through the real hub path, on CPU."""
    import torch

    from stable_audio_tools_ext.model.loading import load_model
    from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec

    return load_model(read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)), torch.device("cpu"))


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The browser of every test that needs one, found or installed once per session (``tests/chromium.py``)."""
    return ensure_chromium()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test fails the run: the suite's promise is every test run, nothing skipped.

    A skip here always means a missing piece of set-up (Chromium, the test extra), which `make test`
    installs; passing without it would hide that the test never ran. Under pytest-xdist the
    controller's reporter sees every worker's results.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        reporter.write_line(f"{len(skipped)} skipped: the suite runs every test (see the reasons above); failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
