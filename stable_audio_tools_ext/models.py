"""Find, check and load a text-conditioned Stable Audio model (hub name or local config + checkpoint).

Loading is split in two on purpose: ``read_model_spec`` fetches only ``model_config.json`` (kilobytes),
so the condition tree can be checked against the model's window before gigabytes of weights are read;
``load_model`` then builds the network through stable-audio-tools' own factory and loaders.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to do about it."""


@dataclass(frozen=True)
class ModelSpec:
    """A model's identity and configuration, known before any weights are read."""

    config: dict[str, Any]
    source: str  # hub repo id, or the local checkpoint path
    revision: str | None  # hub commit of the snapshot that was read, or "sha256:<hex>" of a local checkpoint
    ckpt_path: Path | None = None  # local checkpoint; None for hub models

    @property
    def sample_rate(self) -> int:
        return int(self.config["sample_rate"])

    @property
    def window_samples(self) -> int:
        """Length of the model's generation window in audio samples (``sample_size``)."""
        return int(self.config["sample_size"])

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate


@dataclass
class LoadedModel:
    """A model ready to sample on one device, with the facts the engine needs about it."""

    spec: ModelSpec
    model: torch.nn.Module  # stable-audio-tools' ConditionedDiffusionModelWrapper
    device: torch.device

    @property
    def latent_frames(self) -> int:
        """Latent frames covering the whole window (the DiT's sequence length)."""
        return self.spec.window_samples // self.model.pretransform.downsampling_ratio

    @property
    def dit_dtype(self) -> torch.dtype:
        return next(self.model.model.parameters()).dtype


def _download(repo_id: str, filename: str) -> Path:
    """Fetch one file of a hub model (or find it in the cache), translating hub errors to advice."""
    from huggingface_hub import errors, hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename=filename, repo_type="model"))
    except errors.GatedRepoError:
        raise ModelLoadError(
            f"--pretrained-name {repo_id}: the model is gated. Accept its licence on "
            f"https://huggingface.co/{repo_id}, create a read token at https://huggingface.co/settings/tokens, "
            "and export HF_TOKEN=<token> (or run `hf auth login`)."
        ) from None
    except errors.RepositoryNotFoundError:
        raise ModelLoadError(
            f"--pretrained-name {repo_id}: no such model on the Hugging Face hub (or it is private and "
            "HF_TOKEN is not set). Expected a repo id like stabilityai/stable-audio-open-1.0, "
            "or use --model-config and --ckpt-path for a local model."
        ) from None
    except errors.LocalEntryNotFoundError:
        raise ModelLoadError(
            f"--pretrained-name {repo_id}: {filename} is not in the local hub cache and the hub cannot be "
            "reached (HF_HUB_OFFLINE is set or there is no network). Download it once where there is "
            f"network: `hf download {repo_id}`, then point HF_HOME at that cache."
        ) from None
    except errors.HfHubHTTPError as exc:
        raise ModelLoadError(f"--pretrained-name {repo_id}: the hub refused the download: {exc}") from None


def _sha256(path: Path) -> str:
    """Content hash of a checkpoint: its identity in the manifest (names and mtimes change, bytes do not)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_config(config: Any, where: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where}: expected a JSON object (a stable-audio-tools model config)")
    missing = [k for k in ("model_type", "sample_rate", "sample_size", "model") if k not in config]
    if missing:
        raise ModelLoadError(f"{where}: not a stable-audio-tools model config (missing {', '.join(missing)})")
    if config["model_type"] not in ("diffusion_cond", "diffusion_cond_inpaint"):
        raise ModelLoadError(
            f"{where}: model_type is {config['model_type']!r}; generation needs a text-conditioned "
            "diffusion model ('diffusion_cond')"
        )
    objective = config["model"].get("diffusion", {}).get("diffusion_objective", "v")
    if objective != "v":
        raise ModelLoadError(
            f"{where}: diffusion_objective {objective!r} (rectified flow) is not supported yet; "
            "this release samples v-objective models such as stable-audio-open-1.0"
        )
    return config


def read_model_spec(
    pretrained_name: str | None = None,
    model_config: str | Path | None = None,
    ckpt_path: str | Path | None = None,
) -> ModelSpec:
    """Resolve which model to use and read its config; raises ``ModelLoadError`` with advice."""
    if model_config is not None or ckpt_path is not None:
        if model_config is None or ckpt_path is None:
            raise ModelLoadError("--model-config and --ckpt-path must be given together for a local model")
        config_path, ckpt = Path(model_config), Path(ckpt_path)
        if not config_path.is_file():
            raise ModelLoadError(f"--model-config {config_path}: file not found")
        if not ckpt.is_file():
            raise ModelLoadError(f"--ckpt-path {ckpt}: file not found")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"--model-config {config_path}: not valid JSON ({exc})") from None
        checked = _check_config(config, f"--model-config {config_path}")
        return ModelSpec(checked, str(ckpt), f"sha256:{_sha256(ckpt)}", ckpt)
    if not pretrained_name:
        raise ModelLoadError("no model given: pass --pretrained-name, or --model-config with --ckpt-path")
    config_file = _download(pretrained_name, "model_config.json")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    # hf_hub_download returns <cache>/snapshots/<commit>/model_config.json: the snapshot is the revision.
    revision = config_file.parent.name
    return ModelSpec(_check_config(config, f"--pretrained-name {pretrained_name}"), pretrained_name, revision)


def load_model(spec: ModelSpec, device: torch.device) -> LoadedModel:
    """Build the network and load its weights strictly, in eval mode on ``device``."""
    from stable_audio_tools import get_pretrained_model
    from stable_audio_tools.models.factory import create_model_from_config
    from stable_audio_tools.models.utils import load_ckpt_state_dict
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per rank for T5; hub download bars stay

    if spec.ckpt_path is None:
        model, _ = get_pretrained_model(spec.source)
    else:
        model = create_model_from_config(spec.config)
        try:
            state_dict = load_ckpt_state_dict(str(spec.ckpt_path))
        except Exception as exc:  # any unreadable file: say which one and why
            raise ModelLoadError(f"--ckpt-path {spec.ckpt_path}: cannot read checkpoint ({exc})") from None
        try:
            result = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:  # same keys, different shapes
            raise ModelLoadError(f"--ckpt-path {spec.ckpt_path} does not match --model-config: {exc}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"--ckpt-path {spec.ckpt_path} does not match --model-config: "
                f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:5]}), "
                f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:5]})"
            )
    return LoadedModel(spec=spec, model=model.to(device).eval().requires_grad_(False), device=device)
