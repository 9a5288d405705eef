"""``finetune.py prepare`` end to end: synthetic captioned audio -> a dataset stable-audio-tools' own dataloader reads.

Every run is a real ``finetune.py`` subprocess. The dataset is then built exactly as ``train.py``
builds it: ``create_dataloader_from_config`` on the written JSON, which imports the written metadata
module by path and constructs ``SampleDataset``, whose items are read with its own ``__getitem__``
(``torchaudio.load``, i.e. TorchCodec + FFmpeg: docs/dependencies.md).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext.datasets.training import parse_split_spec, split_of
from stable_audio_tools_ext.finetune.prepare import SAO_1_0
from stable_audio_tools_ext.model.tiny import tiny_model_config
from tests.finetune.captioned import AUDIO, captions_of, prepare, write_audio, write_clotho
from tests.support import all_files

SPLIT = "train=0.5,val=0.5"
SAMPLE_RATE = 44100
SAMPLE_SIZE = 65536  # 1.49 s: longer than most files (padded), shorter than two (cropped)
CROP_SIZE = 16384  # 0.37 s: shorter than every file, so every read is a random crop


def links_of(data: Path) -> dict[str, Path]:
    """``{"train/rain/roof.wav": the audio file it points to}`` for every link under ``splits/``."""
    root = data / "splits"
    return {p.relative_to(root).as_posix(): p.resolve() for p in sorted(root.rglob("*")) if p.is_symlink()}


@pytest.fixture(scope="module")
def clotho(tmp_path_factory) -> Path:
    """Audio of every rate and channel count with a Clotho-format CSV, prepared with a 50/50 split."""
    tmp = tmp_path_factory.mktemp("clotho")
    write_audio(tmp / "audio", AUDIO)
    write_clotho(tmp / "captions.csv", list(AUDIO))
    result = prepare("--audio-dir", tmp / "audio", "--captions", tmp / "captions.csv", "--output-dir", tmp / "data",
                     "--split", SPLIT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (tmp / "stdout.txt").write_text(result.stdout)
    return tmp


def sample_dataset(config_path: Path, sample_size: int):
    """stable-audio-tools' SampleDataset, built by its own factory from the written config, and the loader."""
    import torchaudio
    from stable_audio_tools.data.dataset import SampleDataset, create_dataloader_from_config

    config = json.loads(config_path.read_text())
    probe = next(p for p in (config_path.parent / "splits").rglob("*.wav"))
    try:
        torchaudio.load(str(probe))
    except (ImportError, RuntimeError) as exc:
        pytest.fail(f"torchaudio.load cannot read WAV here ({exc}); it needs torchcodec and FFmpeg's shared "
                    "libraries: run `make install` (docs/dependencies.md)")  # fmt: skip
    loader = create_dataloader_from_config(config, batch_size=2, sample_size=sample_size, sample_rate=SAMPLE_RATE,
                                           audio_channels=2, num_workers=1)  # fmt: skip
    assert isinstance(loader.dataset, SampleDataset)
    return loader.dataset, loader


def read(ds, index: int) -> dict:
    """One item's info; fails if SampleDataset fell back to another file (it does on any error)."""
    audio, info = ds[index]
    assert info["path"] == ds.filenames[index], "SampleDataset skipped a file it could not load"
    assert tuple(audio.shape) == (2, ds.pad_crop.n_samples)
    return info


def test_clotho_csv_becomes_a_dataset_with_deterministic_splits(clotho) -> None:
    data = clotho / "data"
    splits = parse_split_spec(SPLIT)
    expected = {f"{split_of(relpath, splits)}/{relpath}": (clotho / "audio" / relpath).resolve() for relpath in AUDIO}
    assert {name.split("/")[0] for name in expected} == {"train", "val"}  # both splits get files (fixed by the names)
    assert links_of(data) == expected  # referenced, not copied: each split folder links exactly its files
    assert all(not os.path.isabs(os.readlink(data / "splits" / name)) for name in expected)
    assert sorted(all_files(data)) == sorted(["dataset_captions.jsonl", "dataset_config.train.json", "dataset_config.val.json",
                                              "dataset_metadata.py", *(f"splits/{name}" for name in expected)])  # fmt: skip
    for split in ("train", "val"):
        config = json.loads((data / f"dataset_config.{split}.json").read_text())
        assert config == {"dataset_type": "audio_dir", "random_crop": True, "datasets": [
            {"id": f"data-{split}", "path": f"{data.resolve()}/splits/{split}/",
             "custom_metadata_module": str(data.resolve() / "dataset_metadata.py")}]}  # fmt: skip
    records = [json.loads(line) for line in (data / "dataset_captions.jsonl").read_text(encoding="utf-8").splitlines()]
    lines = {relpath: line for line, relpath in enumerate(AUDIO, start=2)}
    assert {r["path"]: (r["captions"], r["source"]) for r in records} == {
        f"splits/{name}": (captions_of(name.split("/", 1)[1]), f"{clotho / 'captions.csv'}:{lines[name.split('/', 1)[1]]}")
        for name in expected
    }


