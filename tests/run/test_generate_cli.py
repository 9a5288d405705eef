"""generate.py end to end: real torchrun processes, real WAV files read back, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.run import cli, exits
from tests.support import GENERATE, all_files, audio_files, run, write
from tests.trees import SEED_DOCUMENT_TREE, alias_bomb

FAST = ["--sample-steps", "8"]
SEED_TREE_FILES = {
    f"{leaf}_item-{k}.wav": seconds
    for leaf, seconds in (("music/drum/sample-1", 30), ("music/drum/sample-2", 20), ("sfx/sample-1", 10), ("sfx/sample-2", 10))
    for k in (1, 2)
}


@pytest.fixture(scope="module")
def seed_tree(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tree") / "generate_conditions.yaml"
    path.write_text(SEED_DOCUMENT_TREE)
    return path


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory, full_hub_env, seed_tree) -> tuple[subprocess.CompletedProcess, Path]:
    """The seed tree, n=2, on 2 torchrun ranks with batch size 3 (full 47.55 s window model)."""
    out = tmp_path_factory.mktemp("world2-batch3")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", GENERATE,
        "--cond-yaml-path", str(seed_tree), "--output-dir", str(out),
        "--n-sample-per-cond", "2", "--batch-size", "3", "--clip-length", *FAST,
    ]  # fmt: skip
    return run(command, full_hub_env), out


@pytest.mark.slow
def test_torchrun_two_ranks_writes_exactly_the_documented_tree(two_rank_run) -> None:
    result, out = two_rank_run
    assert result.returncode == 0, result.stderr[-3000:]
    files = all_files(out)
    # Nothing else: no temporaries, no progress counters, no unfolded manifest parts.
    assert set(files) == set(SEED_TREE_FILES) | {"manifest.jsonl"}
    records = [json.loads(line) for line in files["manifest.jsonl"].read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(SEED_TREE_FILES)
    assert {r["rank"] for r in records} == {0, 1}
    for record in records:
        assert record["status"] == "ok" and record["frames"] == SEED_TREE_FILES[record["path"]] * 44100
        assert record["model"] == "stabilityai/stable-audio-open-1.0" and len(record["model_revision"]) == 40
        assert record["bytes"] == files[record["path"]].stat().st_size and record["peak"] > 0
    for relpath, seconds in SEED_TREE_FILES.items():
        info = sf.info(files[relpath])
        assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_16")
        assert info.frames == seconds * 44100
        data, _ = sf.read(files[relpath], dtype="float32")
        assert np.isfinite(data).all() and np.abs(data).max() > 0
    assert "done: 8 items generated, 140.0 s of audio" in result.stdout
    assert "2 rank(s) x cpu, DiT in fp32" in result.stdout


@pytest.mark.slow
def test_world_size_and_batch_size_do_not_change_the_audio(two_rank_run, tmp_path, full_hub_env, seed_tree) -> None:
    _, world2 = two_rank_run
    world1 = tmp_path / "world1-batch1"
    command = [
        sys.executable, GENERATE, "--cond-yaml-path", str(seed_tree), "--output-dir", str(world1),
        "--n-sample-per-cond", "2", "--batch-size", "1", "--clip-length", *FAST,
    ]  # fmt: skip
    result = run(command, full_hub_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 rank(s) x cpu" in result.stdout
    expected, got = audio_files(world1), audio_files(world2)
    assert set(expected) == set(got) == set(SEED_TREE_FILES)
    for relpath in SEED_TREE_FILES:
        a, _ = sf.read(expected[relpath], dtype="float32")
        b, _ = sf.read(got[relpath], dtype="float32")
        assert np.abs(a - b).max() <= 1e-4, relpath
    first = sf.read(expected["sfx/sample-1_item-1.wav"], dtype="float32")[0]
    second = sf.read(expected["sfx/sample-1_item-2.wav"], dtype="float32")[0]
    assert np.abs(first - second).max() > 1e-2  # items of one leaf really have different seeds


# In-process runs of the same entry point on the small-window model (about 2.97 s).
SMALL_TREE = "kit:\n  kick: {prompt: kick drum, seconds_total: 1.5}\n  snare: {prompt: snare, seconds_start: 0.5, seconds_total: 2}\n"


@pytest.mark.parametrize(("fmt", "subtype", "extension"), [("flac24", "PCM_24", "flac"), ("wav32f", "FLOAT", "wav")])
def test_formats_and_unclipped_files_cover_the_window(small_model, tmp_path, capsys, fmt, subtype, extension) -> None:
    out = tmp_path / "out"
    tree = str(write(tmp_path, SMALL_TREE))
    code = cli.main(["--cond-yaml-path", tree, "--output-dir", str(out), "--format", fmt, "--latent-length", "full", *FAST])
    assert code == 0, capsys.readouterr().err
    files = audio_files(out)
    assert set(files) == {f"kit/kick_item-1.{extension}", f"kit/snare_item-1.{extension}"}
    for path in files.values():
        info = sf.info(path)
        assert info.subtype == subtype and info.frames == small_model.spec.window_samples


def test_unclipped_files_in_auto_mode_cover_their_latent_bucket(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["--cond-yaml-path", str(write(tmp_path, SMALL_TREE)), "--output-dir", str(out), *FAST]) == 0
    # kick: 1.5 s -> 33 frames -> 48-frame bucket; snare: 0.5 + 2 s -> 54 frames -> 64 (the whole window)
    frames = {name: sf.info(path).frames for name, path in audio_files(out).items()}
    assert frames == {"kit/kick_item-1.wav": 48 * 2048, "kit/snare_item-1.wav": 64 * 2048}


def test_write_failures_stop_the_run_with_a_clear_error(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "kit").write_text("a file where the kit/ directory should go")  # like a full or read-only disk
    code = cli.main(["--cond-yaml-path", str(write(tmp_path, SMALL_TREE)), "--output-dir", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == exits.EXIT_WRITE_FAILED
    assert "writing generated audio failed" in err and "kit" in err


def expect_usage_error(tmp_path: Path, capsys, args: list[str], message: str) -> str:
    out = tmp_path / "never-created"
    code = cli.main(["--output-dir", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert not out.exists()  # nothing written
    return err


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ("kit:\n  kick: {prompt: kick\n", "tree.yaml:3: <root>: YAML syntax error"),
        ("kit:\n  kick: {seconds_total: 1}\n", "tree.yaml:2: kit/kick: leaf has no 'prompt'"),
        ("kit:\n  kick: {prompt: kick, seconds_total: long}\n", "kit/kick/seconds_total: expected a number, got str 'long'"),
        ("kit:\n  kick: {prompt: kick, seconds_total: 9}\n", "kit/kick: seconds_start + seconds_total = 9 s is longer than"),
        ("splits:\n  kick: {prompt: kick}\n", "tree.yaml:1: splits: 'splits' is reserved: generate.py keeps the split folders"),
    ],
)
def test_bad_trees_exit_2_naming_the_yaml_path(small_hub, tmp_path, capsys, tree, message) -> None:
    expect_usage_error(tmp_path, capsys, ["--cond-yaml-path", str(write(tmp_path, tree))], message)


def test_an_alias_bomb_is_refused_naming_max_items(small_hub, tmp_path, capsys) -> None:
    tree = write(tmp_path, alias_bomb(levels=10, width=10))  # 10^10 leaves in about a kilobyte
    args = ["--cond-yaml-path", str(tree), "--max-items", "50"]
    err = expect_usage_error(tmp_path, capsys, args, "tree.yaml:1: top/a0/a0/a0/a0/a0/a0/a0/a0/a5/a0: too many leaves")
    assert "makes 10,000,000,000 leaves" in err and "limit of 50 items (raise it with --max-items)" in err


NEGATIVE_WITHOUT_GUIDANCE = "kit:\n  kick: {prompt: kick, seconds_total: 1, negative_prompt: hum}\n  snare: {prompt: snare, seconds_total: 1}\n"


@pytest.mark.parametrize(("cfg", "warned"), [("1", True), ("3", False)])
def test_a_negative_prompt_without_guidance_is_a_warning_not_an_error(small_hub, tmp_path, capsys, cfg, warned) -> None:
    tree = write(tmp_path, NEGATIVE_WITHOUT_GUIDANCE)
    out = tmp_path / "out"
    code = cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(out), "--cfg-scale", cfg, "--dry-run"])
    captured = capsys.readouterr()
    assert code == exits.EXIT_OK, captured.err
    expected = f"warning: {tree}:2: kit/kick: negative_prompt is ignored: the cfg_scale this leaf gets is 1"
    assert (expected in captured.err) == warned and captured.err.count("warning:") == int(warned), captured.err
    assert "dry run: 2 items" in captured.out and not out.exists()  # the dry run went on to print its plan


def test_dry_run_checks_the_tree_and_the_plan_as_a_run_does(small_hub, tmp_path, capsys) -> None:
    too_long = "kit:\n  kick: {prompt: kick, seconds_total: 9}\n"  # the model's window: checked by the plan
    args = ["--cond-yaml-path", str(write(tmp_path, too_long)), "--dry-run"]
    expect_usage_error(tmp_path, capsys, args, "kit/kick: seconds_start + seconds_total = 9 s is longer than")
    args = ["--cond-yaml-path", str(write(tmp_path, "report.html:\n  a: {prompt: x}\n")), "--dry-run"]
    expect_usage_error(tmp_path, capsys, args, "tree.yaml:1: report.html: 'report.html' is reserved")


def test_unknown_model_exits_2_naming_the_flag(small_hub, tmp_path, capsys) -> None:
    tree = write(tmp_path, SMALL_TREE)
    args = ["--cond-yaml-path", str(tree), "--pretrained-name", "nobody/no-such-model"]
    expect_usage_error(tmp_path, capsys, args, "--pretrained-name nobody/no-such-model: model_config.json is not in")


def test_gated_model_says_how_to_get_access(small_hub, tmp_path, capsys, monkeypatch) -> None:
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    url = f"https://huggingface.co/{DEMO_REPO_ID}/resolve/main/model_config.json"
    response = httpx.Response(403, request=httpx.Request("GET", url))

    def gated(*args, **kwargs):
        raise GatedRepoError("403 Client Error: access to model is restricted", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)  # the hub's answer for a gated repo
    err = expect_usage_error(tmp_path, capsys, ["--cond-yaml-path", str(write(tmp_path, SMALL_TREE))], "is gated")
    assert "HF_TOKEN" in err and "https://huggingface.co/stabilityai/stable-audio-open-1.0" in err


def test_local_checkpoint_that_does_not_match_its_config_is_refused(small_hub, tmp_path, capsys) -> None:
    snapshot = next((small_hub / "hub" / f"models--{DEMO_REPO_ID.replace('/', '--')}" / "snapshots").iterdir())
    state = load_file(snapshot / "model.safetensors")
    state.pop("model.model.to_cond_embed.0.weight")
    state["model.model.extra.weight"] = state["model.model.to_cond_embed.2.weight"].clone()
    save_file(state, tmp_path / "broken.safetensors")
    args = [
        "--cond-yaml-path", str(write(tmp_path, SMALL_TREE)),
        "--model-config", str(snapshot / "model_config.json"), "--ckpt-path", str(tmp_path / "broken.safetensors"),
    ]  # fmt: skip
    err = expect_usage_error(tmp_path, capsys, args, "does not match its model config: 1 missing keys")
    assert "model.model.to_cond_embed.0.weight" in err and "model.model.extra.weight" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-config", "x.json"], "--model-config needs --ckpt-path"),
        (["--ckpt-path", "x.ckpt"], "--ckpt-path x.ckpt needs --model-config: no model_config.json beside it"),
        (["--sigma-min", "5", "--sigma-max", "1"], "--sigma-min 5.0 must be lower than --sigma-max 1.0"),
        (["--sampler-type", "pingpong"], "--sampler-type pingpong does not work with this model (v)"),
        (["--revision", "0" * 40], f"--revision {'0' * 40}: model_config.json is not in the local hub cache"),
        (["--weights", "ema"], "--weights applies to local training checkpoints"),
    ],
)
def test_inconsistent_flags_exit_2(small_hub, tmp_path, capsys, args, message) -> None:
    expect_usage_error(tmp_path, capsys, ["--cond-yaml-path", str(write(tmp_path, SMALL_TREE)), *args], message)


def test_missing_yaml_and_unusable_output_dir(small_hub, tmp_path, capsys) -> None:
    expect_usage_error(tmp_path, capsys, ["--cond-yaml-path", str(tmp_path / "nope.yaml")], "nope.yaml: <root>: file not found")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for output_dir, message in ((blocker, "exists and is not a directory"), (blocker / "sub", "is a file")):
        code = cli.main(["--cond-yaml-path", str(write(tmp_path, SMALL_TREE)), "--output-dir", str(output_dir)])
        assert code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--batch-size", "0", "expected an integer >= 1, got 0"), ("--sample-steps", "x", "expected an integer >= 1, got 'x'"),
     ("--seed", "-3", "expected an integer in [0, 2**63)"), ("--cfg-scale", "nan", "expected a finite number")],
)
def test_bad_flag_values_exit_2(tmp_path, capsys, flag, value, message) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--cond-yaml-path", "t.yaml", "--output-dir", str(tmp_path), flag, value])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_process_exit_code_is_2_for_bad_input(full_hub_env, tmp_path) -> None:
    tree = write(tmp_path, "music:\n  drum:\n    loop: {prompt: x, secons_total: 3}\n")
    result = run([sys.executable, GENERATE, "--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "o")], full_hub_env)
    assert result.returncode == 2
    assert "music/drum/loop/secons_total: unknown leaf field; did you mean 'seconds_total'?" in result.stderr
    assert not (tmp_path / "o").exists()
    # Under torchrun: rank 0's block, once, and torchrun's report of rank 0's exit code 2. Rank 1 leaves
    # the tree to rank 0 and exits 0; had it exited 2 first, torchrun would kill rank 0 unprinted. (When
    # rank 1 is still starting as rank 0 ends - a loaded machine - torchrun stops it with SIGTERM and
    # its report lists it too, with exit code -15.)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", GENERATE]
    result = run([*torchrun, "--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "o")], full_hub_env)
    assert result.returncode == 1  # torchrun's own status for any failed worker
    assert result.stderr.count("unknown leaf field") == 1, result.stderr
    assert result.stderr.count("exitcode  : 2") == 1, result.stderr


def test_other_ranks_leave_the_tree_to_rank_0_and_report_only_their_node(small_hub, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    tree = write(tmp_path, "kit:\n  kick: {prompt: kick, secons_total: 1}\n")
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out")]) == exits.EXIT_OK
    assert capsys.readouterr().err == ""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(blocker)]) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("rank 1 on ") and "exists and is not a directory" in err and "secons_total" not in err
