"""The studio under ``torchrun --nproc_per_node 2``: both ranks generate, failures reach the page, shutdown is complete.

Real torchrun processes on the CPU with the tiny model; the module's studio runs with a LoRA adapter
(``--lora``), so every request also checks that the page's strengths reach rank 1. A worker's failure is injected by a
``sitecustomize`` module on the workers' path (``FAULTY_RANK_SITE``): on rank 1 only, the engine
entry point the job calls raises for prompts that ask for it - the way a CUDA out-of-memory on one
device would surface. Nothing else is changed in the processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext.model.lora import write_lora
from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.run.inprocess import plan_tree, sampling_defaults
from stable_audio_tools_ext.studio.actions import Audition, audition_tree, generate_items, tree_yaml, write_tree
from stable_audio_tools_ext.studio.adapters import StudioAdapter, name_adapters, tree_names
from stable_audio_tools_ext.studio.ranks import LocalRunner
from tests.adapters import CONFIG, random_tensors
from tests.studio.browser import free_port, studio_process

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# The reference guide's form: a fixed master port, no --standalone.
REFERENCE_TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
AUDITION = Audition(prompt="a dusty breakbeat", negative_prompt=None, seconds_start=0.0, seconds_total=1.0, steps=8,
                    cfg_scale=7.0, sampler_type="dpmpp-3m-sde")  # fmt: skip
FAIL_PROMPT = "fail on rank 1"
FAULTY_RANK_SITE = f"""\
import os

if os.environ.get("RANK") == "1":
    from stable_audio_tools_ext.sampling import autobatch

    real = autobatch.generate_audio_splitting

    def failing(loaded, requests, *args, **kwargs):
        if any(r.prompt == {FAIL_PROMPT!r} for r in requests):
            raise RuntimeError("CUDA out of memory (injected by the test on rank 1)")
        return real(loaded, requests, *args, **kwargs)

    autobatch.generate_audio_splitting = failing
