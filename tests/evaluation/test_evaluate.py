"""``finetune.py evaluate``: a two-checkpoint fine-tune and its base model on one tree -> ``comparison.html``.

The run is a real ``finetune.py train`` of the tiny model (two steps, a checkpoint each), and every
evaluation a real ``finetune.py evaluate`` subprocess that generates through ``generate.py``'s engine
and scores with the tiny CLAP of the offline hub. The page is parsed, and rendered by a headless Chromium.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.evaluation.comparison import COMPARISON_NAME
from stable_audio_tools_ext.run.exits import EXIT_USAGE
from tests.chromium import CHROMIUM_ARGS
from tests.conftest import REPO_ROOT
from tests.finetune.captioned import AUDIO, prepared
from tests.finetune.test_train import BASE, SMALL, dataset_flags, train
from tests.support import parse_tables

TREE = """\
rain:
  roof: {prompt: rain on a tin roof, seconds_total: 1}
dog:
  bark: {prompt: a dog barks, seconds_total: 1.5}
"""
LABELS = ["base", "step-1", "step-2"]
ITEMS = ["dog/bark_item-1.wav", "dog/bark_item-2.wav", "rain/roof_item-1.wav", "rain/roof_item-2.wav"]
SAMPLING = ["--sample-steps", "4", "--n-sample-per-cond", "2", "--batch-size", "2", "--clip-length", "--seed", "5"]


def evaluate(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "finetune.py"), "evaluate", *map(str, args)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def evaluated(small_hub_env, tmp_path_factory) -> tuple[Path, list[str | Path], subprocess.CompletedProcess]:
    """A two-step run with a checkpoint per step, its base model, evaluated with CLAP scores; then rerun against the base's own files."""
    tmp = prepared(tmp_path_factory.mktemp("evaluate"), AUDIO, "train=0.6,val=0.4")
    trained = train(*dataset_flags(tmp, val=False), *BASE, *SMALL, "--save-dir", tmp / "runs", "--name", "tiny",
                    "--checkpoint-every", "1", "--max-steps", "2", env=small_hub_env)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    (tmp / "tree.yaml").write_text(TREE, encoding="utf-8")
    args = ["--cond-yaml-path", tmp / "tree.yaml", "--output-dir", tmp / "out", "--run-dir", tmp / "runs" / "tiny", *BASE,
            *SAMPLING, "--score", "clap"]  # fmt: skip
    first = evaluate(*args, env=small_hub_env)
    assert first.returncode == 0, first.stderr
    return tmp / "out", args, first


@pytest.fixture(scope="module")
def rerun(evaluated, small_hub_env, standins) -> tuple[subprocess.CompletedProcess, dict[str, float]]:
    """The same evaluation again with ``--reference`` the base model's own folder (its items pair with every model's
    by id) and KL_passt beside FD_clap (PaSST: the stand-in; FD_openl3 goes the same way through scoring.sets, tested
    in test_score.py, at 0.2 s per OpenL3 window); file times from before it."""
    out, args, _ = evaluated
    before = {path.as_posix(): path.stat().st_mtime_ns for path in out.rglob("*.wav")}
    result = evaluate(*args, "--reference", out / "base", "--metrics", "kl_passt,fd_clap", env=small_hub_env)
    assert result.returncode == 0, result.stderr
    return result, before


def test_each_model_has_its_folder_and_the_page_a_row_per_item_and_a_column_per_model(evaluated) -> None:
    out, _, _ = evaluated
    for label in LABELS:
        assert sorted(p.relative_to(out / label).as_posix() for p in (out / label).rglob("*.wav")) == ITEMS
    page = parse_tables(out / COMPARISON_NAME)
    header, *rows = page.tables["items"]
    assert [cell["text"] for cell in header] == ["item", *LABELS]
    assert [row[0]["text"].split(".wav")[0] + ".wav" for row in rows] == ITEMS
    for row in rows:
        assert len(row) == 1 + len(LABELS)
        for label, cell in zip(LABELS, row[1:]):
            (src,) = cell["audio"]
            assert unquote(src) == f"{label}/{row[0]['text'].split('.wav')[0]}.wav" and (out / unquote(src)).is_file()
            assert cell["img"][0].startswith("data:image/png;base64,")
            assert -1.0 <= float(re.fullmatch(r"CLAP (-?\d\.\d{4})", cell["text"]).group(1)) <= 1.0


def test_the_checkpoints_change_the_audio_the_seeds_do_not_differ(evaluated) -> None:
    """Same tree, same seeds: the folders differ by the weights only, so the base and the tuned files differ."""
    out, _, _ = evaluated
    base, tuned = (sf.read(out / label / ITEMS[0])[0] for label in ("base", "step-2"))
    assert base.shape == tuned.shape and not np.allclose(base, tuned)


def test_the_summary_has_a_row_per_model_with_mean_scores_per_branch(evaluated) -> None:
    out, _, _ = evaluated
    header, *rows = parse_tables(out / COMPARISON_NAME).tables["summary"]
    # the first six columns: the rerun with --reference (if it ran first) adds FD_clap's two
    assert [cell["text"] for cell in header[:6]] == ["model", "weights", "items written", "mean CLAP score (items)",
                                                     "CLAP: dog", "CLAP: rain"]  # fmt: skip
    assert [row[0]["text"] for row in rows] == LABELS
    for row in rows:
        assert row[2]["text"] == "4 of 4"
        means = [re.fullmatch(r"(-?\d\.\d{4}) \((\d)\)", cell["text"]).groups() for cell in row[3:6]]
        assert [int(n) for _, n in means] == [4, 2, 2] and all(-1 <= float(m) <= 1 for m, _ in means)
    assert rows[1][1]["text"].endswith("epoch=0-step=1.ckpt")


