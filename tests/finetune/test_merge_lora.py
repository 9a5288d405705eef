"""``finetune.py merge-lora``: adapters baked into a checkpoint that generates, through ``generate.py --ckpt-path``
alone, the audio of ``generate.py --lora`` (bit for bit in float32), and loads strictly in a tool without adapter
support; its provenance, the base's dtypes, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stable_audio_tools_ext.finetune_main import main as finetune
from stable_audio_tools_ext.finetune.merge_lora import MERGED_LORA_KEY
from stable_audio_tools_ext.model.lora import ADAPTED_TYPES, PARTS, write_lora
from stable_audio_tools_ext.model.lora_files import LoraConfig
from stable_audio_tools_ext.model.spec import ModelRequest, download, read_model_spec
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.run import cli, exits
from tests.model.test_lora import CONFIG, RUN, TREE, random_tensors, wide_tensors
from tests.support import all_files, audio_files, write

STRENGTHS = ("0.7", "-0.4")


def lora_flags(paths: list[Path], strengths: tuple[str, ...]) -> list[str]:
    return [f for p in paths for f in ("--lora", str(p))] + [f for s in strengths for f in ("--lora-strength", s)]


def merge(*flags: str) -> int:
    return finetune(["merge-lora", *flags])


def metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as stored:
        return json.loads(stored.metadata()[MERGED_LORA_KEY])


def generated(folder: Path, flags: list[str]) -> np.ndarray:
    """The one item of ``TREE`` as generate.py writes it, in 32-bit float (no 16-bit rounding to hide a difference)."""
    folder.mkdir()
    out = folder / "out"
    argv = ["--cond-yaml-path", str(write(folder, TREE)), "--output-dir", str(out), *RUN, "--format", "wav32f", *flags]
    assert cli.main(argv) == exits.EXIT_OK
    (wav,) = audio_files(out).values()
    return soundfile.read(wav, dtype="float32")[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in all_files(folder).items()}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, small_model) -> list[Path]:
    folder = tmp_path_factory.mktemp("adapters")
    paths = [folder / "style.safetensors", folder / "other.safetensors"]
    write_lora(paths[0], random_tensors(small_model.model, seed=31), CONFIG)
    write_lora(paths[1], random_tensors(small_model.model, seed=32, rank=2), LoraConfig(rank=2, alpha=2.0))
    return paths


@pytest.fixture(scope="module")
def merged(tmp_path_factory, adapters) -> Path:
    """Both adapters, at 0.7 and -0.4, merged into the hub model."""
    output = tmp_path_factory.mktemp("merged") / "tuned" / "model.safetensors"
    assert merge("--pretrained-name", DEMO_REPO_ID, *lora_flags(adapters, STRENGTHS), "--output", str(output)) == exits.EXIT_OK
    return output


def test_generating_with_the_merged_checkpoint_gives_the_adapted_models_audio_bit_for_bit(tmp_path, merged, adapters) -> None:
    with_adapters = generated(tmp_path / "adapters", ["--pretrained-name", DEMO_REPO_ID, *lora_flags(adapters, STRENGTHS)])
    with_merged = generated(tmp_path / "merged", ["--ckpt-path", str(merged)])  # its model_config.json found beside it
    assert with_merged.dtype == np.float32 and with_merged.size > 0
    assert np.array_equal(with_merged, with_adapters)


def test_the_merged_file_is_a_plain_state_dict_that_loads_strictly_without_adapter_support(merged, adapters, small_model) -> None:
    from stable_audio_tools.models.factory import create_model_from_config

    base, state = load_file(download(DEMO_REPO_ID, "model.safetensors", None)), load_file(merged)
    assert state.keys() == base.keys() and all(state[key].dtype == base[key].dtype for key in base)
    changed = {key for key in base if not torch.equal(state[key], base[key])}
    adapted = {f"{part}.{name}.weight" for part in PARTS for name, module in getattr(small_model.model, part).named_modules()
               if isinstance(module, ADAPTED_TYPES)}  # fmt: skip
    assert changed == adapted  # every layer the adapters cover, and nothing else
    config = json.loads((merged.parent / "model_config.json").read_text())
    spec = read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID, lora=tuple(adapters)))
    assert config == spec.config
    create_model_from_config(config).load_state_dict(state, strict=True)  # as stable-audio-tools 0.0.19 alone loads it
    assert metadata(merged) == {
        "base": {"source": DEMO_REPO_ID, "revision": spec.revision.split(";")[0], "weights": "safetensors"},
        "adapters": [{"file": name, "sha256": use.sha256, "strength": float(s)}
                     for name, use, s in zip(("style.safetensors", "other.safetensors"), spec.adapters, STRENGTHS)],
    }  # fmt: skip
    assert sorted(all_files(merged.parent)) == ["model.safetensors", "model_config.json"]  # no temporaries left


def test_merging_one_adapter_at_a_time_through_ckpt_path_gives_the_same_weights(tmp_path, merged, adapters, capsys) -> None:
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    assert merge("--lora", str(adapters[0]), "--lora-strength", STRENGTHS[0], "--output", str(first)) == exits.EXIT_OK
    assert f"{tmp_path / 'model_config.json'} written beside it" in capsys.readouterr().out
    flags = ["--ckpt-path", str(first), "--lora", str(adapters[1]), "--lora-strength", STRENGTHS[1], "--output", str(second)]
    assert merge(*flags) == exits.EXIT_OK  # the same config is already beside it: kept
    assert "model_config.json already there" in capsys.readouterr().out
    once, twice = load_file(merged), load_file(second)
    assert all(torch.equal(once[key], twice[key]) for key in once)  # float32 sums in the same order
    base = metadata(second)["base"]
    assert base["source"] == str(first) and base["revision"] == read_model_spec(ModelRequest(ckpt_path=first)).revision


def test_a_float16_base_gives_float16_weights(tmp_path, merged, adapters) -> None:
    hub = download(DEMO_REPO_ID, "model.safetensors", None)
    base = load_file(hub)
    half = {key: tensor.half() for key, tensor in base.items()}
    save_file(half, str(tmp_path / "half.safetensors"))
    shutil.copy(hub.with_name("model_config.json"), tmp_path)
    output = tmp_path / "half-merged.safetensors"
    flags = ["--ckpt-path", str(tmp_path / "half.safetensors"), *lora_flags(adapters, STRENGTHS), "--output", str(output)]
    assert merge(*flags) == exits.EXIT_OK
    state, full = load_file(output), load_file(merged)
    assert state.keys() == half.keys() and all(tensor.dtype == torch.float16 for tensor in state.values())
    for key, tensor in state.items():
        update = full[key] - base[key]  # the adapters' update in float32 (zero where they adapt nothing)
        if not update.any():
            assert torch.equal(tensor, half[key])
        else:  # merged in float32 onto the float16 base, then rounded to float16
            torch.testing.assert_close(tensor.float(), half[key].float() + update, rtol=2**-10, atol=1e-6)


def _bad_inputs(folder: Path, model: torch.nn.Module, adapters: list[Path]) -> dict[str, str]:
    """The files the bad-input cases name, made in ``folder``, by the names the cases use."""
    write_lora(folder / "wide.safetensors", wide_tensors(model)[1], CONFIG)
    (folder / "folder.safetensors").mkdir()
    write(folder, "not a folder\n", "notes.txt")
    other = folder / "other-model"
    other.mkdir()
    config = read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)).config
    (other / "model_config.json").write_text(json.dumps({**config, "sample_size": config["sample_size"] * 2}))
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model_config.json").write_text(json.dumps({**config, "sample_rate": 48000}))
    shutil.copy(adapters[0], folder / "style.safetensors")
    return {"tmp": str(folder), "adapter": str(folder / "style.safetensors"), "wide": str(folder / "wide.safetensors")}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora", "{tmp}/absent.safetensors"], r"LoRA adapter .*absent.safetensors: file not found"),
        (["--lora", "{wide}"], r"LoRA adapter .*wide.safetensors: .*lora_A has shape \[4, \d+\], but the model's"),
        (["--lora", "{adapter}", "--lora-strength", "1", "--lora-strength", "2", "--lora-strength", "3"],
         r"--lora-strength: give one value for all adapters or one per --lora \(1 --lora, 3 strengths\)"),
        (["--lora", "{adapter}", "--ckpt-path", "{tmp}/absent.ckpt", "--model-config", "{tmp}/other-model/model_config.json"],
         r"--ckpt-path .*absent.ckpt: file not found"),
        (["--lora", "{adapter}", "--output", "{tmp}/folder.safetensors"], r"folder.safetensors: is a directory"),
        (["--lora", "{adapter}", "--output", "{tmp}/merged.ckpt"], r"merged.ckpt: must end in .safetensors"),
        (["--lora", "{adapter}", "--output", "{tmp}/notes.txt/merged.safetensors"], r"notes.txt is a file, not a folder"),
        (["--lora", "{adapter}", "--output", "{adapter}"], r"style.safetensors: is the input --lora .*style.safetensors"),
        (["--lora", "{adapter}", "--output", "{tmp}/other-model/merged.safetensors"],
         r"other-model/model_config.json holds a different model config"),
        (["--lora", "{adapter}", "--output", "{tmp}/run/checkpoints/merged.safetensors"],  # where generate.py looks first
         r"run/model_config.json holds a different model config"),
    ],
    ids=["missing adapter", "adapter for another model", "strengths", "missing base", "output a directory",
         "output not safetensors", "output under a file", "output an input", "other config there", "run's config"],
)
def test_bad_input_exits_2_with_nothing_written(tmp_path, capsys, small_model, adapters, flags, message) -> None:
    names = _bad_inputs(tmp_path, small_model.model, adapters)
    before = snapshot(tmp_path)
    argv = [flag.format(**names) for flag in flags]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "merged.safetensors")]
    assert merge(*argv) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and re.search(message, err), err
    assert snapshot(tmp_path) == before


def test_merge_lora_needs_an_adapter_and_an_output(tmp_path, capsys) -> None:
    for argv, missing in (["--output", str(tmp_path / "m.safetensors")], "--lora"), (["--lora", "a.safetensors"], "--output"):
        with pytest.raises(SystemExit) as exited:
            merge(*argv)
        assert exited.value.code == exits.EXIT_USAGE and missing in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
