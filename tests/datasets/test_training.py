"""Generated folders as stable-audio-tools datasets, checked with stable-audio-tools' own dataset class.

The dataset is built exactly as ``train.py --dataset-config`` builds it: ``create_dataloader_from_config``
on the written JSON, which imports the written metadata module by path and constructs ``SampleDataset``;
its items are then read with the class's own ``__getitem__`` (``torchaudio.load``, i.e. TorchCodec +
FFmpeg - see docs/dependencies.md).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext.datasets import training as dataset
from stable_audio_tools_ext.datasets.shards import main as convert_main
from stable_audio_tools_ext.datasets.training import parse_split_spec, split_of, split_position
from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.output.shards import read_member, relpath_of_key, shard_paths, shard_samples
from stable_audio_tools_ext.run import cli, exits
from stable_audio_tools_ext.tree.reserved import PARTIAL_SUFFIX
from tests.support import audio_files, write

TREE = """\
drums:
  _defaults: {seconds_total: 1.0, n_samples: 2}
  kick: {prompt: kick drum}
  snare: {prompt: snare drum, seconds_start: 0.5}
  hat: {prompt: closed hi-hat}
fx:
  _defaults: {seconds_total: 0.8}
  rain: {prompt: rain on a roof}
  door: {prompt: a door slams, negative_prompt: music}
  wind: {prompt: wind through trees}
pad: {prompt: warm analog pad, seconds_total: 1.0}
"""
SPLIT = "train=0.5,val=0.5"
SAMPLE_SIZE = 65536  # 1.49 s at 44.1 kHz: longer than every file, so no random crop offset


@pytest.fixture(scope="module")
def generated(small_model, tmp_path_factory) -> Path:
    """A generated folder with a dataset config per split, as `generate.py --split` leaves it."""
    tmp = tmp_path_factory.mktemp("dataset")
    out = tmp / "out"
    argv = ["--cond-yaml-path", str(write(tmp, TREE)), "--output-dir", str(out), "--clip-length",
            "--sample-steps", "6", "--batch-size", "10", "--split", SPLIT]  # fmt: skip
    assert cli.main(argv) == exits.EXIT_OK
    return out


def load_dataset(config_path: Path):
    """stable-audio-tools' SampleDataset, built by its own factory from the written config file."""
    import torchaudio
    from stable_audio_tools.data.dataset import SampleDataset, create_dataloader_from_config

    probe = config_path.parent / "drums/kick_item-1.wav"
    try:
        torchaudio.load(str(probe))
    except (ImportError, RuntimeError) as exc:
        pytest.fail(f"torchaudio.load cannot read WAV here ({exc}); it needs torchcodec and FFmpeg's shared "
                    "libraries: run `make install` (docs/dependencies.md)")  # fmt: skip
    config = json.loads(config_path.read_text())
    loader = create_dataloader_from_config(
        config, batch_size=2, sample_size=SAMPLE_SIZE, sample_rate=44100, audio_channels=2, num_workers=1
    )
    assert isinstance(loader.dataset, SampleDataset)
    return loader.dataset


def items_of(ds) -> dict[str, tuple]:
    """Every ``(audio, info)`` the dataset yields, by the path it read; fails if an index fell back to another."""
    items = {}
    for index in range(len(ds)):
        audio, info = ds[index]
        assert info["path"] == ds.filenames[index], "SampleDataset skipped a file it could not load"
        assert tuple(audio.shape) == (2, SAMPLE_SIZE)
        items[info["path"]] = audio, info
    return items


def manifest_path_of(out: Path, scanned: str) -> str:
    return Path(scanned).resolve().relative_to(out.resolve()).as_posix()


def test_sample_dataset_yields_the_recorded_prompt_for_every_file(generated) -> None:
    records = load_records(generated)
    items = items_of(load_dataset(generated / "dataset_config.json"))
    by_manifest_path = {manifest_path_of(generated, path): item for path, item in items.items()}
    # every generated file exactly once: the split folders are what is scanned, not the root as well
    assert set(by_manifest_path) == set(records) == {p for p in audio_files(generated) if not p.startswith("splits/")}
    for relpath, (audio, info) in by_manifest_path.items():
        record = records[relpath]
        assert info["prompt"] == record["prompt"]
        assert info["seconds_start"] == record["seconds_start"]  # no crop offset: files are shorter than the sample
        assert info["seconds_total"] == record["seconds_total"]
        data, _ = sf.read(generated / relpath, dtype="float32", always_2d=True)
        assert np.allclose(np.abs(audio[:, : len(data)].numpy()), np.abs(data.T), atol=1e-6)  # PhaseFlipper may negate