def test_a_rerun_generates_nothing_and_the_frechet_distance_to_a_models_own_files_is_zero(evaluated, rerun) -> None:
    out, _, _ = evaluated
    result, before = rerun
    assert {path.as_posix(): path.stat().st_mtime_ns for path in out.rglob("*.wav")} == before
    assert result.stdout.count("4 of the 4 items were already complete") == len(LABELS)
    page = parse_tables(out / COMPARISON_NAME)
    header, *rows = page.tables["summary"]
    assert [cell["text"] for cell in header[-2:]] == ["FD_clap", "files (model / reference)"]
    distances = {row[0]["text"]: float(row[-2]["text"]) for row in rows}
    # The tiny random CLAP's embeddings move little with the audio (about 1e-5), so the distances are small;
    # the base's own files are the reference (round-off), the fine-tuned ones are measurably further.
    assert distances["base"] < 1e-12 < min(distances["step-1"], distances["step-2"])
    assert {row[-1]["text"] for row in rows} == {"4 / 4"}
    assert any("4 files, fewer than the" in w and "dimensions" in w for w in page.warnings)
    assert header[-3]["text"] == "KL_passt"
    kl = {row[0]["text"]: float(row[-3]["text"]) for row in rows}
    # each base item against itself: the +1e-6 only; two training steps move the tiny PaSST's classes too little to see
    assert all(-527e-6 <= value <= 0.01 for value in kl.values()) and kl["base"] <= 0
    assert sum("fewer than the 32 dimensions" in w for w in page.warnings) == len(LABELS) + 1  # the reference's once


@pytest.mark.slow
def test_under_torchrun_every_model_runs_in_one_process_group_and_writes_the_same_items(evaluated, small_hub_env, tmp_path) -> None:
    """Two gloo ranks, two models in turn: the items match the one-process run's (batches differ: round-off only)."""
    out, args, _ = evaluated
    run_dir = args[args.index("--run-dir") + 1]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO_ROOT / "finetune.py"), "evaluate", "--cond-yaml-path", str(args[1]), "--output-dir", str(tmp_path),
               "--ckpt-path", str(next((run_dir / "checkpoints").glob("*step=2.ckpt"))), *BASE, *SAMPLING]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=small_hub_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [cell["text"] for cell in parse_tables(tmp_path / COMPARISON_NAME).tables["items"][0]] == ["item", "base", "epoch=1-step=2"]
    for label, theirs in (("base", "base"), ("epoch=1-step=2", "step-2")):
        for item in ITEMS:
            mine, reference = (sf.read(folder / item, dtype="int16")[0] for folder in (tmp_path / label, out / theirs))
            assert mine.shape == reference.shape and np.abs(mine.astype(int) - reference).max() <= 1


def test_chromium_renders_the_comparison(evaluated, chromium, tmp_path) -> None:
    """A headless Chromium screenshot of the page (kept in this test's tmp_path)."""
    out, _, _ = evaluated
    screenshot = tmp_path / "comparison.png"
    command = [str(chromium), "--headless", *CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={screenshot}", "--window-size=1280,1200", (out / COMPARISON_NAME).as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and screenshot.is_file(), result.stderr[-2000:]
    image = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float32)
    assert image.shape == (1200, 1280, 3)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    assert ((red > green + 40) & (blue > green + 40)).mean() > 0.02  # magma-purple spectrogram thumbnails
    print(f"screenshot: {screenshot}")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--run-dir", "{tmp}/runs/empty"], "--run-dir {tmp}/runs/empty: no checkpoints"),
        ([*BASE, "--reference", "{tmp}/silent"], "--reference {tmp}/silent: no audio files"),
        ([], "no model to evaluate: give --run-dir"),
        ([*BASE, "--cond-yaml-path", "{tmp}/missing.yaml"], "--cond-yaml-path {tmp}/missing.yaml: no such file"),
        (["--ckpt-path", "{tmp}/gone.ckpt"], "--ckpt-path {tmp}/gone.ckpt: no such file"),
    ],
    ids=["run-without-checkpoints", "reference-without-audio", "no-model", "missing-tree", "missing-checkpoint"],
)
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(flags, message, tmp_path, capsys) -> None:
    (tmp_path / "runs" / "empty" / "checkpoints").mkdir(parents=True)
    (tmp_path / "silent").mkdir()
    (tmp_path / "silent" / "notes.txt").write_text("no audio here\n", encoding="utf-8")
    (tmp_path / "tree.yaml").write_text(TREE, encoding="utf-8")
    argv = ["evaluate", "--cond-yaml-path", str(tmp_path / "tree.yaml"), "--output-dir", str(tmp_path / "out")]
    assert finetune_main.main(argv + [flag.format(tmp=tmp_path) for flag in flags]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message.format(tmp=tmp_path)}") and "\n" not in err
    assert not (tmp_path / "out").exists()
