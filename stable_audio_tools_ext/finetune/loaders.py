"""The training and validation dataloaders, built by stable-audio-tools from the dataset configs, and checked.

``create_dataloader_from_config`` is what upstream's ``train.py`` calls; it scans every dataset folder
when it builds the dataset, so the counts are known before the model is loaded. What would otherwise
surface hours later, or never, is refused here with one line: a config that is not JSON or names no
folder, an empty folder, and a batch larger than the files (upstream drops incomplete batches, so
training would take no step and validation would divide by zero).

Pre-encoded reads are also told where their crop starts. Upstream's ``PreEncodedDataset`` takes a
random latent crop (``latent_crop_start``) but leaves ``seconds_start`` as the ``.json`` file has it
(0 from ``finetune.py encode``), so with any metadata module other than ``prepare``'s, every crop
of a long file would be told it starts at 0 s. ``CropTiming`` sets it after the dataset's module (or
for a dataset without one), as upstream's audio crop sets it for audio reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..datasets.audio_dir import crop_seconds_start

CHECKED_TYPES = ("audio_dir", "pre_encoded")  # folder datasets; others (s3, wds) are read remotely and passed through


class CropTiming:
    """A pre-encoded dataset's metadata function: its own module's, then ``seconds_start`` from the latent crop.

    The crop's offset is added to the ``seconds_start`` the ``.json`` holds (where the encoded audio
    starts in its file), rounded down to whole seconds as upstream rounds an audio crop's. A module
    that returns a ``seconds_start`` of its own, other than the one it was given, decided the timing
    itself (``prepare``'s and ``generate.py --split``'s modules add the crop already) and is kept.
    """

    def __init__(self, module_fn: Callable[[dict, Any], dict] | None, seconds_per_latent: float) -> None:
        self.module_fn, self.seconds_per_latent = module_fn, seconds_per_latent

    def __call__(self, info: dict[str, Any], audio: Any) -> dict[str, Any]:
        info.setdefault("seconds_per_latent", self.seconds_per_latent)  # latents encoded by another tool
        given = info.get("seconds_start", 0)
        metadata = dict(self.module_fn(info, audio)) if self.module_fn is not None else {}
        if metadata.get("seconds_start", given) == given:
            metadata["seconds_start"] = crop_seconds_start(info)
        return metadata


def _time_latent_crops(dataset: Any, config: dict[str, Any], model_config: dict[str, Any]) -> None:
    """Give every dataset of a ``PreEncodedDataset`` a ``CropTiming`` around its metadata module (or none)."""
    ratio = model_config["model"]["pretransform"]["config"]["downsampling_ratio"]
    seconds_per_latent = ratio / model_config["sample_rate"]
    for entry in config["datasets"]:
        path = str(entry["path"])  # upstream keys the functions by the config's path and matches files by substring
        dataset.custom_metadata_fns[path] = CropTiming(dataset.custom_metadata_fns.get(path), seconds_per_latent)


class DatasetConfigError(ValueError):
    """A dataset config that cannot feed training; the message names the flag, the file and the fix."""


@dataclass(frozen=True)
class Loader:
    """A dataloader and what it was built from."""

    flag: str  # --dataset-config or --val-dataset-config
    path: Path
    config: dict[str, Any]
    dataloader: torch.utils.data.DataLoader

    @property
    def files(self) -> int | None:
        """How many files a folder dataset reads; ``None`` for a streamed one (``wds``: shards, not counted)."""
        return len(self.dataloader.dataset) if self.config["dataset_type"] in CHECKED_TYPES else None


def read_dataset_config(path: Path, flag: str) -> dict[str, Any]:
    """The JSON of a dataset config, with its folders checked (``DatasetConfigError``)."""
    where = f"{flag} {path}"
    if not path.is_file():
        raise DatasetConfigError(f"{where}: file not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetConfigError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "dataset_type" not in config:
        raise DatasetConfigError(f"{where}: not a stable-audio-tools dataset config (no dataset_type)")
    if config["dataset_type"] in CHECKED_TYPES:
        datasets = config.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            raise DatasetConfigError(f"{where}: 'datasets' must list at least one folder")
        for index, dataset in enumerate(datasets):
            folder = dataset.get("path") if isinstance(dataset, dict) else None
            if not folder or not Path(folder).is_dir():
                raise DatasetConfigError(f"{where}: datasets[{index}].path {folder!r} is not a folder")
            module = dataset.get("custom_metadata_module")
            if module is not None and not Path(module).is_file():
                raise DatasetConfigError(f"{where}: datasets[{index}].custom_metadata_module {module}: file not found")
    return config


def build_loader(
    path: Path, flag: str, model_config: dict[str, Any], batch_size: int, num_workers: int, ranks: int, shuffle: bool
) -> Loader:
    """stable-audio-tools' dataloader for a dataset config, refused if it could not yield one batch per rank."""
    from stable_audio_tools.data.dataset import create_dataloader_from_config, get_audio_filenames, get_latent_filenames

    config = read_dataset_config(path, flag)
    where = f"{flag} {path}"
    if config["dataset_type"] in CHECKED_TYPES:  # upstream's own scan, before its sampler fails on an empty set
        folders = [str(dataset["path"]) for dataset in config["datasets"]]
        audio = config["dataset_type"] == "audio_dir"
        if not (get_audio_filenames(folders) if audio else get_latent_filenames(folders)):
            raise DatasetConfigError(f"{where}: no {'audio' if audio else 'pre-encoded (.npy)'} files in {', '.join(folders)}")
    try:
        dataloader = create_dataloader_from_config(
            config, batch_size=batch_size, num_workers=num_workers, shuffle=shuffle,
            sample_rate=model_config["sample_rate"], sample_size=model_config["sample_size"],
            audio_channels=model_config.get("audio_channels", 2),
        )  # fmt: skip
    except (AssertionError, KeyError, ValueError, OSError, AttributeError) as exc:
        raise DatasetConfigError(f"{where}: stable-audio-tools cannot build a dataloader from it ({type(exc).__name__}: {exc})") from None
    if config["dataset_type"] == "pre_encoded":
        _time_latent_crops(dataloader.dataset, config, model_config)
    loader = Loader(flag, path, config, dataloader)
    if config["dataset_type"] in CHECKED_TYPES:
        if config.get("drop_last", True) and loader.files < batch_size * ranks:
            per = f" x {ranks} ranks" if ranks > 1 else ""
            raise DatasetConfigError(
                f"{where}: --batch-size {batch_size}{per} is more than its {loader.files} files; stable-audio-tools "
                "drops incomplete batches, so not one batch would be read: lower --batch-size (--accum-batches keeps "
                "the effective batch)"
            )
    return loader