def test_summary_counts_files_rates_and_channels(clotho) -> None:
    out = (clotho / "stdout.txt").read_text()
    for text in ["│ 6, 0.00 h (7.5 s)", "16000 Hz (2 files), 44100 Hz (2 files), 48000 Hz (2 files)",
                 "mono (3 files), stereo (3 files)", "5 (6 files); prompt: random", "0.70 s to 1.90 s (mean 1.25 s)",
                 "Stable Audio Open 1.0 (default): 44100 Hz, stereo, window 47.55 s", "resamples every file to 44100 Hz",
                 f"dataset config: {(clotho / 'data').resolve()}/dataset_config.val.json"]:  # fmt: skip
        assert text in out, out


def test_stable_audio_tools_reads_captions_and_timing_for_every_file(clotho) -> None:
    """Every file once per split, a caption of its own as the prompt, upstream's timing, a mask the trainer can stack."""
    import torch
    import torch.nn.functional as F

    random.seed(0)  # SampleDataset and the metadata module draw from Python's random
    seen = {}
    for split in ("train", "val"):
        ds, loader = sample_dataset(clotho / "data" / f"dataset_config.{split}.json", SAMPLE_SIZE)
        for index, path in enumerate(ds.filenames):
            relpath = Path(path).relative_to((clotho / "data" / "splits" / split).resolve()).as_posix()
            frames = ds.load_file(path).shape[-1]  # at the model's rate, as PadCrop sees it
            prompts = set()
            for _ in range(20):
                info = read(ds, index)
                prompts.add(info["prompt"])
                assert info["seconds_start"] in ((0,) if frames <= SAMPLE_SIZE else (0, 1))  # cropped: its offset
                assert info["seconds_total"] == math.ceil(frames / SAMPLE_RATE)  # the whole file, rounded up
                assert isinstance(info["padding_mask"], list) and info["padding_mask"][0].shape == (SAMPLE_SIZE,)
            assert prompts <= set(captions_of(relpath)) and len(prompts) > 1  # --caption-policy random: a draw per read
            seen[relpath] = split
        batch_audio, metadata = next(iter(loader))  # through a worker and collation, as train.py reads it
        masks = torch.stack([md["padding_mask"][0] for md in metadata])  # what 0.0.19's training step does
        assert masks.shape == (2, SAMPLE_SIZE) and batch_audio.shape == (2, 2, SAMPLE_SIZE)
        assert F.interpolate(masks.unsqueeze(1).float(), size=32, mode="nearest").shape == (2, 1, 32)
        assert all(md["prompt"] in captions_of(md["relpath"]) for md in metadata)
    assert seen == {relpath: split_of(relpath, parse_split_spec(SPLIT)) for relpath in AUDIO}


def test_timing_follows_the_crop_and_the_whole_file(clotho) -> None:
    """With files longer than the window: seconds_start is the crop's offset, seconds_total stays the whole file."""
    random.seed(1)
    starts = set()
    for split in ("train", "val"):
        ds, _ = sample_dataset(clotho / "data" / f"dataset_config.{split}.json", CROP_SIZE)
        for index, path in enumerate(ds.filenames):
            frames = ds.load_file(path).shape[-1]
            for _ in range(20):
                info = read(ds, index)
                offset = round(info["timestamps"][0] * frames)  # PadCrop: t_start = offset / frames
                assert info["seconds_start"] == math.floor(offset / SAMPLE_RATE)
                assert info["seconds_total"] == math.ceil(frames / SAMPLE_RATE) > CROP_SIZE / SAMPLE_RATE
                starts.add(info["seconds_start"])
    assert starts == {0, 1}  # crops past the first second are told so


