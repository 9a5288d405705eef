"""``finetune.py encode``: pre-encoded latents that do not depend on the ranks, resume, and train.

Real subprocesses (``python`` and ``torchrun --nproc_per_node 2``) on the tiny model of the real
architecture (small window: 64 latent frames, 2.97 s); the latents are read back with
stable-audio-tools' own ``PreEncodedDataset`` through the written dataset config.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.finetune.encode import CONFIG_NAME, SourceFile, durations, shard_by_duration
from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID
from tests.conftest import REPO_ROOT, SMALL_WINDOW_SAMPLES
from tests.finetune.captioned import AUDIO, captions_of, prepared, write_audio
from tests.support import free_port

SAMPLE_RATE = 44100
DOWNSAMPLING = 2048
# the captioned files of the other tests, and two longer than the window (2.97 s): cropped per read
FILES = {**AUDIO, "long/storm.wav": (44100, 2, 7.5), "long/train.flac": (48000, 1, 4.2)}
MODEL = ["--pretrained-name", DEMO_REPO_ID]


def finetune(*args: str | Path, env: dict[str, str], ranks: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={free_port()}"]
    command = [*launcher, str(REPO_ROOT / "finetune.py"), *map(str, args)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def latents_of(folder: Path) -> dict[str, tuple[np.ndarray, dict]]:
    return {p.relative_to(folder).as_posix(): (np.load(p), json.loads(p.with_suffix(".json").read_text()))
            for p in sorted(folder.rglob("*.npy"))}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepared(tmp_path_factory.mktemp("encode"), FILES, "train=1.0")


@pytest.fixture(scope="module")
def one_rank(data, small_hub_env) -> Path:
    # one CPU thread, as torchrun gives each worker: the same kernels, so the same bits (with other
    # thread counts the convolutions sum in another order: latents agree to about 1e-7)
    env = {**small_hub_env, "OMP_NUM_THREADS": "1"}
    result = finetune("encode", "--dataset-config", data / "data" / "dataset_config.train.json",
                      "--output-dir", data / "one", *MODEL, "--num-workers", "1", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"done: {len(FILES)} files encoded by this run, 0 by earlier runs; {len(FILES)} files have latents" in result.stdout
    return data / "one"


def test_two_ranks_write_the_same_latents_as_one(one_rank, data, small_hub_env) -> None:
    result = finetune("encode", "--dataset-config", data / "data" / "dataset_config.train.json",
                      "--output-dir", data / "two", *MODEL, "--num-workers", "1", env=small_hub_env, ranks=2)  # fmt: skip
    assert result.returncode == 0, result.stderr
    one, two = latents_of(one_rank), latents_of(data / "two")
    assert len(one) == len(FILES) and set(one) == set(two)
    for name, (latents, metadata) in one.items():
        assert np.array_equal(latents, two[name][0]), name
        assert metadata == two[name][1], name
    records = [json.loads(line) for line in (data / "two" / "manifest.jsonl").read_text().splitlines()]
    ranks = {record["path"]: record["rank"] for record in records}
    assert set(ranks.values()) == {0, 1}  # both ranks encoded a share: the one shard_by_duration gives it
    seconds = {key: FILES[key.split("/", 1)[1]][2] for key in ranks}
    loads = [sum(seconds[key] for key, rank in ranks.items() if rank == r) for r in (0, 1)]
    assert abs(loads[0] - loads[1]) < 0.5, loads  # by file count (DistributedSampler): 8.8 s and 10.4 s
    config = json.loads((data / "two" / CONFIG_NAME).read_text())
    assert config["dataset_type"] == "pre_encoded" and config["latent_crop_length"] == SMALL_WINDOW_SAMPLES // DOWNSAMPLING


def test_latents_cover_the_whole_file_with_a_mask(one_rank) -> None:
    """Each file whole (padded to the window or a latent frame), its real frames marked, its timing as upstream's."""
    window = SMALL_WINDOW_SAMPLES // DOWNSAMPLING
    records = {json.loads(line)["path"]: json.loads(line) for line in (one_rank / "manifest.jsonl").read_text().splitlines()}
    for name, (latents, metadata) in latents_of(one_rank).items():
        key = name.removesuffix(".npy")
        rate, _, seconds = FILES[key.split("/", 1)[1]]
        frames = records[key]["frames"]  # resampled to 44.1 kHz
        assert abs(frames - seconds * SAMPLE_RATE) <= 2, key
        real = math.ceil(frames / DOWNSAMPLING)
        assert latents.shape == (64, max(window, real)), key
        assert metadata["padding_mask"] == [1] * real + [0] * (latents.shape[1] - real), key
        assert (metadata["seconds_start"], metadata["seconds_total"]) == (0, math.ceil(frames / SAMPLE_RATE)), key
    assert sum(latents.shape[1] > window for latents, _ in latents_of(one_rank).values()) == 2  # the two long files