"""
TOLERANCE = 1e-4  # batch composition changes float sums slightly (16-bit PCM step: 3e-5)
START_STRENGTH = 0.5  # the module's studio: --lora style.safetensors --lora-strength 0.5


def _environment(small_hub_env: dict[str, str], site: Path) -> dict[str, str]:
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(FAULTY_RANK_SITE)
    return {**small_hub_env, "PYTHONPATH": f"{site}{os.pathsep}{small_hub_env['PYTHONPATH']}"}


def _job_processes(tmp_dir: Path) -> list[int]:
    """PIDs alive whose command line names this studio's tmp dir: torchrun and its workers, orphans included.

    torchrun starts each worker in a session of its own, and an orphan is adopted by init, so neither
    the process group nor the parent chain finds them all; the unique ``--tmp-dir`` does.
    """
    marker = str(tmp_dir).encode()
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes() and ") Z " not in (entry / "stat").read_text():
                alive.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return alive


def _rank_pid(tmp_dir: Path, rank: int) -> int:
    """The worker process of ``rank`` (torchrun sets RANK in each worker's environment)."""
    for pid in _job_processes(tmp_dir):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ and b"run_gradio.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError(f"no rank {rank} process in the job")


def _wait_gone(tmp_dir: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _job_processes(tmp_dir):
        time.sleep(0.5)
    return _job_processes(tmp_dir)


@pytest.fixture(scope="module")
def adapter(small_model, tmp_path_factory) -> StudioAdapter:
    path = tmp_path_factory.mktemp("adapter") / "style.safetensors"
    write_lora(path, random_tensors(small_model.model, seed=41), CONFIG)
    request = ModelRequest(pretrained_name=DEMO_REPO_ID, lora=(path,), lora_strength=(START_STRENGTH,))
    (named,) = name_adapters(read_model_spec(request).adapters)
    return named


@pytest.fixture(scope="module")
def studio(small_hub_env, adapter, tmp_path_factory):
    base = tmp_path_factory.mktemp("ranks")
    env = _environment(small_hub_env, base / "site")
    lora = ["--lora", str(adapter.use.file.path), "--lora-strength", str(START_STRENGTH)]
    with studio_process(env, base / "studio-tmp", *lora, launcher=[*REFERENCE_TORCHRUN, str(free_port())]) as (url, process):
        yield url, process, base / "studio-tmp"


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio[0], verbose=False, download_files=str(studio[2].parent / "downloads"))


def _single_process_audio(small_model, tmp_path: Path, seed: int, variations: int, lora: tuple) -> dict[str, np.ndarray]:
    """What the studio writes for the audition in one process (the same actions, one rank), with ``lora``'s
    adapters and strengths as leaf adapters (this process's model has no --lora)."""
    audition = dataclasses.replace(AUDITION, lora=lora)
    tree = write_tree(tree_yaml(audition_tree(audition, seed, variations), small_model), tmp_path, tmp_path)
    items, _ = plan_tree(tree, small_model.spec, sampling_defaults(small_model.spec), variations,
                         adapters=tree_names([adapter for adapter, _ in lora]))  # fmt: skip
    generate_items(LocalRunner(small_model), items, tmp_path / "out", tmp_path, batch_size=variations)
    return {item.relpath: sf.read(tmp_path / "out" / item.relpath)[0] for item in items}


def test_four_variations_are_served_by_both_ranks_with_single_process_audio(client, small_model, adapter, tmp_path) -> None:
    """With the adapter at the page's strength (not the start strength): the strength reaches rank 1 too."""
    outputs = client.predict(AUDITION.prompt, "", 0, 1.0, AUDITION.steps, AUDITION.cfg_scale, AUDITION.sampler_type,
                             1234, 4, 0.75, api_name="/generate")  # fmt: skip
    status, slots = outputs[0], outputs[2:]
    assert status.startswith("4 clip(s) of 1 s, seeds 1234..1237")
    variations = [(slots[4 * i], json.loads(slots[4 * i + 3])) for i in range(4)]  # audio, image, file, parameters
    assert sorted(params["rank"] for _, params in variations) == [0, 0, 1, 1]
    assert {params["lora"][0]["strength"] for _, params in variations} == {0.75}
    expected = _single_process_audio(small_model, tmp_path, seed=1234, variations=4, lora=((adapter, 0.75),))
    for audio, params in variations:
        assert np.abs(sf.read(audio)[0] - expected[params["path"]]).max() <= TOLERANCE, params["path"]


def test_the_batch_tab_splits_a_tree_over_both_ranks(client) -> None:
    """Leaves without lora get --lora's adapter at its start strength, those that name it their own strength."""
    tree = ("kit:\n  _defaults: {seconds_total: 1}\n  kick: {prompt: kick, n_samples: 3}\n"
            "  hat: {prompt: hat, n_samples: 2, lora: style, lora_strength: 0.25}\n")  # fmt: skip
    status, _, archive, _ = client.predict(tree, 6, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/generate_batch")
    assert status == "done: 5 files"
    with zipfile.ZipFile(archive) as zipped:
        records = [json.loads(line) for line in zipped.read("manifest.jsonl").decode().splitlines()]
        wavs = {name for name in zipped.namelist() if name.endswith(".wav")}
    assert {r["path"] for r in records} == wavs == {f"kit/kick_item-{k}.wav" for k in (1, 2, 3)} | {
        "kit/hat_item-1.wav", "kit/hat_item-2.wav"}  # fmt: skip
    assert {r["rank"] for r in records} == {0, 1}
    assert {(r["leaf"], r["lora"][0]["strength"]) for r in records} == {("kit/kick", START_STRENGTH), ("kit/hat", 0.25)}


def test_a_worker_that_raises_fails_the_request_in_the_page_and_the_studio_goes_on(client) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as failure:
        client.predict(FAIL_PROMPT, "", 0, 1.0, 4, 7.0, "dpmpp-3m-sde", 7, 2, api_name="/generate")
    assert "generation failed on 1 of 2 ranks - rank 1: RuntimeError: CUDA out of memory (injected" in str(failure.value)
    status = client.predict("a snare", "", 0, 1.0, 4, 7.0, "dpmpp-3m-sde", 7, 2, api_name="/generate")[0]
    assert status.startswith("2 clip(s) of 1 s, seeds 7..8")


def test_ctrl_c_stops_every_rank(studio) -> None:
    """The terminal's Ctrl-C (SIGINT to torchrun, which passes it on). Ends the module's studio: keep it last."""
    _, process, tmp_dir = studio
    assert len(_job_processes(tmp_dir)) == 3  # torchrun and its two workers
    process.send_signal(signal.SIGINT)
    assert _wait_gone(tmp_dir, timeout=60) == []


def test_a_worker_that_dies_fails_the_request_and_the_job_stops_without_orphans(small_hub_env, tmp_path) -> None:
    from gradio_client import Client

    env = _environment(small_hub_env, tmp_path / "site")
    tmp_dir = tmp_path / "studio-tmp"
    with studio_process(env, tmp_dir, launcher=TORCHRUN) as (url, process):
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        tree = "a:\n  b: {prompt: x, seconds_total: 2.5, steps: 3000, n_samples: 4}\n"  # a minute: killed halfway
        outcome: list[BaseException | tuple] = []
        request = threading.Thread(target=lambda: outcome.append(_catching(
            client.predict, tree, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/generate_batch")))  # fmt: skip
        request.start()
        time.sleep(5)
        os.kill(_rank_pid(tmp_dir, 1), signal.SIGKILL)
        request.join(timeout=120)
        assert not request.is_alive(), "the request hung after a worker died"
        assert isinstance(outcome[0], BaseException), outcome  # the request failed rather than returning files
        assert _wait_gone(tmp_dir, timeout=60) == []
        assert process.wait(timeout=10) != 0


def _catching(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever the request ended with
        return exc


def test_sigterm_to_torchrun_stops_every_rank(small_hub_env, tmp_path) -> None:
    """What a scheduler or ``kill`` sends to the launcher: torchrun passes it on and every rank exits."""
    tmp_dir = tmp_path / "studio-tmp"
    with studio_process(small_hub_env, tmp_dir, launcher=TORCHRUN) as (_, process):
        assert len(_job_processes(tmp_dir)) == 3
        process.send_signal(signal.SIGTERM)
        assert _wait_gone(tmp_dir, timeout=60) == []
