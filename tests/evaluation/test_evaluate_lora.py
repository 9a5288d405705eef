"""``finetune.py evaluate`` with LoRA adapters: a LoRA run's checkpoints against its base, and adapter files at strengths.

The LoRA run folder is built by hand as ``finetune.py train --lora-rank`` leaves one (``lora_base.json``,
a checkpoint and its adapter file beside it, with small random factors for the tiny model), so the
test needs no training. One real ``finetune.py evaluate`` subprocess generates every column; a
checkpoint's folder is compared with ``generate.py --lora`` run in-process on the same tree and seeds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.evaluation.comparison import COMPARISON_NAME
from stable_audio_tools_ext.finetune.run_folder import LoraRunInfo, TrainingRun, adapter_file
from stable_audio_tools_ext.model.lora import write_lora
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.run import cli as generate_cli
from stable_audio_tools_ext.run.exits import EXIT_OK, EXIT_USAGE
from tests.evaluation.test_evaluate import SAMPLING, TREE, evaluate
from tests.finetune.test_train import BASE
from tests.model.test_lora import CONFIG, random_tensors
from tests.support import parse_tables

LABELS = ["base", "step-3", "style@0", "style@0.5"]
RUN = [*SAMPLING, "--n-sample-per-cond", "1"]  # test_evaluate's flags, one item per leaf: four models generate
ITEMS = ["dog/bark_item-1.wav", "rain/roof_item-1.wav"]
CHECKPOINT = "epoch=0-step=3.ckpt"


def lora_run(folder: Path, model, with_adapter: bool = True) -> TrainingRun:
    """A LoRA run folder as ``finetune.py train --lora-rank`` leaves it: ``lora_base.json``, one checkpoint, its adapter."""
    run = TrainingRun(folder)
    run.checkpoints_dir.mkdir(parents=True)
    run.save_lora_info(LoraRunInfo(json.loads(CONFIG.to_json()), tuple(BASE), f"{DEMO_REPO_ID} (the tiny model)"))
    checkpoint = run.checkpoints_dir / CHECKPOINT
    checkpoint.write_bytes(b"")  # evaluate reads a LoRA checkpoint's name only: generation takes its adapter file
    if with_adapter:
        write_lora(adapter_file(checkpoint), random_tensors(model, seed=1), CONFIG)
    return run


@pytest.fixture(scope="module")
def evaluated(small_model, small_hub_env, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A LoRA run and an adapter file at strengths 0 and 0.5, evaluated in one subprocess; returns (tmp, OUT, run)."""
    tmp = tmp_path_factory.mktemp("evaluate-lora")
    run = lora_run(tmp / "runs" / "style", small_model.model)
    write_lora(tmp / "adapters" / "style.safetensors", random_tensors(small_model.model, seed=2), CONFIG)
    (tmp / "tree.yaml").write_text(TREE, encoding="utf-8")
    result = evaluate("--cond-yaml-path", tmp / "tree.yaml", "--output-dir", tmp / "out", "--run-dir", run.folder,
                      *BASE, "--lora", tmp / "adapters" / "style.safetensors", "--lora-strengths", "0,0.5", *RUN,
                      env=small_hub_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tmp, tmp / "out", run.folder


def audio(path: Path) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def test_a_lora_run_is_its_base_and_each_checkpoints_adapter_and_files_a_column_per_strength(evaluated) -> None:
    """The run's base equals --pretrained-name's flags, so it is one column; each column has every item."""
    _, out, run = evaluated
    header, *rows = parse_tables(out / COMPARISON_NAME).tables["items"]
    assert [cell["text"] for cell in header] == ["item", *LABELS]
    for label in LABELS:
        assert sorted(p.relative_to(out / label).as_posix() for p in (out / label).rglob("*.wav")) == ITEMS
    summary = {row[0]["text"]: row[1]["text"] for row in parse_tables(out / COMPARISON_NAME).tables["summary"][1:]}
    assert summary["step-3"].endswith(f"LoRA {run / 'checkpoints' / 'epoch=0-step=3.safetensors'}")
    records = {label: load_records(out / label)[ITEMS[0]] for label in LABELS}
    assert [r.get("lora") and (r["lora"][0]["file"], r["lora"][0]["strength"]) for r in records.values()] == [
        None, ("epoch=0-step=3.safetensors", 1.0), ("style.safetensors", 0.0), ("style.safetensors", 0.5)]  # fmt: skip


def test_a_checkpoints_items_are_generate_py_with_its_adapter_on_the_same_seeds(evaluated, capsys) -> None:
    tmp, out, run = evaluated
    adapter = run / "checkpoints" / "epoch=0-step=3.safetensors"
    argv = ["--cond-yaml-path", str(tmp / "tree.yaml"), "--output-dir", str(tmp / "direct"), *BASE, "--lora", str(adapter), *RUN]
    assert generate_cli.main(argv) == EXIT_OK, capsys.readouterr().err
    for item in ITEMS:
        assert np.array_equal(audio(tmp / "direct" / item), audio(out / "step-3" / item)), item
    assert not np.array_equal(audio(out / "base" / ITEMS[0]), audio(out / "step-3" / ITEMS[0]))


def test_strength_0_is_the_base_model_and_other_strengths_are_not(evaluated) -> None:
    _, out, _ = evaluated
    for item in ITEMS:
        assert np.array_equal(audio(out / "style@0" / item), audio(out / "base" / item)), item
    assert not np.array_equal(audio(out / "style@0.5" / ITEMS[0]), audio(out / "base" / ITEMS[0]))


@pytest.fixture
def bad_inputs(small_model, tmp_path) -> dict[str, Path]:
    """A tree, a LoRA run whose checkpoint lacks its adapter, one whose record is broken, a good adapter, a text file."""
    (tmp_path / "tree.yaml").write_text(TREE, encoding="utf-8")
    lora_run(tmp_path / "no-adapter", small_model.model, with_adapter=False)
    broken = lora_run(tmp_path / "broken", small_model.model)
    broken.lora_base_path.write_text('{"lora_config": {}}\n', encoding="utf-8")
    write_lora(tmp_path / "style.safetensors", random_tensors(small_model.model, seed=3), CONFIG)
    (tmp_path / "notes.safetensors").write_text("not an adapter\n", encoding="utf-8")
    return {"tmp": tmp_path, "ckpt": tmp_path / "no-adapter" / "checkpoints" / CHECKPOINT}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--run-dir", "{tmp}/no-adapter"], "--run-dir {tmp}/no-adapter: LoRA checkpoint {ckpt} has no adapter file beside "
         "it; write it with finetune.py export-lora --ckpt-path {ckpt} --output {tmp}/no-adapter/checkpoints/epoch=0-step=3.safetensors"),
        (["--run-dir", "{tmp}/broken"], "--run-dir {tmp}/broken: {tmp}/broken/lora_base.json is not a LoRA run record: expected a JSON object with "
         "lora_config, base_flags and base_description (KeyError: 'base_flags')"),
        ([*BASE, "--lora", "{tmp}/notes.safetensors"], "--lora: LoRA adapter {tmp}/notes.safetensors: not a safetensors file"),
        ([*BASE, "--lora", "{tmp}/absent.safetensors"], "--lora: LoRA adapter {tmp}/absent.safetensors: file not found"),
        (["--lora", "{tmp}/style.safetensors"], "--lora needs the base model its adapters were trained on: --pretrained-name"),
        ([*BASE, "--lora", "{tmp}/style.safetensors", "--lora-strengths", "1", "--lora-strengths", "2"],
         r"--lora-strengths: give it once for every --lora or once per --lora (1 --lora, 2 --lora-strengths)"),
        ([*BASE, "--lora-strengths", "0.5"], "--lora-strengths needs --lora"),
        (["--revision", "main"], "--revision needs --pretrained-name"),
    ],
    ids=["checkpoint-without-adapter", "broken-lora-record", "not-an-adapter", "missing-adapter", "adapter-without-base",
         "strengths-per-file-mismatch", "strengths-without-lora", "revision-without-name"],  # fmt: skip
)
def test_bad_lora_input_is_one_line_and_exit_2_before_anything_is_generated(bad_inputs, flags, message, capsys) -> None:
    tmp = bad_inputs["tmp"]
    argv = ["evaluate", "--cond-yaml-path", str(tmp / "tree.yaml"), "--output-dir", str(tmp / "out")]
    assert finetune_main.main(argv + [flag.format(tmp=tmp) for flag in flags]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message.format(**bad_inputs)}") and "\n" not in err
    assert not (tmp / "out").exists()


def test_a_strength_that_is_not_a_number_is_a_flag_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        finetune_main.main(["evaluate", "--cond-yaml-path", "t.yaml", "--output-dir", "out", "--lora-strengths", "0.5,strong"])
    assert exit_info.value.code == EXIT_USAGE
    assert "argument --lora-strengths: expected a number, got 'strong'" in capsys.readouterr().err
