"""The training and validation dataloaders, built by stable-audio-tools from the dataset configs, and checked.

``create_dataloader_from_config`` is what upstream's ``train.py`` calls; it scans every dataset folder
when it builds the dataset, so the counts are known before the model is loaded. What would otherwise
surface hours later, or never, is refused here with one line: a config that is not JSON or names no
folder, an empty folder, and a batch larger than the files (upstream drops incomplete batches, so
training would take no step and validation would divide by zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CHECKED_TYPES = ("audio_dir", "pre_encoded")  # folder datasets; others (s3, wds) are read remotely and passed through


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
    def files(self) -> int:
        return len(self.dataloader.dataset)


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

