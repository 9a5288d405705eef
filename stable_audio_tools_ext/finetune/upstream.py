"""What stable-audio-tools 0.0.19's training code needs to run under the torch and Lightning we pin.

Two traps, each fixed without editing installed files or forking upstream's training wrapper:

* ``InverseLR`` (the scheduler of Stable Audio Open 1.0's ``training`` section) ends its constructor
  with ``super().__init__(optimizer, last_epoch, verbose)``; torch's ``LRScheduler`` no longer takes
  ``verbose`` and raises ``TypeError``. ``use_torch_compatible_inverse_lr`` puts a subclass with
  upstream's schedule (its ``get_lr``) and the current base constructor where
  ``create_scheduler_from_config`` looks the name up at call time: a global of
  ``stable_audio_tools.training.utils``.
* The T5 prompt encoder is kept in float16 outside the module tree, and the conditioner's
  ``with autocast(fp16) and set_grad_enabled(...)`` enters only the second context. Under Lightning's
  ``bf16-mixed`` autocast the fp16 encoder then meets bfloat16 masks and overflows ("value cannot be
  converted to type c10::Half without overflow", H100, docs/BENCHMARKS.md). ``match_text_encoders``
  moves it to bfloat16 for bf16 training: same size, bfloat16's range.
"""

from __future__ import annotations

import torch


def use_torch_compatible_inverse_lr() -> None:
    """Make ``create_scheduler_from_config`` build ``InverseLR`` without the ``verbose`` argument (idempotent)."""
    from stable_audio_tools.training import utils

    if getattr(utils.InverseLR, "torch_compatible", False):
        return

    class InverseLR(utils.InverseLR):
        torch_compatible = True

        def __init__(self, optimizer, inv_gamma=1.0, power=1.0, warmup=0.0, final_lr=0.0, last_epoch=-1):
            if not 0.0 <= warmup < 1:
                raise ValueError("Invalid value for warmup")
            self.inv_gamma, self.power, self.warmup, self.final_lr = inv_gamma, power, warmup, final_lr
            torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer, last_epoch)

    utils.InverseLR = InverseLR


def half_precision_text_encoders(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The conditioners' own encoders kept in float16 or bfloat16 outside the module tree (T5's)."""
    encoders = (conditioner.__dict__.get("model") for conditioner in model.conditioner.conditioners.values())
    return [
        encoder for encoder in encoders
        if isinstance(encoder, torch.nn.Module) and next(encoder.parameters()).dtype in (torch.float16, torch.bfloat16)
    ]  # fmt: skip


def match_text_encoders(model: torch.nn.Module, lightning_precision: str) -> None:
    """Give the half-precision text encoders bfloat16 weights when Lightning trains in bfloat16, else
    upstream's float16 (see the module docstring)."""
    dtype = torch.bfloat16 if lightning_precision.startswith("bf16") else torch.float16
    for encoder in half_precision_text_encoders(model):
        encoder.to(dtype)
