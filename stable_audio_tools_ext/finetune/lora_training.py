"""``finetune.py train --lora-rank R``: train low-rank adapters on a frozen base, in stable-audio-tools' LoRA format.

stable-audio-tools 0.0.19's training wrapper has no LoRA (0.0.20's has, but cannot be our dependency:
docs/dependencies.md), so the adapters are added to the model before the wrapper is built, and the
wrapper trains them as it trains any model: its optimizer gets every parameter, but only the
adapters' require gradients, and torch's optimizers skip parameters without one (no state, no
update, no weight decay). The layers adapted are those stable-audio-tools 0.0.20's ``add_lora``
adapts: every ``Linear`` and ``Conv1d`` of the DiT wrapper (``model.model``) and of the conditioner,
narrowed by ``--lora-include`` / ``--lora-exclude`` substrings of the layer's path (with its
``layers[0-5]`` ranges); A starts Kaiming-uniform and B at zero, so step 0 is the base model.

Upstream re-parametrizes each weight: every forward pass builds W + (alpha / rank) x B @ A, a
full-size copy of each adapted weight that autograd keeps until the backward pass. Here the layer
keeps its frozen weight and a forward hook adds (alpha / rank) x B(A(x)) to its output: the same
function (the update is linear in the weight), with only rank-wide activations kept. That is exact
only for layers whose ``forward`` is ``Linear``'s or ``Conv1d``'s own, so any other is refused by
name (``--lora-exclude`` it).

A LoRA checkpoint holds the adapters and their training state (optimizer, scheduler, step), not
the base weights: rerunning the command loads the base again from the flags and the adapters from
the checkpoint. Beside each checkpoint the run writes the adapter alone in stable-audio-tools' file
format (``run_folder.adapter_file``); ``export_lora`` makes that file from any LoRA checkpoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..model.lora import ADAPTED_TYPES, PARTS, write_lora
from ..model.lora_files import PARAMETRIZATION, LoraFileError, config_from_dict
from .lora_settings import LoraSettings
from .run_folder import adapter_file
from .weights import FinetuneInputError

ATTRIBUTE = "lora"  # the factors' module on each adapted layer: <layer>.lora.lora_A in the training state
_FACTOR_KEY = re.compile(rf"^diffusion\.(model|conditioner)\.(.+)\.{ATTRIBUTE}\.(lora_A|lora_B)$")


class LoraFactors(torch.nn.Module):
    """The trainable A (``[rank, fan_in]``) and B (``[fan_out, rank]``) of one layer, float32 whatever the base."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float) -> None:
        super().__init__()
        fan_out, fan_in = weight.shape[0], weight[0].numel()
        self.lora_A = torch.nn.Parameter(torch.empty(rank, fan_in, device=weight.device))
        self.lora_B = torch.nn.Parameter(torch.zeros(fan_out, rank, device=weight.device))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as upstream's LoRAParametrization
        self.scale = scale
        self.enabled = True

    def update(self, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(alpha / rank) x B @ A applied to the layer's input, as the layer applies its weight."""
        if isinstance(layer, torch.nn.Linear):
            return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        delta = (self.lora_B @ self.lora_A).view_as(layer.weight) * self.scale  # a Conv1d: [out, in * kernel] -> its kernel
        return layer._conv_forward(x, delta.to(x.dtype), None)


def _add_update(layer: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
    factors = getattr(layer, ATTRIBUTE)
    return output + factors.update(layer, args[0]) if factors.enabled else None


def add_trainable_adapters(model: torch.nn.Module, settings: LoraSettings) -> int:
    """Freeze ``model`` and give each selected layer trainable factors; the number of layers adapted."""
    model.requires_grad_(False)
    count = 0
    for part in PARTS:
        for name, layer in getattr(model, part).named_modules():
            if not isinstance(layer, ADAPTED_TYPES) or not settings.selects(name):
                continue
            own = torch.nn.Linear if isinstance(layer, torch.nn.Linear) else torch.nn.Conv1d
            if type(layer).forward is not own.forward:
                raise FinetuneInputError(f"--lora-rank: {part}.{name} is a {type(layer).__name__}, whose forward is not "
                                         f"{own.__name__}'s; leave it out with --lora-exclude {name}")  # fmt: skip
            layer.add_module(ATTRIBUTE, LoraFactors(layer.weight, settings.rank, settings.alpha / settings.rank))
            layer.register_forward_hook(_add_update)
            count += 1
    if not count:
        raise FinetuneInputError("--lora-include/--lora-exclude leave no Linear or Conv1d layer to adapt")
    return count


@contextmanager
def trainable_adapters_off(model: torch.nn.Module) -> Iterator[None]:
    """The base model alone while inside (the demos apply the written adapter file instead)."""
    factors = [module for module in model.modules() if isinstance(module, LoraFactors)]
    for module in factors:
        module.enabled = False
    try:
        yield
    finally:
        for module in factors:
            module.enabled = True


def is_factor_key(key: str) -> bool:
    return _FACTOR_KEY.match(key) is not None


def adapter_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The training wrapper's factor tensors, named as stable-audio-tools names them in adapter files."""
    named = {}
    for key, tensor in state.items():
        match = _FACTOR_KEY.match(key)
        if match:
            named[f"{match.group(2)}{PARAMETRIZATION}{match.group(3)}"] = tensor
    return named


class LoraCheckpoints(pl.Callback):
    """Checkpoints of a LoRA run: the adapters and the training state, not the frozen base.

    Saving keeps only the factor tensors of the wrapper's state (a checkpoint of SAO 1.0 at rank 16
    is megabytes, not the 17.5 GB of a full one) and records ``lora_config``, as upstream's LoRA
    checkpoints do. Loading needs the base weights back in the state Lightning loads strictly:
    ``fill_base_weights`` is given to the wrapper as its ``on_load_checkpoint`` hook.
    """

    def __init__(self, settings: LoraSettings) -> None:
        self.settings = settings

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {key: value for key, value in checkpoint["state_dict"].items() if is_factor_key(key)}
        checkpoint["lora_config"] = self.settings.config().to_dict()


def fill_base_weights(wrapper: pl.LightningModule) -> Any:
    """The ``on_load_checkpoint`` hook of a LoRA run's wrapper: the checkpoint's adapters over the base as loaded."""

    def hook(checkpoint: dict[str, Any]) -> None:
        if "lora_config" not in checkpoint:
            raise FinetuneInputError("the checkpoint to continue from is not a LoRA checkpoint")
        checkpoint["state_dict"] = {**wrapper.state_dict(), **checkpoint["state_dict"]}

    return hook


class LoraExportError(ValueError):
    """A checkpoint ``export-lora`` cannot turn into an adapter file; the message names it."""


def export_lora(checkpoint: Path, output: Path) -> int:
    """Write the adapter of a LoRA checkpoint as a stable-audio-tools LoRA file (atomically); its layer count."""
    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LoraExportError(f"--ckpt-path {checkpoint}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for a file that is not a checkpoint
        raise LoraExportError(f"--ckpt-path {checkpoint}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("lora_config"), dict):
        raise LoraExportError(f"--ckpt-path {checkpoint}: not a LoRA checkpoint (no lora_config); LoRA checkpoints come "
                              "from finetune.py train --lora-rank, and a full-weight checkpoint loads with generate.py --ckpt-path")  # fmt: skip
    tensors = adapter_tensors(loaded.get("state_dict", {}))
    if not tensors:
        raise LoraExportError(f"--ckpt-path {checkpoint}: holds no adapter tensors")
    try:
        config = config_from_dict(loaded["lora_config"], [], checkpoint)
    except LoraFileError as exc:
        raise LoraExportError(str(exc)) from None
    write_lora(output, tensors, config)
    return len(tensors) // 2


def write_adapter_file(trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, checkpoint: Path) -> None:
    """An ``after_save`` hook of a LoRA run: rank 0 writes the checkpoint's adapter file beside it (before its demos)."""
    if trainer.is_global_zero:
        export_lora(checkpoint, adapter_file(checkpoint))