def run_metadata_module(data_dirs: list[Path], links: list[str]) -> dict:
    """Each data dir's metadata module called on each link, in a Python with only the standard library."""
    probe = f"""
import importlib.util, json, sys
out = {{}}
for data in {[str(d) for d in data_dirs]!r}:
    spec = importlib.util.spec_from_file_location("metadata_module", data + "/dataset_metadata.py")
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    info = lambda link: {{"path": data + "/splits/" + link, "seconds_start": 3, "seconds_total": 9, "padding_mask": "mask"}}
    out[data] = {{link: [module.get_custom_metadata(info(link), None) for _ in range(30)] for link in {links!r}}}
    try:
        module.get_custom_metadata(info("train/unknown.wav"), None)
    except KeyError as exc:
        out[data]["unknown"] = str(exc)
assert not [m for m in sys.modules if m.startswith(("stable_audio_tools", "numpy", "torch"))]
print(json.dumps(out))
"""
    # -I -S: no site-packages, no PYTHONPATH - only the standard library is importable.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_caption_policy_first_and_a_standalone_metadata_module(clotho, tmp_path) -> None:
    first = tmp_path / "first"
    args = ["--audio-dir", clotho / "audio", "--captions", clotho / "captions.csv", "--split", SPLIT]
    assert prepare(*args, "--output-dir", first, "--caption-policy", "first").returncode == 0
    links = sorted(links_of(first))
    answers = run_metadata_module([first.resolve(), (clotho / "data").resolve()], links)
    for data, policy in ((first.resolve(), "first"), ((clotho / "data").resolve(), "random")):
        assert "no record for 'splits/train/unknown.wav'" in answers[str(data)].pop("unknown")
        for link, calls in answers[str(data)].items():
            captions = captions_of(link.split("/", 1)[1])
            assert all(c == {"prompt": c["prompt"], "seconds_start": 3, "seconds_total": 9, "padding_mask": ["mask"]} for c in calls)
            prompts = {c["prompt"] for c in calls}
            assert prompts == {captions[0]} if policy == "first" else (prompts <= set(captions) and len(prompts) > 1)


def test_rerun_replaces_the_dataset_cleanly(clotho, tmp_path) -> None:
    data = tmp_path / "data"
    args = ["--audio-dir", clotho / "audio", "--captions", clotho / "captions.csv", "--output-dir", data]
    assert prepare(*args, "--split", SPLIT).returncode == 0
    assert prepare(*args, "--split", "a=0.3,b=0.7").returncode == 0
    splits = parse_split_spec("a=0.3,b=0.7")
    assert links_of(data) == {f"{split_of(r, splits)}/{r}": (clotho / "audio" / r).resolve() for r in AUDIO}
    assert sorted(p.name for p in data.glob("dataset_config.*.json")) == ["dataset_config.a.json", "dataset_config.b.json"]
    before = {name: path.read_bytes() for name, path in all_files(data).items()}
    assert prepare(*args, "--split", "a=0.3,b=0.7").returncode == 0
    assert {name: path.read_bytes() for name, path in all_files(data).items()} == before  # same inputs, same files


def test_sidecar_captions(tmp_path) -> None:
    write_audio(tmp_path / "audio", {"a.wav": (44100, 1, 0.5), "sub/b.flac": (48000, 2, 0.5)})
    (tmp_path / "audio/a.txt").write_text("Wind in the trees\n\n  Leaves rustle, softly  \n", encoding="utf-8")
    (tmp_path / "audio/sub/b.txt").write_text("Un pájaro canta", encoding="utf-8")
    result = prepare("--audio-dir", tmp_path / "audio", "--output-dir", tmp_path / "data", "--split", "train=1")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "data/dataset_captions.jsonl").read_text().splitlines()]
    assert [(r["path"], r["captions"]) for r in records] == [
        ("splits/train/a.wav", ["Wind in the trees", "Leaves rustle, softly"]),
        ("splits/train/sub/b.flac", ["Un pájaro canta"]),
    ]
    assert sorted(p.name for p in (tmp_path / "data").glob("dataset_config.*.json")) == ["dataset_config.train.json"]
    assert "1 (1 file), 2 (1 file); prompt: random" in result.stdout


