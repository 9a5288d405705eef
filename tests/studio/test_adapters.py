"""The studio with LoRA adapters (``run_gradio.py --lora``): names, strengths, export and the Batch tab's trees.

The handlers are driven directly on a model loaded as ``run_gradio.py --lora`` loads it (its flags
parsed by ``run_gradio``'s own parser); ``generate.py`` runs in-process, as in ``test_studio``. The
page under torchrun with an adapter: ``test_ranks``; the slider in a browser: ``test_browser``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import run_gradio
from stable_audio_tools_ext.model.loading import LoadedModel, load_model
from stable_audio_tools_ext.model.lora import write_lora
from stable_audio_tools_ext.model.lora_files import AdapterUse, LoraFile
from stable_audio_tools_ext.model.options import model_spec_from_args
from stable_audio_tools_ext.run import cli, exits
from stable_audio_tools_ext.studio.actions import Audition, audition_tree
from stable_audio_tools_ext.studio.adapters import name_adapters
from stable_audio_tools_ext.studio.files import prepare_tmp_dir
from stable_audio_tools_ext.studio.handlers import StudioHandlers
from stable_audio_tools_ext.studio.settings import StudioSettings
from tests.adapters import CONFIG, random_tensors
from tests.support import audio_files

START_STRENGTH = 0.5  # run_gradio.py --lora-strength
AUDITION = Audition(prompt="rain on a tin roof", negative_prompt=None, seconds_start=0.0, seconds_total=1.0, steps=4,
                    cfg_scale=7.0, sampler_type="dpmpp-3m-sde")  # fmt: skip
FORM = (AUDITION.prompt, "", AUDITION.seconds_start, AUDITION.seconds_total, AUDITION.steps, AUDITION.cfg_scale,
        AUDITION.sampler_type)  # fmt: skip
TOLERANCE = 1e-4  # as test_studio's export round trip (16-bit PCM step: 3e-5)


def _no_progress(*args, **kwargs) -> None:
    pass


@pytest.fixture(scope="module")
def adapter(small_model, tmp_path_factory) -> Path:
    """An adapter file on the "server", in a folder whose path the page must never show."""
    path = tmp_path_factory.mktemp("server-only-adapters") / "style.safetensors"
    write_lora(path, random_tensors(small_model.model, seed=31), CONFIG)
    return path


@pytest.fixture(scope="module")
def studio_model(adapter) -> LoadedModel:
    """The model as ``run_gradio.py --lora ADAPTER --lora-strength 0.5`` loads it (CPU)."""
    args = run_gradio.build_parser().parse_args(["--lora", str(adapter), "--lora-strength", str(START_STRENGTH)])
    return load_model(model_spec_from_args(args), torch.device("cpu"))


@pytest.fixture(scope="module")
def handlers(studio_model, tmp_path_factory) -> StudioHandlers:
    return StudioHandlers(studio_model, StudioSettings(prepare_tmp_dir(tmp_path_factory.mktemp("adapters") / "studio")))


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def test_adapters_are_named_by_file_stem_made_unique() -> None:
    def use(path: str) -> AdapterUse:
        return AdapterUse(LoraFile(Path(path), CONFIG, {}), "0" * 64, 1.0)

    paths = ["a/drums.safetensors", "b/drums.safetensors", "c/drums-2.safetensors", "d/bass.lora.safetensors", "e/drums"]
    named = name_adapters([use(p) for p in paths])
    assert [a.name for a in named] == ["drums", "drums-3", "drums-2", "bass.lora", "drums-4"]
    assert named[1].file_name == "drums-3.safetensors"


def test_a_bad_adapter_stops_the_studio_before_it_starts(tmp_path, capsys) -> None:
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not an adapter\n")
    for flags, message in (
        (["--lora", str(notes)], f"error: LoRA adapter {notes}: not a safetensors file"),
        (["--lora", str(tmp_path / "absent.safetensors")], "absent.safetensors: file not found"),
        (["--lora-strength", "0.5"], "--lora-strength needs --lora"),
    ):
        assert run_gradio.main(["--tmp-dir", str(tmp_path / "studio"), *flags]) == exits.EXIT_USAGE
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_what_the_studio_plays_is_what_generate_py_writes_with_the_adapter(handlers, adapter, small_model, tmp_path) -> None:
    """Studio audio at strength s == generate.py --lora FILE --lora-strength s == its export run by generate.py;
    studio audio at strength 0 == the base model's."""
    (named,) = handlers.adapters
    assert (named.name, named.use.strength) == ("style", START_STRENGTH)
    strength = 0.75
    heard = handlers.generate(*FORM, 77, 1, _no_progress, strength)
    assert heard[0].startswith("1 clip(s) of 1 s, seeds 77.")
    params = json.loads(heard[2 + 4])  # the variation's parameters
    assert params["lora"] == [{"file": "style.safetensors", "sha256": named.use.sha256, "strength": strength}]
    at_zero = handlers.generate(*FORM, 77, 1, _no_progress, 0.0)

    text, _ = handlers.export(*FORM, 77, 1, "", "sfx/rain", strength)
    assert "lora: style.safetensors\n" in text and f"lora_strength: {strength}\n" in text
    assert f"#   style.safetensors  sha256 {named.use.sha256}\n" in text
    assert f"--revision {handlers.spec.base_revision} --precision" in text and ";lora=" not in text  # a commit only
    assert str(adapter.parent) not in text  # the server's path never reaches the page
    folder = tmp_path / "sweep"
    folder.mkdir()
    shutil.copy(adapter, folder / named.file_name)  # as the export's header says: the file beside the tree
    plain = audition_tree(AUDITION, 77, 1, "plain")  # no lora field: generate.py --lora's adapter
    base = audition_tree(AUDITION, 77, 1, "base")
    base["base"]["lora"] = []  # no adapter: the base model
    (folder / "tree.yaml").write_text(text + yaml.safe_dump({**plain, **base}, sort_keys=False))
    argv = ["--cond-yaml-path", str(folder / "tree.yaml"), "--output-dir", str(folder / "out"), "--clip-length",
            "--lora", str(adapter), "--lora-strength", str(strength)]  # fmt: skip
    assert cli.main(argv) == exits.EXIT_OK
    written = {name: _read(path) for name, path in audio_files(folder / "out").items()}
    studio, studio_at_zero = _read(Path(heard[3])), _read(Path(at_zero[3]))  # status, seed, then the slot's group, audio
    for leaf in ("sfx/rain", "plain"):
        assert np.abs(studio - written[f"{leaf}_item-1.wav"]).max() <= TOLERANCE, leaf
    assert np.abs(studio_at_zero - written["base_item-1.wav"]).max() <= TOLERANCE
    assert np.abs(studio - studio_at_zero).max() > 1e-3  # the adapter does change the audio
    with pytest.raises(gr.Error, match="LoRA strength of style: expected a finite number, got 'nan'"):
        handlers.generate(*FORM, 77, 1, _no_progress, "nan")


def test_batch_trees_name_the_studios_adapters_by_name_never_by_path(handlers, adapter) -> None:
    """Validation only: test_ranks generates such a tree (a leaf at its own strength, one at --lora-strength)."""
    flags = (6, 7.0, "dpmpp-3m-sde", 1, 0)  # the Batch tab's generate.py flags
    status, _ = handlers.validate_batch("a: {prompt: x, seconds_total: 1, lora: style}\n"
                                        "b: {prompt: x, seconds_total: 1, lora: style.safetensors, lora_strength: 2}\n", *flags)  # fmt: skip
    assert status.startswith("valid: 2 items")
    assert f"--lora style.safetensors --lora-strength {START_STRENGTH}" in status and "style.safetensors  sha256 " in status
    for written in (str(adapter), "../style.safetensors", "/etc/hostname", "styles"):
        status, preview = handlers.validate_batch(f"a: {{prompt: x, lora: {written!r}}}\n", *flags)
        assert f"a/lora: no LoRA adapter named {written!r} here; a tree sent here names adapters by name, never by " \
               "path: style, style.safetensors" in status and preview == "", status  # fmt: skip
