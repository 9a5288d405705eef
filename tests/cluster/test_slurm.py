"""The example sbatch scripts, submitted unchanged to a real SLURM (a one-node cluster on 127.0.0.1).

Only environment variables and sbatch options differ from what a user would type: two CPU tasks
instead of GPUs, the tiny offline model, a private output directory. The cluster is started once
per module (``tests/slurm_cluster.py``) and every daemon is stopped by PID in the fixture's
teardown, whether the tests pass or not.

Needs root (to install Debian's slurm-wlm and munge when they are missing, and to run munged as the
munge user); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.cluster.slurm_cluster import LocalSlurm, ensure_installed
from tests.conftest import REPO_ROOT
from tests.support import all_files, audio_files, free_port


def on_local_slurm(test):
    """Mark a test that submits jobs to the local cluster (skipped, with the reason, when not root)."""
    needs_root = pytest.mark.skipif(
        os.geteuid() != 0, reason="the local SLURM cluster needs root (apt-get install, munged as the munge user)"
    )
    return pytest.mark.slurm(needs_root(test))


SCRIPTS = REPO_ROOT / "example" / "slurm"
SINGLE_NODE = SCRIPTS / "generate_single_node.sbatch"
MULTI_NODE = SCRIPTS / "generate_multi_node.sbatch"
FINETUNE = SCRIPTS / "finetune.sbatch"
COMMON = SCRIPTS / "job_common.sh"
JOB_TIMEOUT = 420  # seconds; a job here takes 20-90 s, more when the machine is busy

# Two CPU "GPUs": two tasks of one CPU on the single node (the scripts run one worker per task when
# the node has no GPU). --time keeps a stuck job from outliving the test.
CPU_OPTIONS = ["--ntasks-per-node=2", "--cpus-per-task=1", "--time=15"]

LONG_TREE = """\
loops:
  _defaults: {seconds_total: 2, n_samples: 5}
  kick: {prompt: kick drum}
  snare: {prompt: snare drum}
  rain: {prompt: rain on a roof}
  door: {prompt: a door slams}
"""
LONG_FILES = {f"loops/{leaf}_item-{k}.wav" for leaf in ("kick", "snare", "rain", "door") for k in range(1, 6)}


@pytest.fixture(scope="module")
def slurm():
    """A running one-node cluster; its daemons are stopped by PID at the end, even after a failure."""
    ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="sat-slurm-"))  # under /tmp: munged must be able to reach it
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("script", [SINGLE_NODE, MULTI_NODE, FINETUNE], ids=["single-node", "multi-node", "finetune"])
def test_scripts_parse_and_ask_slurm_for_what_resuming_needs(script: Path) -> None:
    """Static checks, with or without a cluster: syntax, strict mode, the preemption directives, no secrets.

    What the scripts share (stop handling, requeue, threads, container or venv) is in job_common.sh,
    which every script sources from the checkout.
    """
    text, common = script.read_text(), COMMON.read_text()
    for source in (script, COMMON):
        assert subprocess.run(["bash", "-n", str(source)]).returncode == 0
    assert text.startswith("#!/bin/bash\n") and "\nset -euo pipefail\n" in text
    assert 'source "$REPO_DIR/example/slurm/job_common.sh"' in text
    directives = re.findall(r"^#SBATCH (\S+)", text, flags=re.M)
    for needed in ("--signal=B:USR1@120", "--requeue", "--open-mode=append", "--exclusive"):
        assert needed in directives, needed
    assert "trap 'on_stop USR1' USR1" in common and "scontrol requeue" in common
    assert "--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in text
    assert text.index('"$@" --check') < text.index("run_with_stop_handling"), "inputs are checked before any worker starts"
    assert text.index("workers_per_node") < text.index("run_with_stop_handling")
    assert "export OMP_NUM_THREADS=" in common  # so torchrun does not print its thread banner
    for source in (text, common):
        assert not re.search(r"hf_[A-Za-z0-9]{20,}", source) and not re.search(r"\bHF_TOKEN=", source)
    if script == SINGLE_NODE:
        assert "--standalone" in text and "srun" not in text.split("set -euo pipefail")[1]
    else:
        assert "find_rendezvous" in text and "scontrol show hostnames" in common
        assert "--rdzv-backend c10d" in text and '--nnodes "$nodes"' in text


def job_env(slurm: LocalSlurm, hub_env: dict[str, str], tree: Path, out: Path, extra: str,
            **more: str) -> dict[str, str]:  # fmt: skip
    """The submitting environment: the knobs of the scripts, the offline tiny model, SLURM_CONF."""
    env = slurm.env(hub_env)
    for name in ("CONTAINER", "NPROC_PER_NODE", "EXTRA_ARGS", "COND_YAML", "OUTPUT_DIR", "REPO_DIR", "VENV"):
        env.pop(name, None)
    env.update(
        COND_YAML=str(tree), OUTPUT_DIR=str(out), EXTRA_ARGS=extra,
        REPO_DIR=str(REPO_ROOT), VENV=str(REPO_ROOT / ".venv"), **more,
    )  # fmt: skip
    return env


def submit(slurm: LocalSlurm, script: Path, work: Path, env: dict[str, str], *options: str,
           args: tuple[str, ...] = ()) -> tuple[str, Path]:  # fmt: skip
    """sbatch [the CPU options, a private log and working directory, options] SCRIPT [args]."""
    sbatch_options = [*CPU_OPTIONS, f"--chdir={work}", f"--output={work}/%x-%j.out", *options]
    return slurm.sbatch(script, sbatch_options, env=env, args=args), work


def job_log(work: Path, job_id: str) -> str:
    logs = list(work.glob(f"*-{job_id}.out"))
    return logs[0].read_text(errors="replace") if logs else "(no log yet)"


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def assert_complete(out: Path, frames: dict[str, int]) -> None:
    """Exactly the expected files, complete, each once in the manifest, no temporaries left."""
    assert set(audio_files(out)) == set(frames)
    assert not [name for name in all_files(out) if name.endswith(".partial")]
    records = manifest_lines(out)
    assert sorted(r["path"] for r in records) == sorted(frames), "each file exactly once in manifest.jsonl"
    assert all(r["status"] == "ok" for r in records)
    for name, expected in frames.items():
        info = sf.info(str(out / name))
        assert (info.samplerate, info.frames) == (44100, expected), name


def clipped(seconds: dict[str, float]) -> dict[str, int]:
    return {name: round(value * 44100) for name, value in seconds.items()}


@on_local_slurm
def test_a_bad_tree_ends_the_job_before_any_worker_starts(slurm, small_hub_env, tmp_path) -> None:
    """One clean block of messages and exit code 2, not one traceback per worker inside torchrun's report."""
    tree, out = tmp_path / "tree.yaml", tmp_path / "out"
    tree.write_text("drums:\n  kick: {prompt: kick drum, secons_total: 1}\n")
    job_id, work = submit(slurm, SINGLE_NODE, tmp_path, job_env(slurm, small_hub_env, tree, out, ""), "--job-name=sat-bad")
    end = slurm.wait_finished(job_id, JOB_TIMEOUT)
    log = job_log(work, job_id)
    assert end["ExitCode"] == "2:0", f"{end}\n{log}"
    assert log.count("drums/kick/secons_total: unknown leaf field; did you mean 'seconds_total'?") == 1
    assert "nothing was started" in log and "running:" not in log and "Traceback" not in log
    assert audio_files(out) == {}