def test_jsonl_with_custom_columns(tmp_path) -> None:
    write_audio(tmp_path / "audio", {"x.wav": (44100, 2, 0.5), "y.wav": (44100, 2, 0.5)})
    lines = [{"wav": "x.wav", "desc": "Engine idles", "tags": ["car", "motor"]}, {"wav": str(tmp_path / "audio/y.wav"),
             "desc": "Bell rings\u2028twice", "tags": []}]  # fmt: skip
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n")
    args = ["--audio-dir", tmp_path / "audio", "--captions", tmp_path / "meta.jsonl", "--output-dir", tmp_path / "data",
            "--file-column", "wav", "--caption-column", "desc", "--caption-column", "tags", "--split", "train=1"]  # fmt: skip
    result = prepare(*args)
    assert result.returncode == 2  # y's tags are an empty list: an empty caption
    assert f"{tmp_path / 'meta.jsonl'}:2: tags is empty" in result.stderr and not (tmp_path / "data").exists()
    lines[1]["tags"] = ["bell"]
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n")
    assert prepare(*args).returncode == 0
    with open(tmp_path / "data/dataset_captions.jsonl", encoding="utf-8") as handle:  # as the metadata module reads it
        records = [json.loads(line) for line in handle]
    assert [(r["path"], r["captions"]) for r in records] == [
        ("splits/train/x.wav", ["Engine idles", "car", "motor"]),
        ("splits/train/y.wav", ["Bell rings\u2028twice", "bell"]),
    ]


def test_val_captions_give_the_validation_set(tmp_path) -> None:
    write_audio(tmp_path / "dev", {"a.wav": (44100, 2, 0.5), "b.wav": (44100, 2, 0.5)})
    write_audio(tmp_path / "val", {"c.wav": (44100, 2, 0.5)})
    args = ["--audio-dir", tmp_path / "dev", "--captions", write_clotho(tmp_path / "dev.csv", ["a.wav", "b.wav"]),
            "--val-audio-dir", tmp_path / "val", "--val-captions", write_clotho(tmp_path / "val.csv", ["c.wav"]),
            "--output-dir", tmp_path / "data"]  # fmt: skip
    result = prepare(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(links_of(tmp_path / "data")) == ["train/a.wav", "train/b.wav", "val/c.wav"]
    assert "--dataset-config" in result.stdout and "dataset_config.val.json" in result.stdout
    result = prepare(*args, "--split", "train=0.5,val=0.5")
    assert result.returncode == 2 and "--split splits one set of files" in result.stderr


def test_model_window_from_a_config_or_the_hub(clotho, tmp_path, small_hub_env) -> None:
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps(tiny_model_config(sample_size=16 * 2048)))  # 0.74 s: five files are longer
    args = ["--audio-dir", clotho / "audio", "--captions", clotho / "captions.csv", "--split", SPLIT]
    result = prepare(*args, "--output-dir", tmp_path / "a", "--model-config", config)
    assert result.returncode == 0, result.stderr
    assert f"{config}: 44100 Hz, stereo, window 0.74 s" in result.stdout
    assert "5 files longer than the window: each read trains on a random 0.74 s crop" in result.stdout
    result = prepare(*args, "--output-dir", tmp_path / "b", "--pretrained-name", "stabilityai/stable-audio-open-1.0", env=small_hub_env)
    assert result.returncode == 0, result.stderr
    assert "stabilityai/stable-audio-open-1.0: 44100 Hz, stereo, window 2.97 s" in result.stdout
    real = tiny_model_config()  # the real SAO 1.0 config's rate, channels and window (only widths are shrunk)
    assert (SAO_1_0.sample_rate, SAO_1_0.channels, SAO_1_0.sample_size) == (real["sample_rate"], real["audio_channels"], real["sample_size"])


def expect_refusal(result: subprocess.CompletedProcess, lines: list[str], count: int | None = None) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    for line in lines:
        assert line in result.stderr, result.stderr
    if count is not None:
        assert result.stderr.startswith(f"error: {count} problems; nothing was written:\n"), result.stderr


