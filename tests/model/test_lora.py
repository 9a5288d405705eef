"""LoRA adapters at generation: the file format, strengths, interop with stable-audio-tools 0.0.20's own
code, bad adapters, and ``generate.py --lora`` (manifest, fingerprint, resume)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stable_audio_tools_ext.model.loading import LoadedModel, create_model, load_model
from stable_audio_tools_ext.model.lora import PARTS, AdaptedWeights, apply_adapters, read_adapter, write_lora
from stable_audio_tools_ext.model.lora_files import PARAMETRIZATION, LoraConfig, read_lora_file
from stable_audio_tools_ext.model.spec import ModelLoadError, ModelRequest, read_model_spec
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.run import cli, exits
from stable_audio_tools_ext.sampling.engine import generate_audio
from tests.adapters import CONFIG, adaptable, random_tensors
from tests.conftest import CACHE, REPO_ROOT
from tests.support import GENERATE, audio_files, write

CPU = torch.device("cpu")
REQUEST = GenerationRequest(prompt="rain on a tin roof", seed=11, seconds_start=0, seconds_total=1.5, steps=4)
SAT020 = CACHE / "stable-audio-tools-0.0.20"  # the unpacked wheel: read, run beside 0.0.19, never imported as such
UPSTREAM = "sat020_under_test"  # the name its package is imported under, so 0.0.19's stable_audio_tools stays the one


# --- helpers ---------------------------------------------------------------------------------------


def fresh_model() -> LoadedModel:
    return load_model(read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)), CPU)


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The effective weight of every adaptable layer (through upstream's parametrization, when it has one)."""
    return {name: module.weight.detach().clone() for name, module in adaptable(model).items()}


def use_of(path: Path, strength: float = 1.0):
    return read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID, lora=(path,), lora_strength=(strength,))).adapters[0]


def assert_same_weights(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    differ = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not differ, f"{len(differ)} layers differ, e.g. {differ[:3]}"


def wide_tensors(model: torch.nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    """An adapter with one factor one column too wide for this model (as one made for another model), and that key."""
    tensors = random_tensors(model, seed=10)
    first = min(key for key in tensors if key.endswith("lora_A"))
    return first, {**tensors, first: torch.zeros(CONFIG.rank, tensors[first].shape[1] + 1)}


# --- fixtures --------------------------------------------------------------------------------------


def _unpack_wheel() -> Path:
    """stable-audio-tools 0.0.20, downloaded from PyPI once (a failed download fails the tests that need it)."""
    if not (SAT020 / "stable_audio_tools" / "models" / "lora").is_dir():
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python",
                            "--dest", tmp, "stable-audio-tools==0.0.20"], check=True, capture_output=True, timeout=600)  # fmt: skip
            with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as wheel:
                wheel.extractall(Path(tmp) / "unpacked")
            shutil.rmtree(SAT020, ignore_errors=True)
            (Path(tmp) / "unpacked").rename(SAT020)
    return SAT020


@pytest.fixture(scope="session")
def sat020_wheel() -> Path:
    CACHE.mkdir(exist_ok=True)
    return _unpack_wheel()