@on_local_slurm
@pytest.mark.parametrize("script", [SINGLE_NODE, MULTI_NODE], ids=["single-node", "multi-node"])
def test_scripts_run_unchanged_and_a_time_limit_signal_stops_requeues_and_resumes(slurm, small_hub_env, tmp_path, script) -> None:
    """Each generation script on two CPU tasks; SIGUSR1 to the batch script (what --signal=B:USR1@120
    sends) mid-run: stop, requeue, resume, complete.

    The single-node script starts torchrun --standalone and passes the signal to it; the multi-node
    one starts torchrun through srun (head-node lookup, c10d rendezvous) and passes the signal to srun,
    which passes it to every process of its step, on every node. ``--clip-length`` is given after
    the script's name: such flags reach generate.py (the files' lengths show it).
    """
    tree, out = tmp_path / "tree.yaml", tmp_path / "out"
    tree.write_text(LONG_TREE)
    env = job_env(slurm, small_hub_env, tree, out, "--sample-steps 40 --batch-size 1", RDZV_PORT=str(free_port()))
    job_id, work = submit(slurm, script, tmp_path, env, "--nodes=1", "--job-name=sat-requeue", args=("--clip-length",))

    deadline = time.monotonic() + JOB_TIMEOUT
    while not audio_files(out):  # let the first run write a few files
        assert time.monotonic() < deadline, f"no file written\n{job_log(work, job_id)}"
        assert slurm.job_info(job_id).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), job_log(work, job_id)
        time.sleep(0.5)
    slurm.run(["scancel", "--signal=USR1", "--batch", job_id])

    # Snapshot what the first run wrote, once it has stopped and asked for the requeue: the second
    # run needs several seconds to load the model before it could touch any of it.
    while "requeueing job" not in job_log(work, job_id):
        assert time.monotonic() < deadline, f"the job never requeued itself\n{job_log(work, job_id)}"
        time.sleep(0.2)
    first_run = {name: path.stat().st_mtime_ns for name, path in audio_files(out).items()}
    assert 0 < len(first_run) < len(LONG_FILES), "the first run should have stopped part-way"

    end = slurm.wait_finished(job_id, JOB_TIMEOUT)
    log = job_log(work, job_id)
    assert end["JobState"] == "COMPLETED" and end["ExitCode"] == "0:0", f"{end}\n{log}\n{slurm.logs()}"
    runs = [r["JobState"] for r in slurm.completions(job_id)]  # jobcomp writes one line per run
    assert len(runs) == 2 and runs[-1] == "COMPLETED" and runs[0] in ("REQUEUED", "PENDING"), (runs, log)

    stopped = re.search(r"stopped by SIGUSR1: (\d+) of 20 items remain", log)
    resumed = re.search(r"resume: (\d+) of 20 items already complete", log.split("restart 1")[-1])
    assert stopped and resumed, log
    assert int(resumed.group(1)) == len(first_run) == 20 - int(stopped.group(1))
    assert "received SIGUSR1" in log and "restart 1" in log
    assert "running 2 CPU worker(s)" in log and "--nproc_per_node 2" in log
    if script == SINGLE_NODE:
        assert "--standalone" in log
    else:
        assert f"rendezvous 127.0.0.1:{env['RDZV_PORT']}" in log and "--rdzv-backend c10d" in log
    second_run = log.split("restart 1")[-1]
    assert f"done: {20 - len(first_run)} items generated" in second_run and "finished: every item is in" in second_run

    assert_complete(out, clipped({name: 2.0 for name in LONG_FILES}))
    final = {name: path.stat().st_mtime_ns for name, path in audio_files(out).items()}
    assert {name: final[name] for name in first_run} == first_run, "the second run regenerated finished files"