def test_every_bad_row_is_reported_at_once_and_nothing_is_written(tmp_path) -> None:
    audio = tmp_path / "audio"
    write_audio(audio, {"ok.wav": (44100, 2, 0.5), "dup.wav": (44100, 2, 0.5), "stray-1.wav": (44100, 2, 0.5),
                        "sub/stray-2.flac": (16000, 1, 0.5), ".hidden.wav": (44100, 1, 0.5)})  # fmt: skip
    (audio / "broken.wav").write_bytes(b"RIFF0000WAVEnot audio")
    (audio / "clip.m4a").write_bytes(b"")
    sf.write(audio / "empty.wav", np.zeros((0, 1), dtype="float32"), 44100)
    extra = "\n".join([
        'ok.wav,"A long caption\nover two lines",b,c,d,e',  # lines 2-3: later line numbers count physical lines
        "dup.wav,a,b,c,d,e",
        "missing-1.wav,a,b,c,d,e",
        "dup.wav,a,b,c,d,e",
        "broken.wav,a,b,c,d,e",
        "clip.m4a,a,b,c,d,e",
        'empty-caption.wav,a,"  ",c,d,e',
        "../outside.wav,a,b,c,d,e",
        ".hidden.wav,a,b,c,d,e",
        "missing-2.wav,a,b,c,d,e",
        "short-row.wav,a,b",
        "empty.wav,a,b,c,d,e",
    ]) + "\n"  # fmt: skip
    csv_path = write_clotho(tmp_path / "captions.csv", [], extra)
    data = tmp_path / "data"
    result = prepare("--audio-dir", audio, "--captions", csv_path, "--output-dir", data)
    c = str(csv_path)
    expect_refusal(result, [
        f"  {c}:6: 'dup.wav' is already listed at {c}:4",
        f"  {c}:7: 'broken.wav': unreadable audio (",
        f"  {c}:8: 'clip.m4a': unsupported format '.m4a': stable-audio-tools' audio_dir datasets read .wav, .mp3, .flac, .ogg, .aif, .opus",
        f"  {c}:9: caption_2 is empty",
        f"  {c}:10: '../outside.wav' is not inside --audio-dir {audio}",
        f"  {c}:11: '.hidden.wav': a hidden file (name starting with '.'), which stable-audio-tools' audio_dir scan skips",
        f"  {c}:13: 3 fields; the header (line 1) has 6",
        f"  {c}:14: 'empty.wav': no audio samples in the file (0 frames)",
        f"  {c}: no audio in --audio-dir {audio} for 3 rows: line 5 'missing-1.wav', line 9 'empty-caption.wav', line 12 'missing-2.wav'",
        f"  {audio}: no caption for 2 audio files ({c}): 'stray-1.wav', 'sub/stray-2.flac'",
    ], count=10)  # fmt: skip
    assert not data.exists()


def test_sidecar_problems(tmp_path) -> None:
    audio = tmp_path / "audio"
    write_audio(audio, {"a.wav": (44100, 2, 0.5), "b.wav": (44100, 2, 0.5), "d.wav": (44100, 2, 0.5),
                        "no-caption.wav": (44100, 2, 0.5)})  # fmt: skip
    (audio / "a.txt").write_text("a caption")
    (audio / "b.txt").write_text(" \n\n")
    (audio / "d.txt").write_bytes("caf\u00e9".encode("latin-1"))
    (audio / "c.m4a").write_bytes(b"")
    (audio / "c.txt").write_text("caption of an m4a")
    for name in ("orphan-1.txt", "sub/orphan-2.txt"):
        (audio / name).parent.mkdir(exist_ok=True)
        (audio / name).write_text("no audio")
    result = prepare("--audio-dir", audio, "--output-dir", tmp_path / "data")
    expect_refusal(result, [
        f"  {audio / 'b.txt'}: the caption is empty",
        f"  {audio / 'd.txt'}: not UTF-8 text (unexpected end of data at byte 3)",
        f"  {audio / 'c.txt'}: its audio file 'c.m4a': unsupported format '.m4a'",
        f"  {audio}: no audio file beside 2 caption files (same name, .wav, .mp3, .flac, .ogg, .aif, .opus): "
        "'orphan-1.txt', 'sub/orphan-2.txt'",
        f"  {audio}: no caption for 1 audio file (no .txt beside them): 'no-caption.wav'",
    ], count=5)  # fmt: skip
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"file": "a.wav", "text": "x"}\nnot json\n[1]\n{"file": "a.wav", "text": 3}\n', [], [
            ":2: not valid JSON (", ":3: expected a JSON object, got list", ":4: 'a.wav' is already listed at", ":4: text: expected a string or a list of strings"]),
        ('{"name": "a.wav", "text": "x"}\n', [], [":1: no file column (looked for file_name, file, filename, path, audio; the header has 'name', 'text'): pass --file-column"]),
        ('{"file": "a.wav", "text": "x"}\n', ["--caption-column", "desc"], [":1: --caption-column 'desc': no such column (the header has 'file', 'text')"]),
        ("", [], [": no rows: expected a header line and one row per audio file"]),
    ],
)  # fmt: skip
def test_bad_jsonl_and_columns(tmp_path, content, args, message) -> None:
    write_audio(tmp_path / "audio", {"a.wav": (44100, 2, 0.5)})
    (tmp_path / "meta.jsonl").write_text(content)
    result = prepare("--audio-dir", tmp_path / "audio", "--captions", tmp_path / "meta.jsonl", "--output-dir", tmp_path / "data", *args)
    expect_refusal(result, [f"  {tmp_path / 'meta.jsonl'}{m}" for m in message])
    assert not (tmp_path / "data").exists()