def test_a_rerun_skips_what_is_done_and_redoes_a_changed_file(one_rank, data, small_hub_env) -> None:
    before = {p: p.stat().st_mtime_ns for p in one_rank.rglob("*.npy")}
    changed = data / "audio" / "door.wav"
    changed.write_bytes(changed.read_bytes())  # same audio, new mtime: the fingerprint changes
    result = finetune("encode", "--dataset-config", data / "data" / "dataset_config.train.json",
                      "--output-dir", one_rank, *MODEL, "--num-workers", "1", env=small_hub_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(FILES) - 1} already encoded, 1 to do" in result.stdout
    assert f"done: 1 files encoded by this run, {len(FILES) - 1} by earlier runs" in result.stdout  # said "done: 3 files encoded"
    after = {p: p.stat().st_mtime_ns for p in one_rank.rglob("*.npy")}
    redone = {p.name for p in after if after[p] != before[p]}
    assert redone == {"door.wav.npy"}


def test_stable_audio_tools_reads_window_crops_with_captions_and_timing(one_rank) -> None:
    """Through the written config: every read is one window, a caption of its file, seconds_start of its crop."""
    import random

    import torch
    from stable_audio_tools.data.dataset import create_dataloader_from_config

    config = json.loads((one_rank / CONFIG_NAME).read_text())
    loader = create_dataloader_from_config(config, batch_size=2, sample_size=SMALL_WINDOW_SAMPLES, sample_rate=SAMPLE_RATE,
                                           num_workers=1)  # fmt: skip
    dataset = loader.dataset
    random.seed(0)
    starts = {}
    for index in range(len(dataset)):
        for _ in range(6):
            latents, info = dataset[index]
            relpath = info["relpath"]
            assert latents.shape == (64, SMALL_WINDOW_SAMPLES // DOWNSAMPLING)
            assert info["prompt"] in captions_of(relpath)
            start = info["latent_crop_start"]
            assert info["seconds_start"] == int(start * DOWNSAMPLING / SAMPLE_RATE)
            assert isinstance(info["padding_mask"], list) and torch.is_tensor(info["padding_mask"][0])
            starts.setdefault(relpath, set()).add(start)
    assert len(starts["long/storm.wav"]) > 1  # a random crop per read of a file longer than the window
    assert starts["dog bark.wav"] == {0}


def test_train_on_latents_then_generate(one_rank, small_hub_env, tmp_path) -> None:
    result = finetune("train", "--dataset-config", one_rank / CONFIG_NAME, *MODEL, "--batch-size", "2", "--num-workers", "1",
                      "--save-dir", tmp_path, "--name", "latents", "--max-steps", "2", env=small_hub_env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    checkpoint = next((tmp_path / "latents" / "checkpoints").glob("*step=2.ckpt"))
    tree = tmp_path / "tree.yaml"
    tree.write_text("rain: {prompt: rain, seconds_total: 1, steps: 4}\n")
    command = [sys.executable, str(REPO_ROOT / "generate.py"), "--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / "out"),
               "--ckpt-path", str(checkpoint)]  # fmt: skip
    generated = subprocess.run(command, cwd=REPO_ROOT, env=small_hub_env, capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "out" / "rain_item-1.wav").is_file()


def test_lora_training_on_latents_under_torchrun(one_rank, small_hub_env, tmp_path) -> None:
    """LoRA adapters train with DDP on two ranks from pre-encoded latents; the checkpoint and its adapter file hold adapters only."""
    from stable_audio_tools_ext.finetune.run_folder import TrainingRun, adapter_file
    from stable_audio_tools_ext.model.lora_files import read_lora_file

    result = finetune("train", "--dataset-config", one_rank / CONFIG_NAME, *MODEL, "--batch-size", "1", "--num-workers", "1",
                      "--lora-rank", "2", "--lora-include", "transformer.layers.[0-1].", "--save-dir", tmp_path, "--name",
                      "lora", "--max-steps", "2", env=small_hub_env, ranks=2)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "batch 1 x 1 accumulated x 2 ranks = 2" in result.stderr
    step, checkpoint = TrainingRun(tmp_path / "lora").last_checkpoint()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert step == 2 and state and all(".transformer.layers." in key and ".lora.lora_" in key for key in state)
    adapter = read_lora_file(adapter_file(checkpoint))
    assert adapter.config.include == ("transformer.layers.[0-1].",) and len(adapter.layers) == len(state) // 2


def test_encode_refuses_what_it_cannot_use(one_rank, data, small_hub, small_hub_env, tmp_path) -> None:
    snapshot = next(small_hub.rglob("model_config.json"))
    cases = [
        (["--dataset-config", data / "data" / "dataset_config.train.json", "--model-config", snapshot], "encode needs the VAE's trained weights"),
        (["--dataset-config", one_rank / CONFIG_NAME, *MODEL], "encode reads audio_dir datasets, this one is 'pre_encoded'"),
    ]  # fmt: skip
    for args, message in cases:
        result = finetune("encode", *args, "--output-dir", tmp_path / "out", env=small_hub_env)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not (tmp_path / "out").exists()


def _files(count: int) -> list[SourceFile]:
    return [SourceFile("train", "/data", f"/data/{index:03d}.wav", 1000 + index, index) for index in range(count)]


def test_shards_balance_duration_and_deal_every_file_to_exactly_one_rank() -> None:
    """Many files of very uneven durations (0.1 s to an hour), world sizes 1 to 8."""
    rng = random.Random(3)
    files = _files(97)
    seconds = [rng.choice((1.0, 10.0, 100.0, 3600.0)) * rng.random() + 0.1 for _ in files]
    for world_size in range(1, 9):
        shares = [shard_by_duration(files, seconds, world_size, rank) for rank in range(world_size)]
        dealt = [file.key for share in shares for file in share]
        assert sorted(dealt) == [file.key for file in files], world_size  # none missing, none twice
        assert all(share == sorted(share, key=files.index) for share in shares)  # each share in the files' order
        loads = [sum(seconds[files.index(file)] for file in share) for share in shares]
        # greedy longest-first: no share more than the longest file above another, and within 4/3 of the best possible
        assert max(loads) - min(loads) <= max(seconds), (world_size, loads)
        assert max(loads) <= 4 / 3 * max(sum(seconds) / world_size, max(seconds)), (world_size, loads)
        assert shares == [shard_by_duration(list(files), list(seconds), world_size, rank) for rank in range(world_size)]


def test_long_files_are_spread_where_a_split_by_count_would_stack_them() -> None:
    """Long and short files alternating by name: by count, rank 0 would get every long one (2400 s against 4 s)."""
    files = _files(8)
    seconds = [600.0, 1.0] * 4
    shares = [shard_by_duration(files, seconds, 2, rank) for rank in (0, 1)]
    assert [sum(seconds[files.index(file)] for file in share) for share in shares] == [1202.0, 1202.0]


def test_durations_come_from_headers_and_unreadable_ones_count_as_the_mean(tmp_path) -> None:
    write_audio(tmp_path, {"a.wav": (44100, 1, 2.0), "b.flac": (16000, 2, 5.0)})
    (tmp_path / "c.m4a").write_bytes(b"not a header libsndfile reads")
    files = [SourceFile("train", str(tmp_path), str(tmp_path / name), 0, 0) for name in ("a.wav", "b.flac", "c.m4a")]
    assert durations(files) == pytest.approx([2.0, 5.0, 3.5])


def test_rank_0_gives_up_on_ranks_that_never_join_after_the_dist_timeout(small_hub, monkeypatch, capsys) -> None:
    """Only rank 0 of two: encode must not wait torch's default (30 min on gloo), nor end in a traceback."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    code = finetune_main.main(["encode", "--dataset-config", "unread.json", "--output-dir", "unwritten", *MODEL, "--device", "cpu",
                     "--dist-timeout", "0.02"])  # fmt: skip
    assert code == 1
    assert "error: the 2 ranks did not all join within --dist-timeout 0.02 min" in capsys.readouterr().err


USER_MODULES = {  # a user's own metadata modules, as a pre-encoded dataset config may name them
    "captions only": 'def get_custom_metadata(info, audio):\n    return {"prompt": "rain"}\n',
    "timing passed through": 'def get_custom_metadata(info, audio):\n'
                             '    return {"prompt": "rain", "seconds_start": info["seconds_start"]}\n',
    "timing of its own": 'def get_custom_metadata(info, audio):\n    return {"prompt": "rain", "seconds_start": 100}\n',
}  # fmt: skip


@pytest.mark.parametrize("module", ["prepare's", *USER_MODULES, None])
def test_train_times_latent_crops_whatever_the_metadata_module(one_rank, small_hub, module, tmp_path) -> None:
    """finetune.py train's loader: seconds_start follows the latent crop with any module, or none; a module's own timing is kept."""
    import random

    from stable_audio_tools_ext.finetune.loaders import build_loader

    config = json.loads((one_rank / CONFIG_NAME).read_text())
    for dataset in config["datasets"]:
        if module == "prepare's":  # adds the crop itself: not twice
            continue
        dataset.pop("custom_metadata_module")
        if module is not None:
            (tmp_path / "module.py").write_text(USER_MODULES[module])
            dataset["custom_metadata_module"] = str(tmp_path / "module.py")
    (tmp_path / "latents.json").write_text(json.dumps(config))
    model_config = json.loads(next(small_hub.rglob("model_config.json")).read_text())
    loader = build_loader(tmp_path / "latents.json", "--dataset-config", model_config, 2, 1, 1, shuffle=False)
    dataset = loader.dataloader.dataset
    storm = next(index for index, name in enumerate(dataset.filenames) if name.endswith("storm.wav.npy"))
    random.seed(0)
    reads = [dataset[storm][1] for _ in range(12)]
    starts = {info["latent_crop_start"] for info in reads}
    assert max(starts) * DOWNSAMPLING >= SAMPLE_RATE  # some crops start a second or more into the file
    for info in reads:
        crop = int(info["latent_crop_start"] * DOWNSAMPLING / SAMPLE_RATE)
        assert info["seconds_start"] == (100 if module == "timing of its own" else crop), module
