"""Swept trees through generate.py: the dry run's expansion, 2 torchrun ranks, manifest vars, report, init audio."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext.datasets.report import REPORT_NAME
from stable_audio_tools_ext.run import cli, exits
from tests.support import GENERATE, audio_files, run, write
from tests.trees import SWEEP_TREE

FAST = ["--sample-steps", "4", "--clip-length"]
TOLERANCE = 1e-4  # float sums differ slightly with batch composition and world size (16-bit PCM step: 3e-5)
# 2 genres x 2 tempos = 4 leaves of 1 s, and a plain leaf; the small (2.97 s window) model.
SMALL_SWEEP = """\
loops:
  _sweep: {genre: [techno, jazz], bpm: [90, 120]}
  prompt: "{bpm} BPM {genre} drum loop"
  seconds_total: 1
kick: {prompt: a kick drum, seconds_total: 0.5}
"""


def records_of(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_dry_run_shows_each_sweeps_expansion(small_hub, tmp_path, capsys) -> None:
    tree = write(tmp_path, SWEEP_TREE.replace("seconds_total: 10", "seconds_total: 2"))  # the small model's window
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"), "--dry-run"]) == exits.EXIT_OK
    out = " ".join(capsys.readouterr().out.split())  # rich wraps the table to the terminal's width
    assert "Sweeps (leaves expanded from _sweep/_zip)" in out
    assert "drums/loops │ genre x bpm x cfg_scale │ 12 │ 12 │ techno-90-cfg3, techno-90-cfg7, techno-120-cfg3, ... (+9)" in out
    assert "dry run: 13 items" in out and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_swept_tree_on_two_ranks_records_vars_and_growing_it_keeps_the_audio(small_hub_env, tmp_path) -> None:
    tree = write(tmp_path, SMALL_SWEEP)
    out = tmp_path / "two-ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", GENERATE,
               "--cond-yaml-path", str(tree), "--output-dir", str(out), "--report", *FAST]  # fmt: skip
    result = run(command, small_hub_env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = records_of(out)
    assert set(records) == {f"loops/{g}-{b}_item-1.wav" for g in ("techno", "jazz") for b in (90, 120)} | {"kick_item-1.wav"}
    assert {r["rank"] for r in records.values()} == {0, 1}
    jazz = records["loops/jazz-120_item-1.wav"]
    assert jazz["vars"] == {"genre": "jazz", "bpm": 120} and jazz["prompt"] == "120 BPM jazz drum loop"
    assert records["kick_item-1.wav"]["vars"] == {}
    report = (out / REPORT_NAME).read_text()
    assert '<section id="variables">' in report and "<h3>genre</h3>" in report and "<h3>bpm</h3>" in report

    grown_tree = write(tmp_path, SMALL_SWEEP.replace("[90, 120]", "[90, 120, 140]"), "grown.yaml")
    grown = tmp_path / "one-rank-grown"
    assert cli.main(["--cond-yaml-path", str(grown_tree), "--output-dir", str(grown), *FAST]) == exits.EXIT_OK
    assert len(records_of(grown)) == 7
    for path in records:  # every combination that existed before sounds the same: seeds follow the path alone
        assert np.abs(sf.read(out / path)[0] - sf.read(grown / path)[0]).max() <= TOLERANCE, path


def write_init(path: Path, seconds: float, sample_rate: int = 22050) -> Path:
    """A mono sweep tone: another rate and channel count than the model's, so it must be converted."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), sample_rate)
    return path


@pytest.mark.parametrize("latent_length", ["auto", "full"])
def test_init_audio_variations_run_in_both_latent_modes_and_batches_do_not_change_them(
    small_hub, tmp_path, latent_length
) -> None:
    write_init(tmp_path / "groove.wav", 0.7)
    write_init(tmp_path / "long.wav", 5.0)
    tree = write(tmp_path, "vars:\n  _sweep: {stem: [groove, long], init_noise_level: [0.5, 3]}\n"
                           "  init_audio: '{stem}.wav'\n  prompt: funk drums\n  seconds_total: 1.5\n")  # fmt: skip
    outs = {}
    for batch in ("1", "4"):
        outs[batch] = tmp_path / f"batch{batch}"
        argv = ["--cond-yaml-path", str(tree), "--output-dir", str(outs[batch]), "--batch-size", batch,
                "--latent-length", latent_length, *FAST]  # fmt: skip
        assert cli.main(argv) == exits.EXIT_OK
    records = records_of(outs["4"])
    assert sorted(records) == [f"vars/{s}-{n}_item-1.wav" for s in ("groove", "long") for n in ("0.5", "3")]
    record = records["vars/groove-0.5_item-1.wav"]
    assert record["init_audio"] == {"path": str(tmp_path / "groove.wav"),
                                    "sha256": hashlib.sha256((tmp_path / "groove.wav").read_bytes()).hexdigest()}  # fmt: skip
    assert record["init_noise_level"] == 0.5 and record["vars"] == {"stem": "groove", "init_noise_level": 0.5}
    files = {path: sf.read(file)[0] for path, file in audio_files(outs["4"]).items()}
    assert all(audio.shape == (int(1.5 * 44100), 2) for audio in files.values())
    for path, audio in files.items():  # per-item seeds and per-item init encoding: batch size changes nothing
        assert np.abs(audio - sf.read(outs["1"] / path)[0]).max() <= TOLERANCE, path
    assert not np.allclose(files["vars/groove-0.5_item-1.wav"], files["vars/long-0.5_item-1.wav"], atol=1e-3)


def test_init_audio_that_is_not_audio_exits_2_naming_the_leaf_and_file(small_hub, tmp_path, capsys) -> None:
    (tmp_path / "notes.wav").write_text("not audio")
    tree = write(tmp_path, "a:\n  b: {prompt: x, init_audio: notes.wav}\n")
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out")]) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"tree.yaml:2: a/b/init_audio: {tmp_path / 'notes.wav'}: not an audio file soundfile can read" in err
    assert not (tmp_path / "out").exists()


def test_a_plan_problem_shared_by_a_sweeps_leaves_is_reported_once(small_hub, tmp_path, capsys) -> None:
    tree = write(tmp_path, SWEEP_TREE)  # 10 s leaves: longer than the small model's 2.97 s window
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out")]) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: 1 problem in" in err and "tree.yaml:3: drums/loops/techno-90-cfg3: seconds_start + seconds_total = " \
        "10 s is longer than the model's 2.97 s window (and so are the 11 other leaves of this sweep)" in err


def test_dry_run_tells_zipped_from_swept_variables_and_lists_the_sampling_settings(small_hub, tmp_path, capsys) -> None:
    """``_zip`` values advance together (``+``), ``_sweep`` ones combine (``x``); the start table's
    "per leaf: N sampler/steps/cfg settings" points here, so the dry run lists them."""
    tree = write(tmp_path, """\
hits:
  _sweep: {genre: [techno, jazz]}
  _zip: {object: [door, can], seconds_total: [1, 1]}
  _name: "{genre}-{object}"
  prompt: "{object} hit, {genre}"
slow: {prompt: a slow pad, seconds_total: 1, steps: 50, cfg_scale: 4}
""")
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"), "--dry-run"]) == exits.EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "hits │ genre x (object + seconds_total) │ 4 │ 4 │" in out
    assert "│ dpmpp-3m-sde │ 100 │ 7 │ 4 │ hits │" in out and "│ dpmpp-3m-sde │ 50 │ 4 │ 1 │ slow_item-1.wav │" in out
