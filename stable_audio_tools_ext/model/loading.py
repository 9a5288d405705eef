"""Load a text-conditioned Stable Audio model from its spec: the one loading path of CLI and UI.

``spec.read_model_spec`` resolves the model and reads its config first (cheap, torch-free);
``load_model`` then builds the network with stable-audio-tools' factory and loads weights strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..quiet import hide_library_prints
from .checkpoints import CheckpointError, read_state_dict
from .lora import AdaptedWeights, apply_adapters
from .spec import PRECISION_NAMES, ModelLoadError, ModelRequest, ModelSpec, download

# The dtype of each name ``spec.PRECISION_NAMES`` offers on the command line, in the same order.
PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True))
MAX_KEYS_SHOWN = 8


@dataclass
class LoadedModel:
    """A model ready to sample on one device, with the facts the engine needs about it."""

    spec: ModelSpec
    model: torch.nn.Module  # stable-audio-tools' ConditionedDiffusionModelWrapper
    device: torch.device
    precision: str  # of the DiT; see ``load_model``
    weights_read: str  # what was read, e.g. "safetensors" or "training checkpoint, ema weights"
    decode_chunk: int | None = None  # VAE-decode in chunks of this many latent frames (--decode-chunk)
    adapters: AdaptedWeights | None = None  # the LoRA adapters merged into its weights (spec.adapters)

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


def read_weights(spec: ModelSpec, ckpt_flag: str = "--ckpt-path") -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of ``spec``'s weights as stored (their dtypes too), and what was read; ``ModelLoadError``."""
    request = spec.request
    try:
        if request.ckpt_path is not None:
            return read_state_dict(request.ckpt_path, request.weights, request.trust_checkpoint)
        try:
            path = download(spec.source, "model.safetensors", spec.base_revision)
        except ModelLoadError:
            path = download(spec.source, "model.ckpt", spec.base_revision)
        return read_state_dict(path, trust=request.trust_checkpoint)
    except CheckpointError as exc:
        raise ModelLoadError(f"{ckpt_flag} {exc}" if request.ckpt_path else str(exc)) from None
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

    The same choices as upstream's ``generate_diffusion_cond`` (which makes them on every call):
    float32 stays float32. cuDNN's TF32 (on by default in PyTorch) would put the float32 VAE
    convolutions, whose output is the waveform, into TF32 (measured on an H100: 1.3e-4 error, four
    16-bit steps, for half the decode time); matmul TF32 would silently make ``--precision fp32`` a
    TF32 DiT, no longer the reference path it is meant to be; fp16 GEMMs (T5 always, the DiT with
    ``--precision fp16``) accumulate without reduced-precision reductions. cuDNN autotuning stays
    off, so the same inputs pick the same kernels run after run. Measurements: docs/models.md#precision.
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cudnn.benchmark = False


def create_model(config: dict) -> torch.nn.Module:
    """stable-audio-tools' factory, quietly: random weights, float32, training mode."""
    from stable_audio_tools.models.factory import create_model_from_config
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per rank for T5; hub download bars stay
    with hide_library_prints():  # the factory's first import of the DiT prints a flash-attn notice
        return create_model_from_config(config)


def build_model(spec: ModelSpec, ckpt_flag: str = "--ckpt-path") -> tuple[torch.nn.Module, str]:
    """The network of ``spec`` with its weights loaded strictly, as stable-audio-tools builds it (float32,
    training mode), and what was read; ``load_model`` readies it for sampling, fine-tuning trains it.
    ``ckpt_flag`` is the command's name for ``spec.request.ckpt_path`` in messages."""
    state, weights_read = read_weights(spec, ckpt_flag)
    return model_with_weights(spec, state, ckpt_flag), weights_read


def model_with_weights(spec: ModelSpec, state: dict[str, torch.Tensor], ckpt_flag: str = "--ckpt-path") -> torch.nn.Module:
    """``build_model`` from weights already read (``read_weights``), for callers that need them as stored."""
    model = create_model(spec.config)
    where = f"{ckpt_flag} {spec.source}" if spec.request.ckpt_path else f"--pretrained-name {spec.source}"
    _load_strict(model, state, f"{where} does not match its model config")
    if spec.request.pretransform_ckpt_path is not None:
        _override_pretransform(model, spec.request)
    return model


def load_model(spec: ModelSpec, device: torch.device, precision: str | None = None) -> LoadedModel:
    """Build the network, load its weights strictly, and put it in eval mode on ``device``.

    Precision applies to the DiT, where the compute is. The VAE keeps the dtype its config asks for
    (float32 unless ``model_half``) because its decoder produces the waveform directly, and the T5
    conditioner keeps upstream's float16; the engine returns float32 audio either way. The spec's
    LoRA adapters are merged into the weights last, at the DiT's precision (``lora``); one that does
    not fit the model raises ``ModelLoadError`` before anything is generated.
    """
    precision = resolve_precision(precision, device.type)
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelLoadError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    model, weights_read = build_model(spec)
    configure_backends(device)
    model = model.to(device).eval().requires_grad_(False)
    model.model.to(PRECISIONS[precision])
    adapters = apply_adapters(model, spec.adapters, device)
    return LoadedModel(spec=spec, model=model, device=device, precision=precision, weights_read=weights_read,
                       adapters=adapters)  # fmt: skip


def compile_dit(loaded: LoadedModel) -> None:
    """``torch.compile`` the diffusion transformer in place (``--compile``).

    Only the DiT: it runs ``steps`` times per batch, while the conditioner and VAE run once. Shapes
    vary with the latent length, so ``dynamic=True`` avoids one recompilation per length bucket.
    """
    wrapper = loaded.model.model
    wrapper.model = torch.compile(wrapper.model, dynamic=True)
