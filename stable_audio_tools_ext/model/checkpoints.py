"""Read a model state dict from any checkpoint a Stable Audio user has: safetensors, a plain
state dict, stable-audio-tools' ``model.ckpt``, or the Lightning checkpoint its ``train.py`` writes.

A Lightning checkpoint holds the whole training wrapper: the online model under ``diffusion.*``, the
EMA copy of the DiT under ``diffusion_ema.ema_model.*``, losses and optimizer state. Upstream's
``unwrap_model.py`` exports the EMA DiT with the online conditioner and VAE (the EMA wrapper only
averages the DiT); ``weights="ema"`` does the same without the extra step, ``"online"`` takes the
raw trained weights.

Pickled files are read with ``torch.load(weights_only=True)``: tensors and plain containers only.
Anything needing full unpickling - which can run arbitrary code - is refused unless the caller
says it trusts the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .lora_files import adapter_file
from .spec import Weights

_ONLINE_PREFIX = "diffusion."
_EMA_PREFIX = "diffusion_ema.ema_model."
_EMA_BOOKKEEPING = ("diffusion_ema.initted", "diffusion_ema.step")


class CheckpointError(ValueError):
    """The checkpoint cannot be read as asked; the message says why and what to do."""


def _torch_load(path: Path, trust: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise CheckpointError(
                f"{path} contains objects other than tensors, which only full unpickling can read - and "
                f"unpickling can run arbitrary code. If you trust where it came from, pass --trust-checkpoint. "
                f"({str(exc).splitlines()[0]})"
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False)


def is_lightning_state(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith((_ONLINE_PREFIX, _EMA_PREFIX)) for key in state)


def _unwrap_lightning(state: dict[str, torch.Tensor], weights: Weights | None) -> tuple[dict[str, torch.Tensor], str]:
    has_ema = any(key.startswith(_EMA_PREFIX) for key in state)
    chosen = weights or ("ema" if has_ema else "online")
    if chosen == "ema" and not has_ema:
        raise CheckpointError("--weights ema: this training checkpoint has no EMA weights (use --weights online)")
    model = {key[len(_ONLINE_PREFIX) :]: value for key, value in state.items() if key.startswith(_ONLINE_PREFIX)}
    if chosen == "ema":
        model = {key: value for key, value in model.items() if not key.startswith("model.")}
        model.update({"model." + key[len(_EMA_PREFIX) :]: v for key, v in state.items() if key.startswith(_EMA_PREFIX)})
    return model, f"training checkpoint, {chosen} weights"


def read_state_dict(path: Path, weights: Weights | None = None, trust: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The model state dict in ``path`` and a short description of what was read.

    ``weights`` picks EMA or online weights of a Lightning training checkpoint (default: EMA when
    present); asking for it with any other kind of checkpoint is an error, not silently ignored.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state, kind = load_file(path), "safetensors"
    else:
        loaded = _torch_load(path, trust)
        if isinstance(loaded, dict) and "lora_config" in loaded:
            adapter = adapter_file(path)
            raise CheckpointError(
                f"{path} is a LoRA checkpoint: it holds adapters, not a model. Generate with its base model and "
                f"--lora {adapter if adapter.is_file() else 'ADAPTER.safetensors'}"
                + ("" if adapter.is_file() else f" (finetune.py export-lora --ckpt-path {path} --output ADAPTER.safetensors)")
            )
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            state, kind = loaded["state_dict"], "checkpoint"
        elif isinstance(loaded, dict) and all(torch.is_tensor(v) for v in loaded.values()):
            state, kind = loaded, "state dict"
        else:
            raise CheckpointError(f"{path}: expected a state dict or a checkpoint with a 'state_dict' entry")
    if is_lightning_state(state):
        return _unwrap_lightning({k: v for k, v in state.items() if k not in _EMA_BOOKKEEPING}, weights)
    if weights is not None:
        raise CheckpointError(f"--weights {weights} applies to training checkpoints; {path} is a plain {kind}")
    return state, kind
