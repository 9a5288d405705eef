"""``finetune.py encode``: a dataset's audio -> stable-audio-tools' ``pre_encoded`` latents, once.

Training on an audio folder decodes, resamples and VAE-encodes every clip on every step, although
the audio never changes; on the CPU that is most of a step (docs/BENCHMARKS.md). This runs the
model's VAE encoder once per file and writes what stable-audio-tools' ``PreEncodedDataset`` reads:
``<id>/<relpath>.npy`` (latents ``[channels, frames]``) and ``.json`` (the read's metadata) per
file, and ``dataset_config.json`` with ``dataset_type: pre_encoded``; ``finetune.py train`` then
switches the training wrapper to latents (its ``pre_encoded`` setting).

What a read sees, compared with training on the audio folder:

* Files are read by upstream's own ``SampleDataset`` (its scan, ``load_file`` resampling and channel
  conversion, the clamp to [-1, 1]) and silent files are skipped as it skips them.
* The whole file is encoded (padded with silence to the window, or to a whole latent frame), and
  the dataset config asks for window-long latent crops at a random start per read, as training takes
  a window-long audio crop at a random start: same lengths, crops on a 2048-sample grid, and the
  encoder saw the audio around a crop. Files longer than the window are encoded in overlapping
  chunks (upstream's ``encode_audio(chunked=True)``) to bound memory.
* The VAE samples its latents (mean + noise); upstream re-samples on every step, here the sample is
  drawn once per file from a seed derived from ``--seed`` and the file's path, so the latents do not
  depend on the number of ranks or the order. Upstream's random phase flip is not applied.
* The metadata module of the source dataset is kept: captions are still drawn per read, and the
  timing follows the latent crop (``seconds_start``).

Under ``torchrun`` the files are sharded over ranks by duration (``shard_by_duration``): every
rank's share holds about the same seconds of audio, so no rank waits at the end for one that drew
the long files (``--dist-timeout`` bounds that wait). A rerun skips every file already encoded with
the same model, seed and source file (the manifest, ``manifest.jsonl``); every file is written
atomically, the JSON last.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from stable_audio_tools.data.dataset import is_silence

from ..model.loading import build_model
from ..model.spec import ModelLoadError, ModelRequest, ModelSpec
from ..model.vae import seeded_global_rng
from ..output.atomic import atomic_open, atomic_write_text, remove_partial_files
from ..output.manifest import ManifestWriter, fold_parts, load_records
from ..run.distributed import DistContext, barrier, broadcast_from_main, join_job, shutdown
from ..run.exits import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK
from ..run.signals import GracefulStop
from ..tree.plan import derive_seed, least_loaded_shares
from .loaders import DatasetConfigError, build_loader
from .weights import FinetuneInputError, choose_model

LATENT_SUFFIX = ".npy"
METADATA_SUFFIX = ".json"
CONFIG_NAME = "dataset_config.json"
PROGRESS_EVERY = 50  # files between progress lines of rank 0
# upstream's encode_audio(chunked=True) works in chunks of 128 latent frames (its default) and fails on
# anything shorter than one chunk (UnboundLocalError in 0.0.19), so only longer files are chunked
CHUNK_FRAMES = 128


@dataclass(frozen=True)
class EncodeRequest:
    """What ``finetune.py encode`` was asked to do."""

    dataset_config: Path
    output_dir: Path
    model: ModelRequest
    num_workers: int
    seed: int
    device: str
    dist_timeout: float  # minutes (--dist-timeout)


@dataclass(frozen=True)
class SourceFile:
    """One audio file of the dataset and where its latents go."""

    dataset_id: str
    root: str  # the dataset's folder, as the config names it
    path: str  # the file as upstream's scan found it (its metadata module looks it up by this path)
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        """``<dataset id>/<path in the dataset folder>``: the latents' name, and the manifest's key."""
        return f"{self.dataset_id}/{os.path.relpath(self.path, self.root)}".replace(os.sep, "/")


def _fingerprint(file: SourceFile, spec: ModelSpec, seed: int) -> str:
    """What makes a file's latents: the model snapshot, the seed and the source file as it is now."""
    return json.dumps([spec.source, spec.revision, seed, file.size, file.mtime_ns])


def _source_files(dataset: Any, config: dict[str, Any]) -> list[SourceFile]:
    """Every file upstream's ``SampleDataset`` scanned, with the id of the dataset it belongs to."""
    roots = [(entry["id"], str(entry["path"])) for entry in config["datasets"]]
    files = []
    for path in dataset.filenames:
        dataset_id, root = next((i, r) for i, r in roots if path.startswith(r))  # upstream matches by prefix too
        stat = os.stat(path)
        files.append(SourceFile(dataset_id, root, path, stat.st_size, stat.st_mtime_ns))
    return sorted(files, key=lambda file: file.key)


