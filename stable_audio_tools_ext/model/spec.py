"""Which model a user asked for, and its configuration: everything known before weights are read.

``read_model_spec`` fetches only ``model_config.json`` (kilobytes) from the hub or a local file, so the
condition tree can be checked against the model's window before gigabytes of weights are read, and
before torch is even imported: this module imports neither torch nor stable-audio-tools, which
keeps ``generate.py``'s input checks fast. ``loading`` builds the network from a spec.

Hub models are read the way ``stable_audio_tools.get_pretrained_model`` reads them (config, then
``model.safetensors`` or else ``model.ckpt``, through the hub cache, ``HF_TOKEN`` and
``HF_HUB_OFFLINE``), but from one pinned snapshot: ``get_pretrained_model`` has no revision argument,
and resolving config and weights separately could mix two commits.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..request import LatentGeometry
from .families import SamplerFamily, family_of
from .lora_files import AdapterUse, LoraFileError, read_lora_file

PRECISION_NAMES = ("fp32", "fp16", "bf16")
# A training run's folder (``finetune.py train``): SAVE_DIR/NAME/model_config.json beside SAVE_DIR/NAME/checkpoints/.
MODEL_CONFIG_NAME = "model_config.json"
CHECKPOINTS_DIR = "checkpoints"
Weights = Literal["ema", "online"]


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to do about it."""


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for, as given on the command line."""

    pretrained_name: str | None = None
    revision: str | None = None
    model_config: Path | None = None
    ckpt_path: Path | None = None
    weights: Weights | None = None  # EMA or online weights of a training checkpoint (default: EMA when present)
    pretransform_ckpt_path: Path | None = None
    trust_checkpoint: bool = False
    lora: tuple[Path, ...] = ()  # LoRA adapter files applied on top of the weights (``lora_files``)
    lora_strength: tuple[float, ...] = ()  # one for all adapters, or one each; none: 1


@dataclass(frozen=True)
class ModelSpec:
    """A model's identity and configuration, known before any weights are read."""

    config: dict[str, Any]
    source: str  # hub repo id, or the local checkpoint path
    revision: str  # hub commit of the snapshot, or "sha256:<hex>" of the local checkpoint (+ options)
    request: ModelRequest
    adapters: tuple[AdapterUse, ...] = ()  # the LoRA adapters the loaded model carries, with their strengths

    @property
    def base_revision(self) -> str:
        """The revision without the options appended to it (``;weights=``, ``;vae=``, ``;lora=``): the hub
        commit (what ``--revision`` pins) or the local checkpoint's ``sha256:<hex>``."""
        return self.revision.split(";")[0]

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

    @property
    def geometry(self) -> LatentGeometry:
        ratio = int(self.config["model"]["pretransform"]["config"]["downsampling_ratio"])
        return LatentGeometry(self.sample_rate, ratio, self.window_samples // ratio)

    @property
    def objective(self) -> str:
        return self.config["model"].get("diffusion", {}).get("diffusion_objective", "v")

    @property
    def family(self) -> SamplerFamily:
        """Samplers this model can use and its default sampling settings."""
        return family_of(self.objective)


def _sha256(path: Path) -> str:
    """Content hash of a checkpoint: its identity in the manifest (names and mtimes change, bytes do not)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def download(repo_id: str, filename: str, revision: str | None) -> Path:
    """Fetch one file of a hub model (or find it in the cache), translating hub errors to advice."""
    from huggingface_hub import errors, hf_hub_download

    flag = f"--pretrained-name {repo_id}" + (f" --revision {revision}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, filename=filename, repo_type="model", revision=revision))
    except errors.GatedRepoError:
        raise ModelLoadError(
            f"{flag}: the model is gated. Accept its licence on https://huggingface.co/{repo_id}, create a "
            "read token at https://huggingface.co/settings/tokens, and export HF_TOKEN=<token> (or run `hf auth login`)."
        ) from None
    except errors.RepositoryNotFoundError:
        raise ModelLoadError(
            f"{flag}: no such model on the Hugging Face hub (or it is private and HF_TOKEN is not set). "
            "Expected a repo id like stabilityai/stable-audio-open-1.0, or use --model-config and --ckpt-path."
        ) from None
    except errors.RevisionNotFoundError:
        raise ModelLoadError(f"{flag}: the hub has no such revision (branch, tag or commit)") from None
    except errors.LocalEntryNotFoundError:
        raise ModelLoadError(
            f"{flag}: {filename} is not in the local hub cache and the hub cannot be reached (HF_HUB_OFFLINE "
            f"is set or there is no network). Download it once where there is network: `hf download {repo_id}`"
            f"{f' --revision {revision}' if revision else ''}, then point HF_HOME at that cache."
        ) from None
    except errors.EntryNotFoundError:  # after its subclass LocalEntryNotFoundError
        raise ModelLoadError(f"{flag}: the model has no {filename}") from None
    except errors.HfHubHTTPError as exc:
        raise ModelLoadError(f"{flag}: the hub refused the download: {exc}") from None


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
    try:
        family_of(objective)
    except ValueError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    return config


def _read_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{where}: not valid JSON ({exc})") from None


def read_model_config(path: Path) -> dict[str, Any]:
    """A local ``--model-config`` file, checked as for generation; for commands that need no weights."""
    where = f"--model-config {path}"
    if not path.is_file():
        raise ModelLoadError(f"{where}: file not found")
    return _check_config(_read_json(path, where), where)


def config_of_checkpoint(ckpt_path: Path) -> Path | None:
    """The ``model_config.json`` a checkpoint belongs with, if it has one: its training run's, or its folder's.

    ``finetune.py train`` keeps the config it trained beside the run's ``checkpoints/`` folder, and a
    downloaded or exported model keeps it beside its weights; either way ``--ckpt-path`` alone is enough.
    """
    folder = ckpt_path.parent
    candidates = [folder / MODEL_CONFIG_NAME]
    if folder.name == CHECKPOINTS_DIR:
        candidates.insert(0, folder.parent / MODEL_CONFIG_NAME)
    return next((path for path in candidates if path.is_file()), None)


def read_adapters(request: ModelRequest) -> tuple[AdapterUse, ...]:
    """The request's LoRA adapters, each file's header checked and its content hashed; raises ``ModelLoadError``.

    Strengths: none (every adapter at 1), one (every adapter at it), or one per adapter, in order.
    """
    paths, strengths = request.lora, request.lora_strength
    if not all(math.isfinite(s) for s in strengths):
        raise ModelLoadError(f"--lora-strength: every strength must be a finite number, not {' '.join(map(str, strengths))}")
    if strengths and not paths:
        raise ModelLoadError("--lora-strength needs --lora (the adapter files it applies to)")
    if len(strengths) > 1 and len(strengths) != len(paths):
        raise ModelLoadError(f"--lora-strength: give one value for all adapters or one per --lora "
                             f"({len(paths)} --lora, {len(strengths)} strengths)")  # fmt: skip
    per_adapter = strengths if len(strengths) > 1 else (strengths or (1.0,)) * len(paths)
    try:
        return tuple(AdapterUse(read_lora_file(path), _sha256(path), float(s)) for path, s in zip(paths, per_adapter))
    except LoraFileError as exc:
        raise ModelLoadError(str(exc)) from None


def read_model_spec(request: ModelRequest) -> ModelSpec:
    """Resolve which model to use and read its config; raises ``ModelLoadError`` with advice.

    ``--ckpt-path`` without ``--model-config`` uses the config found beside the checkpoint
    (``config_of_checkpoint``); the spec's request then names it, so what was loaded is on record.
    LoRA adapters are part of the model's identity (its revision, so of every item's fingerprint) by
    their content hash and strength.
    """
    if request.pretransform_ckpt_path is not None and not request.pretransform_ckpt_path.is_file():
        raise ModelLoadError(f"--pretransform-ckpt-path {request.pretransform_ckpt_path}: file not found")
    adapters = read_adapters(request)
    options = "".join(
        f";{name}={value}"
        for name, value in (
            ("weights", request.weights),
            ("vae", request.pretransform_ckpt_path and _sha256(request.pretransform_ckpt_path)),
            ("lora", ",".join(adapter.identity() for adapter in adapters)),
        )
        if value
    )
    if request.ckpt_path is not None and request.model_config is None:
        found = config_of_checkpoint(request.ckpt_path)
        if found is None:
            raise ModelLoadError(
                f"--ckpt-path {request.ckpt_path} needs --model-config: no {MODEL_CONFIG_NAME} beside it "
                f"or in its training run folder (the parent of {CHECKPOINTS_DIR}/)"
            )
        request = replace(request, model_config=found)
    if request.model_config is not None or request.ckpt_path is not None:
        if request.model_config is None or request.ckpt_path is None:
            raise ModelLoadError("--model-config needs --ckpt-path (the weights that go with it)")
        if request.revision is not None:
            raise ModelLoadError("--revision applies to hub models, not to --model-config/--ckpt-path")
        config = read_model_config(request.model_config)
        if not request.ckpt_path.is_file():
            raise ModelLoadError(f"--ckpt-path {request.ckpt_path}: file not found")
        return ModelSpec(config, str(request.ckpt_path), f"sha256:{_sha256(request.ckpt_path)}{options}", request, adapters)
    if request.weights is not None:
        raise ModelLoadError("--weights applies to local training checkpoints (--ckpt-path), not hub models")
    if not request.pretrained_name:
        raise ModelLoadError("no model given: pass --pretrained-name, or --model-config with --ckpt-path")
    config_file = download(request.pretrained_name, "model_config.json", request.revision)
    where = f"--pretrained-name {request.pretrained_name}"
    config = _check_config(_read_json(config_file, where), where)
    # hf_hub_download returns <cache>/snapshots/<commit>/model_config.json: the snapshot is the revision.
    return ModelSpec(config, request.pretrained_name, config_file.parent.name + options, request, adapters)