def test_each_split_config_holds_exactly_its_leaves(generated) -> None:
    records = load_records(generated)
    splits = parse_split_spec(SPLIT)
    assert {r["split"] for r in records.values()} == set(splits)  # both splits have leaves (fixed by the leaf names)
    leaves_seen: dict[str, str] = {}
    for name in splits:
        items = items_of(load_dataset(generated / f"dataset_config.{name}.json"))
        paths = {manifest_path_of(generated, p) for p in items}
        assert paths == {p for p, r in records.items() if r["split"] == name}
        for path, (_, info) in items.items():
            record = records[manifest_path_of(generated, path)]
            assert info["prompt"] == record["prompt"] and record["split"] == split_of(record["leaf"], splits)
            assert leaves_seen.setdefault(record["leaf"], name) == name  # a leaf never spans two splits


def test_subcommand_rewrites_an_existing_folder_after_a_move(generated, tmp_path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(generated, moved, symlinks=True)
    assert dataset.main([str(moved)]) == 0  # no split now: one config over the whole folder
    assert not (moved / "splits").exists() and not list(moved.glob("dataset_config.*.json"))
    assert all("split" not in r for r in load_records(moved).values())
    config = json.loads((moved / "dataset_config.json").read_text())
    assert config["dataset_type"] == "audio_dir"
    assert config["datasets"] == [{"id": "moved", "path": f"{moved.resolve()}/",
                                   "custom_metadata_module": str(moved.resolve() / "dataset_metadata.py")}]  # fmt: skip
    items = items_of(load_dataset(moved / "dataset_config.json"))
    records = load_records(moved)
    assert {manifest_path_of(moved, p): i["prompt"] for p, (_, i) in items.items()} == {p: r["prompt"] for p, r in records.items()}

    assert dataset.main([str(moved), "--split", "a=0.2,b=0.3,c=0.5"]) == 0
    assert sorted(p.name for p in moved.glob("dataset_config.*.json")) == [
        "dataset_config.a.json", "dataset_config.b.json", "dataset_config.c.json"]  # fmt: skip
    assert sorted(p.name for p in (moved / "splits").iterdir()) == sorted({r["split"] for r in load_records(moved).values()})


def test_split_spec_errors_are_clear() -> None:
    assert parse_split_spec("train=0.9,val=0.1") == {"train": 0.9, "val": 0.1}
    assert list(parse_split_spec("val=0.25, test=0.25 ,train=0.5")) == ["val", "test", "train"]
    for spec, message in [
        ("train=0.9,val=0.2", "add up to 1.1"),
        ("train=0.9", "add up to 0.9"),
        ("train", "expected NAME=FRACTION"),
        ("train=a,val=0.1", "must be a number"),
        ("train=1.5,val=-0.5", "must be in (0, 1]"),
        ("train=0.5,train=0.5", "given twice"),
        ("../x=1", "expected NAME=FRACTION"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_split_spec(spec)


def test_bad_split_exits_2_before_anything_is_written(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), "--split", "train=0.9,val=0.2"])
    assert exit_info.value.code == exits.EXIT_USAGE
    assert "argument --split: the fractions add up to 1.1; they must add up to 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_branch_named_like_the_split_folder_is_refused(small_hub, tmp_path, capsys) -> None:
    tree = "splits:\n  a: {prompt: x}\n"
    out = tmp_path / "out"
    argv = ["--cond-yaml-path", str(write(tmp_path, tree)), "--output-dir", str(out), "--split", "train=1"]
    assert cli.main(argv) == exits.EXIT_USAGE
    assert "tree.yaml:1: splits: 'splits' is reserved: generate.py keeps the split folders" in capsys.readouterr().err
    assert not out.exists()


def test_split_assignment_is_per_leaf_deterministic_and_proportional() -> None:
    splits = {"train": 0.9, "val": 0.1}
    leaves = [f"music/genre-{i % 7}/leaf-{i}" for i in range(4000)]
    assigned = {leaf: split_of(leaf, splits) for leaf in leaves}
    assert assigned == {leaf: split_of(leaf, splits) for leaf in reversed(leaves)}  # independent of other leaves
    assert sum(s == "val" for s in assigned.values()) / len(leaves) == pytest.approx(0.1, abs=0.015)
    wider = {"train": 0.8, "val": 0.2}  # moving the boundary only moves leaves from train to val
    assert all(split_of(leaf, wider) == "val" for leaf, s in assigned.items() if s == "val")
    assert split_position("music/drum/kick") == split_position("music/drum/kick")
    assert 0 <= split_position("x") < 1


def test_metadata_module_is_standalone_and_rejects_flagged_files(generated, tmp_path) -> None:
    """The written module needs only the standard library (training runs elsewhere) and skips flagged files."""
    folder = tmp_path / "copy"
    shutil.copytree(generated, folder, symlinks=True)
    records = load_records(folder)
    silent = next(iter(records))
    records[silent]["status"] = "silent"
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records.values()))
    (folder / "stray.wav").write_bytes(b"")
    probe = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("metadata_module", {str(folder / "dataset_metadata.py")!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
assert not [m for m in sys.modules if m.startswith(("stable_audio_tools", "numpy", "torch"))]
out = {{p: module.get_custom_metadata({{"path": {str(folder)!r} + "/" + p, "seconds_start": 0, "padding_mask": "MASK"}}, None)
       for p in {sorted(records)!r}}}
try:
    module.get_custom_metadata({{"path": {str(folder / "stray.wav")!r}}}, None)
except KeyError as exc:
    out["stray"] = str(exc)
print(json.dumps(out))
"""
    # -I -S: no site-packages, no PYTHONPATH - only the standard library is importable.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers.pop(silent) == {"__reject__": True}
    assert "no record for 'stray.wav'" in answers.pop("stray")
    assert answers == {p: {"prompt": r["prompt"], "seconds_start": r["seconds_start"], "seconds_total": r["seconds_total"],
                           "padding_mask": ["MASK"]}  # wrapped: 0.0.19's training step stacks padding_mask[0]
                       for p, r in records.items() if p != silent}  # fmt: skip


def test_the_closing_hint_is_this_projects_train_command(tmp_path) -> None:
    """Upstream's ``train.py`` is not in the installed package; ``finetune.py train`` is what trains here."""
    configs = [tmp_path / f"dataset_config{suffix}.json" for suffix in ("", ".train", ".val")]
    result = dataset.DatasetFiles(configs=configs)
    hint = dataset.describe(result, {"train": 0.9, "val": 0.1})[-1]
    assert hint == (f"fine-tune: python finetune.py train --dataset-config {configs[1]} --val-dataset-config {configs[2]} "
                    "--pretrained-name stabilityai/stable-audio-open-1.0 --save-dir runs --name NAME (docs/finetuning.md)")


# WebDataset shards (generate.py --output-format wds): the tree and flags of `generated`, so every sample
# must hold exactly the bytes of the file the file-per-item layout wrote (same process, same batches).
SHARD_SIZE = "3"


@pytest.fixture(scope="module")
def sharded(small_model, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sharded")
    out = tmp / "out"
    argv = ["--cond-yaml-path", str(write(tmp, TREE)), "--output-dir", str(out), "--clip-length", "--sample-steps", "6",
            "--batch-size", "10", "--split", SPLIT, "--output-format", "wds", "--shard-size", SHARD_SIZE]  # fmt: skip
    assert cli.main(argv) == exits.EXIT_OK
    return out


def shard_members(out: Path) -> dict[str, tuple[bytes, dict, str]]:
    """Every sample of every shard by the item path its JSON names: (audio bytes, JSON, shard); fails on a duplicate."""
    members: dict[str, tuple[bytes, dict, str]] = {}
    for shard in shard_paths(out):
        for key, fields in shard_samples(shard):
            meta = json.loads(fields.pop("json"))
            (extension, audio), = fields.items()
            assert relpath_of_key(key, extension) == meta["path"]
            assert meta["path"] not in members, f"{meta['path']} is in two shards"
            members[meta["path"]] = audio, meta, f"shards/{shard.name}"
    return members


def test_shards_hold_every_item_once_with_the_bytes_of_the_file_layout(generated, sharded) -> None:
    records = load_records(sharded)
    members = shard_members(sharded)
    assert set(members) == set(records) == set(load_records(generated))
    splits = parse_split_spec(SPLIT)
    split_of_shard: dict[str, str] = {}
    for path, (audio, meta, shard) in members.items():
        assert audio == (generated / path).read_bytes()
        assert read_member(sharded, records[path]) == audio  # the record locates its member
        assert records[path]["shard"] == meta["shard"] == shard and records[path]["bytes"] == len(audio)
        assert {k: v for k, v in records[path].items() if v is not None and not k.startswith("shard")} == {
            k: v for k, v in meta.items() if k not in ("shard", "split")} | {"split": records[path]["split"]}
        # one open shard per split: a split is a set of whole shards
        assert split_of_shard.setdefault(shard, split_of(meta["leaf"], splits)) == split_of(meta["leaf"], splits)
    assert max(sum(1 for s in (m[2] for m in members.values()) if s == shard) for shard in split_of_shard) == int(SHARD_SIZE)
    assert not [p for p in sharded.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]


def wds_loader_items(config_path: Path) -> dict[str, tuple]:
    """stable-audio-tools' own WebDataset loader, built by its factory from the written config; every sample once."""
    from stable_audio_tools.data.dataset import create_dataloader_from_config

    config = json.loads(config_path.read_text())
    assert config["dataset_type"] == "wds"
    config["resampled_shards"] = False  # one pass over the shards (the written config resamples, for training)
    loader = create_dataloader_from_config(config, batch_size=1, sample_size=SAMPLE_SIZE, sample_rate=44100,
                                           audio_channels=2, num_workers=1)  # fmt: skip
    items = {}
    for audio, infos in loader:
        (info,) = infos
        path = info["path"][0]  # upstream's WebLoader collates the whole batch once more: one-element lists
        assert path not in items and tuple(audio.shape) == (1, 1, 2, SAMPLE_SIZE)
        items[path] = audio[0, 0], info
    return items


def test_upstream_wds_loader_reads_each_split_with_prompts_and_timing(sharded) -> None:
    records = load_records(sharded)
    for name in parse_split_spec(SPLIT):
        items = wds_loader_items(sharded / f"dataset_config.{name}.json")
        assert set(items) == {p for p, r in records.items() if r["split"] == name}
        for path, (audio, info) in items.items():
            record = records[path]
            assert info["prompt"] == [record["prompt"]]
            assert float(info["seconds_total"]) == record["seconds_total"]  # the item's, not the crop's
            assert float(info["seconds_start"]) == record["seconds_start"]
            data, _ = sf.read(io.BytesIO(read_member(sharded, record)), dtype="float32", always_2d=True)
            assert np.allclose(np.abs(audio[:, : len(data)].numpy()), np.abs(data.T), atol=1e-6)


def test_a_lost_shard_is_regenerated_at_another_shard_size_and_report_and_dry_run_read_shards(
    sharded, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(sharded, out, symlinks=True)
    records = load_records(out)
    lost = sorted({r["shard"] for r in records.values()})[0]
    (out / lost).unlink()
    torn = out / "shards" / f".{Path(lost).name}.x1y2{PARTIAL_SUFFIX}"  # what a killed run leaves
    torn.write_bytes(b"torn")
    kept = {p.name: p.stat().st_mtime_ns for p in shard_paths(out)}
    regenerated = {p for p, r in records.items() if r["shard"] == lost}
    argv = ["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), "--clip-length", "--sample-steps", "6",
            "--batch-size", "10", "--split", SPLIT, "--output-format", "wds"]  # fmt: skip
    capsys.readouterr()
    assert cli.main([*argv, "--dry-run"]) == exits.EXIT_OK
    done = len(records) - len(regenerated)
    assert f"{done} of {len(records)} items already complete, {len(regenerated)} regenerated (missing or damaged" in capsys.readouterr().out
    assert cli.main([*argv, "--shard-size", "5", "--report"]) == exits.EXIT_OK  # another shard size: old shards stand
    assert not torn.exists()
    assert {p.name: p.stat().st_mtime_ns for p in shard_paths(out) if p.name in kept} == kept
    after = load_records(out)
    assert {p for p, r in after.items() if r["shard"] not in {f"shards/{n}" for n in kept}} == regenerated
    members = shard_members(out)
    assert set(members) == set(records)
    for path in regenerated:  # batch composition differs from the first run: float round-off only
        new, _ = sf.read(io.BytesIO(members[path][0]), dtype="float32")
        old, _ = sf.read(io.BytesIO(read_member(sharded, records[path])), dtype="float32")
        assert np.abs(new - old).max() <= 1e-4
    report = (out / "report.html").read_text()
    assert report.count('alt="spectrogram of') >= 3 and "in shards/" in report and "file missing" not in report


def test_an_output_dir_holds_one_layout_and_shard_size_needs_wds(generated, sharded, tmp_path, capsys) -> None:
    base = ["--cond-yaml-path", str(write(tmp_path, TREE)), "--clip-length"]
    before = {p: p.stat().st_mtime_ns for p in [*generated.rglob("*"), *sharded.rglob("*")]}
    capsys.readouterr()
    assert cli.main([*base, "--output-dir", str(generated), "--output-format", "wds"]) == exits.EXIT_USAGE
    assert f"--output-dir {generated} holds one file per item (--output-format files)" in capsys.readouterr().err
    assert cli.main([*base, "--output-dir", str(sharded)]) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--output-dir {sharded} holds WebDataset shards (--output-format wds)" in err and "datasets.shards" in err
    assert cli.main([*base, "--output-dir", str(tmp_path / "o"), "--shard-size", "4"]) == exits.EXIT_USAGE
    assert "--shard-size only applies with --output-format wds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--output-dir", str(tmp_path / "o"), "--output-format", "wds", "--shard-size", "0"])
    assert exit_info.value.code == exits.EXIT_USAGE
    assert "argument --shard-size: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in [*generated.rglob("*"), *sharded.rglob("*")]} == before
    assert not (tmp_path / "o").exists()


def test_hugging_face_datasets_loads_both_layouts_with_prompts_and_seeds(generated, sharded, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # read when datasets is imported
    hf = pytest.importorskip("datasets", reason="Hugging Face datasets is in the test extra: run make install")
    splits = parse_split_spec(SPLIT)
    by_split = {name: {p: r for p, r in load_records(generated).items() if r["split"] == name} for name in splits}
    for name, records in by_split.items():
        files = hf.load_dataset("audiofolder", data_dir=str(generated / "splits" / name), split="train")
        assert files.features["audio"] == hf.Audio()  # the files, as audio
        rows = {row["path"]: row for row in files.remove_columns("audio")}
        assert {p: (r["prompt"], r["seed"], r["seconds_total"]) for p, r in rows.items()} == {
            p: (r["prompt"], r["seed"], r["seconds_total"]) for p, r in records.items()}  # fmt: skip
    shards = hf.load_dataset("webdataset", data_files={name: str(sharded / "splits" / name / "*.tar") for name in splits})
    for name, records in by_split.items():
        rows = {row["json"]["path"]: row["json"] for row in shards[name].remove_columns("wav")}
        assert {p: (r["prompt"], r["seed"], r["seconds_total"]) for p, r in rows.items()} == {
            p: (r["prompt"], r["seed"], r["seconds_total"]) for p, r in records.items()}  # fmt: skip


def test_converter_round_trip_is_byte_identical_and_regroups_shards_by_split(generated, tmp_path, capsys) -> None:
    records = load_records(generated)
    mixed, grouped, back = tmp_path / "mixed", tmp_path / "grouped", tmp_path / "back"
    assert convert_main([str(generated), str(mixed), "--to", "wds", "--shard-size", "20"]) == 0
    assert len(shard_paths(mixed)) == 1  # every leaf in one shard: both splits
    before = sorted(p.name for p in mixed.iterdir())
    assert dataset.main([str(mixed), "--split", SPLIT]) == 2
    assert "shards hold leaves of several splits" in capsys.readouterr().err
    assert sorted(p.name for p in mixed.iterdir()) == before  # refused before anything changed
    assert convert_main([str(mixed), str(grouped), "--to", "wds", "--shard-size", "20", "--split", SPLIT]) == 0
    assert dataset.main([str(grouped), "--split", SPLIT]) == 0  # now each split is whole shards
    assert convert_main([str(grouped), str(back), "--to", "files"]) == 0
    assert f"{len(records)} items, every one byte-identical" in capsys.readouterr().out
    assert {p: f.read_bytes() for p, f in audio_files(back).items()} == {
        p: f.read_bytes() for p, f in audio_files(generated).items() if not p.startswith("splits/")}  # fmt: skip
    assert load_records(back) == records  # the records as generated: no shard fields left
    assert convert_main([str(generated), str(back), "--to", "wds"]) == 2
    assert f"{back}: exists" in capsys.readouterr().err


def test_finetune_trains_loader_takes_the_wds_config_as_a_stream(sharded, small_model) -> None:
    """``finetune.py train``'s loader path on the written config: upstream's WebLoader has no length, which the
    start line must not ask for (a 1-step ``finetune.py train`` on this config was run by hand: 32 s, too slow here)."""
    from stable_audio_tools_ext.finetune.loaders import build_loader

    loader = build_loader(sharded / "dataset_config.train.json", "--dataset-config", small_model.spec.config, 1, 1, 1, True)
    assert loader.files is None and loader.config["dataset_type"] == "wds"
