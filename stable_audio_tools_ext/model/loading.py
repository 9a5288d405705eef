"""Find, check and load a text-conditioned Stable Audio model: the one loading path of CLI and UI.

Loading is split in two on purpose: ``read_model_spec`` fetches only ``model_config.json`` (kilobytes),
so the condition tree can be checked against the model's window before gigabytes of weights are read;
``load_model`` then builds the network with stable-audio-tools' factory and loads weights strictly.

Hub models are read the way ``stable_audio_tools.get_pretrained_model`` reads them (config, then
``model.safetensors`` or else ``model.ckpt``, through the hub cache, ``HF_TOKEN`` and
``HF_HUB_OFFLINE``), but from one pinned snapshot: ``get_pretrained_model`` has no revision argument,
and resolving config and weights separately could mix two commits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..request import LatentGeometry
from .checkpoints import CheckpointError, Weights, read_state_dict
from .families import SamplerFamily, family_of

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_KEYS_SHOWN = 8


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


@dataclass(frozen=True)
class ModelSpec:
    """A model's identity and configuration, known before any weights are read."""

    config: dict[str, Any]
    source: str  # hub repo id, or the local checkpoint path
    revision: str  # hub commit of the snapshot, or "sha256:<hex>" of the local checkpoint (+ options)
    request: ModelRequest

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


@dataclass
class LoadedModel:
    """A model ready to sample on one device, with the facts the engine needs about it."""

    spec: ModelSpec
    model: torch.nn.Module  # stable-audio-tools' ConditionedDiffusionModelWrapper
    device: torch.device
    precision: str  # of the DiT; see ``load_model``
    weights_read: str  # what was read, e.g. "safetensors" or "training checkpoint, ema weights"
    decode_chunk: int | None = None  # VAE-decode in chunks of this many latent frames (--decode-chunk)

    @property
    def dit_dtype(self) -> torch.dtype:
        return next(self.model.model.parameters()).dtype

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the DiT, the conditioners (T5 included: upstream keeps it outside the
        module tree so it is not saved in checkpoints) and the VAE."""
        conditioner = self.model.conditioner
        unregistered = [getattr(c, "model", None) for c in conditioner.conditioners.values()]
        extra = {p for m in unregistered if isinstance(m, torch.nn.Module) for p in m.parameters()}
        count = lambda params: sum(p.numel() for p in params)  # noqa: E731
        return {
            "DiT": count(self.model.model.parameters()),
            "conditioner": count(set(conditioner.parameters()) | extra),
            "VAE": count(self.model.pretransform.parameters()),
        }


def resolve_precision(requested: str | None, device_type: str) -> str:
    """``requested``, or the default: bf16 on CUDA devices that have it, fp16 on older GPUs, fp32 on CPU."""
    if requested is not None:
        return requested
    if device_type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _sha256(path: Path) -> str:
    """Content hash of a checkpoint: its identity in the manifest (names and mtimes change, bytes do not)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(repo_id: str, filename: str, revision: str | None) -> Path:
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


def read_model_spec(request: ModelRequest) -> ModelSpec:
    """Resolve which model to use and read its config; raises ``ModelLoadError`` with advice."""
    if request.pretransform_ckpt_path is not None and not request.pretransform_ckpt_path.is_file():
        raise ModelLoadError(f"--pretransform-ckpt-path {request.pretransform_ckpt_path}: file not found")
    options = "".join(
        f";{name}={value}"
        for name, value in (
            ("weights", request.weights),
            ("vae", request.pretransform_ckpt_path and _sha256(request.pretransform_ckpt_path)),
        )
        if value
    )
    if request.model_config is not None or request.ckpt_path is not None:
        if request.model_config is None or request.ckpt_path is None:
            raise ModelLoadError("--model-config and --ckpt-path must be given together for a local model")
        if request.revision is not None:
            raise ModelLoadError("--revision applies to hub models, not to --model-config/--ckpt-path")
        for flag, path in (("--model-config", request.model_config), ("--ckpt-path", request.ckpt_path)):
            if not path.is_file():
                raise ModelLoadError(f"{flag} {path}: file not found")
        where = f"--model-config {request.model_config}"
        config = _check_config(_read_json(request.model_config, where), where)
        return ModelSpec(config, str(request.ckpt_path), f"sha256:{_sha256(request.ckpt_path)}{options}", request)
    if request.weights is not None:
        raise ModelLoadError("--weights applies to local training checkpoints (--ckpt-path), not hub models")
    if not request.pretrained_name:
        raise ModelLoadError("no model given: pass --pretrained-name, or --model-config with --ckpt-path")
    config_file = _download(request.pretrained_name, "model_config.json", request.revision)
    where = f"--pretrained-name {request.pretrained_name}"
    config = _check_config(_read_json(config_file, where), where)
    # hf_hub_download returns <cache>/snapshots/<commit>/model_config.json: the snapshot is the revision.
    return ModelSpec(config, request.pretrained_name, config_file.parent.name + options, request)


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load every weight or fail naming the keys: a partial load would generate plausible garbage."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same keys, different shapes
        raise ModelLoadError(f"{what}: {exc}") from None
    problems = []
    for label, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
        if keys:
            shown = ", ".join(keys[:MAX_KEYS_SHOWN]) + (f", ... ({len(keys) - MAX_KEYS_SHOWN} more)" if len(keys) > MAX_KEYS_SHOWN else "")
            problems.append(f"{len(keys)} {label} keys: {shown}")
    if problems:
        raise ModelLoadError(f"{what}: {'; '.join(problems)}")