def durations(files: list[SourceFile]) -> list[float]:
    """Each file's seconds, from its header: what encoding it costs (the VAE's time is linear in it).

    A file whose header libsndfile cannot read (a format only upstream's torchaudio loader decodes)
    counts as the mean of the others.
    """
    seconds: dict[str, float] = {}
    for file in files:
        try:
            info = sf.info(file.path)
        except (RuntimeError, OSError):  # soundfile's errors are RuntimeErrors
            continue
        seconds[file.key] = info.frames / info.samplerate
    mean = sum(seconds.values()) / len(seconds) if seconds else 1.0
    return [seconds.get(file.key, mean) for file in files]


def shard_by_duration(files: list[SourceFile], seconds: list[float], world_size: int, rank: int) -> list[SourceFile]:
    """This rank's files (in ``files``' order): shares of about equal duration, each file on exactly one rank.

    By count, as generate.py deals its items of similar cost, one rank could draw the hour-long
    recordings and the others wait for it at the end. Here the longest files go first, each to the
    rank with the fewest seconds so far: no share ends more than the longest file above another. Every
    rank computes the same shares, because ``files`` and ``seconds`` are rank 0's, broadcast.
    """
    shares = least_loaded_shares(seconds, [file.key for file in files], world_size)
    return [files[index] for index in sorted(shares[rank])]


class _WholeFiles(torch.utils.data.Dataset):
    """The files as upstream loads them (resampled, channels converted, clamped), whole, in DataLoader workers."""

    def __init__(self, dataset: Any, files: list[SourceFile]) -> None:
        self.dataset, self.files = dataset, files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        audio = self.dataset.load_file(self.files[index].path).clamp(-1, 1)
        return index, self.dataset.encoding(audio)


