"""LoRA adapter files for the tests that apply them (``tests/model/test_lora.py``, the studio's): random
factors in stable-audio-tools' layout, for every layer of a model an adapter can change."""

from __future__ import annotations

import torch

from stable_audio_tools_ext.model.lora import ADAPTED_TYPES, PARTS
from stable_audio_tools_ext.model.lora_files import PARAMETRIZATION, LoraConfig

CONFIG = LoraConfig(rank=4, alpha=8.0)


def adaptable(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every layer an adapter can change, by its path relative to its part (as adapter files name them)."""
    return {name: module for part in PARTS for name, module in getattr(model, part).named_modules()
            if isinstance(module, ADAPTED_TYPES)}  # fmt: skip


def random_tensors(model: torch.nn.Module, seed: int, rank: int = CONFIG.rank) -> dict[str, torch.Tensor]:
    """A trained-looking adapter for every adaptable layer (B not zero), named as upstream names it."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in adaptable(model).items():
        fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
        tensors[f"{name}{PARAMETRIZATION}lora_A"] = torch.randn(rank, fan_in, generator=generator) / fan_in**0.5
        tensors[f"{name}{PARAMETRIZATION}lora_B"] = torch.randn(fan_out, rank, generator=generator) * 0.05
    return tensors