@pytest.fixture(scope="module")
def upstream(sat020_wheel: Path) -> Iterator[types.SimpleNamespace]:
    """0.0.20's ``models/lora`` modules, imported under another package name and removed afterwards."""
    package = sat020_wheel / "stable_audio_tools"
    for name, folder in ((UPSTREAM, package), (f"{UPSTREAM}.models", package / "models")):
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]  # a namespace stand-in: the package's __init__ (its model factory) never runs
        sys.modules[name] = module
    try:
        lora = f"{UPSTREAM}.models.lora"
        yield types.SimpleNamespace(**{part: importlib.import_module(f"{lora}.{part}") for part in ("model", "utils", "loader")})
    finally:
        for name in [n for n in sys.modules if n == UPSTREAM or n.startswith(f"{UPSTREAM}.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def model(small_hub: Path) -> LoadedModel:
    """A model of this module's own: the tests change its weights (and always set them back)."""
    return fresh_model()


@pytest.fixture(scope="module")
def base_audio(model: LoadedModel) -> torch.Tensor:
    return generate_audio(model, [REQUEST])


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory, model: LoadedModel) -> Path:
    path = tmp_path_factory.mktemp("adapter") / "style.safetensors"
    write_lora(path, random_tensors(model.model, seed=1), CONFIG)
    return path


# --- the format ------------------------------------------------------------------------------------


def test_written_file_reads_back_in_stable_audio_tools_layout(tmp_path, model) -> None:
    tensors = random_tensors(model.model, seed=3)
    path = tmp_path / "a.safetensors"
    write_lora(path, tensors, LoraConfig(rank=4, alpha=8.0, include=("transformer",), exclude=None))
    with safe_open(str(path), framework="pt") as stored:
        assert json.loads(stored.metadata()["lora_config"]) == {
            "rank": 4, "alpha": 8.0, "adapter_type": "lora", "include": ["transformer"], "exclude": None}  # fmt: skip
        assert set(stored.keys()) == set(tensors)
        for key in tensors:
            assert stored.get_tensor(key).dtype == torch.float16
            assert torch.equal(stored.get_tensor(key), tensors[key].half())
    read = read_lora_file(path)
    assert read.config == LoraConfig(rank=4, alpha=8.0, include=("transformer",))
    assert any(layer.startswith("model.transformer.") for layer in read.layers)  # DiT, relative to model.model
    assert any(layer.startswith("conditioners.") for layer in read.layers)  # conditioner layers too
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left


# --- strengths -------------------------------------------------------------------------------------


def test_strength_zero_is_the_base_model_bit_for_bit(model, base_audio, adapter_file) -> None:
    base = weights_of(model.model)
    adapter = read_adapter(model.model, use_of(adapter_file), CPU)
    adapted = AdaptedWeights(model.model)
    try:
        adapted.set([(adapter, 1.0)])
        assert any(not torch.equal(base[n], w) for n, w in weights_of(model.model).items())
        adapted.set_strengths([0.0])  # no reload: back from strength 1 to 0
        assert all(torch.equal(base[n], w) for n, w in weights_of(model.model).items())
        assert torch.equal(generate_audio(model, [REQUEST]), base_audio)
    finally:
        adapted.set([])
    assert all(torch.equal(base[n], w) for n, w in weights_of(model.model).items())


def test_an_adapter_changes_the_audio_and_strength_scales_its_update(model, base_audio, adapter_file) -> None:
    base = weights_of(model.model)
    adapted = AdaptedWeights(model.model)
    adapter = read_adapter(model.model, use_of(adapter_file), CPU)
    try:
        adapted.set([(adapter, 1.0)])
        assert (generate_audio(model, [REQUEST]) - base_audio).abs().max() > 1e-3
        full = {n: w - base[n] for n, w in weights_of(model.model).items()}
        adapted.set_strengths([0.5])
        half = {n: w - base[n] for n, w in weights_of(model.model).items()}
    finally:
        adapted.set([])
    assert sum(bool(u.abs().max() > 0) for u in full.values()) == len(adaptable(model.model))
    for name in full:
        torch.testing.assert_close(half[name], 0.5 * full[name], rtol=1e-4, atol=1e-6)


def test_switching_adapter_sets_needs_no_reload(tmp_path, model, adapter_file) -> None:
    other = tmp_path / "other.safetensors"
    write_lora(other, random_tensors(model.model, seed=2, rank=2), LoraConfig(rank=2, alpha=2.0))
    first, second = (read_adapter(model.model, use_of(path), CPU) for path in (adapter_file, other))
    adapted = AdaptedWeights(model.model)
    try:
        adapted.set([(second, 0.8)])
        alone = weights_of(model.model)
        adapted.set([(first, 1.0), (second, 0.3)])
        adapted.set([(second, 0.8)])  # from a two-adapter set back to one: as if it had been the only one
        assert_same_weights(weights_of(model.model), alone)
    finally:
        adapted.set([])


# --- interop with stable-audio-tools 0.0.20 ---------------------------------------------------------


def _upstream_config(upstream: types.SimpleNamespace, rank: int, alpha: float) -> dict:
    make = upstream.model.LoRAParametrization
    return {torch.nn.Linear: {"weight": partial(make.from_linear, rank=rank, lora_alpha=alpha)},
            torch.nn.Conv1d: {"weight": partial(make.from_conv1d, rank=rank, lora_alpha=alpha)}}  # fmt: skip


def test_a_file_upstream_trained_and_saved_gives_upstreams_weights_and_audio(upstream, tmp_path, model) -> None:
    trainer = create_model(model.spec.config)  # upstream adds adapters to the DiT wrapper and the conditioner
    for part in PARTS:
        upstream.model.add_lora(getattr(trainer, part), _upstream_config(upstream, rank=4, alpha=8))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in trainer.named_parameters():
            if name.endswith("lora_B"):  # as after training: B is no longer zero
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    state = {**upstream.utils.get_lora_state_dict(trainer.model), **upstream.utils.get_lora_state_dict(trainer.conditioner)}
    path = tmp_path / "trained-upstream.safetensors"
    upstream.utils.save_lora_safetensors(state, {"rank": 4, "alpha": 8, "adapter_type": "lora", "include": None,
                                                 "exclude": None}, path)  # fmt: skip

    theirs = fresh_model()
    base = weights_of(theirs.model)
    upstream.loader.load_and_apply_loras(theirs.model, [str(path)], "diffusion_cond")
    upstream.model.set_lora_strength(theirs.model, 0.7)
    assert all(not torch.equal(w, base[name]) for name, w in weights_of(theirs.model).items())  # every layer adapted
    adapted = apply_adapters(model.model, [use_of(path, 0.7)], CPU)
    try:
        assert_same_weights(weights_of(model.model), weights_of(theirs.model))
        assert torch.equal(generate_audio(model, [REQUEST]), generate_audio(theirs, [REQUEST]))  # same audio, bit for bit
    finally:
        adapted.set([])


def test_files_written_here_load_in_upstreams_loader_with_the_same_weights(upstream, tmp_path, model) -> None:
    paths = [tmp_path / "one.safetensors", tmp_path / "two.safetensors"]
    write_lora(paths[0], random_tensors(model.model, seed=7), LoraConfig(rank=4, alpha=8.0))
    write_lora(paths[1], random_tensors(model.model, seed=8, rank=2), LoraConfig(rank=2, alpha=1.0))
    theirs = fresh_model()
    upstream.loader.load_and_apply_loras(theirs.model, [str(p) for p in paths], "diffusion_cond")
    upstream.model.set_lora_strength(theirs.model, -0.5, lora_index=1)
    adapted = apply_adapters(model.model, [use_of(paths[0], 1.0), use_of(paths[1], -0.5)], CPU)
    try:
        assert_same_weights(weights_of(model.model), weights_of(theirs.model))
    finally:
        adapted.set([])


def test_loading_upstream_leaves_no_0_0_20_module_behind(upstream) -> None:
    assert upstream.loader.__name__.startswith(UPSTREAM)
    assert all(not getattr(m, "__file__", None) or str(SAT020) not in str(m.__file__)
               for n, m in list(sys.modules.items()) if not n.startswith(UPSTREAM))  # fmt: skip


# --- bad adapters ----------------------------------------------------------------------------------


def _bad_files(folder: Path, model: torch.nn.Module) -> dict[str, Path]:
    tensors = random_tensors(model, seed=9)
    files = {"missing": folder / "missing.safetensors", "text": write(folder, "not an adapter\n", "notes.safetensors")}
    save_file({"model.transformer.weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    files["not lora"] = folder / "model.safetensors"
    for name, adapter_type in (("unknown type", "lora-zz"), ("dora", "dora"), ("lora-xs", "lora-xs")):
        files[name] = folder / f"{adapter_type}.safetensors"
        save_file(tensors, str(files[name]), metadata={"lora_config": json.dumps({"rank": 4, "alpha": 4, "adapter_type": adapter_type})})
    return files


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "missing.safetensors: file not found"),
        ("text", "notes.safetensors: not a safetensors file"),
        ("not lora", "model.safetensors: model.transformer.weight is not a LoRA factor"),
        ("unknown type", "lora-zz.safetensors: unknown adapter_type 'lora-zz'"),
        ("dora", "dora.safetensors: adapter_type 'dora' is not supported"),
        ("lora-xs", "lora-xs.safetensors: adapter_type 'lora-xs' is not supported"),
    ],
)
def test_bad_adapter_files_are_refused_before_any_weights_load(tmp_path, model, case, message) -> None:
    path = _bad_files(tmp_path, model.model)[case]
    with pytest.raises(ModelLoadError, match=f"LoRA adapter .*{message}"):
        read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID, lora=(path,)))