def test_bad_output_folders_are_left_as_they_were(tmp_path) -> None:
    audio = tmp_path / "audio"
    write_audio(audio, {"a.wav": (44100, 2, 0.5)})
    (audio / "a.txt").write_text("a caption")
    generated, foreign = tmp_path / "generated", tmp_path / "foreign"
    (generated / "manifest.jsonl").parent.mkdir()
    (generated / "manifest.jsonl").write_text("{}\n")
    (foreign / "splits/train").mkdir(parents=True)
    (foreign / "splits/train/mine.wav").write_bytes(b"real file")
    for output, message in [
        (audio / "data", f"--output-dir {audio / 'data'}: is inside --audio-dir {audio}, whose audio scan would then find the split links"),
        (generated, f"--output-dir {generated}: holds a generate.py output (manifest.jsonl)"),
        (foreign, f"--output-dir {foreign}: {foreign / 'splits/train/mine.wav'} is not a split link made by this tool"),
    ]:  # fmt: skip
        before = all_files(tmp_path)
        expect_refusal(prepare("--audio-dir", audio, "--output-dir", output, "--split", "train=1"), [message], count=None)
        assert all_files(tmp_path) == before


def test_empty_split_bad_flags_and_a_bad_model_config(tmp_path) -> None:
    audio = tmp_path / "audio"
    write_audio(audio, {"a.wav": (44100, 2, 0.5)})
    (audio / "a.txt").write_text("a caption")
    out = tmp_path / "data"
    empty = "val" if split_of("a.wav", parse_split_spec("train=0.9,val=0.1")) == "train" else "train"
    result = prepare("--audio-dir", audio, "--output-dir", out)  # one file cannot fill both default splits
    expect_refusal(result, [f"  --split: split '{empty}' gets no file of the 1 found"], count=None)
    result = prepare("--audio-dir", audio, "--output-dir", out, "--split", "train=1", "--model-config", tmp_path / "nope.json")
    expect_refusal(result, [f"  --model-config {tmp_path / 'nope.json'}: file not found"])
    result = prepare("--audio-dir", audio, "--output-dir", out, "--split", "train=0.9,val=0.2")
    expect_refusal(result, ["argument --split: the fractions add up to 1.1; they must add up to 1"])
    result = prepare("--audio-dir", audio, "--output-dir", out, "--file-column", "wav")
    expect_refusal(result, ["--file-column and --caption-column apply to --captions/--val-captions files, and none is given"])
    result = prepare("--audio-dir", tmp_path / "nowhere", "--output-dir", out)
    expect_refusal(result, [f"  --audio-dir {tmp_path / 'nowhere'}: not a folder"])
    (tmp_path / "empty").mkdir()
    result = prepare("--audio-dir", tmp_path / "empty", "--output-dir", out)
    expect_refusal(result, [f"  {tmp_path / 'empty'}: no captioned audio (.wav, .mp3, .flac, .ogg, .aif, .opus) found"])
    assert not out.exists()
