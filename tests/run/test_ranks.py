"""Behaviour of a job's ranks towards each other, with real worker processes started the way torchrun
starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT on 127.0.0.1), but by hand: so that each rank can get
its own working directory or environment - what separate nodes look like - and its own exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.run import exits
from tests.support import GENERATE, audio_files, free_port, write

TREE = "kit:\n  kick: {prompt: kick drum, seconds_total: 1, n_samples: 2}\n  hat: {prompt: closed hat, seconds_total: 1, n_samples: 2}\n"
FAST = ["--sample-steps", "2", "--clip-length", "--batch-size", "1"]


def start_ranks(args: list[str], env: dict[str, str], world_size: int = 2, cwds: list[Path] | None = None,
                envs: list[dict[str, str]] | None = None, ranks: range | None = None) -> list[subprocess.Popen]:  # fmt: skip
    """Start ``ranks`` (default: all) of a ``world_size`` job; ``cwds``/``envs`` are per rank."""
    port = str(free_port())
    processes = []
    for rank in ranks or range(world_size):
        rank_env = {**env, **(envs[rank] if envs else {}), "RANK": str(rank), "LOCAL_RANK": str(rank),
                    "WORLD_SIZE": str(world_size), "LOCAL_WORLD_SIZE": str(world_size),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        processes.append(subprocess.Popen(
            [sys.executable, GENERATE, *args], env=rank_env, cwd=cwds[rank] if cwds else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    return processes


def finish(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=300)
        finally:
            process.kill()
        results.append((process.returncode, out, err))
    return results


@pytest.mark.slow
def test_a_rank_with_non_finite_items_ends_cleanly_and_rank_0_reports_them(small_hub, small_hub_env, tmp_path) -> None:
    """Only rank 0 decides the job's exit code (from the manifest): a non-zero exit of another rank would
    make torchrun kill rank 0 while it folds the manifest."""
    snapshot = next((small_hub / "hub" / f"models--{DEMO_REPO_ID.replace('/', '--')}" / "snapshots").iterdir())
    state = load_file(snapshot / "model.safetensors")
    state["model.model.to_cond_embed.0.weight"].fill_(float("nan"))
    save_file(state, tmp_path / "nan.safetensors")
    out = tmp_path / "out"
    args = ["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), *FAST,
            "--model-config", str(snapshot / "model_config.json"), "--ckpt-path", str(tmp_path / "nan.safetensors")]  # fmt: skip
    (code0, out0, err0), (code1, _, err1) = finish(start_ranks(args, small_hub_env))
    assert code1 == exits.EXIT_OK, err1
    assert code0 == exits.EXIT_NONFINITE, err0
    assert "4 items came out NaN/Inf and were not written" in out0  # rank 1's two items included
    assert audio_files(out) == {} and (out / "manifest.jsonl").is_file()


@pytest.mark.slow
def test_an_output_dir_that_ranks_do_not_share_is_refused_before_generating(small_hub_env, tmp_path) -> None:
    """Each rank runs in its own working directory, so the relative --output-dir names two different
    folders: what a node-local path gives on a real cluster."""
    tree = write(tmp_path, TREE)
    cwds = [tmp_path / "node-a", tmp_path / "node-b"]
    for cwd in cwds:
        cwd.mkdir()
    results = finish(start_ranks(["--cond-yaml-path", str(tree), "--output-dir", "out", *FAST], small_hub_env, cwds=cwds))
    assert [code for code, _, _ in results] == [exits.EXIT_USAGE, exits.EXIT_USAGE]
    err0 = results[0][2]
    assert "--output-dir out is not shared by all ranks" in err0 and "rank 1 on " in err0
    assert audio_files(cwds[0]) == {} and audio_files(cwds[1]) == {}


@pytest.mark.slow
def test_a_problem_on_one_node_is_printed_with_its_rank_and_host(small_hub_env, tmp_path) -> None:
    """Rank 1's node has no hub cache: it says so itself instead of leaving only 'exit code 2'."""
    tree = write(tmp_path, TREE)
    args = ["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"), *FAST, "--dist-timeout", "0.1"]
    processes = start_ranks(args, small_hub_env, envs=[{}, {"HF_HOME": str(tmp_path / "empty-cache")}])
    try:
        _, err1 = processes[1].communicate(timeout=300)
    finally:
        for process in processes:
            process.kill()
    assert processes[1].returncode == exits.EXIT_USAGE
    assert f"rank 1 on {os.uname().nodename}: error: --pretrained-name {DEMO_REPO_ID}: model_config.json is not in the local hub cache" in err1


@pytest.mark.slow
def test_rank_0_gives_up_on_ranks_that_never_join_after_the_dist_timeout(small_hub_env, tmp_path) -> None:
    """Only rank 0 of two is started; it must not wait for torch's default 30 minutes."""
    args = ["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(tmp_path / "out"), *FAST,
            "--dist-timeout", "0.05"]  # fmt: skip
    code, _, err = finish(start_ranks(args, small_hub_env, ranks=range(1)))[0]
    assert code == exits.EXIT_JOB_FAILED
    assert "did not all join within --dist-timeout 0.05 min" in err