def _read_weights(spec: ModelSpec) -> tuple[dict[str, torch.Tensor], str]:
    request = spec.request
    try:
        if request.ckpt_path is not None:
            return read_state_dict(request.ckpt_path, request.weights, request.trust_checkpoint)
        commit = spec.revision.split(";")[0]
        try:
            path = _download(spec.source, "model.safetensors", commit)
        except ModelLoadError:
            path = _download(spec.source, "model.ckpt", commit)
        return read_state_dict(path, trust=request.trust_checkpoint)
    except CheckpointError as exc:
        raise ModelLoadError(f"--ckpt-path {exc}" if request.ckpt_path else str(exc)) from None
    except (OSError, RuntimeError) as exc:  # unreadable or corrupt file
        raise ModelLoadError(f"cannot read the weights of {spec.source}: {exc}") from None


def _override_pretransform(model: torch.nn.Module, request: ModelRequest) -> None:
    """``--pretransform-ckpt-path``: replace the VAE weights (a VAE state dict, or one prefixed like the model's)."""
    assert request.pretransform_ckpt_path is not None
    try:
        state, _ = read_state_dict(request.pretransform_ckpt_path, trust=request.trust_checkpoint)
    except CheckpointError as exc:
        raise ModelLoadError(f"--pretransform-ckpt-path {exc}") from None
    prefix = "pretransform.model."
    if any(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    _load_strict(model.pretransform.model, state, f"--pretransform-ckpt-path {request.pretransform_ckpt_path} does not fit the model's VAE")


def configure_backends(device: torch.device) -> None:
    """Set the global numeric flags once, on purpose, instead of inheriting upstream's side effects.

    Upstream ``generate_diffusion_cond`` switches TF32 off on every call. Here TF32 is allowed for
    float32 matmuls/convolutions on CUDA (it only matters with ``--precision fp32``: ~3x faster on
    Ampere and later, differences far below audibility), and cuDNN autotuning stays off so the
    same inputs pick the same kernels run after run.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False


def load_model(spec: ModelSpec, device: torch.device, precision: str | None = None) -> LoadedModel:
    """Build the network, load its weights strictly, and put it in eval mode on ``device``.

    Precision applies to the DiT, where the compute is. The VAE keeps the dtype its config asks for
    (float32 unless ``model_half``) because its decoder produces the waveform directly, and the T5
    conditioner keeps upstream's float16; the engine returns float32 audio either way.
    """
    from stable_audio_tools.models.factory import create_model_from_config
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per rank for T5; hub download bars stay
    precision = resolve_precision(precision, device.type)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelLoadError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    state, weights_read = _read_weights(spec)
    model = create_model_from_config(spec.config)
    where = f"--ckpt-path {spec.source}" if spec.request.ckpt_path else f"--pretrained-name {spec.source}"
    _load_strict(model, state, f"{where} does not match its model config")
    if spec.request.pretransform_ckpt_path is not None:
        _override_pretransform(model, spec.request)
    configure_backends(device)
    model = model.to(device).eval().requires_grad_(False)
    model.model.to(PRECISIONS[precision])
    return LoadedModel(spec=spec, model=model, device=device, precision=precision, weights_read=weights_read)


def compile_dit(loaded: LoadedModel) -> None:
    """``torch.compile`` the diffusion transformer in place (``--compile``).

    Only the DiT: it runs ``steps`` times per batch, while the conditioner and VAE run once. Shapes
    vary with the latent length, so ``dynamic=True`` avoids one recompilation per length bucket.
    """
    wrapper = loaded.model.model
    wrapper.model = torch.compile(wrapper.model, dynamic=True)