def test_an_adapter_for_another_model_is_refused_naming_the_first_key_that_does_not_fit(tmp_path, model) -> None:
    first, wide = wide_tensors(model.model)
    write_lora(tmp_path / "wide.safetensors", wide, CONFIG)
    with pytest.raises(ModelLoadError, match=rf"wide.safetensors: {first} has shape \[4, \d+\], but the model's"):
        read_adapter(model.model, use_of(tmp_path / "wide.safetensors"), CPU)
    layer = f"model.transformer.layers.99.self_attn.to_qkv{PARAMETRIZATION}"
    tensors = random_tensors(model.model, seed=10)
    write_lora(tmp_path / "deep.safetensors", {**tensors, f"{layer}lora_A": torch.zeros(4, 8), f"{layer}lora_B": torch.zeros(8, 4)}, CONFIG)
    with pytest.raises(ModelLoadError, match=rf"deep.safetensors: {layer}lora_A does not fit this model: it has no such layer"):
        read_adapter(model.model, use_of(tmp_path / "deep.safetensors"), CPU)


# --- generate.py --lora ----------------------------------------------------------------------------

TREE = "rain: {prompt: rain on a tin roof, seconds_total: 1}\n"
RUN = ["--sample-steps", "4", "--clip-length"]


def test_generate_records_adapters_and_resumes_by_their_content(tmp_path, model, capsys) -> None:
    tree, out = write(tmp_path, TREE), tmp_path / "out"
    adapter = tmp_path / "adapters" / "style.safetensors"
    write_lora(adapter, random_tensors(model.model, seed=11), CONFIG)
    argv = ["--cond-yaml-path", str(tree), "--output-dir", str(out), *RUN, "--lora-strength", "0.5"]
    assert cli.main([*argv, "--lora", str(adapter)]) == exits.EXIT_OK, capsys.readouterr().err
    (record,) = load_records(out).values()
    first = read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID, lora=(adapter,))).adapters[0].sha256
    assert record["lora"] == [{"file": "style.safetensors", "sha256": first, "strength": 0.5}]
    assert record["model_revision"].endswith(f";lora={first}@0.5")
    assert "style.safetensors (sha256 " in capsys.readouterr().out
    wav = audio_files(out)["rain_item-1.wav"]
    written = wav.read_bytes()

    moved = tmp_path / "elsewhere"
    (tmp_path / "adapters").rename(moved)  # moving the adapter changes nothing
    assert cli.main([*argv, "--lora", str(moved / "style.safetensors")]) == exits.EXIT_OK
    assert "1 of 1 items already complete; 0 to generate" in capsys.readouterr().out

    write_lora(moved / "style.safetensors", random_tensors(model.model, seed=12), CONFIG)  # editing it regenerates
    assert cli.main([*argv, "--lora", str(moved / "style.safetensors")]) == exits.EXIT_OK
    assert "1 regenerated (parameters changed)" in capsys.readouterr().out
    (record,) = load_records(out).values()
    assert record["lora"][0]["sha256"] != first and wav.read_bytes() != written


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora", "{tmp}/absent.safetensors"], "LoRA adapter .*absent.safetensors: file not found"),
        (["--lora-strength", "0.5"], "--lora-strength needs --lora"),
        (["--lora", "{adapter}", "--lora-strength", "1", "--lora-strength", "2", "--lora-strength", "3"],
         r"--lora-strength: give one value for all adapters or one per --lora \(1 --lora, 3 strengths\)"),
        (["--lora", "{adapter}", "--lora-strength", "nan"], "--lora-strength: every strength must be a finite number"),
        (["--lora", "{wide}"], r"LoRA adapter .*wide.safetensors: .* has shape"),  # found when the model loads
    ],
)
def test_bad_lora_flags_exit_2_with_nothing_written(tmp_path, model, capsys, flags, message) -> None:
    write_lora(tmp_path / "adapter.safetensors", random_tensors(model.model, seed=13), CONFIG)
    write_lora(tmp_path / "wide.safetensors", wide_tensors(model.model)[1], CONFIG)
    out = tmp_path / "out"
    names = {"tmp": tmp_path, "adapter": tmp_path / "adapter.safetensors", "wide": tmp_path / "wide.safetensors"}
    argv = ["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), *RUN]
    assert cli.main(argv + [flag.format(**names) for flag in flags]) == exits.EXIT_USAGE
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


# --- YAML lora / lora_strength ---------------------------------------------------------------------

LEAF_TREE = """\
_defaults: {prompt: rain on a tin roof, seconds_total: 1, seed: 5, n_samples: 2}
base: {n_samples: 2}
styled:
  _defaults: {lora: adapters/style.safetensors}
  strength:
    _sweep: {lora_strength: [0, 0.5, 1]}
  pair: {lora: [adapters/style.safetensors, adapters/other.safetensors], lora_strength: [1, 0.5]}
  which:
    _sweep: {lora: [adapters/style.safetensors, adapters/other.safetensors]}
"""


def _leaf_adapters(folder: Path, model: LoadedModel) -> Path:
    """A tree with leaf adapters beside it in ``folder/adapters``."""
    write_lora(folder / "adapters" / "style.safetensors", random_tensors(model.model, seed=21), CONFIG)
    write_lora(folder / "adapters" / "other.safetensors", random_tensors(model.model, seed=22, rank=2), LoraConfig(rank=2, alpha=2.0))
    return write(folder, LEAF_TREE)


def test_leaf_adapters_batch_by_set_and_each_item_equals_its_batch_1_audio(tmp_path, model) -> None:
    from stable_audio_tools_ext.run.inprocess import plan_tree
    from stable_audio_tools_ext.tree.plan import SamplingDefaults, make_batches

    items, _ = plan_tree(_leaf_adapters(tmp_path, model), model.spec, SamplingDefaults(steps=4), 100)
    by_leaf = {item.relpath: item.request for item in items}
    assert [a.strength for a in by_leaf["styled/strength/0.5_item-1.wav"].lora] == [0.5]
    assert [Path(a.path).name for a in by_leaf["styled/pair_item-1.wav"].lora] == ["style.safetensors", "other.safetensors"]
    assert by_leaf["base_item-1.wav"].lora is None  # no leaf field: --lora's adapters (none here)
    batches = make_batches(items, 8)
    assert all(len({item.request.adapter_key() for item in batch}) == 1 for batch in batches)  # never a mixed set
    # base, strengths 0 and 0.5, style at 1 (strength/1 and which/style: one set, 4 items), the pair, other
    assert sorted(len(batch) for batch in batches) == [2, 2, 2, 2, 2, 4]
    batched = {}
    for batch in batches:  # in plan order, switching sets between batches as a run does
        audio = generate_audio(model, [item.request for item in batch])
        batched.update({item.relpath: clip for item, clip in zip(batch, audio)})
    try:
        for item in items:
            alone = generate_audio(model, [item.request])[0]
            torch.testing.assert_close(batched[item.relpath], alone, rtol=0, atol=1e-4)
        for k in (1, 2):  # strength 0 is the base model, bit for bit (batch 1 against batch 1)
            assert torch.equal(generate_audio(model, [by_leaf[f"styled/strength/0_item-{k}.wav"]]),
                               generate_audio(model, [by_leaf[f"base_item-{k}.wav"]]))  # fmt: skip
        strong = generate_audio(model, [by_leaf["styled/strength/1_item-1.wav"]])
        assert (strong - generate_audio(model, [by_leaf["base_item-1.wav"]])).abs().max() > 1e-3
    finally:
        model.adapters.use(None, CPU)
    assert not model.adapters.active  # back to the base: the module's other tests share this model


def test_leaf_adapters_are_recorded_and_fingerprinted_by_content(tmp_path, model, capsys) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    tree = _leaf_adapters(folder, model)
    write(folder, "a: {prompt: rain on a tin roof, seconds_total: 1, lora: adapters/style.safetensors, lora_strength: 0.5}\n"
          "b: {prompt: rain on a tin roof, seconds_total: 1}\n")  # fmt: skip
    out = tmp_path / "out"
    argv = lambda tree: ["--cond-yaml-path", str(tree), "--output-dir", str(out), *RUN]  # noqa: E731
    assert cli.main([*argv(tree), "--dry-run"]) == exits.EXIT_OK
    shown = capsys.readouterr().out
    assert "LoRA adapters of the leaves" in shown and "style.safetensors" in shown and "at 0.5" in shown
    assert cli.main(argv(tree)) == exits.EXIT_OK, capsys.readouterr().err
    records = load_records(out)
    sha = read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID, lora=(folder / "adapters/style.safetensors",))).adapters[0].sha256
    assert records["a_item-1.wav"]["lora"] == [{"file": "style.safetensors", "sha256": sha, "strength": 0.5}]
    assert "lora" not in records["b_item-1.wav"]
    before = {name: path.read_bytes() for name, path in audio_files(out).items()}

    moved = tmp_path / "moved"
    folder.rename(moved)  # the tree and its adapters elsewhere: nothing to regenerate
    assert cli.main(argv(moved / "tree.yaml")) == exits.EXIT_OK
    assert "2 of 2 items already complete; 0 to generate" in capsys.readouterr().out

    write_lora(moved / "adapters" / "style.safetensors", random_tensors(model.model, seed=23), CONFIG)  # edited
    assert cli.main(argv(moved / "tree.yaml")) == exits.EXIT_OK
    assert "1 regenerated (parameters changed)" in capsys.readouterr().out
    after = {name: path.read_bytes() for name, path in audio_files(out).items()}
    assert after["a_item-1.wav"] != before["a_item-1.wav"] and after["b_item-1.wav"] == before["b_item-1.wav"]
    assert not model.adapters.active


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ("lora: absent.safetensors", r"tree.yaml:2: a/lora: file not found: .*absent.safetensors \(lora paths are relative to the YAML file\)"),
        ("lora: notes.safetensors", r"tree.yaml:2: a/lora: LoRA adapter .*notes.safetensors: not a safetensors file"),
        ("lora: dora.safetensors", r"tree.yaml:2: a/lora: LoRA adapter .*dora.safetensors: adapter_type 'dora' is not supported"),
        ("lora: [adapter.safetensors], lora_strength: [1, 2]", r"tree.yaml:2: a/lora: lora_strength: give one value for all "
         r"adapters or one per lora file \(1 files, 2 strengths\)"),
        ("lora: adapter.safetensors, lora_strength: .inf", r"tree.yaml:2: a/lora_strength: expected a finite number, got float inf"),
        ("lora_strength: 0.5", r"tree.yaml:2: a/lora_strength: lora_strength needs lora in the leaf or its _defaults"),
        ("lora: wide.safetensors", r"LoRA adapter .*wide.safetensors: .* has shape"),  # found when the model loads
    ],
)
def test_bad_leaf_adapters_exit_2_naming_file_line_and_path(tmp_path, model, capsys, leaf, message) -> None:
    write_lora(tmp_path / "adapter.safetensors", random_tensors(model.model, seed=13), CONFIG)
    write_lora(tmp_path / "wide.safetensors", wide_tensors(model.model)[1], CONFIG)
    write(tmp_path, "not an adapter\n", "notes.safetensors")
    save_file(random_tensors(model.model, seed=9), str(tmp_path / "dora.safetensors"),
              metadata={"lora_config": json.dumps({"rank": 4, "alpha": 4, "adapter_type": "dora"})})  # fmt: skip
    tree = write(tmp_path, f"b: {{prompt: x, seconds_total: 1}}\na: {{prompt: x, seconds_total: 1, {leaf}}}\n")
    out = tmp_path / "out"
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(out), *RUN]) == exits.EXIT_USAGE
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_demo_trees_and_models_without_adapter_support_refuse_leaf_adapters(tmp_path, model, adapter_file) -> None:
    """finetune.py train --demo-yaml generates with the checkpoint alone: a leaf's lora is refused when the tree is
    read (before training), and the engine refuses requests naming adapters on a model loaded without them."""
    from stable_audio_tools_ext.finetune.demos import plan_demos
    from stable_audio_tools_ext.request import LeafAdapter
    from stable_audio_tools_ext.sampling.engine import generate_latents
    from stable_audio_tools_ext.tree.conditions import ConditionTreeError

    shutil.copy(adapter_file, tmp_path / "a.safetensors")
    tree = tmp_path / "demos.yaml"
    tree.write_text("plain: {prompt: rain, seconds_total: 1}\ntuned: {prompt: rain, seconds_total: 1, lora: a.safetensors}\n")
    with pytest.raises(ConditionTreeError) as refused:
        plan_demos(tree, model.spec.config)
    assert [(p.yaml_path, p.line) for p in refused.value.problems] == [("tuned", 2)]
    assert "demos generate with the checkpoint alone" in str(refused.value)
    bare = LoadedModel(model.spec, model.model, model.device, model.precision, "without adapters")
    adapted = replace(REQUEST, lora=(LeafAdapter(str(adapter_file), "0" * 64, 1.0),))
    with pytest.raises(ValueError, match="no adapter support"):
        generate_latents(bare, [adapted])


