"""Long-run reliability: resume, manifest, signals, kills, non-finite output, dry run."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.output.manifest import PARTS_DIRNAME, load_records
from stable_audio_tools_ext.output.shards import relpath_of_key, shard_paths, shard_samples
from stable_audio_tools_ext.run import cli, exits
from tests.conftest import REPO_ROOT
from tests.support import GENERATE, all_files, audio_files, write
from tests.trees import DRUMS_AND_FX_FILES, DRUMS_AND_FX_TREE

FAST = ["--sample-steps", "6"]
TREE, TREE_FILES = DRUMS_AND_FX_TREE, DRUMS_AND_FX_FILES


def generate(tmp_path: Path, out: Path, *extra: str, tree: str = TREE) -> int:
    return cli.main(["--cond-yaml-path", str(write(tmp_path, tree)), "--output-dir", str(out), "--clip-length", *FAST, *extra])


def mtimes(out: Path) -> dict[str, int]:
    return {name: path.stat().st_mtime_ns for name, path in audio_files(out).items()}


def test_resume_regenerates_exactly_the_missing_and_damaged_files(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out) == exits.EXIT_OK
    assert set(audio_files(out)) == TREE_FILES
    before = mtimes(out)
    (out / "drums/kick_item-1.wav").unlink()
    (out / "fx/rain_item-1.wav").unlink()
    truncated = out / "drums/snare_item-2.wav"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with open(out / "manifest.jsonl", "a") as manifest:
        manifest.write('{"path": "drums/kick_item-2.wav", "status": "o')  # a torn last line
    capsys.readouterr()

    assert generate(tmp_path, out) == exits.EXIT_OK
    assert "3 of 6 items already complete" in capsys.readouterr().out
    after = mtimes(out)
    regenerated = {name for name in after if after[name] != before.get(name)}
    assert regenerated == {"drums/kick_item-1.wav", "fx/rain_item-1.wav", "drums/snare_item-2.wav"}
    assert sf.info(str(truncated)).frames == int(1.5 * 44100)
    records = load_records(out)
    assert set(records) == TREE_FILES and all(r["status"] == "ok" for r in records.values())
    assert not (out / PARTS_DIRNAME).exists() or not any((out / PARTS_DIRNAME).iterdir())

    capsys.readouterr()
    assert generate(tmp_path, out) == exits.EXIT_OK  # a third run has nothing to do
    assert mtimes(out) == after
    closing = capsys.readouterr().out
    assert "done: 0 items generated, 0.0 s of audio" in closing  # what this run did, not what the folder holds
    assert "6 of the 6 items were already complete" in closing

    assert generate(tmp_path, out, "--overwrite") == exits.EXIT_OK
    text = capsys.readouterr().out
    assert "overwrite: regenerating all 6 items" in text and "resume:" not in text
    assert "done: 6 items generated, 9.0 s of audio" in text


def test_changed_parameters_regenerate_only_the_affected_items(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out) == exits.EXIT_OK
    before = mtimes(out)
    changed_tree = TREE.replace("kick drum", "808 kick drum")
    assert generate(tmp_path, out, tree=changed_tree) == exits.EXIT_OK
    assert "2 regenerated (parameters changed)" in capsys.readouterr().out
    after = mtimes(out)
    assert {n for n in after if after[n] != before[n]} == {"drums/kick_item-1.wav", "drums/kick_item-2.wav"}
    assert load_records(out)["drums/kick_item-1.wav"]["prompt"] == "808 kick drum"

    assert generate(tmp_path, out, "--overwrite", tree=changed_tree) == exits.EXIT_OK
    assert all(new != after[name] for name, new in mtimes(out).items())


def test_manifest_records_every_field_a_dataset_needs(small_model, tmp_path) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out) == exits.EXIT_OK
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(TREE_FILES)
    record = {r["path"]: r for r in map(json.loads, lines)}["fx/door_item-1.wav"]
    expected_keys = {
        "path", "leaf", "k", "prompt", "negative_prompt", "seconds_start", "seconds_total", "seed", "steps",
        "cfg_scale", "sampler_type", "sigma_min", "sigma_max", "model", "model_revision", "precision",
        "sample_rate", "channels", "frames", "bytes", "peak", "rms", "status", "wall_seconds", "rank",
        "timestamp", "fingerprint", "format", "clip_length",
    }  # fmt: skip
    assert expected_keys <= set(record)
    assert (record["leaf"], record["k"], record["negative_prompt"], record["frames"]) == ("fx/door", 1, "music", 44100)
    assert (record["precision"], record["sample_rate"], record["channels"], record["rank"]) == ("fp32", 44100, 2, 0)
    data, _ = sf.read(out / "fx/door_item-1.wav", dtype="float32")
    assert record["peak"] == pytest.approx(float(np.abs(data).max()), abs=1e-4)


def test_dry_run_prints_the_plan_without_writing(small_hub, tmp_path, capsys) -> None:
    out = tmp_path / "never-created"
    assert generate(tmp_path, out, "--dry-run", "--world-size", "4") == exits.EXIT_OK
    text = capsys.readouterr().out
    assert not out.exists()
    assert "dry run: 6 items; 0 of 6 items already complete; 6 to generate = 9.0 s of audio" in text
    assert "Items per top-level branch" in text and "Items to generate per rank (world size 4; cost imbalance" in text
    assert "kick_item-2.wav" in text


def test_dry_run_counts_what_is_already_done(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out) == exits.EXIT_OK
    (out / "fx/rain_item-1.wav").unlink()
    capsys.readouterr()
    assert generate(tmp_path, out, "--dry-run") == exits.EXIT_OK
    assert "5 of 6 items already complete, 1 regenerated (missing or damaged files); 1 to generate = 2.0 s" in capsys.readouterr().out


def test_tree_problems_come_first_then_every_model_and_plan_problem_at_once(small_hub, tmp_path, capsys) -> None:
    """The tree's own problems are reported before the model is looked up (no hub, no torch for a typo);
    once it reads cleanly, everything that needs the model - window, collisions - is reported in one run."""
    tree = "a:\n  long: {prompt: x, seconds_total: 30}\n  bad: {prompt: y, steps: 0}\n  Case: {prompt: z}\n  case: {prompt: w}\n"
    assert generate(tmp_path, tmp_path / "o", "--max-items", "50", tree=tree) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: 1 problem in" in err and "a/bad/steps" in err

    fixed = tree.replace("steps: 0", "steps: 3")
    assert generate(tmp_path, tmp_path / "o", "--max-items", "50", tree=fixed) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: 2 problems in" in err
    assert err.index("a/long: seconds_start + seconds_total = 30 s") < err.index("collides")


def test_world_size_outside_a_dry_run_is_refused(small_hub, tmp_path, capsys) -> None:
    assert generate(tmp_path, tmp_path / "o", "--world-size", "4") == exits.EXIT_USAGE
    assert "--world-size only applies with --dry-run" in capsys.readouterr().err


def test_item_limit_flag(small_hub, tmp_path, capsys) -> None:
    assert generate(tmp_path, tmp_path / "o", "--max-items", "5") == exits.EXIT_USAGE
    assert "the tree expands to 6 items, more than the limit of 5" in capsys.readouterr().err


def broken_model(small_hub: Path, tmp_path: Path, breaker) -> list[str]:
    """Model flags for a local copy of the tiny model with some weights changed by ``breaker``."""
    snapshot = next((small_hub / "hub" / f"models--{DEMO_REPO_ID.replace('/', '--')}" / "snapshots").iterdir())
    state = load_file(snapshot / "model.safetensors")
    breaker(state)
    save_file(state, tmp_path / "model.safetensors")
    return ["--model-config", str(snapshot / "model_config.json"), "--ckpt-path", str(tmp_path / "model.safetensors")]


def test_non_finite_audio_is_reported_and_not_written(small_hub, tmp_path, capsys) -> None:
    def poison(state):
        state["model.model.to_cond_embed.0.weight"].fill_(float("nan"))

    out = tmp_path / "out"
    code = generate(tmp_path, out, *broken_model(small_hub, tmp_path, poison))
    captured = capsys.readouterr()
    assert code == exits.EXIT_NONFINITE, captured.err
    assert "6 items came out NaN/Inf and were not written" in captured.out
    assert audio_files(out) == {}
    records = load_records(out)
    assert set(records) == TREE_FILES and {r["status"] for r in records.values()} == {"nonfinite"}
    assert records["fx/rain_item-1.wav"]["model_revision"].startswith("sha256:")


def test_near_silent_audio_is_written_and_flagged(small_hub, tmp_path) -> None:
    def mute(state):  # the VAE decoder's last convolution (no bias) gets a zero weight-norm gain
        last = max(int(k.split(".")[4]) for k in state if k.startswith("pretransform.model.decoder.layers."))
        state[f"pretransform.model.decoder.layers.{last}.weight_g"].zero_()

    out = tmp_path / "out"
    assert generate(tmp_path, out, *broken_model(small_hub, tmp_path, mute)) == exits.EXIT_OK
    assert set(audio_files(out)) == TREE_FILES
    assert {r["status"] for r in load_records(out).values()} == {"silent"}


# Interrupting real torchrun jobs. The tree is big enough that the job is still running when the
# first batch has been recorded.
LONG_TREE = "sounds:\n" + "".join(
    f"  s{i:02d}: {{prompt: sound number {i}, seconds_total: 2, n_samples: 2}}\n" for i in range(12)
)
LONG_FILES = {f"sounds/s{i:02d}_item-{k}.wav" for i in range(12) for k in (1, 2)}
SLOW = ["--sample-steps", "100", "--batch-size", "2", "--clip-length"]


def torchrun_command(tree: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", GENERATE,
        "--cond-yaml-path", str(tree), "--output-dir", str(out), *SLOW,
    ]  # fmt: skip


def start_and_wait_for_first_batch(command: list[str], out: Path, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        parts = list((out / PARTS_DIRNAME).glob("*.jsonl")) if out.exists() else []
        if any(part.stat().st_size > 0 for part in parts):
            return process
        time.sleep(0.1)
    output = process.communicate(timeout=60)[0] if process.poll() is not None else ""
    process.kill()
    pytest.fail(f"the job never recorded a first batch:\n{output[-3000:]}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_hub_env) -> Path:
    """The reference: the long tree generated in one plain single-process run."""
    root = tmp_path_factory.mktemp("uninterrupted")
    out = root / "out"
    command = [sys.executable, GENERATE, "--cond-yaml-path", str(write(root, LONG_TREE)), "--output-dir", str(out), *SLOW]
    result = subprocess.run(command, env=small_hub_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def assert_same_audio(out: Path, reference: Path) -> None:
    got, expected = audio_files(out), audio_files(reference)
    assert set(got) == set(expected) == LONG_FILES
    for name in LONG_FILES:
        a, _ = sf.read(got[name], dtype="float32")
        b, _ = sf.read(expected[name], dtype="float32")
        assert np.abs(a - b).max() <= 1e-4, name


def no_partial_files(out: Path) -> bool:
    return not [name for name in all_files(out) if name.endswith(".partial")]


def worker_pids(launcher_pid: int) -> list[int]:
    """The torchrun launcher's child processes (its workers), from /proc."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.slow