def _encode(vae: torch.nn.Module, audio: torch.Tensor, window: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Latents of one file (unscaled, as the training wrapper expects pre-encoded input) and their padding mask."""
    ratio = int(vae.downsampling_ratio)
    frames = audio.shape[-1]
    real = math.ceil(frames / ratio)
    padded = max(window, real * ratio)
    audio = torch.nn.functional.pad(audio, (0, padded - frames))
    device = next(vae.parameters()).device
    # the bottleneck's sample: per file, whatever the rank or batch
    with seeded_global_rng(seed, device), torch.inference_mode():
        chunked = padded > max(window, CHUNK_FRAMES * ratio)  # bounds the memory of long files
        latents = vae.model.encode_audio(audio[None].to(device), chunked=chunked)
    return latents[0].float().cpu().numpy(), [1] * real + [0] * (padded // ratio - real)


def _write(output_dir: Path, file: SourceFile, latents: np.ndarray, metadata: dict[str, Any]) -> None:
    """The latents, then the metadata: a file with its ``.json`` is complete."""
    target = output_dir / (file.key + LATENT_SUFFIX)
    with atomic_open(target) as handle:
        np.save(handle, latents)
    atomic_write_text(target.with_suffix(METADATA_SUFFIX), json.dumps(metadata))


def _pre_encoded_config(request: EncodeRequest, config: dict[str, Any], spec: ModelSpec, window_frames: int) -> dict[str, Any]:
    """The dataset config ``create_dataloader_from_config`` reads for the latents (and what made them)."""
    datasets = []
    for entry in config["datasets"]:
        latent_entry = {"id": entry["id"], "path": f"{request.output_dir.resolve() / entry['id']}/"}
        if entry.get("custom_metadata_module"):
            latent_entry["custom_metadata_module"] = entry["custom_metadata_module"]
        datasets.append(latent_entry)
    return {
        "dataset_type": "pre_encoded",
        "datasets": datasets,
        "latent_crop_length": window_frames,
        "random_crop": config.get("random_crop", True),
        "encoded_from": {"dataset_config": str(request.dataset_config.resolve()), "model": spec.source,
                         "revision": spec.revision, "seed": request.seed},  # fmt: skip
    }


def _pending(files: list[SourceFile], output_dir: Path, spec: ModelSpec, seed: int) -> list[SourceFile]:
    """The files a previous run did not finish with these settings (rank 0, before anyone writes)."""
    if not output_dir.is_dir():
        return files
    records = load_records(output_dir)
    remove_partial_files(output_dir)  # left by a rank that was killed mid-write; nothing writes yet

    def done(file: SourceFile) -> bool:
        record = records.get(file.key)
        if record is None or record.get("fingerprint") != _fingerprint(file, spec, seed):
            return False
        return record.get("status") == "silent" or (output_dir / (file.key + METADATA_SUFFIX)).is_file()

    return [file for file in files if not done(file)]


def _check(request: EncodeRequest) -> tuple[ModelSpec, dict[str, Any]]:
    """The model spec and the model config, or ``FinetuneInputError`` (torch-free checks first)."""
    choice = choose_model(request.model)
    if choice.spec is None:
        raise FinetuneInputError("encode needs the VAE's trained weights: give --pretrained-name or --pretrained-ckpt-path")
    return choice.spec, choice.config


def encode(request: EncodeRequest) -> int:
    """Encode every file not yet encoded; write the pre-encoded dataset config. Exit code."""
    spec, config = _check(request)
    ctx = join_job(request.device, request.dist_timeout)
    if ctx is None:
        return EXIT_JOB_FAILED
    try:
        try:
            loader = build_loader(request.dataset_config, "--dataset-config", config, 1, 1, 1, shuffle=False)
        except DatasetConfigError as exc:
            raise FinetuneInputError(str(exc)) from None
        if loader.config["dataset_type"] != "audio_dir":
            raise FinetuneInputError(f"--dataset-config {request.dataset_config}: encode reads audio_dir datasets, "
                                     f"this one is {loader.config['dataset_type']!r}")  # fmt: skip
        dataset = loader.dataloader.dataset
        files = _source_files(dataset, loader.config)
        pending = _pending(files, request.output_dir, spec, request.seed) if ctx.is_main else []
        pending, seconds = broadcast_from_main(ctx, (pending, durations(pending)))  # rank 0's reads, for all
        try:
            model, _ = build_model(spec, "--pretrained-ckpt-path")
        except ModelLoadError as exc:
            raise FinetuneInputError(str(exc)) from None
        vae = model.pretransform.to(ctx.device).eval()
        window = int(config["sample_size"])
        if ctx.is_main:
            print(f"encode: {len(files)} files, {len(files) - len(pending)} already encoded, {len(pending)} to do "
                  f"on {ctx.world_size} rank(s) -> {request.output_dir}", flush=True)  # fmt: skip
        mine = shard_by_duration(pending, seconds, ctx.world_size, ctx.rank)
        stopped = _encode_share(ctx, request, spec, dataset, mine, vae, window)
        barrier(ctx)
        if ctx.is_main:
            records = fold_parts(request.output_dir) if request.output_dir.is_dir() else {}
            if not stopped:
                frames = window // int(vae.downsampling_ratio)
                atomic_write_text(request.output_dir / CONFIG_NAME,
                                  json.dumps(_pre_encoded_config(request, loader.config, spec, frames), indent=2) + "\n")  # fmt: skip
            _summarise(request.output_dir, files, records, stopped, len(files) - len(pending))
        return EXIT_INTERRUPTED if stopped else EXIT_OK
    finally:
        shutdown(ctx)


def _encode_share(ctx: DistContext, request: EncodeRequest, spec: ModelSpec, dataset: Any, mine: list[SourceFile],
                  vae: torch.nn.Module, window: int) -> bool:  # fmt: skip
    """This rank's files: load in workers, encode, write, record. True when a stop signal ended it early."""
    sample_rate = int(dataset.sr)
    seconds_per_latent = int(vae.downsampling_ratio) / sample_rate
    workers = min(request.num_workers, len(mine)) if mine else 0
    files = torch.utils.data.DataLoader(_WholeFiles(dataset, mine), batch_size=None, num_workers=workers)
    manifest = ManifestWriter(request.output_dir, ctx.rank)
    started = time.perf_counter()
    try:
        with GracefulStop() as stop:
            for count, (index, audio) in enumerate(files, start=1):
                file = mine[index]
                record = {"path": file.key, "source": file.path, "frames": audio.shape[-1], "rank": ctx.rank,
                          "fingerprint": _fingerprint(file, spec, request.seed)}  # fmt: skip
                if is_silence(audio):
                    record["status"] = "silent"  # upstream's SampleDataset never trains on it either
                else:
                    latents, mask = _encode(vae, audio, window, derive_seed(request.seed, file.key, 1))
                    metadata = {
                        "path": file.path, "relpath": os.path.relpath(file.path, file.root), "sample_rate": sample_rate,
                        "seconds_start": 0, "seconds_total": math.ceil(audio.shape[-1] / sample_rate),
                        "padding_mask": mask, "seconds_per_latent": seconds_per_latent,
                    }  # fmt: skip
                    _write(request.output_dir, file, latents, metadata)
                    record.update(status="ok", latent_frames=latents.shape[-1])
                manifest.append([record])
                if ctx.is_main and count % PROGRESS_EVERY == 0:
                    print(f"encode: rank 0 {count}/{len(mine)} files, {(time.perf_counter() - started) / count:.2f} s/file", flush=True)
                if stop.requested:
                    return True
    finally:
        manifest.close()
    return False


def _summarise(output_dir: Path, files: list[SourceFile], records: dict[str, Any], stopped: bool, earlier: int) -> None:
    """The closing line: what this run did, apart from the ``earlier`` files a previous run had done."""
    keys = {file.key for file in files}
    ok = sum(1 for key, record in records.items() if key in keys and record.get("status") == "ok")
    silent = sum(1 for key, record in records.items() if key in keys and record.get("status") == "silent")
    if stopped:
        print(f"stopped: {ok + silent} of {len(files)} files done; the same command continues", flush=True)
        return
    print(f"done: {ok + silent - earlier} files encoded by this run, {earlier} by earlier runs; {ok} files have "
          f"latents ({silent} silent, skipped as training skips them); dataset config: {output_dir / CONFIG_NAME}",
          flush=True)  # fmt: skip