@pytest.mark.slow
def test_a_strength_sweep_under_torchrun_equals_the_single_process_files(tmp_path, model, small_hub_env, capsys) -> None:
    """Every rank applies the leaf adapters: two torchrun ranks write what one process writes, item for item."""
    write_lora(tmp_path / "adapters" / "rain.safetensors", random_tensors(model.model, seed=21), CONFIG)
    tree = write(tmp_path, "rain:\n  _defaults: {prompt: rain on a tin roof, seconds_total: 1, "
                 "lora: adapters/rain.safetensors}\n  strength:\n    _sweep: {lora_strength: [0, 0.5, 1]}\n")  # fmt: skip
    flags = ["--cond-yaml-path", str(tree), "--sample-steps", "4", "--batch-size", "2", "--clip-length"]
    assert cli.main([*flags, "--output-dir", str(tmp_path / "one")]) == exits.EXIT_OK, capsys.readouterr().err
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", GENERATE, *flags,
               "--output-dir", str(tmp_path / "two")]  # fmt: skip
    result = subprocess.run(command, env=small_hub_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = audio_files(tmp_path / "one"), audio_files(tmp_path / "two")
    assert set(one) == set(two) and len(one) == 3
    audio = {name: (sf.read(one[name], dtype="float32")[0], sf.read(two[name], dtype="float32")[0]) for name in one}
    for name, (a, b) in audio.items():
        assert np.abs(a - b).max() <= 1e-4, name
    zero, full = audio["rain/strength/0_item-1.wav"][0], audio["rain/strength/1_item-1.wav"][0]
    assert np.abs(zero - full).max() > 1e-3  # the strengths differ in the audio
    records = load_records(tmp_path / "two")
    assert sorted({r["lora"][0]["strength"] for r in records.values()}) == [0.0, 0.5, 1.0]