@pytest.mark.parametrize("signal_to_send", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_stops_after_the_batch_and_a_rerun_completes_identically(
    tmp_path, small_hub_env, uninterrupted, signal_to_send
) -> None:
    tree, out = write(tmp_path, LONG_TREE), tmp_path / "out"
    process = start_and_wait_for_first_batch(torchrun_command(tree, out), out, small_hub_env)
    if signal_to_send == signal.SIGTERM:
        process.send_signal(signal.SIGTERM)  # torchrun forwards SIGTERM to its workers
    else:
        for pid in worker_pids(process.pid):  # as `scancel --signal=USR1` does: every task process
            os.kill(pid, signal_to_send)
    output = process.communicate(timeout=120)[0]
    # torchrun's own status for any stop (rank 0 exits 3, but torchrun reports that, or its own
    # SignalException, as a failure): rank 0's stop line is what tells a clean stop from a crash.
    assert process.returncode == 1, output[-3000:]
    assert f"stopped by {signal_to_send.name}: " in output and "rerun the same command to resume" in output
    assert "torchrun reports the stop as a failure" in output
    last_progress = [line for line in output.splitlines() if line.startswith("progress: ")][-1]
    assert "ETA" not in last_progress, last_progress  # the job is over: the rest waits for the rerun
    assert no_partial_files(out)
    records = load_records(out)
    written = set(audio_files(out))
    assert 0 < len(written) < len(LONG_FILES), "the job should have stopped part-way"
    assert written == {path for path, r in records.items() if r["status"] == "ok"}
    for name in written:  # every file under its final name is complete
        assert sf.info(str(out / name)).frames == 2 * 44100

    rerun = subprocess.run(torchrun_command(tree, out), env=small_hub_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(written)} of 24 items already complete" in rerun.stdout
    assert_same_audio(out, uninterrupted)


@pytest.mark.slow
def test_sigkill_mid_shard_then_a_rerun_writes_every_item_once_into_shards_with_the_same_audio(
    tmp_path, small_hub_env, uninterrupted
) -> None:
    """2 ranks into WebDataset shards of 3 items, killed (-9) mid-shard: the finished shards are whole and
    recorded, the rerun regenerates exactly the open shards' items, and every item is in one shard with the
    audio of the file-per-item run. (The file layout's kill safety is the same temporary-then-rename
    write, per file; the signal tests above run the file layout under torchrun.)"""
    tree, out = write(tmp_path, LONG_TREE), tmp_path / "out"
    command = [*torchrun_command(tree, out), "--output-format", "wds", "--shard-size", "3"]
    process = start_and_wait_for_first_batch(command, out, small_hub_env)  # i.e. the first shard renamed
    deadline = time.monotonic() + 60
    while no_partial_files(out) and time.monotonic() < deadline:  # a rank has items in an open shard
        time.sleep(0.01)
    for pid in worker_pids(process.pid):  # torchrun starts each worker in a session of its own
        os.kill(pid, signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    recorded = {r["shard"] for r in load_records(out).values()}
    for shard in shard_paths(out):  # every finished shard is whole, and recorded
        assert f"shards/{shard.name}" in recorded and len(list(shard_samples(shard))) == 3, shard.name
    assert not no_partial_files(out), "the kill should have cut an open shard off"
    rerun = subprocess.run(command, env=small_hub_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert no_partial_files(out)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == len(LONG_FILES)
    seen: dict[str, np.ndarray] = {}
    for shard in shard_paths(out):
        for key, fields in shard_samples(shard):
            assert relpath_of_key(key, "wav") not in seen, f"{key} is in two shards"
            seen[relpath_of_key(key, "wav")] = sf.read(io.BytesIO(fields["wav"]), dtype="float32")[0]
    assert set(seen) == LONG_FILES
    for name, audio in seen.items():
        expected, _ = sf.read(uninterrupted / name, dtype="float32")
        assert np.abs(audio - expected).max() <= 1e-4, name


def test_start_table_shows_the_sampling_the_run_uses(small_model, tmp_path, capsys) -> None:
    """Leaves that override the flags make the table say so instead of showing the flags' values."""
    same = "a:\n  x: {prompt: x, seconds_total: 1, steps: 3, sampler_type: dpmpp-2m, cfg_scale: 5}\n"
    assert generate(tmp_path, tmp_path / "one", tree=same) == exits.EXIT_OK
    assert "dpmpp-2m, 3 steps, cfg 5.0" in capsys.readouterr().out
    mixed = same + "  y: {prompt: y, seconds_total: 1}\n"
    assert generate(tmp_path, tmp_path / "two", tree=mixed) == exits.EXIT_OK
    out = capsys.readouterr().out
    assert "per leaf: 2 sampler/steps/cfg settings (--dry-run lists them)" in out and "dpmpp-3m-sde" not in out