@on_local_slurm
def test_finetune_script_trains_with_two_ranks_requeues_on_usr1_and_ends_at_max_steps(slurm, small_hub_env, tmp_path) -> None:
    """finetune.sbatch unchanged: 2 CPU processes (gloo DDP) train the tiny model; USR1 mid-run stops them
    after one step with a checkpoint, the job requeues itself and continues to exactly --max-steps."""
    import torch

    from tests.finetune.captioned import AUDIO, prepared

    prepared(tmp_path, AUDIO, "train=1.0")
    env = slurm.env(small_hub_env)
    for name in ("CONTAINER", "NPROC_PER_NODE", "PRETRAINED_CKPT_PATH", "VAL_DATASET_CONFIG"):
        env.pop(name, None)
    env.update(DATASET_CONFIG=str(tmp_path / "data" / "dataset_config.train.json"), SAVE_DIR=str(tmp_path / "runs"),
               RUN_NAME="clotho", PRETRAINED_NAME="stabilityai/stable-audio-open-1.0", REPO_DIR=str(REPO_ROOT),
               VENV=str(REPO_ROOT / ".venv"), RDZV_PORT=str(free_port()))  # fmt: skip
    max_steps = 30
    args = ("--max-steps", str(max_steps), "--checkpoint-every", "4", "--batch-size", "1", "--num-workers", "1")
    job_id, work = submit(slurm, FINETUNE, tmp_path, env, "--job-name=sat-finetune", args=args)
    checkpoints = tmp_path / "runs" / "clotho" / "checkpoints"

    deadline = time.monotonic() + JOB_TIMEOUT
    while not list(checkpoints.glob("*step=4.ckpt")):  # let the first run train a few steps
        assert time.monotonic() < deadline, f"no checkpoint written\n{job_log(work, job_id)}"
        assert slurm.job_info(job_id).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), job_log(work, job_id)
        time.sleep(0.5)
    slurm.run(["scancel", "--signal=USR1", "--batch", job_id])
    end = slurm.wait_finished(job_id, JOB_TIMEOUT)
    log = job_log(work, job_id)
    assert end["JobState"] == "COMPLETED" and end["ExitCode"] == "0:0", f"{end}\n{log}\n{slurm.logs()}"
    runs = [r["JobState"] for r in slurm.completions(job_id)]
    assert len(runs) == 2 and runs[-1] == "COMPLETED", (runs, log)

    stopped = re.search(r"stopped by SIGUSR1 at step (\d+)", log)
    assert stopped and "requeueing job" in log and "restart 1" in log, log
    stop_step = int(stopped.group(1))
    assert 4 <= stop_step < max_steps
    assert f"from step {stop_step}" in log.split("restart 1")[-1]  # the requeued job continued from the stop
    assert "x 2 ranks" in log and "--nproc_per_node 2" in log
    steps = sorted(int(re.search(r"step=(\d+)", p.name).group(1)) for p in checkpoints.glob("*.ckpt"))
    assert stop_step in steps and steps[-1] == max_steps
    last = next(checkpoints.glob(f"*step={max_steps}.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == max_steps
    assert not list(checkpoints.glob("*.partial"))

    tree = tmp_path / "tree.yaml"
    tree.write_text("rain: {prompt: rain, seconds_total: 1, steps: 4}\n")
    command = [str(REPO_ROOT / ".venv" / "bin" / "python"), str(REPO_ROOT / "generate.py"), "--cond-yaml-path", str(tree),
               "--output-dir", str(tmp_path / "out"), "--ckpt-path", str(last), "--clip-length"]  # fmt: skip
    generated = subprocess.run(command, cwd=REPO_ROOT, env=small_hub_env, capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    assert sf.info(str(tmp_path / "out" / "rain_item-1.wav")).frames == 44100
